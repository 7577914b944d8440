"""Which toolchains are installed here, and so which boards can be built, flashed and verified here.

:func:`check_tools` is ``tinygen doctor``'s full list; :func:`board_problems` is what one board lacks
(``doctor`` exits 4 when a board it was asked about lacks something); :func:`check_board_tools` is the
quick check ``build`` runs for an emulated board before any training.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from pathlib import Path

from tinygen.common.boards import Board
from tinygen.common.errors import TinygenError, ToolFailure

_FIX_APT = ("run scripts/setup.sh (or apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi "
            "libstdc++-arm-none-eabi-newlib qemu-system-arm)")


def check_tools() -> list[dict]:
    """One {"tool", "ok", "detail", "fix"} per tool, "fix" empty when it is there.  Sets up tinygen's
    offline PlatformIO home when PlatformIO is installed (that is the check that it works)."""
    from tinygen.device import pio_offline
    from tinygen.device.emulator import qemu_available

    checks = []

    def check(name, ok, detail, fix):
        checks.append({"tool": name, "ok": bool(ok), "detail": detail, "fix": "" if ok else fix})

    for mod, fix in (("tensorflow", "pip install tensorflow-cpu"), ("tflite_micro", "pip install tflite-micro")):
        check(mod, importlib.util.find_spec(mod) is not None, "python package", fix)
    pio_cmd = pio_offline.pio_command()
    check("platformio", pio_cmd is not None, " ".join(pio_cmd) if pio_cmd else "not found", "pip install platformio")
    if pio_cmd is not None:
        scons_ok = False
        try:
            pio_offline.ensure_offline_core()
            scons_ok = True
            detail = f"tool-scons from PyPI SCons and platforms {', '.join(pio_offline.PLATFORM_NAMES)} installed in " \
                     f"tinygen's own PlatformIO home {pio_offline.tinygen_core_dir()} (your ~/.platformio is not touched)"
        except TinygenError as exc:
            detail = str(exc)
        check("platformio offline core", scons_ok, detail, "pip install scons; then rerun tinygen doctor")
    gcc = shutil.which("arm-none-eabi-gcc")
    check("arm-none-eabi-gcc", gcc, gcc or "not found", _FIX_APT)
    gxx = shutil.which("arm-none-eabi-g++")
    check("arm-none-eabi-g++ (+libstdc++)", gxx, gxx or "not found", _FIX_APT)
    q = qemu_available()
    check("qemu-system-arm", q, q or "not found", _FIX_APT)
    # qemu-rv32 (tinygen-riscv): the RISC-V compiler needs picolibc, Debian's only libc for it
    rv_gcc = shutil.which("riscv64-unknown-elf-gcc")
    rv_libc = _picolibc_specs(rv_gcc) if rv_gcc else None
    check("riscv64-unknown-elf-gcc (+picolibc)", rv_gcc and rv_libc,
          f"{rv_gcc} with {rv_libc}" if rv_libc else (f"{rv_gcc}, but no picolibc.specs" if rv_gcc else "not found"),
          _FIX_APT_RISCV)
    rv_qemu = qemu_available("qemu-system-riscv32")
    check("qemu-system-riscv32", rv_qemu, rv_qemu or "not found", _FIX_APT_RISCV)
    host = shutil.which("gcc")
    check("host gcc", host, host or "not found", "apt-get install gcc g++")
    return checks


_FIX_APT_RISCV = ("run scripts/setup.sh (or apt-get install gcc-riscv64-unknown-elf picolibc-riscv64-unknown-elf "
                  "qemu-system-misc)")


def _picolibc_specs(gcc: str) -> str | None:
    """Where the compiler finds picolibc.specs (it echoes the bare name when it finds none)."""
    try:
        found = subprocess.run([gcc, "-print-file-name=picolibc.specs"], capture_output=True, text=True,
                               timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return found if Path(found).is_absolute() and Path(found).is_file() else None


def emulator_tools(board: Board) -> tuple[str, ...]:
    """The check_tools() names an emulated board needs: its compiler and its QEMU."""
    binary = board.emulator.binary
    gcc = "riscv64-unknown-elf-gcc (+picolibc)" if binary == "qemu-system-riscv32" else "arm-none-eabi-gcc"
    return ("platformio offline core", gcc, binary)


# What every build needs, whatever the board: training/conversion and the reference interpreter.
BUILD_TOOLS = ("tensorflow", "tflite_micro")


def board_needs(board: Board) -> tuple[str, ...]:
    """The check_tools() names without which ``board`` is not usable here (see :func:`usable_boards`):
    an emulated board's whole loop (build, QEMU, verify), a real board's project generation."""
    from tinygen.common.boards import is_emulated

    return BUILD_TOOLS + (emulator_tools(board) if is_emulated(board) else ("platformio",))


def board_problems(board: Board, checks: list[dict]) -> list[dict]:
    """The checks (with their fixes) that ``board`` needs and that failed here; empty: usable."""
    by_name = {c["tool"]: c for c in checks}
    return [by_name.get(name, {"tool": name, "ok": False, "detail": "not checked", "fix": "rerun tinygen doctor"})
            for name in board_needs(board) if not by_name.get(name, {}).get("ok")]


def check_board_tools(board: Board, runtime: str | None = None) -> None:
    """Before any training: raise ToolFailure (one line) when this emulated board cannot be built and
    run here: its compiler (and C++ for TFLM), its QEMU, or tinygen's offline PlatformIO home, which
    is set up here (so the project's own `pio run` works as its README prints it).  About a second;
    real boards check nothing here (their first build is checked by tinygen.device.realboard)."""
    from tinygen.common.boards import is_emulated
    from tinygen.device import pio_offline
    from tinygen.device.emulator import qemu_available

    if not is_emulated(board):
        return
    binary = board.emulator.binary
    missing = []
    if binary == "qemu-system-riscv32":
        gcc = shutil.which("riscv64-unknown-elf-gcc")
        if not gcc or not _picolibc_specs(gcc):
            missing.append(("riscv64-unknown-elf-gcc with picolibc", _FIX_APT_RISCV))
    else:
        if not shutil.which("arm-none-eabi-gcc"):
            missing.append(("arm-none-eabi-gcc", _FIX_APT))
        if runtime == "tflm" and not shutil.which("arm-none-eabi-g++"):
            missing.append(("arm-none-eabi-g++", _FIX_APT))
    if not qemu_available(binary):
        missing.append((binary, _FIX_APT_RISCV if binary == "qemu-system-riscv32" else _FIX_APT))
    if missing:
        names = ", ".join(name for name, _ in missing)
        raise ToolFailure(f"board {board.id} needs {names}, which {'is' if len(missing) == 1 else 'are'} not "
                          f"installed here: {missing[0][1]}; tinygen doctor lists what this machine can build")
    pio_offline.ensure_offline_core()  # ToolFailure (one line) when tinygen's PlatformIO home cannot be set up


def usable_boards(checks: list[dict]) -> list[dict]:
    """One {"board", "usable", "what"} per known board, given :func:`check_tools`' answer."""
    from tinygen.common.boards import all_boards, is_emulated

    boards = []
    for b in all_boards().values():
        missing = [c["tool"] for c in board_problems(b, checks)]
        usable = not missing
        if is_emulated(b):
            what = "build, flash (QEMU) and verify here" if usable else f"needs {', '.join(missing)}"
        else:
            what = ("generate here; build/flash need the PlatformIO registry (platform "
                    f"{b.platformio.platform}, {', '.join(b.tflm.lib_deps)}) "
                    "and a board on USB") if usable else f"needs {', '.join(missing)}"
        boards.append({"board": b.id, "usable": usable, "what": what})
    return boards
