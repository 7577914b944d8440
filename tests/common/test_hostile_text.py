"""Hostile text and careless input: names never become code or configuration, --force never loses
user files, failures leave nothing behind, every bad input has its exit code, and tinygen keeps out
of the user's PlatformIO.

Judges are independent of tinygen: the C and C++ compilers (and their preprocessor, which strips
comments), PlatformIO's own config reader, markdown-it (the Markdown parser rich uses).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import require_tool, run_cli
from support.hostile import MARK, TENSOR_NAMES, rename_tensors, strip_c_comments

# Model *file names* (a stem; ".tflite" is appended). Each tries to leave its context somewhere.
FILE_NAMES = {  # no '/' in a file name: the attacks use line breaks, splices and expansions
    "ini-section": f"x\n[env:x]\nbuild_unflags = !touch {MARK}\nplatform = {MARK}",
    "c-code-line": f"x\nint {MARK}_x = 1;\n",
    "c-splice": f"{MARK}\\\n#error {MARK}",
    "carriage-return": f"x\r#error {MARK}\r",
    "trigraph": f"x\n??=error {MARK}",
    "scons-python": "${__import__('os').system('touch " + MARK + "')}",
    "rich-ansi": f"[bold red]{MARK}[link=file:x]\x1b[2J\x1b]0;{MARK}\x07",
}


# ------------------------------------------------------------------ fixtures

def full_int8(conv) -> bytes:
    """Convert with int8 input, output and kernels, calibrated on 32 seeded (1, 4) samples."""
    import tensorflow as tf

    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    rng = np.random.default_rng(0)
    conv.representative_dataset = lambda: ([rng.standard_normal((1, 4)).astype(np.float32)] for _ in range(32))
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    return conv.convert()


@pytest.fixture(scope="module")
def tiny_tflite(tmp_path_factory) -> bytes:
    """A 2-layer int8 Dense model (per-tensor, so every board's TFLM takes it), converted once."""
    import tensorflow as tf

    tf.keras.utils.set_random_seed(3)
    model = tf.keras.Sequential([tf.keras.Input(shape=(4,)), tf.keras.layers.Dense(3, activation="relu"),
                                 tf.keras.layers.Dense(2)])
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv._experimental_disable_per_channel_quantization_for_dense_layers = True
    return full_int8(conv)


@pytest.fixture(scope="module")
def const_tflite() -> bytes:
    """int8 MUL and ADD with constant operands: the compiled runtime emits those constants as C arrays
    under a comment naming the tensor."""
    import tensorflow as tf

    class Affine(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([1, 4], tf.float32)])
        def f(self, x):
            return x * tf.constant([[0.5, -1.0, 2.0, 0.25]]) + tf.constant([[0.1, 0.2, -0.3, 0.4]])

    mod = Affine()
    conv = tf.lite.TFLiteConverter.from_concrete_functions([mod.f.get_concrete_function()], mod)
    return full_int8(conv)


@pytest.fixture(scope="module")
def hostile_builds(tiny_tflite, tmp_path_factory) -> dict[str, Path]:
    """`tinygen build --board esp32` of the tiny model saved under each hostile file name, default --out."""
    base = tmp_path_factory.mktemp("hostile-builds")
    built = {}
    for key, stem in FILE_NAMES.items():
        cwd = base / key
        cwd.mkdir()
        (cwd / f"{stem}.tflite").write_bytes(tiny_tflite)
        res = run_cli("build", "--board", "esp32", "--model", f"{stem}.tflite", "--vectors", "4", cwd=cwd,
                      env={"TINYGEN_TFLM_DIR": ""})
        assert res.returncode == 0, (key, res.stderr)
        outs = [p for p in cwd.iterdir() if p.is_dir()]
        assert len(outs) == 1, outs
        built[key] = outs[0]
    return built


@pytest.fixture(scope="module")
def qemu_project(tiny_tflite, tmp_path_factory) -> Path:
    """The tiny model on the emulated Cortex-M4, compiled runtime: a real, complete tinygen project."""
    d = tmp_path_factory.mktemp("qemu-project")
    (d / "m.tflite").write_bytes(tiny_tflite)
    res = run_cli("build", "--board", "qemu-m4", "--runtime", "compiled", "--model", str(d / "m.tflite"),
                  "--vectors", "4", "--out", str(d / "p"))
    assert res.returncode == 0, res.stderr
    return d / "p"


