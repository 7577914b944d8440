"""Compiled runtime, whole models: recipes and random graphs bit-exact with TFLM.

* The built-in recipes (``sine``, ``digits``), trained as ``tinygen.intake.recipes.train``
  does, quantized with per-tensor and per-channel FULLY_CONNECTED weights.
* Seeded random graphs of supported Keras layers (Conv2D, DepthwiseConv2D,
  pooling, Add, Multiply, Concatenate, ZeroPadding2D, GlobalAveragePooling2D,
  relu/relu6/sigmoid/tanh, Dense, Softmax, Reshape/Flatten).

Each model: emitted C compiled with ASan/UBSan on the host and run on many
inputs, outputs identical to the tflite_micro interpreter's; the static
arena is no larger than the smallest arena TFLM needs for the same model;
the recipes also run on an emulated Cortex-M4 (DSP code path).
"""

from __future__ import annotations

import numpy as np
import pytest

import support.compiled_harness as H
from tinygen.codegen.compiled import check_supported, lower, plan_memory
from tinygen.tflite.model import parse_model

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", autouse=True)
def _needs_python_deps():
    H.require(H.have_python_deps(), "tensorflow / tflite_micro (Python packages)")


SEED = 777
N_GRAPHS = 12
N_RANDOM_INPUTS = 80

RECIPES = [("sine", False), ("sine", True), ("digits", False), ("digits", True)]
GRAPH_CASES = []
for _k in range(N_GRAPHS):
    _rng = np.random.default_rng(SEED + _k)
    _shape = [int(_rng.integers(3, 9)), int(_rng.integers(3, 9)), int(_rng.integers(1, 4))]
    GRAPH_CASES.append({"kind": "graph", "seed": SEED * 100 + _k, "shape": _shape, "id": f"graph{_k}",
                        "rep": (float(_rng.uniform(-0.5, 0.5)), float(10 ** _rng.uniform(-0.5, 0.5))),
                        "per_channel": bool(_k % 2)})

# Recipes first: they train for a while, so they start first in the worker pool.
for _name in dict.fromkeys(n for n, _ in RECIPES):
    H.register(f"recipe:{_name}", "recipe_tflite", _name)
for _c in GRAPH_CASES:
    H.register("graph:" + _c["id"], "convert_case", _c)

MODEL_IDS = [f"{n}-{'per_channel' if pc else 'per_tensor'}" for n, pc in RECIPES] + [c["id"] for c in GRAPH_CASES]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    H.require(H.have_gcc(), "gcc")
    raws = [H.result(f"recipe:{n}")[int(pc)] for n, pc in RECIPES]
    raws += [H.result("graph:" + c["id"]) for c in GRAPH_CASES]
    rng = np.random.default_rng(SEED)
    models, inputs, refs = [], [], []
    for raw, mid in zip(raws, MODEL_IDS):
        m = parse_model(raw, name=mid)
        check_supported(lower(m))
        x = H.input_vectors(m.input_tensor().shape, N_RANDOM_INPUTS, rng)
        models.append(m)
        inputs.append(x)
        refs.append(H.tflm_outputs(m.raw, x))
    build = H.build_host(models, tmp_path_factory.mktemp("models_host"))
    return {"models": models, "inputs": inputs, "refs": refs, "build": build}


@pytest.mark.parametrize("i", range(len(MODEL_IDS)), ids=MODEL_IDS)
def test_model_bit_exact(built, i):
    got = built["build"].run(i, built["inputs"][i])
    H.assert_identical(got, built["refs"][i], f"{MODEL_IDS[i]} {built['models'][i].op_names}")


@pytest.mark.parametrize("i", [0, 2, 3, 4, 5], ids=[MODEL_IDS[j] for j in (0, 2, 3, 4, 5)])
def test_arena_not_larger_than_tflm(built, i):
    m = built["models"][i]
    ours = plan_memory(lower(m)).peak_bytes
    tflm = H.tflm_min_arena(m.raw)
    assert tflm > 0
    assert ours <= tflm, f"{MODEL_IDS[i]}: compiled arena {ours} B > TFLM arena {tflm} B"


def test_recipes_cover_their_ops(built):
    digits = built["models"][2]
    assert {"CONV_2D", "DEPTHWISE_CONV_2D", "MAX_POOL_2D", "AVERAGE_POOL_2D", "RESHAPE",
            "FULLY_CONNECTED", "SOFTMAX"} <= set(digits.op_names)
    assert built["models"][1].tensors[built["models"][1].operators[0].inputs[1]].per_channel


def test_recipes_on_cortex_m4_qemu(built, tmp_path):
    H.require(H.have_qemu(), "arm-none-eabi-gcc / qemu-system-arm")
    idx = [0, 1, 2, 3, 4, 5]
    outs = H.run_qemu_m4([built["models"][i] for i in idx], [built["inputs"][i][:16] for i in idx],
                         tmp_path / "qemu")
    for j, i in enumerate(idx):
        H.assert_identical(outs[j], built["refs"][i][:16], f"qemu {MODEL_IDS[i]}")
