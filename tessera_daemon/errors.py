"""Every exception tessera-daemon raises on purpose, in one place.

The retry decision depends only on the class: ``TransientError`` subclasses are retried by the
supervisor with backoff; everything else is a bug or a fatal condition and propagates.
"""

from __future__ import annotations


class TesseraError(Exception):
    """Base of all deliberate errors."""


class ConfigError(TesseraError):
    """A configuration value is missing, unknown, of the wrong type or out of range.

    ``field`` is the dotted path of the offending setting (``window.length_s``).
    """

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


class ConfigErrors(ConfigError):
    """Several configuration errors, reported together (the loader checks every field before raising).

    ``errors`` holds each one; ``field`` / ``message`` are those of the first, and the text lists all of
    them, one per line.
    """

    errors: list[ConfigError]

    def __init__(self, errors: list[ConfigError]) -> None:
        flat: list[ConfigError] = []
        for e in errors:
            flat.extend(e.errors if isinstance(e, ConfigErrors) else [e])
        self.errors = flat
        super().__init__(flat[0].field, flat[0].message)
        self.args = ("\n".join(str(e) for e in flat),)

    def __str__(self) -> str:
        return "\n".join(str(e) for e in self.errors)


class BindError(ConfigError):
    """The HTTP server cannot listen where the configuration says (port in use, no such address).

    ``field`` is the setting to change (``http.port`` or ``http.host``).
    """


class TransientError(TesseraError):
    """A failure worth retrying (network, timeout, a substrate that is briefly gone)."""


class SubstrateError(TransientError):
    """A source could not be read this time."""

    def __init__(self, substrate: str, message: str) -> None:
        self.substrate = substrate
        super().__init__(f"{substrate}: {message}")


class SubstrateUnavailable(SubstrateError):
    """The substrate is not reachable or not installed (NVML missing, API down)."""


class SubstrateTimeout(SubstrateError):
    """The substrate did not answer within its per-source timeout."""


class SubstrateFatal(TesseraError):
    """The substrate answered with something we can never use (bad credentials, wrong format)."""

    def __init__(self, substrate: str, message: str) -> None:
        self.substrate = substrate
        super().__init__(f"{substrate}: {message}")


class TransportError(TransientError):
    """The transport (Redis, MQTT) failed to publish or deliver."""


class CodecError(TesseraError):
    """A frame, topology, event or checkpoint could not be decoded. Never retried."""

    def __init__(self, message: str, *, payload: bytes | str | None = None) -> None:
        self.payload = payload
        super().__init__(message)


class CheckpointError(TesseraError):
    """A detector checkpoint failed validation (checksum, schema version, shape) and was refused."""


class DetectorError(TesseraError):
    """The detector was fed something inconsistent with its state (shape mismatch, bad topology)."""


class KernelError(TesseraError):
    """The compiled detector kernels are unusable (compilation failed, or they disagree with their NumPy twins)."""
