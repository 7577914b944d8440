"""--fit counts the front end (issue 27 item 4): a model whose source has a front end (the kws/imu recipes,
or --frontend) is sized by the --fit search with the budget a build checks, the front end's flash and RAM
included, so the model it picks leaves the board room for its front end (the Nano 33 BLE with kws).

No training: :func:`tinygen.compress.fit.measure` (what the search compares with the board's budget, for
every candidate) sizes a hand-written int8 model on the kws features.  Independent reference: the front
end's RAM from its definition alone (docs/frontend.md: 49 x 40 int32 features + 512 + 257 + 480 words of
scratch, and 2 x 16,000 B of samples beyond the model's 1,960 B input), and the build's own budget
(:func:`tinygen.codegen.plan.budget` with the front end) for the same model.
"""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import pytest

from support.frontend_models import relu_on_features
from tinygen.analysis.reference import measure_arena
from tinygen.codegen.compiled import compile_model
from tinygen.codegen.plan import budget
from tinygen.common.boards import get_board
from tinygen.compress import fit
from tinygen.intake.frontend import IMU_SPEC, KWS_SPEC, FrontendError, for_model
from tinygen.tflite.model import parse_model

KWS_FRONTEND_RAM = 4 * (49 * 40 + 512 + 257 + 480) + (2 * 16000 - 49 * 40)


def _src(frontend=None, recipe=None):
    return SimpleNamespace(frontend=frontend, recipe=recipe, x_test=None, y_test=None)


@pytest.fixture(scope="module")
def kws_model() -> bytes:
    return relu_on_features((49, 40, 1))


@pytest.mark.parametrize("runtime", ["compiled", "tflm"])
def test_the_fit_search_sizes_a_candidate_with_its_front_end(kws_model, runtime):
    board = get_board("nano33ble")
    bare = fit.measure(kws_model, "kws", board, runtime, _src(), "classification", accuracy=False)
    full = fit.measure(kws_model, "kws", board, runtime, _src(KWS_SPEC.to_json(), "kws"), "classification",
                       accuracy=False)
    assert "frontend" not in bare
    assert full["ram_bytes"] - bare["ram_bytes"] == full["frontend"]["ram_bytes"] == KWS_FRONTEND_RAM
    # tables (the mel filter bank's weights among them) and the 3,072 B code estimate
    assert full["flash_bytes"] - bare["flash_bytes"] == full["frontend"]["flash_bytes"] > 3072 + 40
    # exactly what a build of this model with this front end checks against the board
    m = parse_model(kws_model, "kws")
    t = m.input_tensor()
    fe = for_model(KWS_SPEC.to_json(), t.shape, t.scale[0], t.zero_point[0])
    if runtime == "compiled":
        c = compile_model(m)
        built = budget(board, runtime, m, None, c.peak_bytes, c.constant_bytes, fe)
    else:
        built = budget(board, runtime, m, measure_arena(kws_model, m, "kws"), None, None, fe)
    assert (full["flash_bytes"], full["ram_bytes"]) == (built["flash_bytes"], built["ram_bytes"])
    assert (full["flash_budget"], full["ram_budget"]) == (board.flash_bytes, board.ram_bytes)


def test_a_candidate_that_fits_only_without_its_front_end_does_not_fit(kws_model):
    """On a board with RAM between the model's need and the model's + front end's (with the search's
    headroom), --fit must not take the candidate: it would leave no room for the front end."""
    nano = get_board("nano33ble")
    bare = fit.measure(kws_model, "kws", nano, "compiled", _src(), "classification", accuracy=False)
    need = bare["ram_bytes"] + KWS_FRONTEND_RAM
    small = dataclasses.replace(nano, ram_bytes=int((bare["ram_bytes"] + need) / 2 / (1 - fit.DEFAULT_HEADROOM)))
    # --fit-board: the budget of another board than the build's
    rows = [fit.measure(kws_model, "kws", get_board("qemu-m4"), "compiled", src, "classification", fit_board=small,
                        accuracy=False) for src in (_src(), _src(KWS_SPEC.to_json(), "kws"))]
    assert rows[0]["ram_budget"] == rows[1]["ram_budget"] == small.ram_bytes
    assert fit.fits_with_headroom(rows[0], fit.DEFAULT_HEADROOM)
    assert not fit.fits_with_headroom(rows[1], fit.DEFAULT_HEADROOM)


def test_a_front_end_that_does_not_feed_the_candidate_is_one_line(kws_model):
    with pytest.raises(FrontendError, match=r"^recipe imu's front end gives features of shape \(7, 24\), but "
                                            r"the model's input is \(49, 40, 1\)"):
        fit.measure(kws_model, "kws", get_board("nano33ble"), "compiled", _src(IMU_SPEC.to_json(), "imu"),
                    "classification", accuracy=False)


def test_the_advice_to_switch_runtime_counts_the_front_end(kws_model):
    """A TFLM build that does not fit with its front end is told the compiled runtime's budget with the
    front end in it (the plan's input quantization, plan.io), not the bare model's."""
    from tinygen.analysis import ops as an
    from tinygen.codegen.plan import Plan, check_fits
    from tinygen.common.errors import DoesNotFit

    m = parse_model(kws_model, "kws")
    t = m.input_tensor()
    fe = for_model(KWS_SPEC.to_json(), t.shape, t.scale[0], t.zero_point[0])
    arena, c = measure_arena(kws_model, m, "kws"), compile_model(m)
    nano = get_board("nano33ble")
    tflm = budget(nano, "tflm", m, arena, None, None, fe)
    compiled = budget(nano, "compiled", m, None, c.peak_bytes, c.constant_bytes, fe)
    assert compiled["ram_bytes"] < tflm["ram_bytes"]
    small = dataclasses.replace(nano, ram_bytes=(compiled["ram_bytes"] + tflm["ram_bytes"]) // 2)
    plan = Plan(small, "tflm", "kws", m, an.analyze(m), arena, "test", "classification", "", {}, {},
                budget(small, "tflm", m, arena, None, None, fe), recipe="kws", frontend=KWS_SPEC.to_json())
    with pytest.raises(DoesNotFit) as e:
        check_fits(plan.budget, small, "tflm", plan)
    assert (f"--runtime compiled fits (flash {compiled['flash_bytes']:,} B, RAM {compiled['ram_bytes']:,} B)"
            in str(e.value)), str(e.value)