def one_line_error(res, code: int, *needles: str) -> str:
    assert res.returncode == code, (res.returncode, res.stdout, res.stderr)
    assert "Traceback" not in res.stderr + res.stdout
    lines = [ln for ln in res.stderr.splitlines() if ln.strip() and not ln.startswith("…")]
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    for n in needles:
        assert n.lower() in lines[0].lower(), lines[0]
    return lines[0]


def compile_ok(path: Path, lang: str, *extra: str) -> None:
    cc = require_tool("gcc" if lang == "c" else "g++")
    std = "-std=c99" if lang == "c" else "-std=c++11"  # c99 and c++11: trigraphs are on
    res = subprocess.run([cc, std, "-Wall", "-Wextra", "-Werror", "-c", str(path), "-o", os.devnull, *extra],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


# ------------------------------------------------------------------ item 1: file names

@pytest.mark.parametrize("key", sorted(FILE_NAMES))
def test_file_name_adds_nothing_to_platformio_ini(hostile_builds, key):
    from platformio.project.config import ProjectConfig

    project = hostile_builds[key]
    cfg = ProjectConfig(str(project / "platformio.ini"), parse_extra=False)
    assert cfg.envs() == ["esp32", "esp32_example", "esp32_tflm_debug"]  # TFLM: the error-strings build too
    assert cfg.sections() == ["platformio", "env:esp32", "env:esp32_example", "env:esp32_tflm_debug"]
    assert "build_unflags" not in cfg.options("env:esp32")
    for section in cfg.sections():
        for option in cfg.options(section):
            assert MARK not in str(cfg.get(section, option)), (section, option)
    assert cfg.get("env:esp32", "platform").startswith("espressif32")


@pytest.mark.parametrize("key", sorted(FILE_NAMES))
def test_file_name_never_reaches_c_outside_comments(hostile_builds, key):
    project = hostile_builds[key]
    for f in sorted(p for d in ("src", "lib", "examples") for p in (project / d).rglob("*")):
        if f.suffix in (".c", ".h", ".cc", ".cpp"):
            assert MARK not in strip_c_comments(f, "c" if f.suffix in (".c", ".h") else "c++"), f.name


@pytest.mark.parametrize("key", sorted(FILE_NAMES))
def test_generated_cxx_with_hostile_file_name_compiles_warning_free(hostile_builds, key, tmp_path):
    src = hostile_builds[key] / "src"
    compile_ok(hostile_builds[key] / "lib/tinygen_model/src" / "model_data.cc", "c++")
    (tmp_path / "Arduino.h").write_text("/* stand-in: main.cpp's own lines are what is checked */\n")
    compile_ok(src / "main.cpp", "c++", f"-I{tmp_path}", f"-I{src}")


@pytest.mark.parametrize("key", sorted(FILE_NAMES))
def test_default_out_dir_name_is_plain(hostile_builds, key):
    name = hostile_builds[key].name
    assert re.fullmatch(r"tinygen-esp32-[A-Za-z0-9._-]+", name), name
    assert "$" not in name and "\n" not in name


@pytest.mark.parametrize("key", sorted(FILE_NAMES))
def test_readme_renders_the_name_as_plain_text(hostile_builds, key):
    from markdown_it import MarkdownIt

    tokens = MarkdownIt("commonmark").enable("table").parse((hostile_builds[key] / "README.md").read_text())
    kinds = {t.type for t in tokens} | {c.type for t in tokens for c in (t.children or [])}
    assert not kinds & {"html_inline", "html_block", "link_open", "image"}, kinds
    assert "\x1b" not in (hostile_builds[key] / "README.md").read_text()


# ------------------------------------------------------------------ item 1: tensor names in C

@pytest.mark.parametrize("key", sorted(TENSOR_NAMES))
def test_tensor_names_cannot_leave_the_compiled_runtimes_comments(const_tflite, key, tmp_path):
    from tinygen.codegen.compiled import emit, kernel_sources
    from tinygen.tflite.model import parse_model

    model = parse_model(rename_tensors(const_tflite, TENSOR_NAMES[key]), "m")
    assert TENSOR_NAMES[key] + "1" in [t.name for t in model.tensors]  # the names really are in the model
    sources = emit(model)
    assert "constant tensor" in sources["tg_model.c"]  # where the names used to be written raw
    for name, text in {**sources, **kernel_sources()}.items():
        (tmp_path / name).write_text(text)
    compile_ok(tmp_path / "tg_model.c", "c", f"-I{tmp_path}")
    code = strip_c_comments(tmp_path / "tg_model.c")
    for fragment in (MARK, "incbin", "/etc/"):  # a top-level asm(".incbin") compiles: look for it
        assert fragment not in code


def test_inspect_prints_hostile_tensor_names_literally(tiny_tflite, tmp_path):
    raw = rename_tensors(tiny_tflite, f"[red]{MARK}[/red]\x1b[31m")
    (tmp_path / "t.tflite").write_bytes(raw)
    res = run_cli("inspect", str(tmp_path / "t.tflite"))
    assert res.returncode == 0, res.stderr
    assert "\x1b" not in res.stdout + res.stderr
    assert f"[red]{MARK}" in res.stdout  # shown, not interpreted as rich markup


def test_error_quoting_a_hostile_name_reaches_the_terminal_clean(tmp_path):
    res = run_cli("build", "--board", "esp32", "--model", str(tmp_path / "\x1b]0;x\x07[bold]y[/bold]\x1b[2J.tflite"),
                  "--out", str(tmp_path / "o"))
    line = one_line_error(res, 2)
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f]", res.stderr), repr(res.stderr)
    assert "[bold]y[/bold]" in line


