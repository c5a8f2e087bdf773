{{- define "tessera.name" -}}
{{- if contains "tessera" .Release.Name }}{{ .Release.Name }}{{ else }}{{ .Release.Name }}-tessera{{ end }}
{{- end }}

{{- define "tessera.serviceAccountName" -}}
{{- if .Values.serviceAccount.name }}{{ .Values.serviceAccount.name }}{{ else }}{{ include "tessera.name" . }}{{ end }}
{{- end }}

{{- define "tessera.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{- define "tessera.labels" -}}
app.kubernetes.io/part-of: tessera
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end }}

{{- define "tessera.redisUrl" -}}
{{- if .Values.redis.enabled }}redis://{{ include "tessera.name" . }}-redis.{{ .Release.Namespace }}.svc:6379/0{{ else }}{{ required "redis.url is required when redis.enabled is false" .Values.redis.url }}{{ end }}
{{- end }}
