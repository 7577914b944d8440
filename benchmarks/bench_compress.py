"""Benchmark tinygen's compression on the digits recipe (not a test; prints the targets and whether
each is met).

1. ``--prune 0.5 --qat`` on digits: MACs, parameters, weight flash (the model's constant bytes, what
   the compiled runtime stores), firmware flash and RAM on qemu-m4 (the plan's budget), float and
   int8 accuracy (tflite_micro, 360 held-out digits).  Target: >= 2x fewer MACs and weight flash at
   <= 1 pp int8 accuracy drop.
2. ``--qat`` alone: float, PTQ-int8 and QAT-int8 accuracy side by side.  Target: QAT int8 within
   0.3 pp of float.
3. ``--fit`` on a hidden-size-inflated digits model (Conv2D 32, DepthwiseConv2D x2, Conv2D 1x1 256,
   Dense 720: about 3x the Nano 33 BLE's flash with the compiled runtime), fitted to the nano33ble
   budget (pruning ratios and distilled students), built for qemu-m4 and verified there bit-exactly.
4. The same with a latency bound too (``--fit-latency-ms``, converted at the nano33ble's 64 MHz to
   instructions measured on qemu-m4 under QEMU -icount): the table's instructions column, the
   two-panel chart (accuracy vs flash and vs instructions), and verify's own instruction count.

Usage: python benchmarks/bench_compress.py [--only prune qat fit fitlat] [--out DIR] [--latency-ms MS]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import tinygen  # noqa: E402
from tinygen import CompressOptions  # noqa: E402


def rows_of(project) -> dict:
    return {r["label"]: r for r in project.compression["candidates"]}


def show(project) -> None:
    print(f"{'candidate':<28} {'MACs':>9} {'params':>9} {'weights B':>10} {'flash B':>10} {'RAM B':>8} "
          f"{'instr.':>10} {'float':>7} {'int8':>7} fits")
    for r in project.compression["candidates"]:
        if "skipped" in r:
            print(f"{r['label']:<28} skipped ({r['skipped']})")
            continue
        fl, q = r.get("float_metric"), r.get("int8_metric")
        ins = "-" if r.get("instructions") is None else f"{r['instructions']:,}" + ("*" if r.get(
            "instructions_same_shape") else "")
        print(f"{r['label'] + ('' if r.get('trained', True) else ' (untuned)'):<28} {r['macs']:>9,} {r['params']:>9,} "
              f"{r['weights_bytes']:>10,} {r['flash_bytes']:>10,} {r['ram_bytes']:>8,} {ins:>10} "
              f"{'-' if fl is None else round(100 * fl, 2):>7} {'-' if q is None else round(100 * q, 2):>7} "
              f"{r.get('fits', '-')}")


def bench_prune(out: Path) -> None:
    t = time.monotonic()
    p = tinygen.build(recipe="digits", board="qemu-m4", out=out / "prune", force=True,
                      compress=CompressOptions(prune=0.5, qat=True))
    show(p)
    rows = rows_of(p)
    o, c = rows["original"], rows["prune 0.5 + QAT"]
    drop = 100 * (o["int8_metric"] - c["int8_metric"])
    print(f"prune 0.5 + QAT: MACs {o['macs'] / c['macs']:.2f}x fewer, weight flash "
          f"{o['weights_bytes'] / c['weights_bytes']:.2f}x smaller, int8 accuracy drop {drop:+.2f} pp "
          f"(target >= 2x, >= 2x, <= 1 pp: "
          f"{'MET' if o['macs'] >= 2 * c['macs'] and o['weights_bytes'] >= 2 * c['weights_bytes'] and drop <= 1 else 'NOT met'}) "
          f"[{time.monotonic() - t:.0f} s]\n")


def bench_qat(out: Path) -> None:
    t = time.monotonic()
    p = tinygen.build(recipe="digits", board="qemu-m4", out=out / "qat", force=True,
                      compress=CompressOptions(qat=True))
    show(p)
    rows = rows_of(p)
    o, q = rows["original"], rows["QAT"]
    # QAT also trains further, so its int8 model is compared with its own float weights as well
    gap = 100 * (q["float_metric"] - q["int8_metric"])
    print(f"original float {100 * o['float_metric']:.2f} %, PTQ int8 {100 * o['int8_metric']:.2f} %; after QAT "
          f"float {100 * q['float_metric']:.2f} %, int8 {100 * q['int8_metric']:.2f} %: QAT int8 {gap:+.2f} pp below "
          f"its float (target <= 0.3: {'MET' if gap <= 0.3 else 'NOT met'}), "
          f"{100 * (o['float_metric'] - q['int8_metric']):+.2f} pp below the original float "
          f"[{time.monotonic() - t:.0f} s]\n")


def inflated_digits(root: Path) -> tuple[Path, Path]:
    import keras
    from sklearn.datasets import load_digits

    from tinygen.intake.recipes import seed_everything

    seed_everything(1234)
    d = load_digits()
    x = (d.images.astype(np.float32) / 16.0)[..., None]
    y = d.target.astype(np.int64)
    order = np.random.default_rng(1234).permutation(len(x))
    x, y = x[order], y[order]
    L = keras.layers
    model = keras.Sequential([
        keras.Input((8, 8, 1), name="image"), L.Conv2D(32, 3, padding="same", activation="relu"),
        L.DepthwiseConv2D(3, padding="same", depth_multiplier=2, activation="relu"), L.MaxPooling2D(2),
        L.Conv2D(256, 1, activation="relu"), L.Flatten(), L.Dense(720, activation="relu"), L.Dense(10),
        L.Softmax()], name="digits_inflated")
    model.compile(optimizer=keras.optimizers.Adam(0.002), loss="sparse_categorical_crossentropy")
    model.fit(x[:-360], y[:-360], epochs=8, batch_size=32, verbose=0)
    model.save(root / "digits_inflated.keras")
    # the last 20 % of --data is held out: the same 360 digits the recipe holds out
    np.savez(root / "digits.npz", x=x, y=y)
    return root / "digits_inflated.keras", root / "digits.npz"


def bench_fit(out: Path, latency_ms: float | None = None) -> None:
    t = time.monotonic()
    model, data = inflated_digits(out)
    name = "fit" if latency_ms is None else "fitlat"
    p = tinygen.build(model, board="qemu-m4", data=data, out=out / name, force=True,
                      compress=CompressOptions(fit=True, fit_board="nano33ble", epochs={"prune": 8, "distill": 20},
                                               fit_latency_ms=latency_ms))
    show(p)
    o = rows_of(p)["original"]
    bound = p.compression.get("max_instructions")
    print(f"original: {o['flash_bytes'] / o['flash_budget']:.2f}x the nano33ble flash budget; "
          + (f"latency bound {latency_ms} ms at 64 MHz = {bound:,} instructions on qemu-m4; " if bound else "")
          + f"chosen: {p.compression['chosen']}; chart {p.compression.get('chart')}"
          + ("  (*: counted on another model of the same shape)" if bound else ""))
    p.build_firmware()
    report = p.verify(fresh_vectors=8)
    ins = report.metrics.get("instructions_per_inference", {}).get("median")
    print(f"verify on qemu-m4: passed={report.passed}, max |diff| {report.metrics['max_abs_diff_lsb']} LSB, "
          f"{ins:,.0f} instructions per inference [{time.monotonic() - t:.0f} s]\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="*", choices=["prune", "qat", "fit", "fitlat"],
                    default=["prune", "qat", "fit", "fitlat"])
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--latency-ms", type=float, default=10.0, help="fitlat's bound at the nano33ble's clock")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-compress-") as tmp:
        out = a.out or Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        for name in a.only:
            print(f"== {name}")
            if name == "fitlat":
                bench_fit(out, a.latency_ms)
            else:
                {"prune": bench_prune, "qat": bench_qat, "fit": bench_fit}[name](out)


if __name__ == "__main__":
    main()
