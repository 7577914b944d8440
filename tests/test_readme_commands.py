"""Every command the documentation prints works as printed (issue 23: "the habit that prevents this").

Three sources, each extracted from the Markdown as a parser sees it (tests/support/markdown_check.py):

* README.md's code blocks.  Each command is listed in README_COMMANDS with how it is checked:
  ``RUN`` runs it as printed in a new login shell (below); ``CI`` means .ci/run runs it as printed
  (test_ci_runs_what_the_readme_says checks that .ci/run still holds it); anything else is the reason
  it cannot run here (a real board, the PlatformIO registry, the reader's own model files).  Every
  ``tinygen`` command line, run or not, is parsed by tinygen's own CLI, so a renamed option fails here.
  A README command that is in no list fails test_every_readme_command_is_listed: add it, run it if
  at all possible, else say why.
* docs/python-api.md's Python snippet (README links it), run as a script.  It builds ``sine-m4``
  (qemu-m4), whose generated README then supplies the third source:
* the generated project's README.md (templates/README.md.j2, emulated branch): every command in its
  ``sh`` blocks, listed in GENERATED_COMMANDS, runs as printed in the project; the one placeholder,
  ``/dev/pts/N``, becomes the port ``tinygen flash`` printed, as the README tells the reader to do.

"A new login shell" is what a reader has after scripts/setup.sh: ``bash -lc COMMAND`` with a fresh
empty $HOME (so ~/.platformio, tinygen's own PlatformIO home and every cache start empty), no
TINYGEN_* or PLATFORMIO_* variables, and the PATH the login shell sets up, on which setup.sh put
``tinygen`` and ``pio``.  The long tests are marked ``slow`` (part of the default suite; .ci/run
deselects nothing).  The docs/ pages' commands are listed in DOCS_COMMANDS the same way: the ones that
can run here run as printed, page by page, in one new login shell; the rest (TFLM trees, labgrid farms,
real boards, the reader's own files, minutes of benchmarks) say why, and every tinygen line in them is
parsed by the CLI.
"""

from __future__ import annotations

import os
import re
import select
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO, require
from support.markdown_check import check_tables, code_blocks, prose_lines, tables

README = REPO / "README.md"
API_DOC = REPO / "docs" / "python-api.md"
CI_SCRIPT = REPO / ".ci" / "run"

RUN = "run here, as printed, in a new login shell"
CI = ".ci/run runs it as printed (its set-up, smoke and test steps)"
README_COMMANDS = {
    "bash scripts/setup.sh && tinygen run --board qemu-m4": CI,
    "bash scripts/setup.sh && .venv/bin/python -m pytest -q": CI + "; the pytest part is this suite",
    "tinygen run --board qemu-m4": CI,
    "tinygen boards": RUN,
    "tinygen doctor": RUN,
    "tinygen build --board esp32 --model my.keras --data samples.npz --out my-esp32":
        "needs the reader's own my.keras and samples.npz; tests/intake/test_user_models.py builds user Keras "
        "models with --data through the same command",
    "tinygen run --board qemu-m4 --recipe digits":
        "trains the digits recipe for minutes; tests/device/test_device_loop.py builds that project "
        "(build --board qemu-m4 --recipe digits) and verifies it on QEMU",
    "tinygen verify --project my-esp32 --port auto": "needs an ESP32 on USB",
    "tinygen run --board qemu-m4 --model m.onnx --data d.npz":
        "needs the reader's own PyTorch export; tests/intake/test_onnx.py runs `tinygen run --board qemu-m4 "
        "--model M.onnx --data D.npz` on an onnx.helper graph as torch.onnx.export writes it",
    "cd my-esp32 && pio run -t upload && tinygen verify --project . --port auto":
        "needs the PlatformIO registry (the espressif32 platform) and an ESP32 on USB",
}

