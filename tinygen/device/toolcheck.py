"""Which toolchains are installed here, and so which boards can be built, flashed and verified here."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from pathlib import Path

from tinygen.common.errors import TinygenError

_FIX_APT = ("run scripts/setup.sh (or apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi "
            "libstdc++-arm-none-eabi-newlib qemu-system-arm)")


def check_tools() -> list[dict]:
    """One {"tool", "ok", "detail", "fix"} per tool, "fix" empty when it is there.  Sets up tinygen's
    offline PlatformIO home when PlatformIO is installed (that is the check that it works)."""
    from tinygen.device import pio
    from tinygen.device.emulator import qemu_available

    checks = []

    def check(name, ok, detail, fix):
        checks.append({"tool": name, "ok": bool(ok), "detail": detail, "fix": "" if ok else fix})

    for mod, fix in (("tensorflow", "pip install tensorflow-cpu"), ("tflite_micro", "pip install tflite-micro")):
        check(mod, importlib.util.find_spec(mod) is not None, "python package", fix)
    pio_cmd = pio.pio_command()
    check("platformio", pio_cmd is not None, " ".join(pio_cmd) if pio_cmd else "not found", "pip install platformio")
    if pio_cmd is not None:
        scons_ok = False
        try:
            pio.ensure_offline_core()
            scons_ok = True
            detail = f"tool-scons from PyPI SCons and platforms {', '.join(pio.PLATFORM_NAMES)} installed in " \
                     f"tinygen's own PlatformIO home {pio.tinygen_core_dir()} (your ~/.platformio is not touched)"
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


def emulator_tools(board: dict) -> tuple[str, ...]:
    """The check_tools() names an emulated board needs: its compiler and its QEMU."""
    binary = board["emulator"].get("binary", "qemu-system-arm")
    gcc = "riscv64-unknown-elf-gcc (+picolibc)" if binary == "qemu-system-riscv32" else "arm-none-eabi-gcc"
    return ("platformio offline core", gcc, binary)


def usable_boards(checks: list[dict]) -> list[dict]:
    """One {"board", "usable", "what"} per known board, given :func:`check_tools`' answer."""
    from tinygen.common.boards import all_boards, is_emulated

    ok = {c["tool"]: c["ok"] for c in checks}
    boards = []
    for b in all_boards().values():
        if is_emulated(b):
            needs = emulator_tools(b)
            usable = all(ok.get(k) for k in needs)
            what = "build, flash (QEMU) and verify here" if usable else f"needs {', '.join(needs)}"
        else:
            usable = ok.get("platformio", False)
            what = ("generate here; build/flash need the PlatformIO registry (platform "
                    f"{b['platformio']['platform']}, {', '.join(b.get('tflm', {}).get('lib_deps', []))}) "
                    "and a board on USB")
        boards.append({"board": b["id"], "usable": usable, "what": what})
    return boards
