"""TFLM source trees in create_tflm_tree.py's layout (tensorflow/ and third_party/ at the tree's top, no
src/) beside the Arduino-library layout (issue 25): the tinygen-mps2 builder compiles either.

* Always: a fake tree in that layout, built for real by `pio run` (tinygen's offline PlatformIO), under
  a path with spaces and quotes: its tensorflow/ and third_party/ sources are compiled, with
  third_party/cmsis_nn/ on the include path ("Include/arm_nnfunctions.h" as CMSIS-NN's kernels write
  it); signal/ (not part of the interpreter) and cortex_m_generic/ (platform files) are not. A
  directory in neither layout is one clear error line from the builder; `tinygen build` refuses such
  a tree for a board PlatformIO would take it as an Arduino library for (esp32), before any work.
* With TINYGEN_TFLM_NEWEST_DIR (a real tree: tflite-micro main + CMSIS-NN main, as create_tflm_tree.py
  writes it with OPTIMIZED_KERNEL_DIR=cmsis_nn; benchmarks/bench_fair.py --tflm-newest-dir takes the
  same tree): the committed sine model (tests/fixtures/models, FULLY_CONNECTED; nothing trained) runs
  on qemu-m4 and qemu-m55 through `tinygen run`, bit-exact with tflite_micro, through CMSIS-NN's
  kernel, and the Cortex-M55 firmware holds CMSIS-NN's Helium (MVE) code (VMLADAV in the ELF; the
  MLPerf models' CONV_2D/DEPTHWISE paths are exercised by bench_fair.py). Unset: those tests skip and
  say why.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from conftest import REPO, assert_one_line_error, build_ok, require_tool, run_cli
from tinygen.common.escape import ini_value

# A directory name the builder must treat as data (no '$', ' ;' or ' #': see tests/regression/test_issue_22_paths.py)
ODD = "tflm tree 'newest' (ü)"


def _fake_tree(top: Path) -> Path:
    """A create_tflm_tree.py-shaped tree with one interpreter file, one CMSIS-NN file and two that must
    not be compiled."""
    micro = top / "tensorflow" / "lite" / "micro"
    (micro / "cortex_m_generic").mkdir(parents=True)
    (micro / "tg_fake.cc").write_text('#include "Include/tg_fake_nn.h"\n'
                                      'extern "C" int tg_fake_tflm(void) { return tg_fake_nn() + 1; }\n')
    (micro / "cortex_m_generic" / "micro_time.cc").write_text('#error "cortex_m_generic/ must be left out"\n')
    nn = top / "third_party" / "cmsis_nn"
    (nn / "Include").mkdir(parents=True)
    (nn / "Source").mkdir()
    (nn / "Include" / "tg_fake_nn.h").write_text('#ifdef __cplusplus\nextern "C"\n#endif\nint tg_fake_nn(void);\n')
    (nn / "Source" / "tg_fake_nn.c").write_text('#include "tg_fake_nn.h"\nint tg_fake_nn(void) { return 41; }\n')
    (top / "signal").mkdir()
    (top / "signal" / "tg_not_compiled.cc").write_text('#error "signal/ is not part of the interpreter"\n')
    return top


def _project(project: Path, tree: Path) -> Path:
    (project / "src").mkdir(parents=True)
    (project / "src" / "main.c").write_text(
        "int tg_fake_tflm(void);\nint main(void) { return tg_fake_tflm() == 42 ? 0 : 1; }\n"
        "void Reset_Handler(void) { main(); for (;;) {} }\n")
    (project / "platformio.ini").write_text(
        "[env:qemu-m4]\nplatform = tinygen-mps2\nboard = qemu-m4\n"
        f"custom_tinygen_tflm_dir = {ini_value(str(tree))}\ncustom_tinygen_tflm_cache = no\n", encoding="utf-8")
    return project


def test_builder_compiles_a_create_tflm_tree_layout(tmp_path):
    from tinygen.device.pio_build import pio_run

    require_tool("arm-none-eabi-gcc")
    base = tmp_path / ODD
    tree = _fake_tree(base / "tree")
    project = _project(base / "project", tree)
    proc = pio_run(project, environment="qemu-m4", verbose=True)
    build = project / ".pio" / "build" / "qemu-m4"
    objects = sorted(p.relative_to(build / "tflm").as_posix() for p in (build / "tflm").rglob("*.o"))
    assert objects == ["tensorflow/lite/micro/tg_fake.o", "third_party/cmsis_nn/Source/tg_fake_nn.o"], \
        proc.stdout[-2000:]
    symbols = subprocess.run(["arm-none-eabi-nm", str(build / "firmware.elf")], capture_output=True, text=True,
                             check=True).stdout.split()
    assert "tg_fake_tflm" in symbols and "tg_fake_nn" in symbols


def test_builder_refuses_a_directory_in_neither_layout_in_one_line(tmp_path):
    from tinygen.device.pio_build import pio_run
    from tinygen.common.errors import TinygenError

    require_tool("arm-none-eabi-gcc")
    base = tmp_path / ODD
    tree = base / "not a tree"
    (tree / "lite" / "micro").mkdir(parents=True)  # tensorflow/ missing
    project = _project(base / "project", tree)
    with pytest.raises(TinygenError) as err:
        pio_run(project, environment="qemu-m4")
    text = str(err.value)
    assert "is not a TFLM tree" in text and "src/tensorflow/lite/micro" in text and "create_tflm_tree.py" in text
    assert "Traceback" not in text
    assert not (project / ".pio" / "build" / "qemu-m4" / "firmware.elf").exists()


def test_build_refuses_the_layout_where_an_arduino_library_is_needed(tmp_path):
    tree = _fake_tree(tmp_path / "tree")
    out = tmp_path / "out"
    res = run_cli("build", "--board", "esp32", "--runtime", "tflm", "--tflm-dir", str(tree), "--out", str(out))
    assert_one_line_error(res, "--tflm-dir", "Arduino-library layout", "create_tflm_tree.py")
    assert "training" not in res.stderr and not out.exists()


# ------------------------------------------------------------------ a real newest tree (opt-in)

def _newest_tree() -> Path:
    value = os.environ.get("TINYGEN_TFLM_NEWEST_DIR", "")
    if not value:
        pytest.skip("TINYGEN_TFLM_NEWEST_DIR is not set: these tests need a TFLM tree made by tflite-micro's "
                    "create_tflm_tree.py with OPTIMIZED_KERNEL_DIR=cmsis_nn (TFLM is in no registry reachable here)")
    tree = Path(value).expanduser().resolve()
    if not (tree / "tensorflow/lite/micro/kernels/cmsis_nn").is_dir() or (tree / "src").is_dir():
        pytest.fail(f"TINYGEN_TFLM_NEWEST_DIR={value} is not a create_tflm_tree.py tree with CMSIS-NN kernels "
                    "(no tensorflow/lite/micro/kernels/cmsis_nn at its top)")
    return tree


@pytest.mark.tflm
@pytest.mark.slow
@pytest.mark.parametrize("board", ["qemu-m4", "qemu-m55"])
def test_newest_tree_runs_bit_exact(board, tmp_path_factory, tmp_path):
    from tinygen.device import pio_offline

    tree = _newest_tree()
    require_tool("arm-none-eabi-g++")
    require_tool("qemu-system-arm")
    core = tmp_path_factory.getbasetemp() / "pio-core-tflm-newest"  # shared by both boards
    core.mkdir(exist_ok=True)
    pio_offline.ensure_offline_core(core)
    project = tmp_path / "sine-newest"
    build_ok("--board", board, "--runtime", "tflm", "--tflm-dir", str(tree), "--model",
             str(REPO / "tests" / "fixtures" / "models" / "sine_int8.tflite"), "--out", str(project))
    assert f"custom_tinygen_tflm_dir = {ini_value(tree.as_posix())}" in (project / "platformio.ini").read_text()
    res = run_cli("run", "--project", str(project), "--json", "--vectors", "8",
                  env={"PLATFORMIO_CORE_DIR": str(core)}, timeout=1200)
    assert res.returncode == 0, f"{res.stdout[-2000:]}\n{res.stderr[-4000:]}"
    m = json.loads(res.stdout)["metrics"]
    assert m["passed"] and m["max_abs_diff_lsb"] == 0 and m["exact_match_pct"] == 100.0

    elf = project / ".pio" / "build" / board / "firmware.elf"
    nm = subprocess.run(["arm-none-eabi-nm", "-C", str(elf)], capture_output=True, text=True, check=True).stdout
    assert "tflite::MicroInterpreter::Invoke" in nm
    assert "arm_fully_connected_s8" in nm  # CMSIS-NN's kernel, not TFLM's reference one
    # without -m armv8.1-m.main objdump 2.40 shows MVE encodings as LDC/CDP; VMLADAV prints as its alias VMLAV
    asm = subprocess.run(["arm-none-eabi-objdump", "-d", "--no-show-raw-insn", "-m", "armv8.1-m.main", str(elf)],
                         capture_output=True, text=True, check=True).stdout
    vmladav = len(re.findall(r"\tvml(?:ad)?ava?\.s8\t", asm))
    if board == "qemu-m55":
        assert vmladav > 0, "CMSIS-NN's Helium (MVE) kernels are not in the Cortex-M55 firmware"
    else:
        assert vmladav == 0