# Every command docs/*.md prints, per page: RUN (in a new login shell, in the order listed, one reader
# working through the pages), SYNOPSIS (a usage line with placeholders: parsed by the CLI, below), or
# why it cannot run here.  A docs command in no list fails test_every_docs_command_is_listed.
SYNOPSIS = "a usage synopsis with placeholders (DIR, PORT, [...]); each option is checked against the CLI"
USER_FILES = "needs the reader's own model/data files; tests/intake/test_user_models.py builds user models this way"
FUZZ = "a long fuzzing campaign; tests/fuzz runs each harness briefly"
FARM = "needs a labgrid farm with a board; tests/device/test_farm.py runs a coordinator, exporter and place locally"
DOCS_COMMANDS = {
    "cli.md": {
        "tinygen boards": RUN,
        "tinygen build --board esp32": RUN,
        "tinygen build --board nano33ble --recipe digits":
            "trains the digits recipe for minutes; tests/device/test_device_loop.py builds it for qemu-m4 and "
            "conftest's digits_project for nano33ble",
        "tinygen build --board esp32 --model my.keras --data samples.npz --out my-esp32": USER_FILES,
        "tinygen build --board esp32 --model already_int8.tflite": USER_FILES,
        "tinygen inspect model.tflite [--runtime compiled] [--frontend FILE.json] [--json]": SYNOPSIS,
        "tinygen inspect model.tflite --runtime compiled --check [--vectors N]": SYNOPSIS,
        "tinygen doctor [--board ID ...] [--json]": SYNOPSIS,
        "tinygen flash --project DIR [--port PORT]": SYNOPSIS,
        "tinygen verify --project DIR [--port PORT|auto] [--vectors N] [--tolerance LSB] [--layers] [--profile]":
            SYNOPSIS,
        "tinygen verify --project DIR --place NAME [--coordinator HOST:PORT]": SYNOPSIS,
        "tinygen verify --project DIR --emulate [--tflm-dir DIR | --emulate-runtime compiled]": SYNOPSIS,
        "tinygen run --board qemu-m4 [--recipe digits | --model M --data D] [--runtime compiled|tflm] "
        "[build's options: --prune, --qat, --fit, ...]": SYNOPSIS,
        "tinygen bench MODEL [--boards qemu-m3,qemu-m4,...] [--tflm-dir DIR] [--frontend FILE.json] [--json]": SYNOPSIS,
        "tinygen verify --project DIR --port PORT --layers": SYNOPSIS,
        "tinygen verify --project DIR --port PORT --profile": SYNOPSIS,
        "tinygen profile --project DIR-compiled --project DIR-tflm": SYNOPSIS,
    },
    "boards.md": {
        "cd tinygen-esp32-sine && pio run -t upload && tinygen verify --project . --port auto":
            "needs the PlatformIO registry (the espressif32 platform) and an ESP32 on USB",
        "tinygen build --board nano33ble --runtime compiled --out tinygen-nano33ble-sine": RUN,
        "tinygen verify --project tinygen-nano33ble-sine --emulate": RUN,
        "tinygen run --board qemu-m4 --runtime tflm --tflm-dir /path/to/tflm-arduino":
            "needs a TFLM source tree; tests/codegen/test_tflm_glue.py runs it with TINYGEN_TFLM_DIR",
        "tinygen run --board qemu-rv32": RUN,
    },
    "cache.md": {
        "tinygen cache info": RUN,
        "tinygen cache info --json": RUN,
        "tinygen cache clear": RUN,
        "tinygen build --board qemu-m4 --no-cache": RUN,
    },
    "compression.md": {
        "tinygen build --board qemu-m4 --recipe digits --prune 0.5 --qat":
            "trains for minutes; tests/regression/test_issue_23_compress_readme_example.py runs it",
        "tinygen build --board nano33ble --model big.keras --data d.npz --fit": USER_FILES,
        "tinygen build --board qemu-m4 --model big.keras --data d.npz --fit --fit-board nano33ble": USER_FILES,
        "tinygen build --board qemu-m4 --model m.keras --data d.npz --distill 0.5": USER_FILES,
        "tinygen build --board qemu-m4 --model big.keras --data d.npz --fit --fit-board nano33ble "
        "--fit-latency-ms 10": USER_FILES,
    },
    "from-pytorch.md": {
        "tinygen run --board qemu-m4 --model m.onnx --data d.npz": README_COMMANDS[
            "tinygen run --board qemu-m4 --model m.onnx --data d.npz"],
        "pip install -e . && pip install --no-deps tf-keras==2.21.0": "scripts/setup.sh runs both (.ci/run runs it)",
    },
    "install.md": {
        "bash scripts/setup.sh && tinygen run --board qemu-m4": CI,
        "bash scripts/setup.sh && .venv/bin/python -m pytest -q": CI,
    },
    "models-and-data.md": {
        "PYTHONPATH=$PWD python benchmarks/zoo.py": "a benchmark of minutes (its figures are in the page)",
    },
    "python-api.md": {
        "pytest test_my_model.py --tinygen-project tinygen-qemu-m4-sine":
            "the reader's own test file; tests/testing/test_pytest_plugin.py runs the plugin so on a qemu-m4 project",
        "pytest test_my_model.py --tinygen-project fw --tinygen-port /dev/ttyACM0": "needs a board on USB",
        "pytest test_my_model.py --tinygen-project fw --tinygen-place m4-bench-3": FARM,
    },
    "board-farm.md": {
        "labgrid-coordinator --listen 0.0.0.0:20408": FARM,
        "labgrid-exporter --coordinator coord.lab:20408 exporter.yaml": FARM,
        "export LG_COORDINATOR=coord.lab:20408": FARM,
        "labgrid-client -p m4-bench-3 create": FARM,
        "labgrid-client -p m4-bench-3 add-match 'bench-host/m4-bench-3/NetworkSerialPort'": FARM,
        "tinygen verify --project fw --place m4-bench-3": FARM,
        "pytest tests/ --tinygen-project fw --tinygen-place m4-bench-3": FARM,
    },
    "architecture.md": {
        "nice -n 19 python tests/fuzz/fuzz_build.py --model big --runs 10000000 --workdir /tmp/fz-wire": FUZZ,
        "nice -n 19 python tests/fuzz/fuzz_build.py --model small --sealed --runs 10000000 --workdir /tmp/fz-sealed":
            FUZZ,
        "mkdir -p /tmp/fz-model && cp some/*.tflite /tmp/fz-model/": FUZZ,
        "nice -n 19 python tests/fuzz/fuzz_model_reader.py -runs=10000000 -timeout=20 /tmp/fz-model": FUZZ,
    },
}
# Lines of docs' code blocks that are commands (the rest are file trees, C declarations, YAML, output).
COMMAND_WORDS = ("tinygen", "pio", "pytest", "bash", "python", "pip", "nice", "mkdir", "cd", "export",
                 "labgrid-coordinator", "labgrid-exporter", "labgrid-client")


