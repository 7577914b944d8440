"""The feature front end's instructions per inference, per stage, beside the model's (not a test).

For the ``kws`` recipe (1 s of 16 kHz audio, 49 frames x 512-point FFT, 40 mel bands) on QEMU
mps2-an386 (Cortex-M4, -icount shift=0: 1 instruction per ns, SysTick resolution 40 instructions):

* the front end's C (firmware/frontend/tg_frontend.c with the recipe's generated tables) on a few
  of the recipe's synthetic clips, checked bit for bit against the Python twin;
* the same C built with -DTG_FE_PROFILE, whose stage marks split the instructions into the
  stages of tinygen/intake/frontend.py's PROFILE_STAGES; each mark's own cost is calibrated as
  (profiled total - plain total) / marks and taken off the stage it was charged to;
* the kws model (the recipe's DS-CNN, trained for one epoch: its instructions do not depend on the
  weights) in tinygen's compiled runtime, and the ratio front end / model (issue 27's goal: <= 15 %);
* optionally (--rv32) the front end's total on RV32IMC (QEMU virt) and (--m3) on Cortex-M3, both
  checked against the twin too.

Usage: python benchmarks/bench_frontend.py [--clips 3] [--no-model] [--rv32] [--m3] [--imu]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import support.compiled_harness as H  # noqa: E402
import support.frontend_harness as FH  # noqa: E402
from tinygen.intake import frontend as fe  # noqa: E402


def clips(spec: fe.FrontendSpec, count: int) -> np.ndarray:
    """The kws recipe's own synthetic clips (a keyword in noise), or imu gestures."""
    from tinygen.intake import recipes

    rng = np.random.default_rng(1)
    if spec.kind == "audio":
        return np.stack([recipes._kws_clip(rng, 1 + i % 4, spec.sample_rate, spec.window_samples)
                         for i in range(count)])
    return np.stack([recipes._imu_window(rng, 1 + i % 4, spec) for i in range(count)])


def model_instructions(name: str, work: Path) -> float:
    """The recipe's model (1 epoch) in the compiled runtime on qemu-m4: instructions per inference."""
    from tinygen.intake.recipes import train
    from tinygen.tflite.model import parse_model

    with H.quiet_native():
        tr = train(name, epochs=1)
    raw = H.quantize_quiet(tr.model, tr.x_rep)
    m = parse_model(raw, name="m")
    x = H.input_vectors(m.input_tensor().shape, 2, np.random.default_rng(3))
    instr: list = []
    H.run_qemu_m4([m], [x], work, instructions=instr)
    return float(instr[0])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=3)
    ap.add_argument("--no-model", action="store_true", help="skip training and running the model")
    ap.add_argument("--rv32", action="store_true", help="also the total on qemu-rv32")
    ap.add_argument("--m3", action="store_true", help="also the total on qemu-m3 (no DSP extension)")
    ap.add_argument("--imu", action="store_true", help="the imu recipe's front end instead of kws")
    args = ap.parse_args()
    name, spec = ("imu", fe.IMU_SPEC) if args.imu else ("kws", fe.KWS_SPEC)
    rq = fe.requant_params(0.05, -20)
    x = clips(spec, args.clips)
    want = fe.compute_int(x, spec)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        feat, _, total, sizes = FH.run_m4(spec, rq, x, work / "plain")
        np.testing.assert_array_equal(feat, want, err_msg="qemu-m4 differs from the twin")
        prof: dict = {}
        feat, _, ptotal, _ = FH.run_m4(spec, rq, x, work / "prof", profile=prof)
        np.testing.assert_array_equal(feat, want, err_msg="qemu-m4 (profiled) differs from the twin")
        marks = sum(c for _, c in prof.values())
        per_mark = (ptotal - total) / marks if marks else 0.0
        print(f"{name} front end on qemu-m4 ({args.clips} clips, bit-exact with the twin; "
              f"flash {sizes['text'] + sizes['rodata']} B):")
        print(f"  {'stage':<11} {'instructions':>13} {'share':>7}")
        for stage, (instr, count) in prof.items():
            net = instr - count * per_mark
            print(f"  {stage:<11} {net:>13,.0f} {net / total:>7.1%}")
        print(f"  {'total':<11} {total:>13,.0f}   (profile marks: {per_mark:.0f} instructions each, removed)")
        if args.m3:
            feat, _, m3, _ = FH.run_m4(spec, rq, x, work / "m3", cflags=H.M3_CFLAGS, machine="mps2-an385")
            np.testing.assert_array_equal(feat, want, err_msg="qemu-m3 differs from the twin")
            print(f"  qemu-m3 (portable C, bit-exact): {m3:,.0f}")
        if args.rv32:
            feat, _, rv = FH.run_rv32(spec, rq, x, work / "rv32")
            np.testing.assert_array_equal(feat, want, err_msg="qemu-rv32 differs from the twin")
            print(f"  qemu-rv32 (bit-exact): {rv:,.0f}")
        if not args.no_model:
            model = model_instructions(name, work / "model")
            print(f"{name} model (compiled runtime) on qemu-m4: {model:,.0f} instructions per inference")
            print(f"front end / model = {total / model:.1%} (issue 27's goal for kws: <= 15 %)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
