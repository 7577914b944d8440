"""The ``tinygen`` command: parses arguments, calls the public API, prints.

May import: everything (it is the top layer).
"""

from tinygen.cli.main import main

__all__ = ["main"]
