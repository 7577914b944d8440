"""Issue 23 item 2: the generated README's ``pio run -e qemu-m4_example`` failed with the reader's ``pio``:
PlatformIO used ~/.platformio, which has no tinygen-mps2, and after 60 s of trying the registry died with
HTTPClientError; it needed a PLATFORMIO_CORE_DIR no README mentioned.

Now an emulated board's platformio.ini names tinygen's own PlatformIO home (``core_dir``), which the build
sets up (the platform linked, tool-scons installed).  Checked here with PlatformIO's own config reader on a
project built from a ready int8 model (no training); the real ``pio run`` from a new login shell is in
tests/test_readme_commands.py.  Fails before the fix: PlatformIO read ~/.platformio.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import REPO, run_cli

MODEL = REPO / "tests" / "fixtures" / "models" / "sine_int8.tflite"


def test_platformio_reads_tinygen_home_as_core_dir_with_the_platform_installed(tmp_path):
    out = tmp_path / "p"
    res = run_cli("build", "--board", "qemu-m4", "--model", str(MODEL), "--out", str(out), timeout=600)
    assert res.returncode == 0, res.stderr
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLATFORMIO_")}
    read = subprocess.run([sys.executable, "-c", "from platformio.project.config import ProjectConfig\n"
                           "print(ProjectConfig('platformio.ini').get('platformio', 'core_dir'))"],
                          cwd=out, env=env, capture_output=True, text=True, timeout=120)
    assert read.returncode == 0, read.stderr
    core = Path(read.stdout.strip())
    assert core.resolve() == (Path(os.environ["TINYGEN_HOME"]) / "platformio").resolve()
    assert (core / "platforms" / "tinygen-mps2.pio-link").is_file()  # so plain `pio run` needs no registry
    assert (core / "packages" / "tool-scons" / "package.json").is_file()


def test_the_default_home_is_written_with_a_tilde(monkeypatch, tmp_path):
    """The default home reads the same for every user: ~/.local/share/tinygen/platformio."""
    from tinygen.common.paths import pio_home_ini_spelling, tinygen_pio_home

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("TINYGEN_HOME", raising=False)
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    assert pio_home_ini_spelling(tinygen_pio_home()) == "~/.local/share/tinygen/platformio"
    monkeypatch.setenv("TINYGEN_HOME", "/srv/tg")
    assert pio_home_ini_spelling(tinygen_pio_home()) == "/srv/tg/platformio"
