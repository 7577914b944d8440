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


def tinygen_pio_home() -> Path:
    """tinygen's own PlatformIO home, for emulated boards: $TINYGEN_HOME/platformio, else
    ${XDG_DATA_HOME:-~/.local/share}/tinygen/platformio (tinygen.device.pio_offline.tinygen_core_dir).

    Here, in the bottom layer, because two stages need it: the device stage builds in it, and
    codegen names it in an emulated board's platformio.ini (``core_dir``), so that a plain
    ``pio run`` in the project builds offline with the platform installed there.
    """
    import os

    home = os.environ.get("TINYGEN_HOME")
    if home:
        return Path(home).expanduser() / "platformio"
    data = os.environ.get("XDG_DATA_HOME")
    base = Path(data).expanduser() if data and Path(data).is_absolute() else Path.home() / ".local" / "share"
    return base / "tinygen" / "platformio"


def pio_home_ini_spelling(core: Path) -> str:
    """How platformio.ini names ``core``: ``~/...`` below the user's home (PlatformIO expands ``~`` in
    ``core_dir``, so the default home reads the same for every user), else the absolute path."""
    core = Path(core).absolute()
    home = Path.home().absolute()
    if home != Path(home.anchor) and core.is_relative_to(home):
        return "~/" + core.relative_to(home).as_posix()
    return core.as_posix()
