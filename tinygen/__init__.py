"""tinygen: tiny neural networks onto microcontrollers, verified over the serial port."""

__version__ = "0.1.0"
