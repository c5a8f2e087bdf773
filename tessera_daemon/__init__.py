"""tessera-daemon: gray-failure detection for GPU and accelerator clusters."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("tessera-daemon")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
