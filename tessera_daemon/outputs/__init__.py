"""Where firings go besides /v1/firings: the ``tessera:firings`` Redis stream and MQTT topics."""
