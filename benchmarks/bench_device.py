"""Benchmark the emulated Cortex-M4 board: per model and runtime, instructions per inference
(SysTick under QEMU -icount shift=0, x40), flash and RAM from the ELF, vectors per second over the
serial link, and whether the board was bit-exact with the tflite_micro reference.

This prints figures; it is not a test.  Usage:

    python benchmarks/bench_device.py [--models sine,digits,dscnn,resnet8,mobilenet,autoencoder]
                                      [--runtimes compiled[,tflm]] [--tflm-dir DIR] [--vectors N]

The TFLM runtime needs a TFLM source tree (--tflm-dir or TINYGEN_TFLM_DIR).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # support.models: shared with the tests

RECIPES = ("sine", "digits")


def elf_sizes(elf: Path) -> dict[str, int]:
    out = subprocess.run(["arm-none-eabi-size", "-A", str(elf)], capture_output=True, text=True, check=True).stdout
    sec = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].startswith(".") and parts[1].isdigit():
            sec[parts[0]] = int(parts[1])
    text = sec.get(".text", 0)
    rodata = sec.get(".rodata", 0)
    data = sec.get(".data", 0)
    bss = sec.get(".bss", 0)
    return {"text": text, "rodata": rodata, "data": data, "bss": bss, "flash": text + rodata + data,
            "ram": data + bss}


def user_model(name: str, workdir: Path) -> tuple[str, str]:
    """Save an MLPerf-Tiny-shaped Keras model (random weights) and synthetic data; return paths."""
    from support.models import build_model  # tests/support/models.py, shared with the tests

    model, shape = build_model(name)
    mpath, dpath = workdir / f"{name}.keras", workdir / f"{name}.npz"
    model.save(mpath)
    rng = np.random.default_rng(0)
    np.savez(dpath, x=rng.uniform(-1, 1, size=(40,) + shape).astype(np.float32))
    return str(mpath), str(dpath)


def bench_one(name: str, runtime: str, workdir: Path, tflm_dir: str | None, n_vectors: int) -> dict:
    import tinygen

    out = workdir / f"{name}-{runtime}"
    if name in RECIPES:
        model, kwargs = None, {"recipe": name}
    else:
        model, data = user_model(name, workdir)
        kwargs = {"data": data}
    proj = tinygen.build(model, board="qemu-m4", out=out, force=True, runtime=runtime, tflm_dir=tflm_dir,
                         vectors=8, **kwargs)
    elf = proj.build_firmware()
    sizes = elf_sizes(elf)
    report = tinygen.verify(proj, fresh_vectors=n_vectors, report_dir=workdir / f"rep-{name}", timeout=60, retries=2)
    m = report.metrics
    plan = proj.plan
    return {"model": name, "runtime": runtime, "macs": plan.analysis.macs,
            "instructions": m["instructions_per_inference"]["median"], **sizes,
            "arena": plan.compiled.peak_bytes if plan.compiled else plan.arena.recommended_bytes,
            "vectors_per_s": m["vectors_per_second"], "bit_exact": m["max_abs_diff_lsb"] == 0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="sine,digits,dscnn,resnet8,autoencoder")
    ap.add_argument("--runtimes", default="compiled" + (",tflm" if os.environ.get("TINYGEN_TFLM_DIR") else ""))
    ap.add_argument("--tflm-dir", default=os.environ.get("TINYGEN_TFLM_DIR"))
    ap.add_argument("--vectors", type=int, default=8)
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="tinygen-bench-") as tmp:
        for name in args.models.split(","):
            for rt in args.runtimes.split(","):
                try:
                    rows.append(bench_one(name, rt, Path(tmp), args.tflm_dir, args.vectors))
                except Exception as exc:  # report and go on: a benchmark, not a test
                    rows.append({"model": name, "runtime": rt, "error": str(exc)[:100]})
                print(rows[-1], file=sys.stderr, flush=True)
    hdr = ("model", "runtime", "MACs", "instr/inf", "instr/MAC", "flash B", "RAM B", "arena B", "vec/s", "exact")
    print("| " + " | ".join(hdr) + " |")
    print("|" + "---|" * len(hdr))
    for r in rows:
        if "error" in r:
            print(f"| {r['model']} | {r['runtime']} | error: {r['error']} |")
            continue
        print(f"| {r['model']} | {r['runtime']} | {r['macs']:,} | {r['instructions']:,.0f} | "
              f"{r['instructions'] / max(r['macs'], 1):.2f} | {r['flash']:,} | {r['ram']:,} | {r['arena']:,} | "
              f"{r['vectors_per_s']:.1f} | {'yes' if r['bit_exact'] else 'NO'} |")


if __name__ == "__main__":
    main()
