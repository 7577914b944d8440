"""Building (and uploading) a generated project with ``pio run``: the run half of tinygen's
PlatformIO use. :mod:`tinygen.device.pio_offline`, the install half, starts every pio process
and sets up tinygen's own PlatformIO home, which emulated boards build in.

Real boards build with the user's PlatformIO exactly as installed, after checking that the
project's path and the user's $PLATFORMIO_CORE_DIR are ones PlatformIO can take.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tinygen.common.boards import Board
from tinygen.common.errors import ToolFailure
from tinygen.common.escape import UnsafeText, pio_path, terminal
from tinygen.device.pio_offline import ensure_offline_core, last_error_line, pio_command, run_pio, tinygen_core_dir


def check_users_core_dir() -> None:
    """A $PLATFORMIO_CORE_DIR PlatformIO cannot use is named up front (PlatformIO itself dies with a
    traceback whose last line says nothing); only looked at, never created or changed."""
    value = os.environ.get("PLATFORMIO_CORE_DIR")
    if not value:
        return
    path = Path(value).expanduser()
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise ToolFailure(f"PLATFORMIO_CORE_DIR={terminal(value)} is not a usable directory "
                          f"({terminal(str(probe))} is not a writable directory); unset it or point it at one")


# A real board builds with its vendor's PlatformIO platform (espressif32, nordicnrf52), whose commands
# SCons runs through `sh -c`, quoting a word only when it holds a space (in double quotes): these
# characters would be shell syntax there, quoted or not, or split a file name in ld's -Map (`%`)
# and in `-Wl,` (`,`). tinygen's own platforms run commands without a shell and take them.
_THIRD_PARTY_PATH_CHARS = "`\"\\;&|<>()'*?[]{}%,"


def check_third_party_path(path, what: str = "the project directory") -> str:
    """``path`` for a project a third-party PlatformIO platform builds (real boards), as is; raises
    UnsafeText (one line) when it holds a character that platform's shell commands would act on."""
    text = pio_path(path, what)
    bad = sorted({ch for ch in text if ch in _THIRD_PARTY_PATH_CHARS})
    if bad:
        raise UnsafeText(f"{what} {terminal(text)!r} contains {', '.join(map(repr, bad))}, which a real "
                         f"board's PlatformIO platform would pass to a shell; move the project to a path without "
                         f"{' '.join(_THIRD_PARTY_PATH_CHARS)} (emulated boards take any path without '$')")
    return text


def pio_run(
    project_dir: Path,
    target: str | None = None,
    verbose: bool = False,
    *,
    environment: str | None = None,
    core_dir: Path | None = None,
    timeout: float = 1800,
    upload_port: str | None = None,
    offline: bool = True,
) -> subprocess.CompletedProcess:
    """``pio run`` in ``project_dir`` (optionally ``-t target``, ``-e environment``, ``--upload-port``).

    ``offline`` (emulated boards): in ``core_dir`` (default: tinygen's own PlatformIO home), set up
    for offline use first. Otherwise (real boards) the user's PlatformIO runs as installed: their
    core dir, nothing written into it by tinygen. Returns the completed process (stdout holds
    stdout+stderr). Raises ToolFailure with one line (the last compiler/linker error) when pio is
    missing or the build fails.
    """
    project_dir = Path(project_dir)
    if not (project_dir / "platformio.ini").is_file():
        raise ToolFailure(f"{terminal(str(project_dir))} is not a PlatformIO project (no platformio.ini)")
    # SCons expands $ in paths and command lines: such a project dir must never reach it.
    where = pio_path(project_dir.resolve(), "the project directory")
    if pio_command() is None:
        raise ToolFailure("PlatformIO is not installed (pio not found); run: pip install platformio")
    if offline:
        core_dir = Path(core_dir) if core_dir is not None else tinygen_core_dir()
        ensure_offline_core(core_dir)
    elif core_dir is not None:
        raise ValueError("core_dir goes with offline builds only")
    else:
        check_third_party_path(project_dir.resolve())
        check_users_core_dir()
    args = ["run", "--project-dir", where]
    if environment:
        args += ["--environment", environment]
    if target:
        args += ["--target", target]
    if upload_port:
        args += ["--upload-port", upload_port]
    if verbose:
        args.append("--verbose")
    proc = run_pio(args, core_dir=core_dir, timeout=timeout)
    if proc.returncode != 0:
        raise ToolFailure(
            f"pio run failed in {terminal(str(project_dir))} (exit {proc.returncode}): "
            f"{terminal(last_error_line(proc.stdout))}"
        )
    return proc


def firmware_elf(project: Path, environment: str) -> Path:
    """Where ``pio run`` leaves a project's firmware for one environment (board id)."""
    return Path(project) / ".pio" / "build" / environment / "firmware.elf"


def build_firmware(project: Path, board: Board, target: str | None = None, upload_port: str | None = None) -> None:
    """``pio run`` for a generated project's board (``target="upload"`` also flashes a real board)."""
    from tinygen.common.boards import is_emulated

    # Emulated boards build with tinygen's own offline PlatformIO home; real boards with the user's
    # PlatformIO exactly as installed (it fetches their platform and library from the registry).
    pio_run(project, target=target, environment=board.id, upload_port=upload_port, offline=is_emulated(board))
