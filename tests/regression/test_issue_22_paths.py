"""Issue 22 items 1 and 2: a path is data, whatever characters it holds.

1. ``tinygen run --board qemu-m4 --out 'n/r;touch PWNED;x'`` created ``PWNED``: both dev platforms
   (firmware/platformio/tinygen-*/builder/main.py) formatted ``$BUILD_DIR`` into ``-Wl,-Map,...``,
   and SCons runs every command through ``sh -c``, quoting a word only when it holds a space (in
   double quotes, where a backtick still runs).  A backtick path did the same through ``flash``.
2. Paths with a space, quote, ``%``, ``(``, ``&``, ``|``, ``<``, ``>`` failed at link time, and with
   a space ld wrote a stray map file outside the project (SCons split ``-Wl,-Map,<path>`` at it).

The fix (firmware/platformio/tinygen_argv.py): the platforms run each command's words as an argv,
no shell; the map file goes to ld as ``-Xlinker -Map=<path relative to the project>`` (ld reads a
``%`` in the map's name as "the output file"); the ``-I``/``-L``/``-l``/``-T`` words and TFLM's
``-isystem`` are literal words (SCons splits a string at a space after ``<``, ``>``, ``|``).  What no
spelling survives is refused in one line before any work: ``$`` (SCons expands it, ``${...}``
runs Python, in the paths PlatformIO hands it) and control characters.

Here, real builds (PlatformIO, SCons, GCC, QEMU) of the sine model in a directory named with all
of those characters, with tinygen's PlatformIO home (TINYGEN_HOME) under such a name too:
``tinygen run`` on qemu-m4 (from that directory as the working directory, default --out, with
--profile and --layers) and on qemu-rv32 (``--out 'n/r;touch PWNED;x'``, the issue's path, inside
it); the same project through ``flash`` (QEMU on a pty) + ``verify --port``, and its example
environment; then no ``PWNED`` anywhere and nothing outside the projects.  A real board's project
(its vendor's platform still runs commands through a shell) under such a path is refused in one
line before PlatformIO starts.

Also issue 28 item 4 (builder part): a TFLM tree from create_tflm_tree.py (TARGET=cortex_m_generic)
holds tensorflow/lite/micro/cortex_m_generic/, whose micro_time.cc does not build here ('DWT' not
declared) and whose functions the project defines: the mps2 builder leaves that folder out.  Checked
with a fake tree (one source file the program calls, and a cortex_m_generic/ file that is an
#error), itself under the hostile directory so TFLM's include flags carry it.

Checked to fail without the fix: on the commit before it (a worktree of d4bebcb with this file
copied in), the rv32 run fails at the link ('*** [.pio/build/qemu-rv32/firmware.elf] Error 2') and
the fake-tree build fails with gcc reading ' c ü é,...' (the tree's path split at '< ') as an input
file; with the fix but without the cortex_m_generic/ exclusion, the fake-tree build stops at its
#error.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, assert_one_line_error, require_tool, run_cli
from tinygen.common.escape import ini_value
from tinygen.device.pio_build import pio_run

# Every character the issue names (space, both quotes, ';', backtick, '%', '(', '&', '|', '<', '>')
# and more ('a| b': SCons's redirection guess; ',' for QEMU's option parser and ld's -Wl,; glob and
# ini characters; a backslash; non-ASCII letters). A shell that saw it would run `touch PWNED`.
HOSTILE = "it's \"q\";`touch PWNED`;x %(&|<>) a| b< c ü é,x=[1]{2}#!~?*\\e"
ISSUE_OUT = "n/r;touch PWNED;x"


def _tools():
    for tool in ("arm-none-eabi-gcc", "qemu-system-arm", "riscv64-unknown-elf-gcc", "qemu-system-riscv32"):
        require_tool(tool)


def _entries(path: Path) -> set[str]:
    return {p.name for p in path.iterdir()}


def _assert_nothing_ran(root: Path) -> None:
    found = [os.path.join(d, f) for d, dirs, files in os.walk(root) for f in files + dirs if f == "PWNED"]
    assert not found, f"a shell ran part of a path: {found}"


@pytest.fixture(scope="module")
def hostile(tmp_path_factory, sine_project) -> dict:
    """root/My Projects/<HOSTILE>/ holding the sine model (under a hostile name too), and tinygen's
    PlatformIO home (TINYGEN_HOME: the offline core, named in platformio.ini) in root/My Home/<HOSTILE>/."""
    _tools()
    root = tmp_path_factory.mktemp("issue22")
    here = root / "My Projects" / HOSTILE
    here.mkdir(parents=True)
    model = here / "m o'del;(1).tflite"
    model.write_bytes((sine_project / "model.tflite").read_bytes())
    home = root / "My Home" / HOSTILE
    return {"root": root, "dir": here, "model": model, "env": {"TINYGEN_HOME": str(home)},
            "core": home / "platformio"}


@pytest.fixture(scope="module")
def m4_project(hostile) -> Path:
    """`tinygen run --board qemu-m4 --profile --layers` with the hostile directory as the working
    directory and the default --out (a CI checkout under a branch name does that)."""
    here = hostile["dir"]
    res = run_cli("run", "--board", "qemu-m4", "--model", hostile["model"].name, "--profile", "--layers",
                  "--vectors", "4", "--json", cwd=here, env=hostile["env"])
    assert res.returncode == 0, f"{res.stdout}\n{res.stderr}"
    out = json.loads(res.stdout)
    hostile["m4_json"] = out
    project = here / out["project"]
    assert project.parent == here and (project / "platformio.ini").is_file()
    return project


def test_run_on_qemu_m4_from_a_hostile_working_directory(hostile, m4_project):
    out = hostile["m4_json"]
    assert out["metrics"]["exact_match_pct"] == 100.0 and out["metrics"]["max_abs_diff_lsb"] == 0
    assert out["layers"]["divergence"] is None and out["layers"]["ops_compared"] == out["layers"]["ops_in_model"] > 0
    assert len(out["profile"]["ops"]) == out["layers"]["ops_in_model"]
    build = m4_project / ".pio" / "build" / "qemu-m4"
    assert (build / "firmware.elf").is_file() and (build / "firmware.map").is_file()
    for name in ("verify.json", "verify.md", "verify.png", "profile.png"):
        assert (m4_project / "reports" / name).is_file(), name
    _assert_nothing_ran(hostile["root"])


def test_flash_verify_and_example_under_the_hostile_path(hostile, m4_project):
    """The same project through `tinygen flash` (pio run again, QEMU on a pty), `tinygen verify
    --port` against that QEMU, and the project's example environment (`pio run -e qemu-m4_example`
    as tinygen runs pio: its offline home)."""
    flash = subprocess.Popen([sys.executable, "-m", "tinygen", "flash", "--project", str(m4_project)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=hostile["dir"],
                             env={**os.environ, **hostile["env"]})
    try:
        port = None
        for line in flash.stdout:
            if line.startswith("port: "):
                port = line.split(":", 1)[1].strip()
                break
        assert port, f"flash printed no port: {flash.stderr.read() if flash.poll() is not None else ''}"
        res = run_cli("verify", "--project", str(m4_project), "--port", port, "--vectors", "4", "--json",
                      cwd=hostile["dir"], env=hostile["env"])
        assert res.returncode == 0, f"{res.stdout}\n{res.stderr}"
        assert json.loads(res.stdout)["metrics"]["exact_match_pct"] == 100.0
    finally:
        flash.send_signal(signal.SIGTERM)
        flash.wait(timeout=30)
    pio_run(m4_project, environment="qemu-m4_example", core_dir=hostile["core"])
    assert (m4_project / ".pio" / "build" / "qemu-m4_example" / "firmware.elf").is_file()
    _assert_nothing_ran(hostile["root"])


@pytest.fixture(scope="module")
def rv32_project(hostile) -> Path:
    """`tinygen run --board qemu-rv32 --out 'n/r;touch PWNED;x'` inside the hostile directory."""
    here = hostile["dir"]
    res = run_cli("run", "--board", "qemu-rv32", "--model", str(hostile["model"]), "--out", ISSUE_OUT,
                  "--vectors", "4", "--json", cwd=here, env=hostile["env"])
    assert res.returncode == 0, f"{res.stdout}\n{res.stderr}"
    hostile["rv32_json"] = json.loads(res.stdout)
    return here / ISSUE_OUT


def test_run_on_qemu_rv32_with_the_issues_out(hostile, rv32_project):
    out = hostile["rv32_json"]
    assert out["board"] == "qemu-rv32" and out["metrics"]["exact_match_pct"] == 100.0
    build = rv32_project / ".pio" / "build" / "qemu-rv32"
    assert (build / "firmware.elf").is_file() and (build / "firmware.map").is_file()
    _assert_nothing_ran(hostile["root"])


def test_nothing_outside_the_projects(hostile, m4_project, rv32_project):
    """After both builds: no stray file (ld's map, split at a space, landed in a parent directory)
    beside the projects, in the working directory or above it."""
    root, here = hostile["root"], hostile["dir"]
    _assert_nothing_ran(root)
    assert _entries(root) == {"My Projects", "My Home"}
    assert _entries(root / "My Projects") == {HOSTILE}
    assert _entries(here) - {m4_project.name, "n"} == {hostile["model"].name}
    assert _entries(here / "n") == {rv32_project.name}


@pytest.mark.parametrize("where", ["out", "cwd"])
def test_a_dollar_is_refused_in_one_line_before_any_work(tmp_path, where):
    """'$' cannot be made safe (PlatformIO hands SCons the project's paths, and SCons expands $NAME
    and runs ${...} as Python): refused in one line, exit 2, before training, nothing written."""
    if where == "out":
        cwd, args = tmp_path, ["--out", "n/a$(id)b"]
    else:  # a checkout under a branch named with '$', and the default --out inside it
        cwd, args = tmp_path / "ci-${x}-$HOME", []
        cwd.mkdir()
    res = run_cli("run", "--board", "qemu-m4", *args, cwd=cwd)
    assert_one_line_error(res, "--out", "'$'", code=2)
    assert "training" not in res.stderr
    assert _entries(cwd) == set()
    _assert_nothing_ran(tmp_path)


def test_tflm_tree_leaves_out_cortex_m_generic(tmp_path_factory):
    """issue 28 item 4: the mps2 builder's TFLM source filter on a fake tree in create_tflm_tree.py's
    cortex_m_generic shape, built for real by `pio run` (tinygen's offline PlatformIO). The tree and
    the linker scripts lie outside the project under the hostile name (-isystem, -I, -T, -L)."""
    _tools()
    root = tmp_path_factory.mktemp("issue28")
    base = root / HOSTILE  # (no ' ;' or ' #' in it: platformio.ini would cut the value there)
    tree, project = base / "tree", base / "project"
    micro = tree / "src" / "tensorflow" / "lite" / "micro"
    (micro / "cortex_m_generic").mkdir(parents=True)
    (micro / "tg_fake.h").write_text("#define TG_FAKE_ANSWER 42\n")
    (micro / "tg_fake.cc").write_text('#include "tensorflow/lite/micro/tg_fake.h"\n'
                                      'extern "C" int tg_fake_tflm(void) { return TG_FAKE_ANSWER; }\n')
    (micro / "cortex_m_generic" / "micro_time.cc").write_text(
        '#error "tensorflow/lite/micro/cortex_m_generic/ must be left out of the TFLM library"\n')
    (project / "src").mkdir(parents=True)
    (project / "src" / "main.c").write_text(
        "int tg_fake_tflm(void);\nint main(void) { return tg_fake_tflm() == 42 ? 0 : 1; }\n"
        "void Reset_Handler(void) { main(); for (;;) {} }\n")
    # the board's linker scripts outside the project, under the hostile name too: -T and -L carry it
    scripts = base / "ld scripts"
    scripts.mkdir()
    for name, mark in (("mps2.ld", "tg_issue22_script"), ("tg_mps2_sections.ld", "tg_issue22_sections")):
        text = (REPO / "firmware" / "hal" / "mps2" / name).read_text()
        (scripts / name).write_text(f"{text}\n{mark} = 0x22;\n")  # shows in the ELF that this copy was used
    (project / "platformio.ini").write_text(
        "[env:qemu-m4]\nplatform = tinygen-mps2\nboard = qemu-m4\n"
        f"board_build.ldscript = {ini_value(str(scripts / 'mps2.ld'))}\n"
        f"custom_tinygen_tflm_dir = {ini_value(str(tree))}\ncustom_tinygen_tflm_cache = no\n", encoding="utf-8")
    proc = pio_run(project, environment="qemu-m4", verbose=True)
    build = project / ".pio" / "build" / "qemu-m4"
    objects = sorted(p.relative_to(build / "tflm").as_posix() for p in (build / "tflm").rglob("*.o"))
    assert objects == ["tensorflow/lite/micro/tg_fake.o"], proc.stdout[-2000:]
    assert (build / "firmware.elf").is_file()
    symbols = subprocess.run(["arm-none-eabi-nm", str(build / "firmware.elf")], capture_output=True, text=True,
                             check=True).stdout.split()
    assert "tg_issue22_script" in symbols and "tg_issue22_sections" in symbols
    _assert_nothing_ran(root)


def test_a_real_board_project_under_a_shell_path_is_refused_before_pio(tmp_path, sine_project):
    """A real board builds with its vendor's PlatformIO platform, which runs commands through
    `sh -c` (tinygen's argv spawn is in its own platforms only): `tinygen flash` refuses such a
    project path in one line, before PlatformIO starts (a space alone is fine)."""
    project = tmp_path / "My Projects" / "n" / "r;touch PWNED;x"
    shutil.copytree(sine_project, project, ignore=shutil.ignore_patterns(".pio"))
    res = run_cli("flash", "--project", str(project), cwd=tmp_path)
    assert_one_line_error(res, "project directory", "';'", "shell", code=2)
    assert not (project / ".pio").exists()
    _assert_nothing_ran(tmp_path)
