"""Depthwise 3x3 instructions per MAC on an emulated Cortex-M4 (not a test; prints a table).

Single-layer DEPTHWISE_CONV_2D models (random weights, synthetic calibration) in the
shapes of the digits recipe (multiplier 2), DS-CNN and MobileNetV1, plus the whole
digits recipe and DS-CNN models of bench_compiled.py: guest instructions per
inference on QEMU mps2-an386 (-icount shift=0, +-40), per MAC, at -Os and -O2, the
outputs checked against the tflite_micro interpreter.

Usage: python benchmarks/bench_depthwise.py [--no-models] [--models NAME ...] [--no-layers]
(--models: which of bench_compiled.py's models to run whole, default digits ds_cnn_kws;
e.g. --no-layers --models sine digits ds_cnn_kws resnet8 mobilenet_v1_0.25 fc_autoencoder
gives the README's whole-model instructions at -Os and -O2.)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_compiled as B  # noqa: E402  (also puts the repo and tests/ on sys.path)

H = B.H
from tinygen.codegen.compiled import compile_model, op_table  # noqa: E402
from tinygen.tflite.model import parse_model  # noqa: E402

# name: (input h, w, c), depth multiplier, stride, padding
LAYERS = {
    "digits dw 8x8x8 m2 s1 same": ((8, 8, 8), 2, 1, "same"),
    "ds-cnn dw 25x5x64 m1 s1 same": ((25, 5, 64), 1, 1, "same"),
    "mbnet dw 24x24x32 m1 s1 same": ((24, 24, 32), 1, 1, "same"),
    "mbnet dw 24x24x32 m1 s2 same": ((24, 24, 32), 1, 2, "same"),
    "dw 16x16x16 m2 s2 valid": ((16, 16, 16), 2, 2, "valid"),
    "dw 12x12x6 m1 s1 same": ((12, 12, 6), 1, 1, "same"),
}


def _layer_bytes(shape, dm, stride, padding) -> bytes:
    keras = B._keras()
    L = keras.layers
    inp = L.Input(shape)
    out = L.DepthwiseConv2D(3, strides=stride, padding=padding, depth_multiplier=dm, activation="relu",
                            bias_initializer="random_normal")(inp)
    model = keras.Model(inp, out)
    B._he_init(model)
    rep = np.random.default_rng(7).normal(0.0, 1.0, size=(32,) + shape).astype(np.float32)
    return H.quantize_quiet(model, rep)


def _measure(raw: bytes, name: str, work: Path) -> tuple[int, dict[str, float], bool]:
    m = parse_model(raw, name="m")
    macs = sum(r["macs"] for r in op_table(compile_model(m)))
    x = H.input_vectors(m.input_tensor().shape, 2, np.random.default_rng(3))
    ref = H.tflm_outputs(raw, x)
    res, ok = {}, True
    for label, flags in (("Os", ()), ("O2", ("-O2",))):
        counts: list = []
        outs = H.run_qemu_m4([m], [x], work / name.replace(" ", "_") / label, extra_flags=flags,
                             instructions=counts)
        ok = ok and np.array_equal(outs[0], ref)
        res[label] = counts[0]
    return macs, res, ok


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-models", action="store_true", help="only the single-layer models")
    ap.add_argument("--models", nargs="*", default=["digits", "ds_cnn_kws"], choices=list(B.MODELS),
                    help="whole models to run (bench_compiled.py's)")
    ap.add_argument("--no-layers", action="store_true", help="only the whole models")
    args = ap.parse_args(argv)
    if not H.have_qemu():
        print("needs arm-none-eabi-gcc and qemu-system-arm", file=sys.stderr)
        return 1
    work = Path(tempfile.mkdtemp(prefix="tg_bench_dw_"))
    jobs = [] if args.no_layers else [(n, lambda s=s: _layer_bytes(*s)) for n, s in LAYERS.items()]
    if not args.no_models:
        jobs += [(f"{m} (whole model)", lambda m=m: B._model_bytes(m)) for m in args.models]
    print(f"{'model':<32}{'MACs':>9} {'instr -Os':>11} {'/MAC':>6} {'instr -O2':>11} {'/MAC':>6}  bit-exact")
    for name, make in jobs:
        macs, res, ok = _measure(make(), name, work)
        print(f"{name:<32}{macs:>9} {res['Os']:>11.0f} {res['Os'] / macs:>6.2f} {res['O2']:>11.0f} "
              f"{res['O2'] / macs:>6.2f}  {'yes' if ok else 'NO'}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
