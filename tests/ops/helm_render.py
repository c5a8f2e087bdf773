"""A small renderer for the subset of Helm's Go templates that deploy/helm/tessera-daemon uses, for test
machines without a helm binary (`helm template` is used instead where one is installed).

Supported: text with ``{{ }}`` actions and ``{{-`` / ``-}}`` whitespace trimming; ``if`` / ``else`` /
``end``; ``define`` and ``include``; pipelines; the fields ``.Values.*``, ``.Release.*``, ``.Chart.*`` and
``.Files.Get``; the functions quote, toYaml, toJson, fromYaml, nindent, indent, default, required, not,
and, or, eq, contains. Anything else raises, so the chart cannot silently use a construct this renderer gets wrong.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

_ACTION = re.compile(r"\{\{(-?)\s*(.*?)\s*(-?)\}\}", re.DOTALL)
_TOKEN = re.compile(r'\s*("(?:[^"\\]|\\.)*"|`[^`]*`|\(|\)|\||[^\s()|]+)')


class TemplateError(Exception):
    pass


@dataclass
class Node:
    kind: str  # text, expr, if, define
    value: str = ""
    body: list[Node] = field(default_factory=list)
    orelse: list[Node] = field(default_factory=list)


def _lex(text: str) -> list[tuple[str, str]]:
    """("text", s) and ("action", expr) items, with Go's trim markers applied to the neighbouring text."""
    items: list[tuple[str, str]] = []
    pos = 0
    trim_next = False
    for m in _ACTION.finditer(text):
        chunk = text[pos : m.start()]
        if trim_next:
            chunk = chunk.lstrip()
        if m.group(1):
            chunk = chunk.rstrip()
        items.append(("text", chunk))
        items.append(("action", m.group(2)))
        trim_next = bool(m.group(3))
        pos = m.end()
    tail = text[pos:]
    items.append(("text", tail.lstrip() if trim_next else tail))
    return items


def _parse(items: list[tuple[str, str]], pos: int = 0, stop: tuple[str, ...] = ()) -> tuple[list[Node], int, str]:
    out: list[Node] = []
    while pos < len(items):
        kind, value = items[pos]
        pos += 1
        if kind == "text":
            if value:
                out.append(Node("text", value))
            continue
        word = value.split(None, 1)[0] if value else ""
        if word in stop:
            return out, pos, word
        if word.startswith("/*"):
            continue
        if word == "if":
            body, pos, ended = _parse(items, pos, ("else", "end"))
            orelse: list[Node] = []
            if ended == "else":
                orelse, pos, ended = _parse(items, pos, ("end",))
            out.append(Node("if", value[2:].strip(), body, orelse))
        elif word == "define":
            body, pos, _ = _parse(items, pos, ("end",))
            out.append(Node("define", json.loads(value.split(None, 1)[1]), body))
        elif word in {"range", "with", "template", "block", "else", "end"}:
            raise TemplateError(f"unsupported action {{{{ {value} }}}}")
        else:
            out.append(Node("expr", value))
    if stop:
        raise TemplateError(f"missing {{{{ end }}}} (expected one of {stop})")
    return out, pos, ""


def _truthy(v: Any) -> bool:
    return not (v is None or v is False or v in (0, "", [], {}))


def _to_yaml(v: Any) -> str:
    return yaml.safe_dump(v, default_flow_style=False, sort_keys=True).rstrip("\n") if v not in (None, "") else ""