# ------------------------------------------------------------------ escape.py, one context at a time

HOSTILE = ["*/", "/*", "a\\", "??/", "x\ny", "\x1b[31m", "${a}", "é\u202e", "%(x)s", "; c", "!rm", "`x`"]


@pytest.mark.parametrize("text", HOSTILE)
def test_c_string_is_the_same_bytes_in_c(text, tmp_path):
    from tinygen.common.escape import c_string

    gcc = require_tool("gcc")
    (tmp_path / "s.c").write_text("#include <stdio.h>\nint main(void) {\n"
                                  f"    static const char s[] = {c_string(text)};\n"
                                  "    fwrite(s, 1, sizeof s - 1, stdout);\n    return 0;\n}\n")
    subprocess.run([gcc, "-std=c99", "-Wall", "-Wextra", "-Werror", "s.c", "-o", "s"], cwd=tmp_path, check=True)
    assert subprocess.run([str(tmp_path / "s")], capture_output=True).stdout == text.encode()


@pytest.mark.parametrize("text", HOSTILE)
def test_ini_value_reads_back_exactly_or_is_refused(text, tmp_path):
    from platformio.project.config import ProjectConfig

    from tinygen.common.escape import UnsafeText, ini_value

    try:
        value = ini_value(text)
    except UnsafeText as exc:
        assert exc.exit_code == 2 and "\n" not in str(exc)
        return
    (tmp_path / "platformio.ini").write_text(f"[env:e]\ncustom_x = {value}\n")
    cfg = ProjectConfig(str(tmp_path / "platformio.ini"), parse_extra=False)
    assert cfg.envs() == ["e"] and cfg.get("env:e", "custom_x") == text


@pytest.mark.parametrize("text", HOSTILE + ["<script>x</script>", "[a](http://x)", "![i](x)", "*em* _u_", "&amp;",
                                  "| a | b |", "~~s~~", "a\\*b", "$x$"])
def test_markdown_renders_as_the_text_itself(text):
    from markdown_it import MarkdownIt

    from tinygen.common.escape import markdown, terminal

    tokens = MarkdownIt("commonmark").enable(["table", "strikethrough"]).parseInline("a " + markdown(text))[0].children
    assert {t.type for t in tokens} == {"text"}, [t.type for t in tokens]
    assert "".join(t.content for t in tokens) == "a " + terminal(text)


