"""Benchmark tinygen's compiled runtime against TFLM (not a test; prints a table).

For each model -- the built-in recipes (trained) and MLPerf-Tiny-shaped models
with random weights and synthetic calibration data (DS-CNN keyword spotting
49x10x1, ResNet-8 32x32x3, MobileNetV1 alpha=0.25 96x96x3, the FC autoencoder
640-128-128-128-8-128-128-128-640) -- it reports:

* our static arena (tinygen.codegen.compiled.plan_memory) vs the smallest arena the
  tflite_micro interpreter needs (bisection, in child processes);
* our Cortex-M4 code + constant data (.text + .rodata of the kernel objects
  and tg_model.o from arm-none-eabi-gcc -Os) vs the .tflite flatbuffer size;
* host bit-exactness: emitted C (ASan/UBSan build) vs the interpreter on a few
  inputs (random + extremes).

* Cortex-M4 guest instructions per inference on QEMU (mps2-an386, -icount),
  with the DSP inner loops and with the portable C loops (outputs checked too).

Usage: python benchmarks/bench_compiled.py [--inputs N] [--only NAME ...] [--no-qemu]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import support.compiled_harness as H  # noqa: E402  (test helpers: build, reference, sizes)

from tinygen.codegen.compiled import compile_model, op_table  # noqa: E402
from tinygen.tflite.model import parse_model  # noqa: E402


def _keras():
    import keras

    keras.utils.set_random_seed(1234)
    return keras


def ds_cnn():
    keras = _keras()
    L = keras.layers
    inp = L.Input((49, 10, 1))
    x = L.Conv2D(64, (10, 4), strides=(2, 2), padding="same", use_bias=False)(inp)
    x = L.ReLU()(L.BatchNormalization()(x))
    for _ in range(4):
        x = L.DepthwiseConv2D(3, padding="same", use_bias=False)(x)
        x = L.ReLU()(L.BatchNormalization()(x))
        x = L.Conv2D(64, 1, use_bias=False)(x)
        x = L.ReLU()(L.BatchNormalization()(x))
    x = L.AveragePooling2D(pool_size=(x.shape[1], x.shape[2]))(x)
    x = L.Flatten()(x)
    x = L.Softmax()(L.Dense(12)(x))
    return keras.Model(inp, x, name="ds_cnn"), (49, 10, 1)


def resnet8():
    keras = _keras()
    L = keras.layers

    def block(x, filters, stride):
        y = L.Conv2D(filters, 3, strides=stride, padding="same")(x)
        y = L.ReLU()(L.BatchNormalization()(y))
        y = L.BatchNormalization()(L.Conv2D(filters, 3, padding="same")(y))
        if stride != 1 or x.shape[-1] != filters:
            x = L.Conv2D(filters, 1, strides=stride)(x)
        return L.ReLU()(L.Add()([x, y]))

    inp = L.Input((32, 32, 3))
    x = L.ReLU()(L.BatchNormalization()(L.Conv2D(16, 3, padding="same")(inp)))
    x = block(x, 16, 1)
    x = block(x, 32, 2)
    x = block(x, 64, 2)
    x = L.AveragePooling2D(pool_size=x.shape[1:3])(x)
    x = L.Softmax()(L.Dense(10)(L.Flatten()(x)))
    return keras.Model(inp, x, name="resnet8"), (32, 32, 3)


def mobilenet_v1_025():
    keras = _keras()
    m = keras.applications.MobileNet(alpha=0.25, weights=None, input_shape=(96, 96, 3), classes=2)
    return m, (96, 96, 3)


def fc_autoencoder():
    keras = _keras()
    L = keras.layers
    inp = L.Input((640,))
    x = inp
    for units in (128, 128, 128, 8, 128, 128, 128):
        x = L.ReLU()(L.BatchNormalization()(L.Dense(units)(x)))
    x = L.Dense(640)(x)
    return keras.Model(inp, x, name="fc_autoencoder"), (640,)


def recipe(name):
    def build():
        from tinygen.intake.recipes import train

        with H.quiet_native():
            tr = train(name)
        return tr.model, tr.x_rep

    return build


MODELS = {
    "sine": recipe("sine"),
    "digits": recipe("digits"),
    "ds_cnn_kws": ds_cnn,
    "resnet8": resnet8,
    "mobilenet_v1_0.25": mobilenet_v1_025,
    "fc_autoencoder": fc_autoencoder,
}


def _he_init(model) -> None:
    """Random weights that keep activations alive through depth: each kernel drawn
    from N(0, 2 / fan_in) (Keras' default Glorot init lets an untrained MobileNet's
    activations vanish by ~1e-15, so every later quantization scale collapses)."""
    rng = np.random.default_rng(11)
    for layer in model.layers:
        weights = layer.get_weights()
        if not weights or weights[0].ndim < 2:
            continue
        k = weights[0]
        if type(layer).__name__ == "DepthwiseConv2D":
            fan_in = k.shape[0] * k.shape[1]
        else:
            fan_in = int(np.prod(k.shape[:-1]))
        weights[0] = rng.normal(0.0, np.sqrt(2.0 / fan_in), size=k.shape).astype(k.dtype)
        layer.set_weights(weights)


def _model_bytes(name: str) -> bytes:
    out = MODELS[name]()
    model, second = out
    if isinstance(second, tuple):  # random weights, synthetic calibration
        _he_init(model)
        rng = np.random.default_rng(7)
        rep = rng.normal(0.0, 1.0, size=(32,) + second).astype(np.float32)
    else:
        rep = second
    return H.quantize_quiet(model, rep, per_channel_dense=False)


def _si(n: float) -> str:
    return f"{n / 1e6:.2f}M" if n >= 1e5 else f"{n / 1e3:.1f}K"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--inputs", type=int, default=6, help="random host inputs per model (plus 4 extremes)")
    ap.add_argument("--only", nargs="*", help="model names", choices=list(MODELS))
    ap.add_argument("--no-qemu", action="store_true", help="skip the Cortex-M4 instruction counts on QEMU")
    args = ap.parse_args(argv)
    names = args.only or list(MODELS)
    work = Path(tempfile.mkdtemp(prefix="tg_bench_"))
    rows = []
    for name in names:
        t0 = time.time()
        raw = _model_bytes(name)
        m = parse_model(raw, name=name)
        compiled = compile_model(m)
        plan = compiled.memory
        tflm_arena = H.tflm_min_arena(raw)
        sizes = H.m4_compile_sizes(m, work / name / "m4")
        x = H.input_vectors(m.input_tensor().shape, args.inputs, np.random.default_rng(3))
        ref = H.tflm_outputs(raw, x, arena_size=max(tflm_arena, 1 << 16) * 2)
        build = H.build_host([m], work / name / "host")
        got = build.run(0, x)
        same = int(sum(np.array_equal(g, r) for g, r in zip(got, ref)))
        instr = {}
        if H.have_qemu() and not args.no_qemu:
            for label, flags in (("dsp", ()), ("c", ("-DTG_NO_DSP",))):
                counts: list = []
                outs = H.run_qemu_m4([m], [x[:2]], work / name / f"qemu_{label}", extra_flags=flags,
                                     instructions=counts)
                ok = np.array_equal(outs[0], ref[:2])
                instr[label] = _si(counts[0]) + ("" if ok else "(!)")
        rows.append({
            "model": name, "ops": len(m.operators), "tflite": len(raw), "arena": plan.peak_bytes,
            "io": m.input_tensor().nbytes + m.output_tensor().nbytes,
            "tflm_arena": tflm_arena, "text": sizes["text"], "rodata": sizes["rodata"],
            "data": sizes["data"], "bss": sizes["bss"], "exact": f"{same}/{len(x)}",
            "macs": sum(r["macs"] for r in op_table(compiled)), "instr_dsp": instr.get("dsp", "-"),
            "instr_c": instr.get("c", "-"),
            "secs": time.time() - t0,
        })
        print(f"# {name}: done in {rows[-1]['secs']:.1f} s", file=sys.stderr, flush=True)

    head = (f"{'model':<19}{'ops':>4} {'arena':>8} {'+in/out':>8} {'TFLM arena':>11} {'ratio':>6}  "
            f"{'M4 .text':>9} {'.rodata':>9} {'text+ro':>9} {'.tflite':>9} {'ratio':>6}  "
            f"{'.data':>6} {'.bss':>8}  {'bit-exact':>9}  {'MACs':>8} {'M4 instr':>9} {'(no DSP)':>9}")
    print(head)
    print("-" * len(head))
    for r in rows:
        tr = r["text"] + r["rodata"]
        print(f"{r['model']:<19}{r['ops']:>4} {r['arena']:>8} {r['arena'] + r['io']:>8} {r['tflm_arena']:>11} "
              f"{r['arena'] / max(r['tflm_arena'], 1):>6.2f}  {r['text']:>9} {r['rodata']:>9} {tr:>9} "
              f"{r['tflite']:>9} {tr / r['tflite']:>6.2f}  {r['data']:>6} {r['bss']:>8}  {r['exact']:>9}  "
              f"{_si(r['macs']):>8} {r['instr_dsp']:>9} {r['instr_c']:>9}")
    print("\narena: bytes of our static arena (model input/output stay in the caller's buffers);"
          "\n+in/out: arena plus the input and output buffers, comparable to TFLM's arena which holds them;"
          "\nTFLM arena: smallest arena_size the tflite_micro interpreter allocates+invokes with (64-bit host);"
          "\nM4 sizes: arm-none-eabi-gcc -mcpu=cortex-m4 -Os, kernel objects + tg_model.o, bytes;"
          "\nbit-exact: host outputs identical to the interpreter's (inputs incl. all -128/127/alternating);"
          "\nM4 instr: guest instructions per inference on QEMU mps2-an386 (-icount shift=0, SysTick,"
          "\n  +-40), DSP path / portable C path; '(!)' would mark an output differing from the interpreter.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
