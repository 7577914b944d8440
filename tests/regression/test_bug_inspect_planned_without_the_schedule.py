"""Bug: `tinygen inspect --runtime compiled` planned the memory of the model in its file's order with
no bands, while a build schedules it first (tinygen/codegen/compiled/band.py), so inspect reported
an arena (and per-board RAM fits) larger than the one the firmware gets.  The smallest input: a
residual block the scheduler bands."""

from __future__ import annotations

from support.band_models import residual_block
from tinygen.codegen.compiled import compile_model
from tinygen.tflite.model import parse_model


def test_inspect_reports_the_arena_a_build_uses(tmp_path):
    import tinygen

    raw = residual_block()
    path = tmp_path / "res.tflite"
    path.write_bytes(raw)
    built = compile_model(parse_model(raw, "res"))
    assert built.program.bands  # the case this bug is about
    info = tinygen.inspect(path, runtime="compiled")
    assert info.compiled_memory_plan["peak_bytes"] == built.arena_bytes
    rows = {r["tensor"]: r for r in info.compiled_memory_plan["tensors"]}
    band = built.program.bands[0]
    assert rows[built.program.ops[band.start].output]["location"] == "band"