def test_c_identifier_and_terminal_and_json():
    from tinygen.common.escape import c_identifier, json_text, rich_text, terminal

    for text in HOSTILE + ["", "9lives", "int"]:
        ident = c_identifier(text)
        assert re.fullmatch(r"[a-z_][a-z0-9_]*", ident)
        assert not re.search(r"[\x00-\x1f\x7f-\x9f\u202e]", terminal(text))
        assert json.loads(json_text(text)) == text
    assert rich_text("[bold]x") == "\\[bold]x"


# ------------------------------------------------------------------ item 1: paths given to PlatformIO

@pytest.mark.parametrize("bad", ["o$x", "o${x}", "o\nx"])
def test_out_dir_pio_would_expand_is_refused(bad, tmp_path):
    res = run_cli("build", "--board", "qemu-m4", "--out", str(tmp_path / bad))
    one_line_error(res, 2, "--out")
    assert list(tmp_path.iterdir()) == []


def test_tflm_dir_with_dollar_is_refused(tmp_path):
    tree = tmp_path / "t$x"
    (tree / "src" / "tensorflow" / "lite" / "micro").mkdir(parents=True)
    res = run_cli("build", "--board", "qemu-m4", "--runtime", "tflm", "--tflm-dir", str(tree),
                  "--out", str(tmp_path / "o"))
    one_line_error(res, 2, "--tflm-dir")
    assert not (tmp_path / "o").exists()


# ------------------------------------------------------------------ item 4: --force guard

def copy_project(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns(".pio", "reports"))
    return dest


def project_files(project: Path) -> dict[str, bytes]:
    return {p.relative_to(project).as_posix(): p.read_bytes() for p in project.rglob("*") if p.is_file()}


def test_force_keeps_a_folder_with_a_junk_manifest(tmp_path):
    target = tmp_path / "thesis"
    target.mkdir()
    (target / "tinygen.json").write_text("{ this is not json")
    (target / "thesis.tex").write_text("\\documentclass{article}")
    res = run_cli("build", "--board", "qemu-m4", "--out", str(target), "--force")
    one_line_error(res, 2, "tinygen.json")
    assert (target / "thesis.tex").read_text() == "\\documentclass{article}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["thesis"]


@pytest.mark.parametrize("manifest", ["{}", "[]", '{"manifest_version": 1}', '{"manifest_version": 99}'])
def test_force_refuses_manifests_that_are_not_tinygens(manifest, qemu_project, tmp_path):
    from tinygen.common.errors import TinygenError
    from tinygen.codegen.project import write_project

    target = copy_project(qemu_project, tmp_path / "p")
    (target / "tinygen.json").write_text(manifest)
    with pytest.raises(TinygenError, match="tinygen.json"):
        write_project(project_files(qemu_project), target, force=True)
    assert (target / "tinygen.json").read_text() == manifest


@pytest.mark.parametrize("extra", ["notes.txt", "src/my_driver.c", "vectors/mine.npz", "lib/x.h"])
def test_force_keeps_a_project_holding_user_files(extra, qemu_project, tmp_path):
    from tinygen.common.errors import TinygenError
    from tinygen.codegen.project import write_project

    target = copy_project(qemu_project, tmp_path / "p")
    (target / extra).parent.mkdir(parents=True, exist_ok=True)
    (target / extra).write_text("mine")
    with pytest.raises(TinygenError, match=re.escape(extra.split("/")[0])):
        write_project(project_files(qemu_project), target, force=True)
    assert (target / extra).read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p"]


def test_force_replaces_a_real_project_with_build_and_reports(qemu_project, tmp_path):
    from tinygen.codegen.project import write_project

    target = copy_project(qemu_project, tmp_path / "p")
    (target / ".pio" / "build").mkdir(parents=True)
    (target / "reports").mkdir()
    (target / "reports" / "verify.json").write_text("{}")
    (target / "README.md").write_text("old")
    files = project_files(qemu_project)
    write_project(files, target, force=True)
    # reports/ and .pio/ are kept (issue 22 item 4; tests/regression/test_issue22_writes.py)
    assert {k: v for k, v in project_files(target).items() if k.split("/")[0] not in ("reports", ".pio")} == files
    assert (target / "reports" / "verify.json").read_text() == "{}" and (target / ".pio" / "build").is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p"]