def docs_commands(doc: Path) -> list[str]:
    found = []
    for line in shell_commands(doc.read_text(encoding="utf-8")):
        words = [w for w in line.split() if not re.fullmatch(r"[A-Z_]+=\S*", w)]
        if words and words[0] in COMMAND_WORDS:
            found.append(line)
    return found


# The generated README's commands for sine-m4 (qemu-m4); each runs in the project as printed.
PORT_PLACEHOLDER = "/dev/pts/N"
GENERATED_COMMANDS = {
    "tinygen run --project .",
    "tinygen flash --project .",
    f"tinygen verify --project . --port {PORT_PLACEHOLDER}",
    "pio run -e qemu-m4_example",
    "qemu-system-arm -M mps2-an386 -icount shift=0 -nographic -kernel .pio/build/qemu-m4_example/firmware.elf",
}
SHELL_INFOS = ("", "sh", "bash", "console", "shell")


# ----------------------------------------------------------------- extraction

def _strip_comment(line: str) -> str:
    return re.sub(r"\s{2,}#.*$", "", line).strip()


def shell_commands(markdown: str) -> list[str]:
    """The command lines of every shell code block (fenced sh/bash or indented), comments removed."""
    found = []
    for info, content in code_blocks(markdown):
        if info not in SHELL_INFOS or content.lstrip().startswith(("import ", "from ")):
            continue
        for line in content.splitlines():
            line = _strip_comment(line)
            if line and not line.startswith("#"):
                found.append(line)
    return found


def python_snippets(markdown: str) -> list[str]:
    return [content for info, content in code_blocks(markdown)
            if info in ("", "python", "py") and content.lstrip().startswith(("import ", "from "))]


def tinygen_lines(command: str) -> list[list[str]]:
    """argv (after ``tinygen``) of every tinygen command in a line of ``&&``-joined commands."""
    return [shlex.split(part)[1:] for part in command.split("&&") if part.strip().startswith("tinygen ")]


