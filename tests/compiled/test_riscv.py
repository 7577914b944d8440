"""qemu-rv32, the emulated RISC-V board, end to end: the tinygen-riscv dev platform through the real
offline PlatformIO, riscv64-unknown-elf-gcc + picolibc, the riscv-virt HAL, real QEMU (virt, RV32IMC)
and its 16550 UART on a real pty, tinygen's protocol, outputs against the tflite_micro interpreter.

The models come from the session's recipe projects (sine, digits: trained once for the whole suite)
and from the compiled-runtime harness's worker pool (a random graph of supported layers), so this
module trains nothing itself.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

import support.compiled_harness as H
from conftest import REPO, run_cli
from tinygen.common.errors import ToolFailure
from tinygen.device.emulator import QemuBoard

pytestmark = pytest.mark.slow

BOARD = json.loads((REPO / "boards" / "qemu-rv32.json").read_text())
USER_CASE = {"kind": "graph", "seed": 20261202, "shape": [6, 6, 2], "id": "rv32-user", "rep": (0.0, 1.0)}
H.register("rv32:user", "convert_case", USER_CASE)


@pytest.fixture(scope="module", autouse=True)
def _tools():
    H.require(H.have_rv32(), "riscv64-unknown-elf-gcc + picolibc-riscv64-unknown-elf / qemu-system-riscv32")


def _run(model: Path, out: Path, *extra: str) -> dict:
    res = run_cli("run", "--board", "qemu-rv32", "--model", str(model), "--out", str(out), "--json", *extra,
                  timeout=900)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    result = json.loads(res.stdout)
    m = result["metrics"]
    assert result["board"] == "qemu-rv32" and result["runtime"] == "compiled"
    assert m["passed"] and m["max_abs_diff_lsb"] == 0 and m["exact_match_pct"] == 100.0
    assert m["emulated"] is True and m["instructions_per_inference"]["min"] > 0
    assert "cycles_per_inference" not in m and "latency_us" not in m  # no real-time figure from an emulator
    return result


def test_sine_model_bit_exact(sine_project, tmp_path):
    result = _run(sine_project / "model.tflite", tmp_path / "sine", "--vectors", "8")
    assert result["metrics"]["vectors"] == 32 + 8
    ini = (tmp_path / "sine" / "platformio.ini").read_text()
    assert "platform = tinygen-riscv" in ini and "-Werror" in ini  # HAL and runtime warning-free


def test_digits_model_bit_exact_with_accuracy(digits_project, tmp_path):
    with np.load(digits_project / "vectors" / "reference.npz") as z:
        x, y = z["float_inputs"][:, 0], z["labels"]
    np.savez(tmp_path / "digits.npz", x=x, y=y)
    result = _run(digits_project / "model.tflite", tmp_path / "digits", "--data", str(tmp_path / "digits.npz"),
                  "--vectors", "4")
    m = result["metrics"]
    assert m["top1_agreement_pct"] == 100.0
    assert m["board_accuracy_pct"] == m["reference_accuracy_pct"] >= 80.0


def test_user_graph_model_bit_exact(tmp_path):
    (tmp_path / "user.tflite").write_bytes(H.result("rv32:user"))
    _run(tmp_path / "user.tflite", tmp_path / "user", "--vectors", "8")


_LOOP_MAIN = r"""
#include <stdint.h>
#include "tg_hal.h"
static void put_u32(uint32_t v)
{
    uint8_t b[9];
    int i;
    for (i = 0; i < 8; i++) {
        b[i] = (uint8_t)"0123456789abcdef"[(v >> (28 - 4 * i)) & 15u];
    }
    b[8] = ' ';
    tg_hal_write(b, 9u);
}
/* n iterations of exactly two instructions (addi, bnez), n >= 1 */
static uint32_t loop_ticks(uint32_t n)
{
    uint32_t t0 = tg_hal_ticks(), t1;
    __asm__ volatile("1: addi %0, %0, -1\n bnez %0, 1b" : "+r"(n));
    t1 = tg_hal_ticks();
    return t1 - t0;
}
int main(void)
{
    static const uint32_t n[] = {1u, 1000u, 12345u, 1000000u};
    uint32_t i;
    tg_hal_init();
    put_u32(tg_hal_ticks_hz());
    for (i = 0; i < 4u; i++) {
        put_u32(loop_ticks(n[i]));
    }
    tg_hal_write((const uint8_t *)"|", 1u);
    *(volatile uint32_t *)0x00100000u = 0x5555u;
    for (;;) {
    }
}
"""


def test_ticks_are_retired_instructions_exactly_and_identical_across_boots(tmp_path):
    """minstret under -icount: a loop of n two-instruction iterations reads 2n more than one of 1."""
    hal = REPO / "firmware" / "hal"
    (tmp_path / "main.c").write_text(_LOOP_MAIN)
    srcs = ["main.c", str(hal / "riscv-virt" / "startup_riscv_virt.c"), str(hal / "riscv-virt" / "tg_hal_riscv_virt.c")]
    subprocess.run(["riscv64-unknown-elf-gcc", *H.RV32_CFLAGS, f"-I{hal}", "-c", *srcs], cwd=tmp_path, check=True)
    subprocess.run(["riscv64-unknown-elf-gcc", *H.RV32_LINK, "-T", str(hal / "riscv-virt" / "riscv_virt.ld"),
                    "main.o", "startup_riscv_virt.o", "tg_hal_riscv_virt.o", "-o", "loop.elf"], cwd=tmp_path, check=True)
    emu = BOARD["emulator"]
    runs = []
    for _ in range(2):
        p = subprocess.run([emu["binary"], "-M", emu["machine"], *emu["args"], "-display", "none", "-monitor", "none",
                            "-serial", "stdio", "-kernel", "loop.elf"], cwd=tmp_path, stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=60)
        assert p.returncode == 0 and "|" in p.stdout, p.stdout + p.stderr
        runs.append([int(w, 16) for w in p.stdout.split("|")[0].split()])
    assert runs[0] == runs[1]
    hz, *ticks = runs[0]
    assert hz == 1_000_000_000 and emu["instructions_per_tick"] == 1
    assert [t - ticks[0] for t in ticks[1:]] == [2 * (n - 1) for n in (1000, 12345, 1_000_000)]


def test_board_file_and_platform_manifest_agree():
    """The QEMU command tinygen runs (board file) and `pio run -t qemu` (platform manifest) are one."""
    manifest = json.loads((REPO / "firmware/platformio/tinygen-riscv/boards/qemu-rv32.json").read_text())["tinygen"]
    emu = BOARD["emulator"]
    assert (manifest["qemu"], manifest["machine"], manifest["qemu_args"], manifest["instructions_per_tick"]) == \
        (emu["binary"], emu["machine"], emu["args"], emu["instructions_per_tick"])
    assert (REPO / "firmware" / "hal" / BOARD["hal"]).is_dir()


def test_missing_riscv_qemu_is_named_with_its_package(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    elf = tmp_path / "f.elf"
    elf.write_bytes(b"\x7fELF")
    with pytest.raises(ToolFailure, match="qemu-system-riscv32 not found.*qemu-system-misc"):
        QemuBoard(elf, {"machine": "virt", "qemu": "qemu-system-riscv32"}).start()
    assert os.environ["PATH"] == str(tmp_path)
