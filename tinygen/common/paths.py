"""Where tinygen's data directories are, installed or from a checkout.

In a checkout (or an editable install) templates/, firmware/ and boards/ sit
beside the package; a wheel maps them into the package (see pyproject.toml).
"""

from pathlib import Path

_PKG = Path(__file__).resolve().parent.parent  # the tinygen package


def _find(name: str) -> Path:
    for candidate in (_PKG / name, _PKG.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"tinygen data directory '{name}' is missing; reinstall tinygen")


def templates_dir() -> Path:
    return _find("templates")


def firmware_dir() -> Path:
    return _find("firmware")


def boards_dir() -> Path:
    return _find("boards")