def parse_with_the_cli(argv: list[str]) -> str:
    """Parse ``tinygen ARGV`` with tinygen's own click CLI without running it; return the command name."""
    from tinygen.cli.main import cli

    ctx = cli.make_context("tinygen", list(argv))
    with ctx:
        protected = ctx._protected_args if hasattr(ctx, "_protected_args") else ctx.protected_args
        name, cmd, rest = cli.resolve_command(ctx, [*protected, *ctx.args])
        cmd.make_context(name, rest, parent=ctx)
    return name


# ----------------------------------------------------------------- a reader's new shell

class Reader:
    """A new login shell as after scripts/setup.sh: empty $HOME, the login PATH, nothing of ours set."""

    def __init__(self, home: Path):
        self.home = home
        home.mkdir(parents=True, exist_ok=True)
        self.env = {"HOME": str(home), "LANG": "C.UTF-8", "TERM": "dumb", "USER": os.environ.get("USER", "root"),
                    "TF_CPP_MIN_LOG_LEVEL": "3"}

    def run(self, command: str, cwd: Path, timeout: float = 900, extra_env: dict | None = None):
        return subprocess.run(["bash", "-lc", command], cwd=cwd, env={**self.env, **(extra_env or {})},
                              stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)

    def start(self, command: str, cwd: Path) -> subprocess.Popen:
        return subprocess.Popen(["bash", "-lc", command], cwd=cwd, env=self.env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)


def read_until(proc: subprocess.Popen, pattern: str, timeout: float) -> tuple[re.Match | None, str]:
    """Read the process's output until ``pattern`` matches it (or it ends, or ``timeout``)."""
    out = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.2)
        if ready:
            chunk = os.read(proc.stdout.fileno(), 4096)
            if not chunk:
                break
            out += chunk
            match = re.search(pattern, out.decode("utf-8", "replace"), re.M)
            if match:
                return match, out.decode("utf-8", "replace")
        elif proc.poll() is not None:
            break
    return None, out.decode("utf-8", "replace")


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> int:
    """Stop a started command and everything it started (its own session); its exit status."""
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass
    try:
        return proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        return proc.wait(timeout=10)


