"""The model as a library inside every project (``lib/tinygen_model/``) and the example using it.

Why a library: once `verify` passes, a user's own firmware needs the model, the runtime's files and
one small C API, nothing of the validation server. ``lib/<name>/`` with ``library.json`` is what
PlatformIO's dependency finder picks up from an ``#include "tinygen_model.h"``; with
``library.properties`` and the sources in ``src/`` the same folder is an Arduino library too, so
it can be copied into another PlatformIO project's ``lib/`` or the Arduino IDE's ``libraries/``.
The validation firmware (src/tg_runtime_lib.c) calls the model through the same library, so what
`tinygen verify` checks is what a user links.

The example (``examples/predict/``) is built by the project's second environment,
``[env:<board>_example]``, through ``build_src_filter`` (standard PlatformIO, so it works on every
platform): the board's HAL from src/, the example instead of the validation app.
"""

from __future__ import annotations

import json
from typing import Callable

import numpy as np

from tinygen.codegen.compiled import kernel_sources
from tinygen.common.paths import firmware_dir

LIB = "lib/tinygen_model"
EXAMPLE = "examples/predict"
EXAMPLE_VECTORS = 8  # at most: enough to see the model work, little flash
# Everything of src/ but the validation app and its entry point: the board's HAL stays.
EXAMPLE_SRC_FILTER = "+<*> -<main.c> -<main.cpp> -<tg_app.c> -<tg_runtime_lib.c> +<../examples/predict/>"


def c_float(x: float) -> str:
    """A float32 as an exact C99 hexadecimal float literal (no decimal rounding on either side)."""
    v = float(np.float32(x))
    if v == 0.0:
        return "-0.0f" if np.signbit(v) else "0.0f"
    mantissa, exponent = v.hex().split("p")
    return f"{mantissa.rstrip('0').rstrip('.')}p{exponent}f"


def is_sine_recipe(plan) -> bool:
    # The recipe field, not the source text: a user's file may be named "recipe:sine".
    return plan.recipe == "sine"


def example_inputs(plan) -> np.ndarray:
    """What the example feeds predict_float, float32, one row per inference.

    The sine recipe: a sweep of x over [0, 2*pi], the domain it was trained on, so the printed
    curve shows the model at work (predict_float quantizes each x as TFLite's QUANTIZE does).
    Any other model: the first reference inputs, dequantized with the input scale and zero point,
    so predict_float quantizes each back to exactly the reference vector's int8."""
    if is_sine_recipe(plan):
        return np.linspace(0.0, 2.0 * np.pi, EXAMPLE_VECTORS, dtype=np.float32).reshape(-1, 1)
    it = plan.io.input
    q = np.asarray(plan.vectors["inputs"][:EXAMPLE_VECTORS], dtype=np.int32)
    x = (q - it.zero_point).astype(np.float32) * np.float32(it.scale)
    return x.reshape(len(q), -1)


def _vectors_header(plan, tpl) -> bytes:
    rows = [", ".join(c_float(v) for v in row) for row in example_inputs(plan)]
    what = ("a sweep of x over [0, 2*pi] (the sine recipe's domain); predict_float quantizes each x"
            if is_sine_recipe(plan) else
            "the first reference vectors of vectors/reference.npz, dequantized with the model's input\n"
            "// scale and zero point: predict_float quantizes each back to exactly the reference's int8")
    return tpl("lib/tinygen_example_vectors.h.j2", example_rows=rows, example_count=len(rows), example_what=what)


def render(plan, tpl: Callable[..., bytes], hex_array: Callable[[bytes], str]) -> dict[str, bytes]:
    """{path: bytes} of the library and the example (``tpl`` renders a template with render's context)."""
    fw = firmware_dir()
    m = plan.model
    it, ot = plan.io.input, plan.io.output
    labels = list(getattr(plan, "class_names", None) or [])
    if len(labels) != int(np.prod(ot.shape)):
        labels = []
    arena = plan.compiled.arena_bytes if plan.runtime == "compiled" else plan.arena.recommended_bytes
    ctx = dict(input_count=int(np.prod(it.shape)), output_count=int(np.prod(ot.shape)),
               in_scale=float(it.scale), out_scale=float(ot.scale),
               in_scale_c=c_float(it.scale), out_scale_c=c_float(ot.scale),
               in_zp=int(it.zero_point), out_zp=int(ot.zero_point), arena_reserved=int(arena),
               input_name=m.input_tensor().name, output_name=m.output_tensor().name, labels=labels)
    src = f"{LIB}/src"
    out: dict[str, bytes] = {
        f"{LIB}/library.json": _library_json(plan),
        f"{LIB}/library.properties": tpl("lib/library.properties.j2"),
        f"{src}/tinygen_model.h": tpl("lib/tinygen_model.h.j2", **ctx),
        f"{src}/tinygen_model.c": tpl("lib/tinygen_model.c.j2", **ctx),
        f"{src}/tinygen_model_runtime.h": (fw / "lib" / "tinygen_model_runtime.h").read_bytes(),
    }
    if plan.runtime == "tflm":
        out[f"{src}/model_data.h"] = tpl("model_data.h.j2")
        out[f"{src}/model_data.cc"] = tpl("model_data.cc.j2", model_hex=hex_array(m.raw))
        out[f"{src}/tg_runtime_tflm.cc"] = tpl("tg_runtime_tflm.cc.j2")
    else:
        # The model's C is printed here, from the plan's IR and memory plan.
        for fname, text in sorted(plan.compiled.sources("tg").items()):
            out[f"{src}/{fname}"] = text.encode()
        for fname, text in sorted(kernel_sources().items()):
            out[f"{src}/{fname}"] = text.encode()
        out[f"{src}/tinygen_model_compiled.c"] = (fw / "lib" / "tinygen_model_compiled.c").read_bytes()

    ex = fw / "example"
    out[f"{EXAMPLE}/predict.c"] = (ex / "predict.c").read_bytes()
    out[f"{EXAMPLE}/tinygen_example.h"] = (ex / "tinygen_example.h").read_bytes()
    if plan.board.hal == "arduino":
        out[f"{EXAMPLE}/main.cpp"] = (ex / "main_arduino.cpp").read_bytes()
    else:
        out[f"{EXAMPLE}/main.c"] = (ex / "main_mps2.c").read_bytes()
    out[f"{EXAMPLE}/tinygen_example_vectors.h"] = _vectors_header(plan, tpl)
    return out


def _library_json(plan) -> bytes:
    data = {
        "name": "tinygen_model",
        "version": "1.0.0",
        "description": f"The {plan.name} model ({plan.runtime} runtime) with tinygen's C API: tinygen_model.h",
        "keywords": ["tinygen", "tinyml", "int8"],
        "frameworks": "*",
        "platforms": "*",
        "build": {"srcDir": "src", "includeDir": "src", "libArchive": False},
    }
    # The TFLM library it is built against, so the folder builds when copied into another project
    # (a --tflm-dir tree or the emulated board's compiled tree is no registry package: none then).
    tflm = plan.board.tflm
    if plan.runtime == "tflm" and not plan.tflm_dir and tflm.library:
        owner, _, lib = tflm.library.partition("/")
        data["dependencies"] = [{"owner": owner, "name": lib, "version": str(tflm.version)}]
    return (json.dumps(data, indent=2, sort_keys=True) + "\n").encode()