def test_force_through_the_cli_replaces_a_real_project(qemu_project, tmp_path):
    target = copy_project(qemu_project, tmp_path / "p")
    (target / "README.md").write_text("old")
    res = run_cli("build", "--board", "qemu-m4", "--runtime", "compiled", "--model",
                  str(qemu_project / "model.tflite"), "--vectors", "4", "--out", str(target), "--force")
    assert res.returncode == 0, res.stderr
    assert (target / "README.md").read_text() != "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p"]


# ------------------------------------------------------------------ item 4: umask, leftovers

@pytest.mark.parametrize("mask", [0o022, 0o002, 0o077])
def test_project_directories_follow_the_umask(mask, qemu_project, tmp_path):
    from tinygen.codegen.project import write_project

    old = os.umask(mask)
    try:
        out = write_project(project_files(qemu_project), tmp_path / "p")
    finally:
        os.umask(old)
    assert stat.S_IMODE(out.stat().st_mode) == 0o777 & ~mask
    assert stat.S_IMODE((out / "src").stat().st_mode) == 0o777 & ~mask
    assert stat.S_IMODE((out / "tinygen.json").stat().st_mode) == 0o666 & ~mask


class _InterruptedFiles(dict):
    def items(self):
        yield from list(super().items())[:2]
        raise KeyboardInterrupt


@pytest.mark.parametrize("how", ["oserror", "interrupt"])
@pytest.mark.parametrize("existing", [False, True])
def test_a_failed_write_leaves_nothing_beside_out(how, existing, qemu_project, tmp_path):
    from tinygen.common.errors import TinygenError
    from tinygen.codegen.project import write_project

    parent = tmp_path / "new" / "deeper"
    target = parent / "p"
    if existing:
        copy_project(qemu_project, target)
        before = project_files(target)
    files = project_files(qemu_project)
    if how == "oserror":
        files["src/tg_app.c/x"] = b"a file below a file: ENOTDIR"
        with pytest.raises(TinygenError):
            write_project(files, target, force=existing)
    else:
        with pytest.raises(KeyboardInterrupt):
            write_project(_InterruptedFiles(files), target, force=existing)
    if existing:
        assert sorted(p.name for p in parent.iterdir()) == ["p"]
        assert project_files(target) == before
    else:
        assert list(tmp_path.iterdir()) == []  # not even the parents it created


