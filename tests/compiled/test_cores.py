"""Every emulated Cortex-M core beside qemu-m4/m7 -- qemu-m0 (microbit, nRF51: ARMv6-M), qemu-m3
(mps2-an385; neither has the DSP extension: the kernels' portable path), qemu-m33 (mps2-an505, Secure) and qemu-m55 (mps3-an547, Secure) -- runs
the whole loop bit-exact: `tinygen bench` builds the sine model for each (real PlatformIO, the
tinygen-mps2 platform, real QEMU, the protocol over a pty, outputs against tflite_micro).

Each core's project is then verified again on a fresh boot through the plain verify path: the
instruction count bench printed must be the one verify measures, and bench's "fits" column must
be what `tinygen inspect` (the budget check builds use) says for the real boards."""

from __future__ import annotations

import subprocess

import pytest

import support.compiled_harness as H
import tinygen
from conftest import assert_one_line_error, require_tool, run_cli

NEW_CORES = ("qemu-m0", "qemu-m3", "qemu-m33", "qemu-m55")
H.register("recipe:sine", "recipe_tflite", "sine")


@pytest.fixture(scope="module")
def sine_tflite(tmp_path_factory):
    H.require(H.have_python_deps(), "tensorflow / tflite_micro (Python packages)")
    path = tmp_path_factory.mktemp("cores") / "sine.tflite"
    path.write_bytes(H.result("recipe:sine")[0])
    return path


@pytest.fixture(scope="module")
def bench_rows(sine_tflite, tmp_path_factory):
    require_tool("arm-none-eabi-gcc")
    require_tool("qemu-system-arm")
    require_tool("riscv64-unknown-elf-gcc")
    require_tool("qemu-system-riscv32")
    # qemu-rv32 in the same run: bench puts a RISC-V MCU beside the Cortex-M cores (issue 13).
    rows = tinygen.bench(sine_tflite, boards=list(NEW_CORES) + ["qemu-rv32"], out=tmp_path_factory.mktemp("bench"), vectors=8)
    return {r.board: r for r in rows}


@pytest.mark.parametrize("core", NEW_CORES)
def test_core_runs_sine_bit_exact(bench_rows, core):
    row = bench_rows[core]
    assert row.runtime == "compiled" and row.bit_exact
    # a fresh boot, plain verify (no monitor): the same deterministic instruction count
    report = tinygen.verify(row.project, fresh_vectors=4)
    assert report.passed and report.metrics["max_abs_diff_lsb"] == 0
    assert report.metrics["instructions_per_inference"]["median"] == row.instructions > 0
    assert 0 < row.stack_bytes < 2048 and row.static_ram_bytes > row.arena_bytes
    asm = subprocess.run(["arm-none-eabi-objdump", "-d", str(row.project / ".pio" / "build" / core / "firmware.elf")],
                         capture_output=True, text=True, check=True).stdout
    dsp = any(f"\t{op}\t" in asm for op in ("smlad", "sxtb16", "smmulr"))
    assert dsp == (core not in ("qemu-m0", "qemu-m3")), "DSP code where the core has it, the portable path on M0/M3"


def test_bench_has_riscv_beside_cortex_m(bench_rows):
    row = bench_rows["qemu-rv32"]
    assert row.runtime == "compiled" and row.bit_exact
    report = tinygen.verify(row.project, fresh_vectors=4)
    assert report.passed and report.metrics["instructions_per_inference"]["median"] == row.instructions > 0
    assert 0 < row.stack_bytes < 2048 and row.flash_bytes > 0


def test_bench_fits_agree_with_the_budget_check(bench_rows, sine_tflite):
    fits = tinygen.inspect(sine_tflite, runtime="compiled").fits
    want = sorted(b for b, rts in fits.items() if not b.startswith("qemu") and rts.get("compiled", {}).get("fits"))
    assert want and all(sorted(r.fits) == want for r in bench_rows.values())


def test_bench_refuses_a_real_board(tmp_path):
    res = run_cli("bench", str(tmp_path / "m.tflite"), "--boards", "qemu-m3,esp32")
    assert_one_line_error(res, "esp32", "emulated", code=2)
