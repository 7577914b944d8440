"""`verify --layers` / `--profile` on a model the compiled runtime runs partly as a band (a residual
block run row by row, tinygen/codegen/compiled/band.py): real build, QEMU Cortex-M4, a real pty.

The two convolutions inside the band never have a whole output: the board reports them with no
bytes, and the per-op check must say they were not compared (not fail, not claim them compared),
compare every other op, and still name a fault in the band's output at the band's last op (the ADD).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from conftest import build_ok, require, require_tool, run_cli


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    require_tool("arm-none-eabi-gcc")
    require_tool("qemu-system-arm")
    try:
        from support.band_models import residual_block
    except ImportError:
        require(False, "tflite_micro")
    d = tmp_path_factory.mktemp("band")
    (d / "res.tflite").write_bytes(residual_block())
    build_ok("--board", "qemu-m4", "--model", str(d / "res.tflite"), "--vectors", "4", "--out", str(d / "p"))
    return d / "p"


def _run(project: Path, *extra: str) -> dict:
    res = run_cli("run", "--project", str(project), "--vectors", "0", "--json", *extra, timeout=600)
    assert "Traceback" not in res.stderr and res.returncode in (0, 5), res.stderr
    return json.loads(res.stdout)


def test_ops_inside_a_band_are_said_not_compared(project):
    c = (project / "lib" / "tinygen_model" / "src" / "tg_model.c").read_text()
    assert "tg_band_s8(&" in c  # the build really banded the block
    result = _run(project, "--layers", "--profile")
    assert result["metrics"]["passed"]
    layers = result["layers"]
    assert layers["divergence"] is None
    assert layers["ops_without_output"] == [1, 2]  # the block's two convolutions
    assert layers["ops_compared"] == layers["ops_in_model"] - 2 == 5
    assert sorted(o["op"] for o in result["profile"]["ops"]) == list(range(7))
    md = Path(result["reports"]["markdown"]).read_text()
    assert "2 not: ops 1, 2 run inside a band" in md


def test_a_fault_in_the_band_output_is_named_at_its_last_op(project):
    path = project / "lib" / "tinygen_model" / "src" / "tg_model.c"
    clean = path.read_text()
    hook = re.search(r"    if \(tg_hook != NULL\) {\n        tg_hook\(tg_hook_ctx, 3u, (.+), \d+u\);\n    }\n", clean)
    assert hook, "no op hook for the ADD (op 3)"
    fault = ("    { int8_t *tg_fault = (int8_t *)(void *)%s; /* test fault */\n"
             "      tg_fault[5] = (int8_t)(tg_fault[5] == 127 ? 126 : tg_fault[5] + 1); }\n" % hook.group(1))
    path.write_text(clean[:hook.start()] + fault + clean[hook.start():])
    try:
        layers = _run(project, "--layers")["layers"]
        assert layers["divergence"] is not None
        assert (layers["divergence"]["op"], layers["divergence"]["type"]) == (3, "ADD")
        assert layers["divergence"]["differing_elements"] == 1
    finally:
        path.write_text(clean)