@pytest.mark.parametrize("out", ["x" * 300, "/proc/1/tinygen-out", "afile/sub"])
def test_unwritable_or_too_long_out_is_one_line(out, tmp_path):
    (tmp_path / "afile").write_text("")
    res = run_cli("build", "--board", "qemu-m4", "--out", out, cwd=tmp_path)
    one_line_error(res, 2, "--out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


# ------------------------------------------------------------------ item 5: exit codes

@pytest.mark.parametrize("value", ["nan", "inf", "-1", "0", "-inf"])
def test_verify_timeout_must_be_a_real_duration(value, qemu_project):
    res = run_cli("verify", "--project", str(qemu_project), "--port", "/dev/null", "--timeout", value)
    one_line_error(res, 2, "--timeout")


@pytest.mark.parametrize("cmd", [("verify", "--port", "/dev/null"), ("build", "--board", "qemu-m4")])
def test_negative_seed_is_a_usage_error(cmd, qemu_project, tmp_path):
    args = list(cmd) + (["--project", str(qemu_project)] if cmd[0] == "verify" else ["--out", str(tmp_path / "o")])
    res = run_cli(*args, "--seed", "-1")
    one_line_error(res, 2, "--seed")


BROKEN_MANIFESTS = {
    "list": [],
    "no-keys": {"manifest_version": 1},
    "board-int": {"board": 7},
    "shape-str": {"input": {"shape": "4", "scale": 1.0, "zero_point": 0}},
    "vectors-outside": {"vectors": {"file": "../../etc/passwd", "count": 1}},
    "version-bool": {"manifest_version": True},
}


@pytest.mark.parametrize("key", sorted(BROKEN_MANIFESTS))
def test_broken_manifest_is_exit_2(key, qemu_project, tmp_path):
    p = copy_project(qemu_project, tmp_path / "p")
    good = json.loads((p / "tinygen.json").read_text())
    broken = BROKEN_MANIFESTS[key]
    (p / "tinygen.json").write_text(json.dumps({**good, **broken} if isinstance(broken, dict) and key != "no-keys"
                                               else broken))
    res = run_cli("verify", "--project", str(p), "--port", str(tmp_path / "nope"))
    one_line_error(res, 2, "tinygen.json")


def _npz(**arrays) -> bytes:
    import io

    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


BROKEN_VECTORS = {
    "garbage": b"PK\x03\x04 this is not a zip",
    "no-outputs": _npz(inputs=np.zeros((2, 1, 4), np.int8)),
    "float-inputs": _npz(inputs=np.zeros((2, 1, 4), np.float32), outputs=np.zeros((2, 1, 2), np.int8)),
    "wrong-shape": _npz(inputs=np.zeros((2, 3), np.int8), outputs=np.zeros((2, 1, 2), np.int8)),
    "zero-d": _npz(inputs=np.int8(1), outputs=np.int8(1)),
    "pickled": _npz(inputs=np.array([{"a": 1}], dtype=object), outputs=np.zeros((1, 1, 2), np.int8)),
}


@pytest.mark.parametrize("key", sorted(BROKEN_VECTORS))
def test_broken_reference_vectors_are_exit_2(key, qemu_project, tmp_path):
    p = copy_project(qemu_project, tmp_path / "p")
    (p / "vectors" / "reference.npz").write_bytes(BROKEN_VECTORS[key])
    res = run_cli("verify", "--project", str(p), "--port", str(tmp_path / "nope"))
    one_line_error(res, 2, "reference.npz")


@pytest.mark.parametrize("kind", ["dev-zero", "fifo", "directory"])
def test_project_model_that_is_not_a_regular_file_is_exit_2(kind, qemu_project, tmp_path):
    p = copy_project(qemu_project, tmp_path / "p")
    (p / "model.tflite").unlink()
    if kind == "dev-zero":
        (p / "model.tflite").symlink_to("/dev/zero")
    elif kind == "fifo":
        os.mkfifo(p / "model.tflite")
    else:
        (p / "model.tflite").mkdir()
    res = run_cli("verify", "--project", str(p), "--port", str(tmp_path / "nope"), timeout=120)
    one_line_error(res, 2, "model.tflite")


@pytest.mark.parametrize("kind", ["a-file", "below-a-file"])
def test_unusable_platformio_core_dir_on_a_real_board_is_one_line_exit_4(kind, tiny_tflite, tmp_path):
    (tmp_path / "m.tflite").write_bytes(tiny_tflite)
    res = run_cli("build", "--board", "esp32", "--runtime", "compiled", "--model", str(tmp_path / "m.tflite"),
                  "--vectors", "2", "--out", str(tmp_path / "p"))
    assert res.returncode == 0, res.stderr
    (tmp_path / "core").write_text("mine")
    core = tmp_path / "core" if kind == "a-file" else tmp_path / "core" / "sub"
    res = run_cli("flash", "--project", str(tmp_path / "p"), env={"PLATFORMIO_CORE_DIR": str(core)}, timeout=300)
    one_line_error(res, 4, "PLATFORMIO_CORE_DIR")
    assert (tmp_path / "core").read_text() == "mine"


def test_unusable_tinygen_home_is_one_line_exit_4(qemu_project, tmp_path):
    (tmp_path / "home-is-a-file").write_text("")
    res = run_cli("flash", "--project", str(qemu_project), env={"TINYGEN_HOME": str(tmp_path / "home-is-a-file")},
                  timeout=120)  # a flash that does start keeps QEMU running: do not wait for that
    one_line_error(res, 4, "TINYGEN_HOME")


def test_exit_code_table_in_the_readme_matches_errors_py():
    from tinygen.common import errors
    readme = (Path(__file__).resolve().parents[2] / "docs" / "cli.md").read_text()
    section = readme.split("## Exit codes", 1)[1].split("\n#", 1)[0]
    codes = {int(c) for c in re.findall(r"^\| `?(\d+)`? \|", section, re.M)}
    classes = [c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, errors.TinygenError)]
    assert {c.exit_code for c in classes} | {0, 70, 130} <= codes


