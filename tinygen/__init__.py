"""tinygen: tiny neural networks onto microcontrollers, verified over the serial port."""

from tinygen.common.version import VERSION as __version__

__all__ = ["__version__"]