def qemus_in(directory: Path) -> list[int]:
    """QEMU processes whose working directory is inside ``directory`` (left behind = a leak)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if "qemu-system" in (proc / "comm").read_text() and \
                    Path(os.readlink(proc / "cwd")).is_relative_to(directory):
                pids.append(int(proc.name))
        except OSError:
            continue
    return pids


@pytest.fixture(scope="module")
def reader(tmp_path_factory) -> Reader:
    r = Reader(tmp_path_factory.mktemp("reader") / "home")
    where = r.run("command -v tinygen; command -v pio", cwd=r.home, timeout=60).stdout.split()
    venv_bin = Path(sys.executable).parent
    ours = len(where) == 2 and all(Path(p).resolve() == (venv_bin / Path(p).name).resolve() for p in where)
    require(ours, f"tinygen and pio of this checkout's venv on a new login shell's PATH (found {where}; "
                  "scripts/setup.sh links them into /usr/local/bin)")
    return r


# ----------------------------------------------------------------- README.md

def test_every_readme_command_is_listed():
    commands = shell_commands(README.read_text(encoding="utf-8"))
    assert commands, "no command found in README.md's code blocks"
    unlisted = [c for c in commands if c not in README_COMMANDS]
    assert not unlisted, f"README.md commands this test does not know: {unlisted}; list each in README_COMMANDS"
    gone = [c for c in README_COMMANDS if c not in commands]
    assert not gone, f"listed but no longer in README.md: {gone}"


def test_every_readme_tinygen_command_parses(tmp_path, monkeypatch):
    """Run or not, each tinygen command line's subcommand and options exist (in the reader's directory
    with their files, so options that must name an existing file see one)."""
    monkeypatch.chdir(tmp_path)
    for name in ("my.keras", "samples.npz"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "my-esp32").mkdir()
    parsed = []
    for command in README_COMMANDS:
        for argv in tinygen_lines(command):
            parsed.append(parse_with_the_cli(argv))
    assert {"run", "boards", "doctor", "build", "verify"} <= set(parsed)


def test_every_tinygen_command_in_the_docs_names_real_options(tmp_path, monkeypatch):
    """docs/*.md are not run (see the module docstring), but each tinygen line in their code blocks
    must parse with the CLI; a synopsis line (``[--opt X]``, ``A|B``) must name only options its
    subcommand has."""
    from tinygen.cli.main import cli

    monkeypatch.chdir(tmp_path)
    checked = 0
    for doc in sorted((REPO / "docs").glob("*.md")):
        for command in shell_commands(doc.read_text(encoding="utf-8")):
            for part in command.split("&&"):
                part = part.strip()
                if not part.startswith("tinygen "):
                    continue
                checked += 1
                if "[" in part or "|" in part:
                    name = part.split()[1]
                    sub = cli.commands.get(name)
                    assert sub is not None, f"{doc.name}: no command 'tinygen {name}' ({part!r})"
                    known = {opt for p in sub.params for opt in (*p.opts, *p.secondary_opts)}
                    unknown = set(re.findall(r"--[a-z][a-z0-9-]*", part)) - known
                    assert not unknown, f"{doc.name}: tinygen {name} has no {sorted(unknown)} ({part!r})"
                else:
                    try:
                        parse_with_the_cli(shlex.split(part)[1:])
                    except Exception as exc:  # click's usage errors, with the line they came from
                        pytest.fail(f"{doc.name}: {part!r} does not parse: {exc}")
    assert checked > 10


def test_ci_runs_what_the_readme_says():
    """The README commands marked CI are in .ci/run as printed (setup, the main job, the suite)."""
    ci = CI_SCRIPT.read_text(encoding="utf-8")
    for command, how in README_COMMANDS.items():
        if not how.startswith(CI):
            continue
        for part in command.split("&&"):
            part = part.strip()
            assert part in ci, f".ci/run does not run {part!r} (README.md: {command!r})"


def test_readme_quick_commands_run_in_a_new_shell(reader, tmp_path):
    for command, how in README_COMMANDS.items():
        if how != RUN:
            continue
        res = reader.run(command, cwd=tmp_path, timeout=300)
        assert res.returncode == 0, f"{command!r} failed (exit {res.returncode}):\n{res.stdout}\n{res.stderr}"
        assert "Traceback" not in res.stderr
    assert not (reader.home / ".platformio").exists()  # tinygen's offline core lives elsewhere



def test_every_docs_command_is_listed():
    """Each command a docs/ page prints is in DOCS_COMMANDS (run, a synopsis, or why not), and each listed
    command is still printed."""
    pages = {doc.name: docs_commands(doc) for doc in sorted((REPO / "docs").glob("*.md"))}
    for name, commands in pages.items():
        listed = DOCS_COMMANDS.get(name, {})
        assert not [c for c in commands if c not in listed], \
            f"docs/{name} commands this test does not know: {[c for c in commands if c not in listed]}"
        assert not [c for c in listed if c not in commands], \
            f"listed but no longer in docs/{name}: {[c for c in listed if c not in commands]}"
    assert set(DOCS_COMMANDS) <= set(pages)


@pytest.mark.slow
def test_docs_commands_run_in_a_new_shell(reader, tmp_path):
    """The docs' runnable commands, as printed, page by page in one reader's directory (so later pages
    see what earlier ones built, as a reader working through them would)."""
    ran = {}
    for page, commands in DOCS_COMMANDS.items():
        for command, how in commands.items():
            if how != RUN:
                continue
            res = reader.run(command, cwd=tmp_path, timeout=600)
            assert res.returncode == 0, \
                f"docs/{page}: {command!r} failed (exit {res.returncode}):\n{res.stdout[-3000:]}\n{res.stderr}"
            assert "Traceback" not in res.stderr
            ran[command] = res.stdout
    assert len(ran) >= 9
    assert "PASS" in ran["tinygen verify --project tinygen-nano33ble-sine --emulate"]
    assert "PASS" in ran["tinygen run --board qemu-rv32"]
    assert not (reader.home / ".platformio").exists()


# ----------------------------------------------------------------- the Python snippet and the project it makes

@pytest.fixture(scope="module")
def snippet_run(reader, tmp_path_factory):
    snippets = python_snippets(API_DOC.read_text(encoding="utf-8"))
    assert len(snippets) == 1, f"docs/python-api.md: want one Python snippet, found {len(snippets)}"
    work = tmp_path_factory.mktemp("reader-work")
    (work / "snippet.py").write_text(snippets[0], encoding="utf-8")
    # The reader runs it with the Python that has tinygen: setup.sh's .venv/bin/python, i.e. this one.
    res = reader.run('"$TG_PYTHON" snippet.py', cwd=work, timeout=1200, extra_env={"TG_PYTHON": sys.executable})
    return res, work


@pytest.mark.slow
def test_python_api_snippet_runs_as_printed(snippet_run):
    res, work = snippet_run
    assert res.returncode == 0, f"docs/python-api.md's snippet failed:\n{res.stdout}\n{res.stderr}"
    first = res.stdout.split()
    assert first[:2] == ["True", "0"], res.stdout  # print(report.passed, max |Δ| in LSB, ...)
    assert (work / "sine-m4" / "reports" / "verify.md").is_file()
    assert not qemus_in(work), "the snippet's flash() left QEMU running after the script ended"


@pytest.fixture(scope="module")
def project(snippet_run) -> Path:
    res, work = snippet_run
    if res.returncode != 0:
        pytest.fail("docs/python-api.md's snippet failed, so there is no project to follow the README of")
    return work / "sine-m4"


@pytest.mark.slow
def test_generated_readme_lists_its_commands_in_code_blocks(project):
    text = (project / "README.md").read_text(encoding="utf-8")
    check_tables(text, "generated README.md")
    assert set(shell_commands(text)) == GENERATED_COMMANDS
    stray = [ln for ln in prose_lines(text) if ln.strip().startswith(("pio ", "tinygen ", "qemu-system-"))]
    assert not stray, f"commands shown as prose, not code: {stray}"


@pytest.mark.slow
def test_generated_readme_example_builds_with_plain_pio_and_runs_on_qemu(reader, project):
    """`pio run -e qemu-m4_example` from a new shell: no PLATFORMIO_CORE_DIR, no registry (it timed out
    reaching for the tinygen-mps2 platform there), and ~/.platformio never created."""
    build = "pio run -e qemu-m4_example"
    res = reader.run(build, cwd=project, timeout=900)
    assert res.returncode == 0, f"{build!r} failed:\n{res.stdout[-3000:]}\n{res.stderr[-2000:]}"
    assert "HTTPClientError" not in res.stdout + res.stderr
    assert not (reader.home / ".platformio").exists()
    (qemu,) = [c for c in GENERATED_COMMANDS if c.startswith("qemu-system-")]
    proc = reader.start(qemu, cwd=project)
    try:
        done, out = read_until(proc, r"^done (\d+)", timeout=120)
    finally:
        stop(proc)
    assert done, f"{qemu!r} printed no 'done' line:\n{out[-2000:]}"
    assert "init OK" in out
    assert len(re.findall(r"^pred \d+: ", out, re.M)) == int(done.group(1)) > 0


@pytest.mark.slow
def test_generated_readme_flash_then_verify_with_the_printed_port(reader, project):
    proc = reader.start("tinygen flash --project .", cwd=project)
    try:
        port, out = read_until(proc, r"^port: (\S+)", timeout=600)
        assert port, f"tinygen flash printed no port:\n{out[-3000:]}"
        verify = f"tinygen verify --project . --port {PORT_PLACEHOLDER}"
        assert verify in GENERATED_COMMANDS
        res = reader.run(verify.replace(PORT_PLACEHOLDER, port.group(1)), cwd=project, timeout=600)
        assert res.returncode == 0, f"verify failed:\n{res.stdout}\n{res.stderr}"
    finally:
        status = stop(proc, signal.SIGINT)  # the README: Ctrl-C stops it
    assert status == 0, f"tinygen flash exited {status} on Ctrl-C"
    assert not qemus_in(project)


@pytest.mark.slow
def test_generated_readme_run_writes_a_verify_md_that_keeps_its_figures(reader, project):
    res = reader.run("tinygen run --project .", cwd=project, timeout=900)
    assert res.returncode == 0, f"tinygen run --project . failed:\n{res.stdout}\n{res.stderr}"
    text = (project / "reports" / "verify.md").read_text(encoding="utf-8")
    check_tables(text, "verify.md")
    cells = {row[0]: row[1] for table in tables(text) for row in table if len(row) >= 2}
    assert cells["max |Δ|"] == "0 LSB" and cells["exact match"] == "100.00 %"
