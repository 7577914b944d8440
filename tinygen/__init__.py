"""tinygen: tiny neural networks onto microcontrollers, verified over the serial port.

The public API (:mod:`tinygen.api`) is loaded on first use, so importing a stage such as
``tinygen.common.errors`` pulls in neither TensorFlow nor the command line.  The error types
(``tinygen.TinygenError`` and its subclasses, what every API call raises) come from
:mod:`tinygen.common.errors`, which imports nothing.
"""

from tinygen.common.version import VERSION as __version__

_API = ("build", "verify", "inspect", "flash", "doctor", "Project", "Report", "ModelInfo", "bench", "BenchRow",
        "CompressOptions")
# Every API call raises one of these (exit_code: what the command would exit with).
_ERRORS = ("TinygenError", "UnsupportedModel", "DoesNotFit", "ToolFailure", "VerificationFailed", "UnsafeText")

__all__ = [*_API, *_ERRORS, "__version__"]


def __getattr__(name: str):
    import importlib

    if name in _API:
        return getattr(importlib.import_module("tinygen.api"), name)
    if name in _ERRORS:
        return getattr(importlib.import_module("tinygen.common.errors"), name)
    raise AttributeError(f"module 'tinygen' has no attribute {name!r}")
