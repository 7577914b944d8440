"""Shared fixtures: projects built once per session through the real CLI, and tool lookups.

Tests that need an external tool skip with the reason when it is missing; set
TINYGEN_REQUIRE_TOOLS=1 (CI does) to turn those skips into failures.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from support.compiled_harness import tflm_outputs  # noqa: F401  (one in-process reference for every test)

REPO = Path(__file__).resolve().parent.parent


def require(available: bool, what: str) -> None:
    """The one way a test skips for a missing tool or package: a skip with the reason,
    or a failure when TINYGEN_REQUIRE_TOOLS is set (CI installs everything)."""
    if available:
        return
    msg = f"{what} is not installed (Debian: see scripts/setup.sh)"
    if os.environ.get("TINYGEN_REQUIRE_TOOLS"):
        pytest.fail(msg, pytrace=False)
    pytest.skip(msg)


def require_tool(name: str) -> str:
    path = shutil.which(name)
    require(path is not None, name)
    return path


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 900, env: dict | None = None):
    """Run the real `tinygen` command in a child process; return CompletedProcess (text)."""
    full_env = dict(os.environ)
    full_env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if env:
        full_env.update(env)
    return subprocess.run([sys.executable, "-m", "tinygen", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=timeout, env=full_env)


def build_ok(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    # Registry-library projects: a TINYGEN_TFLM_DIR in the environment must not leak into them.
    res = run_cli("build", *args, cwd=cwd, env={"TINYGEN_TFLM_DIR": ""})
    assert res.returncode == 0, f"tinygen build {' '.join(args)} failed:\n{res.stdout}\n{res.stderr}"
    return res


@pytest.fixture(scope="session", autouse=True)
def tinygen_home(tmp_path_factory) -> Path:
    """tinygen's own PlatformIO home (TINYGEN_HOME) in a temp dir: tests never write into the
    developer's ~/.local/share/tinygen (and tinygen never writes into ~/.platformio)."""
    home = tmp_path_factory.mktemp("tinygen-home")
    os.environ["TINYGEN_HOME"] = str(home)
    return home


@pytest.fixture(scope="session")
def session_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("tinygen-session")


@pytest.fixture(scope="session")
def sine_project(session_dir) -> Path:
    """tinygen build --board esp32 (default recipe: sine), TFLM runtime."""
    out = session_dir / "sine-esp32"
    build_ok("--board", "esp32", "--out", str(out))
    return out


@pytest.fixture(scope="session")
def digits_project(session_dir) -> Path:
    """The classifier recipe on the Nano 33 BLE, with every held-out sample as a reference vector."""
    out = session_dir / "digits-nano33ble"
    build_ok("--board", "nano33ble", "--recipe", "digits", "--vectors", "360", "--out", str(out))
    return out


def assert_one_line_error(res, *needles: str, code: int | None = None) -> str:
    """A refusal as the CLI promises it: non-zero exit (``code`` if given), one ``error:`` line on
    stderr naming each of ``needles``, and no traceback anywhere."""
    assert res.returncode != 0
    if code is not None:
        assert res.returncode == code, f"exit {res.returncode}, want {code}:\n{res.stdout}\n{res.stderr}"
    assert "Traceback" not in res.stderr and "Traceback" not in res.stdout
    lines = [ln for ln in res.stderr.splitlines() if ln.strip() and not ln.startswith("…")]
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("error: ")
    for n in needles:
        assert n.lower() in lines[0].lower(), lines[0]
    return lines[0]


def tflm_tree_from_env(subdir: str, what: str) -> Path:
    """The TFLM tree in $TINYGEN_TFLM_DIR, which must hold ``subdir`` (``what`` says what that is).

    Unset: a plain skip (TFLM is in no registry reachable here; the suite passes without a tree).
    Set to something else: a failure, since the tests were asked for and cannot run."""
    value = os.environ.get("TINYGEN_TFLM_DIR", "")
    if not value:
        pytest.skip(f"TINYGEN_TFLM_DIR is not set: these tests need a TFLM source tree {what} ({subdir}); "
                    "TFLM is in no registry reachable here")
    tree = Path(value).expanduser().resolve()
    if not (tree / subdir).is_dir():
        pytest.fail(f"TINYGEN_TFLM_DIR={value} is not a TFLM source tree {what} (no {subdir})")
    return tree


@pytest.fixture(scope="session")
def op_cases_built(tmp_path_factory):
    """The compiled runtime's op cases (tests/support/op_cases.py), converted, built into one ASan/UBSan
    host program and run through tflite_micro once per session: tests/compiled/test_kernels.py and
    every test_ops_<family>.py read it."""
    import support.compiled_harness as H
    from support import op_cases

    H.require(H.have_python_deps(), "tensorflow / tflite_micro (Python packages)")
    return op_cases.build(tmp_path_factory.mktemp("ops_host"))
