"""Where firings go besides /v1/firings: the ``tessera:firings`` Redis stream (``stream``), MQTT topics
retained per target (``mqtt``) and the DeploySignal verdict-group feed (``verdict_feed``)."""