class Chart:
    def __init__(self, root: Path, values: dict[str, Any], release: str = "tessera", namespace: str = "tessera"):
        self.root = root
        meta = yaml.safe_load((root / "Chart.yaml").read_text())
        self.context = {
            "Values": values,
            "Release": {"Name": release, "Namespace": namespace, "Service": "Helm", "IsInstall": True},
            "Chart": {"Name": meta["name"], "Version": meta["version"], "AppVersion": meta["appVersion"]},
        }
        self.defines: dict[str, list[Node]] = {}
        for helper in sorted((root / "templates").glob("_*.tpl")):
            self._render(self._tree(helper.read_text()), self.context)

    @staticmethod
    def _tree(text: str) -> list[Node]:
        nodes, _, _ = _parse(_lex(text))
        return nodes

    # ---------------------------------------------------------------------------------- expressions

    def _field(self, path: str, dot: Any) -> Any:
        if path == ".":
            return dot
        value = dot
        for part in path.lstrip(".").split("."):
            if isinstance(value, dict):
                value = value.get(part)
            else:
                return None
        return value

    def _call(self, name: str, args: list[Any]) -> Any:
        if name == "quote":
            return json.dumps("" if args[-1] is None else str(args[-1]))
        if name == "toYaml":
            return _to_yaml(args[-1])
        if name == "toJson":
            return json.dumps(args[-1], separators=(",", ":"))
        if name == "fromYaml":
            return yaml.safe_load(args[-1])
        if name in {"nindent", "indent"}:
            pad = " " * int(args[0])
            text = "\n".join(pad + line if line else line for line in str(args[1]).split("\n"))
            return "\n" + text if name == "nindent" else text
        if name == "default":
            return args[1] if len(args) > 1 and _truthy(args[1]) else args[0]
        if name == "required":
            if not _truthy(args[1]):
                raise TemplateError(str(args[0]))
            return args[1]
        if name == "not":
            return not _truthy(args[0])
        if name == "and":
            return all(_truthy(a) for a in args)
        if name == "or":
            return any(_truthy(a) for a in args)
        if name == "contains":
            return str(args[0]) in str(args[1])
        if name == "eq":
            return args[0] == args[1]
        if name == "include":
            return self._render(self.defines[args[0]], args[1])
        raise TemplateError(f"unsupported function {name}")

    def _command(self, tokens: list[str], dot: Any, piped: list[Any]) -> Any:
        args: list[Any] = []
        i = 0
        while i < len(tokens):
            t = tokens[i]
            if t == "(":
                depth, j = 1, i + 1
                while depth:
                    depth += {"(": 1, ")": -1}.get(tokens[j], 0)
                    j += 1
                args.append(self._pipeline(tokens[i + 1 : j - 1], dot))
                i = j
                continue
            if t.startswith('"'):
                args.append(json.loads(t))
            elif t.startswith("`"):
                args.append(t[1:-1])
            elif re.fullmatch(r"-?\d+", t):
                args.append(int(t))
            elif t in {"true", "false"}:
                args.append(t == "true")
            elif t == ".Files.Get":
                args.append(("Files.Get",))
            elif t.startswith("."):
                args.append(self._field(t, dot))
            else:
                args.append(("fn", t))
            i += 1
        head, rest = args[0], [*args[1:], *piped]
        if head == ("Files.Get",):
            return (self.root / rest[0]).read_text()
        if isinstance(head, tuple) and head[0] == "fn":
            return self._call(head[1], rest)
        if rest:
            raise TemplateError(f"a value cannot take arguments: {tokens}")
        return head

    def _pipeline(self, tokens: list[str], dot: Any) -> Any:
        commands: list[list[str]] = [[]]
        depth = 0
        for t in tokens:
            depth += {"(": 1, ")": -1}.get(t, 0)
            if t == "|" and depth == 0:
                commands.append([])
            else:
                commands[-1].append(t)
        value = self._command(commands[0], dot, [])
        for cmd in commands[1:]:
            value = self._command(cmd, dot, [value])
        return value

    def _eval(self, expr: str, dot: Any) -> Any:
        tokens = _TOKEN.findall(expr)
        if "".join(tokens).replace(" ", "") != expr.replace(" ", "").replace("\n", ""):
            raise TemplateError(f"cannot tokenise {expr!r}")
        return self._pipeline(tokens, dot)

    # ------------------------------------------------------------------------------------ rendering

    def _render(self, nodes: list[Node], dot: Any) -> str:
        out: list[str] = []
        for n in nodes:
            if n.kind == "text":
                out.append(n.value)
            elif n.kind == "expr":
                v = self._eval(n.value, dot)
                out.append("" if v is None else str(v).lower() if isinstance(v, bool) else str(v))
            elif n.kind == "if":
                out.append(self._render(n.body if _truthy(self._eval(n.value, dot)) else n.orelse, dot))
            elif n.kind == "define":
                self.defines[n.value] = n.body
        return "".join(out)

    def render(self) -> dict[str, str]:
        """templates/<name> -> rendered text, as `helm template` would write it (NOTES.txt left out)."""
        out = {}
        for path in sorted((self.root / "templates").glob("*.yaml")):
            out[path.name] = self._render(self._tree(path.read_text()), self.context)
        return out


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Helm's values merge: nested maps merge, everything else replaces."""
    out = dict(base)
    for k, v in override.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def render_chart(
    root: Path, overrides: dict[str, Any] | None = None, release: str = "tessera", namespace: str = "tessera"
) -> list[dict[str, Any]]:
    values = merge(yaml.safe_load((root / "values.yaml").read_text()), overrides or {})
    docs: list[dict[str, Any]] = []
    for text in Chart(root, values, release, namespace).render().values():
        docs.extend(d for d in yaml.safe_load_all(text) if d)
    return docs
