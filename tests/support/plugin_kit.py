"""The emulated project the plugin and farm tests share: built from a committed int8 .tflite (no
training), its firmware built once per session."""

from __future__ import annotations

from importlib.metadata import entry_points
from pathlib import Path

from conftest import REPO, build_ok, require_tool

SINE_TFLITE = REPO / "tests" / "fixtures" / "models" / "sine_int8.tflite"
PLUGIN = "tinygen.testing.pytest_plugin"


def emulated_project(session_dir: Path) -> Path:
    from tinygen import api

    require_tool("arm-none-eabi-gcc")
    require_tool("qemu-system-arm")
    out = session_dir / "sine-m4-from-tflite"
    if not (out / "tinygen.json").exists():
        build_ok("--board", "qemu-m4", "--model", str(SINE_TFLITE), "--out", str(out))
    api.Project.load(out).build_firmware()
    return out


def plugin_args() -> list[str]:
    """How pytest finds the plugin: the installed entry point, or (a checkout on PYTHONPATH whose
    install predates the entry point) by name; never both, pytest refuses a plugin loaded twice."""
    installed = any(ep.value == PLUGIN for ep in entry_points(group="pytest11"))
    # labgrid's own plugin (installed with the [farm] extra) cannot start twice in one process,
    # and the inner in-process pytest run would be its second start.
    # hypothesis's plugin is not needed by a user's serial tests, and an in-process run re-imports
    # (and assertion-rewrites) its hundred modules: seconds each time.
    return ["-p", "no:labgrid", "-p", "no:hypothesispytest"] + ([] if installed else ["-p", PLUGIN])