# ------------------------------------------------------------------ item 6: the user's PlatformIO

def test_pio_home_is_tinygens_own(tmp_path, monkeypatch):
    from tinygen.device import pio_offline
    monkeypatch.setenv("PLATFORMIO_CORE_DIR", str(tmp_path / "users-core"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("TINYGEN_HOME")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert pio_offline.tinygen_core_dir() == tmp_path / "xdg" / "tinygen" / "platformio"
    monkeypatch.delenv("XDG_DATA_HOME")
    assert pio_offline.tinygen_core_dir() == tmp_path / "home" / ".local" / "share" / "tinygen" / "platformio"
    monkeypatch.setenv("TINYGEN_HOME", str(tmp_path / "th"))
    assert pio_offline.tinygen_core_dir() == tmp_path / "th" / "platformio"
    env = pio_offline.pio_env(pio_offline.tinygen_core_dir())
    assert env["PLATFORMIO_CORE_DIR"] == str((tmp_path / "th" / "platformio").resolve())
    assert pio_offline.pio_env()["PLATFORMIO_CORE_DIR"] == str(tmp_path / "users-core")  # real boards: as the user has it


def test_doctor_sets_up_tinygens_home_and_leaves_the_users_alone(tmp_path):
    home, core = tmp_path / "home", tmp_path / "users-core"
    home.mkdir()
    res = run_cli("doctor", "--json", env={"HOME": str(home), "PLATFORMIO_CORE_DIR": str(core),
                                           "TINYGEN_HOME": str(tmp_path / "th")})
    assert res.returncode == 0, res.stderr
    assert not (home / ".platformio").exists() and not core.exists()
    if {t["tool"]: t["ok"] for t in json.loads(res.stdout)["tools"]}["platformio offline core"]:
        assert (tmp_path / "th" / "platformio" / "packages" / "tool-scons" / ".tinygen.json").is_file()


def test_run_on_an_emulated_board_keeps_the_result_and_the_users_platformio(qemu_project, tmp_path):
    """A --report-dir that is a file costs the reports (one warning line), never the PASS; the build used
    tinygen's home, not the user's ~/.platformio nor $PLATFORMIO_CORE_DIR."""
    for tool in ("arm-none-eabi-gcc", "qemu-system-arm"):
        require_tool(tool)
    project = copy_project(qemu_project, tmp_path / "p")
    home, core = tmp_path / "home", tmp_path / "users-core"
    home.mkdir()
    core.mkdir()
    (core / "appstate.json").write_text('{"mine": true}')
    (tmp_path / "reports-file").write_text("")
    res = run_cli("run", "--project", str(project), "--report-dir", str(tmp_path / "reports-file"), "--vectors", "2",
                  env={"HOME": str(home), "PLATFORMIO_CORE_DIR": str(core)}, timeout=900)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "PASS" in res.stdout
    assert "warning: could not write the reports" in res.stderr
    assert not (home / ".platformio").exists()
    assert [p.name for p in core.iterdir()] == ["appstate.json"]
    assert (core / "appstate.json").read_text() == '{"mine": true}'


def test_a_hostile_working_directory_is_never_imported(tiny_tflite, tmp_path):
    # `python -m` puts the working directory first on sys.path: a numpy.py or tinygen/ beside the
    # user's files would run inside tinygen's children (reference, TF worker, PlatformIO).
    (tmp_path / "m.tflite").write_bytes(tiny_tflite)
    marker = tmp_path / "PWNED"
    payload = f"open({str(marker)!r}, 'w').write('x')\n"
    (tmp_path / "numpy.py").write_text(payload)
    (tmp_path / "tinygen").mkdir()
    (tmp_path / "tinygen" / "__init__.py").write_text(payload)
    # The user's `tinygen` (the console script, as setup.sh links it), not `python -m tinygen`.
    exe = Path(sys.executable).parent / "tinygen"
    if not exe.exists():
        pytest.skip(f"no tinygen console script beside {sys.executable}")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    res = subprocess.run([str(exe), "inspect", "m.tflite"], cwd=tmp_path, capture_output=True, text=True,
                         timeout=300, env=env)
    assert res.returncode == 0, res.stderr
    assert not marker.exists()
