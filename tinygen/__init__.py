"""tinygen: tiny neural networks onto microcontrollers, verified over the serial port.

The public API (:mod:`tinygen.api`) is loaded on first use, so importing a stage such as
``tinygen.common.errors`` pulls in neither TensorFlow nor the command line.
"""

from tinygen.common.version import VERSION as __version__

__all__ = ["build", "verify", "inspect", "flash", "Project", "Report", "ModelInfo", "__version__", "bench", "BenchRow"]


def __getattr__(name: str):
    if name in __all__:
        import importlib

        return getattr(importlib.import_module("tinygen.api"), name)
    raise AttributeError(f"module 'tinygen' has no attribute {name!r}")
