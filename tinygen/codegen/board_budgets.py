"""Each known board's flash and RAM budget for an int8 model, under each runtime the board offers
(``inspect`` shows which fit).  Named "budget", not "fit": "fit" is the ``--fit`` search of
:mod:`tinygen.compress.fit`, which shrinks a model until its budget fits.

The answer for a board is the budget a build would compute (:func:`tinygen.codegen.plan.budget`)
for the model the build would emit: under a TFLM library that computes FULLY_CONNECTED per-tensor
only, a per-channel FC is rewritten to CONV_2D 1x1 first, and a model the build would refuse gets
no row.
"""

from __future__ import annotations

from typing import Callable

from tinygen.analysis import ops as an
from tinygen.analysis.reference import ArenaInfo, measure_arena
from tinygen.codegen.plan import budget
from tinygen.common.boards import all_boards
from tinygen.tflite import fc_rewrite as rewrite
from tinygen.tflite.int8 import model_io
from tinygen.tflite.model import TfliteModel, parse_model


def budgets_per_board(m: TfliteModel, arena: ArenaInfo, name: str, compiled_peak: int | None,
                      progress: Callable[[str], None] = lambda s: None,
                      frontend: dict | None = None) -> dict[str, dict[str, dict]]:
    """{board id: {runtime: budget}}.  ``compiled_peak`` is the compiled runtime's static arena
    (None when that runtime cannot run the model); each distinct rewrite's arena is measured once.
    ``frontend``: the project's front-end JSON (raw samples in): its flash and RAM join every budget."""
    fe = None
    if frontend is not None:
        from tinygen.intake.frontend import for_model

        t = model_io(m).input
        fe = for_model(frontend, t.shape, t.scale, t.zero_point)
    tflm_ok = all(op in an.TFLM_RESOLVER_METHODS for op in an.analyze(m).ops)
    tflm_models = {m.raw: (m, arena)}
    # Once, not per board: each is a pass over the whole model (a 20,000-op model took minutes).
    has_fc = "FULLY_CONNECTED" in m.op_names  # for_board rewrites nothing without one
    const = None
    if compiled_peak is not None:
        from tinygen.codegen.compiled import compile_model
        from tinygen.common.errors import TinygenError

        try:
            const = compile_model(m).constant_bytes
        except TinygenError:  # budget() then falls back per board, as before
            const = None
    budgets: dict[str, dict[str, dict]] = {}
    for bid, b in all_boards().items():
        budgets[bid] = {}
        for rt in b.runtimes:
            if rt == "tflm" and tflm_ok:
                raw2, rw_note = rewrite.for_board(m.raw, b) if has_fc else (m.raw, None)
                if raw2 not in tflm_models:
                    m2 = parse_model(raw2, name)
                    progress("measuring the TFLM arena of the CONV_2D rewrite (tflite_micro, bisection)")
                    tflm_models[raw2] = (m2, measure_arena(raw2, m2, name))
                m2, arena2 = tflm_models[raw2]
                if an.dense_per_channel(m2) and not b.tflm.per_channel_fully_connected:
                    continue
                budgets[bid][rt] = budget(b, rt, m2, arena2, None, None, fe)
                if rw_note:
                    budgets[bid][rt]["rewrite"] = rw_note
            elif rt == "compiled" and compiled_peak is not None:
                budgets[bid][rt] = budget(b, rt, m, arena, compiled_peak, const, fe)
    return budgets
