"""`tinygen verify --project P --emulate`: a real-board project's exact model bytes and runtime on its
emulated twin (boards/*.json emulated_twin), through the real CLI, PlatformIO, compiler and QEMU.

The bytes the twin ran are checked independently of tinygen (hashlib over the files on disk), the
outputs against the tflite_micro interpreter (verify's reference), and nothing may be written outside
the project.  The model is the checked-in sine fixture (no training here).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path

import pytest

import support.compiled_harness as H
from conftest import REPO, assert_one_line_error, build_ok, require_tool, run_cli
from tinygen.common import boards as boards_mod
from tinygen.common.errors import TinygenError

MODEL = REPO / "tests" / "fixtures" / "models" / "sine_int8.tflite"


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tree_digest(root: Path, skip: str | None = None) -> dict[str, str]:
    """{relative path: sha256} of every file under ``root`` (``skip``: a top-level entry left out)."""
    return {p.relative_to(root).as_posix(): sha(p) for p in sorted(root.rglob("*"))
            if p.is_file() and (skip is None or p.relative_to(root).parts[0] != skip)}


def verify_twin(project: Path, *extra: str, env: dict | None = None) -> dict:
    res = run_cli("verify", "--project", str(project), "--emulate", "--json", "--vectors", "8", *extra,
                  env=env, timeout=600)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    return json.loads(res.stdout)


def test_model_library_compare_ignores_comments_and_class_labels_only(tmp_path):
    """The check that the twin compiles the project's model library: a recipe's class labels (not in
    the model bytes) and comments may differ; one changed line of code may not."""
    from tinygen.verification.twin import MODEL_LIBRARY, library_differences

    board = boards_mod.get_board("nano33ble")
    code = "static const int8_t k_w[2] = {1, -2};\nint f(void) { return k_w[1]; }\n"
    api = ("const char *tinygen_model_class_label(int i)\n{\n%s}\n"
           "const char *tinygen_model_runtime_name(void) { return \"compiled\"; }\n")
    files = {
        "a": {"tinygen_model_compiled.c": "// from recipe:x\n" + code,
              "tinygen_model.h": "#define TINYGEN_MODEL_NUM_CLASSES 2\n",
              "tinygen_model.c": "static const char *const k_labels[2] = {\n    \"up\",\n    \"down\",\n};\n"
                                 + api % "    return i >= 0 && i < TINYGEN_MODEL_NUM_CLASSES ? k_labels[i] : NULL;\n"},
        "b": {"tinygen_model_compiled.c": "// from model.tflite\n\n" + code,
              "tinygen_model.h": "#define TINYGEN_MODEL_NUM_CLASSES 0\n",
              "tinygen_model.c": api % "    (void)i;\n    return NULL;\n"},
    }
    for side, fs in files.items():
        for name, text in fs.items():
            (tmp_path / side / MODEL_LIBRARY).mkdir(parents=True, exist_ok=True)
            (tmp_path / side / MODEL_LIBRARY / name).write_text(text)
    assert library_differences(tmp_path / "a", tmp_path / "b", board) == []
    lib_c = tmp_path / "a" / MODEL_LIBRARY / "tinygen_model_compiled.c"
    lib_c.write_text(lib_c.read_text().replace("-2", "-3"))
    (tmp_path / "a" / MODEL_LIBRARY / "tinygen_model.c").write_text(
        files["a"]["tinygen_model.c"].replace("runtime_name(void) { return", "runtime_name(void) { return 0 ?"))
    # a comment ending in a backslash swallows the next line in C: compared, not dropped
    h = tmp_path / "a" / MODEL_LIBRARY / "tinygen_model.h"
    h.write_text("// see \\\n" + h.read_text())
    assert library_differences(tmp_path / "a", tmp_path / "b", board) == [
        "tinygen_model.c", "tinygen_model.h", "tinygen_model_compiled.c"]


def test_nano33ble_compiled_runs_its_exact_bytes_on_qemu_m4(tmp_path):
    require_tool("qemu-system-arm")
    require_tool("arm-none-eabi-gcc")
    work = tmp_path / "work"
    work.mkdir()
    project = work / "sine nano"  # a space: the path reaches PlatformIO as data
    res = build_ok("--board", "nano33ble", "--runtime", "compiled", "--model", str(MODEL), "--out", str(project))
    # the build summary names the twin and the command, in one row
    assert "emulated twin" in res.stdout and "qemu-m4 (same core, Cortex-M4F)" in res.stdout
    assert "--emulate" in res.stdout
    before = tree_digest(project)

    result = verify_twin(project)
    twin_dir = project / ".tinygen" / "twin-qemu-m4"
    m = result["metrics"]
    assert result["board"] == "qemu-m4" and result["runtime"] == "compiled"
    assert m["passed"] and m["max_abs_diff_lsb"] == 0 and m["exact_match_pct"] == 100.0
    assert m["vectors"] == 32 + 8
    # the bytes the twin ran (its own model.tflite, and what it reported) are the real project's
    want = sha(project / "model.tflite")
    assert sha(twin_dir / "model.tflite") == want == result["model_sha256"]
    assert json.loads((project / "tinygen.json").read_text())["model_sha256"] == want
    # ... with the real project's reference vectors and the same model library C, comments aside
    assert sha(twin_dir / "vectors" / "reference.npz") == sha(project / "vectors" / "reference.npz")
    lib = Path("lib/tinygen_model/src/tinygen_model_compiled.c")
    code = [ln for ln in (project / lib).read_text().splitlines() if not ln.startswith("//")]
    assert code == [ln for ln in (twin_dir / lib).read_text().splitlines() if not ln.startswith("//")]
    twin = result["twin"]
    assert (twin["board"], twin["match"], twin["of_board"]) == ("qemu-m4", "same-core", "nano33ble")
    assert twin["model_sha256"] == want and twin["runtime"] == twin["board_runtime"] == "compiled"
    md = (twin_dir / "reports" / "verify.md").read_text()
    assert "## Emulated twin" in md and "not on the board itself" in md
    assert json.loads((twin_dir / "reports" / "verify.json").read_text())["twin"]["board"] == "qemu-m4"

    # written inside the project and nowhere else: the project's own files untouched, nothing beside it
    assert sorted(p.name for p in work.iterdir()) == ["sine nano"]
    assert tree_digest(project, skip=".tinygen") == before
    # and `build --force` still replaces the project, keeping .tinygen/ like reports/ and .pio/
    build_ok("--board", "nano33ble", "--runtime", "compiled", "--model", str(MODEL), "--out", str(project), "--force")
    assert (twin_dir / "model.tflite").is_file()


def test_esp32c3_compiled_runs_on_qemu_rv32(tmp_path):
    H.require(H.have_rv32(), "riscv64-unknown-elf-gcc + picolibc-riscv64-unknown-elf / qemu-system-riscv32")
    project = tmp_path / "c3"
    res = build_ok("--board", "esp32c3", "--runtime", "compiled", "--model", str(MODEL), "--out", str(project))
    assert "qemu-rv32 (same ISA, another core, RV32IMC)" in res.stdout
    result = verify_twin(project)
    assert result["board"] == "qemu-rv32" and result["runtime"] == "compiled"
    assert result["metrics"]["max_abs_diff_lsb"] == 0 and result["metrics"]["passed"]
    assert result["twin"]["match"] == "same-isa"
    assert sha(project / ".tinygen" / "twin-qemu-rv32" / "model.tflite") == sha(project / "model.tflite")


@pytest.fixture(scope="module")
def esp32_tflm(tmp_path_factory) -> Path:
    """An esp32 TFLM project: its model.tflite is the fixture with FULLY_CONNECTED rewritten to CONV_2D."""
    project = tmp_path_factory.mktemp("twin") / "esp32"
    build_ok("--board", "esp32", "--model", str(MODEL), "--out", str(project))
    return project


def test_tflm_twin_without_a_tree_is_one_line_naming_tflm_dir(esp32_tflm):
    res = run_cli("verify", "--project", str(esp32_tflm), "--emulate", env={"TINYGEN_TFLM_DIR": ""})
    assert_one_line_error(res, "--tflm-dir", "TINYGEN_TFLM_DIR", "--emulate-runtime compiled", code=2)
    assert not (esp32_tflm / ".tinygen").exists()


def test_refusals_are_one_line_and_write_nothing(esp32_tflm, tmp_path):
    c3 = tmp_path / "c3-tflm"
    build_ok("--board", "esp32c3", "--model", str(MODEL), "--out", str(c3))
    res = run_cli("verify", "--project", str(c3), "--emulate")
    assert_one_line_error(res, "qemu-rv32", "no tflm runtime", "--emulate-runtime compiled", code=2)
    m4 = tmp_path / "m4"
    build_ok("--board", "qemu-m4", "--model", str(MODEL), "--out", str(m4))
    assert_one_line_error(run_cli("verify", "--project", str(m4), "--emulate"), "already emulated", code=2)
    assert_one_line_error(run_cli("verify", "--project", str(esp32_tflm), "--emulate", "--port", "/dev/null"),
                          "--emulate", code=2)
    assert_one_line_error(run_cli("verify", "--project", str(m4), "--emulate-runtime", "compiled"),
                          "goes with --emulate", code=2)
    for p in (c3, m4, esp32_tflm):
        assert not (p / ".tinygen").exists()


def test_a_c_array_that_is_not_model_tflite_is_refused(esp32_tflm, tmp_path):
    """The TFLM firmware carries lib/tinygen_model/src/model_data.cc: one byte changed there and the
    twin would verify other bytes than the board runs."""
    import shutil

    project = tmp_path / "tampered"
    shutil.copytree(esp32_tflm, project)
    cc = project / "lib" / "tinygen_model" / "src" / "model_data.cc"
    text = cc.read_text()
    i = text.index("0x", text.index("[] = {") + 200)
    cc.write_text(text[:i] + ("0x01" if text[i:i + 4] != "0x01" else "0x02") + text[i + 4:])
    res = run_cli("verify", "--project", str(project), "--emulate", "--emulate-runtime", "compiled")
    assert_one_line_error(res, "model_data.cc", "does not hold the bytes", "--force", code=2)


def test_a_twin_dir_that_is_a_link_out_of_the_project_is_refused(esp32_tflm, tmp_path):
    import shutil

    project = tmp_path / "linked"
    shutil.copytree(esp32_tflm, project)
    outside = tmp_path / "outside"
    outside.mkdir()
    (project / ".tinygen").symlink_to(outside)
    res = run_cli("verify", "--project", str(project), "--emulate", "--emulate-runtime", "compiled")
    assert_one_line_error(res, ".tinygen", code=2)
    assert list(outside.iterdir()) == []


def test_board_files_twins_agree_with_their_cpus():
    real = {bid: b for bid, b in boards_mod.all_boards().items() if not boards_mod.is_emulated(b)}
    assert {bid: b.emulated_twin.board for bid, b in real.items()} == {
        "nano33ble": "qemu-m4", "esp32c3": "qemu-rv32", "esp32": "qemu-m4", "esp32s3": "qemu-m4"}
    assert "not the same ISA" in real["esp32"].emulated_twin.label
    # a twin on another cpu that claims the same core is refused when the boards load
    bad = boards_mod.all_boards()
    bad["esp32"] = replace(bad["esp32"], emulated_twin=replace(bad["esp32"].emulated_twin, match="same-core"))
    with pytest.raises(TinygenError, match="same-core"):
        boards_mod._check_twins(bad)


def test_tflm_twin_runs_the_c_array_the_board_carries(esp32_tflm):
    """With a TFLM tree (TINYGEN_TFLM_DIR; skipped without one: TFLM is in no registry here): the esp32
    TFLM project's twin on qemu-m4 is bit-exact, and the C array it compiled is the board's."""
    import re

    from conftest import tflm_tree_from_env

    tree = tflm_tree_from_env("src/tensorflow/lite/micro", "in Arduino-library layout")
    require_tool("qemu-system-arm")
    require_tool("arm-none-eabi-gcc")
    result = verify_twin(esp32_tflm, "--tflm-dir", str(tree))
    assert result["runtime"] == "tflm" and result["metrics"]["max_abs_diff_lsb"] == 0
    assert result["twin"]["match"] == "other-isa" and "not the same ISA" in result["twin"]["label"]

    def c_array(project: Path) -> bytes:
        text = (project / "lib" / "tinygen_model" / "src" / "model_data.cc").read_text()
        body = text[text.index("[] = {"):text.index("};")]
        return bytes(int(h, 16) for h in re.findall(r"0x([0-9a-f]{2})", body))

    twin = esp32_tflm / ".tinygen" / "twin-qemu-m4"
    assert c_array(twin) == c_array(esp32_tflm) == (esp32_tflm / "model.tflite").read_bytes()
