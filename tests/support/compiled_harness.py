"""Helpers for the compiled-runtime tests: quantize quietly, run the TFLM
reference, build emitted C on the host (ASan/UBSan) or for Cortex-M4 (QEMU),
and compare.

The reference is always the tflite_micro interpreter; nothing here computes
an expected output any other way.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tinygen.codegen.compiled import kernel_sources
from tinygen.intake.sources import quiet_native  # fds 1/2 silenced: TF's converter prints from C++
from tinygen.tflite.model import TfliteModel, parse_model
from tinygen.verification import host_check

HOST_CFLAGS = list(host_check.HOST_CFLAGS)
M4_CFLAGS = ["-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16",
             "-Os", "-Wall", "-Wextra", "-Werror"]

_JOBS = max(2, os.cpu_count() or 2)


def quantize_quiet(keras_model, rep: np.ndarray, per_channel_dense: bool = False) -> bytes:
    from tinygen.intake.quantize import quantize

    with quiet_native():
        return quantize(keras_model, rep, per_channel_dense=per_channel_dense)


def tflm_outputs(model_bytes: bytes, inputs: np.ndarray, arena_size: int | None = None) -> np.ndarray:
    """Reference outputs from the tflite_micro interpreter, one row per input."""
    from tflite_micro.python.tflite_micro import runtime

    arena = arena_size or max(1 << 20, 16 * len(model_bytes))
    it = runtime.Interpreter.from_bytes(model_bytes, arena_size=arena)
    outs = []
    for x in inputs:
        it.set_input(x, 0)
        it.invoke()
        outs.append(np.array(it.get_output(0), dtype=np.int8, copy=True))
    return np.stack(outs)


input_vectors = host_check.input_vectors


# ---- host build (the product's host check: tinygen/verification/host_check.py) --------------

def _run(cmd, cwd=None):
    p = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))} failed:\n{p.stdout}\n{p.stderr}")
    return p


@dataclass
class HostBuild:
    program: host_check.HostProgram

    def run(self, i: int, inputs: np.ndarray) -> np.ndarray:
        try:
            return self.program.run(i, inputs)
        except host_check.HostRunFailed as exc:
            raise AssertionError(f"{exc}:\n{exc.stderr[-4000:]}") from None


def kernel_c_files() -> list[str]:
    """The kernel .c files a build compiles (all of them, as a generated project does)."""
    return [name for name in kernel_sources() if name.endswith(".c")]


def write_sources(models: list[TfliteModel], workdir: Path) -> list[str]:
    return host_check.write_sources(models, workdir)


def build_host(models: list[TfliteModel], workdir: Path, extra_flags: tuple[str, ...] = ()) -> HostBuild:
    """Emit every model with its own prefix and link them all into one ASan/UBSan program (gcc)."""
    try:
        return HostBuild(host_check.build_program(models, workdir, extra_flags=extra_flags,
                                                  compiler=shutil.which("gcc") or "gcc", jobs=_JOBS))
    except host_check.HostBuildFailed as exc:
        raise AssertionError(f"{exc}\n{exc.output}") from None


def build_cases(cases: list[dict], model_bytes, seed: int, n_inputs: int, workdir: Path) -> dict:
    """The op-test scaffolding every op-test module shares: each case's int8 model
    (``model_bytes(case)``), ``n_inputs`` seeded random/extreme input vectors, tflite_micro's outputs
    for them (the reference), and one ASan/UBSan host program holding every model."""
    require(have_gcc(), "gcc")
    models, refs, inputs = [], [], []
    rng = np.random.default_rng(seed)
    for c in cases:
        m = parse_model(model_bytes(c), name=c["id"])
        x = input_vectors(m.input_tensor().shape, n_inputs, rng)
        models.append(m)
        inputs.append(x)
        refs.append(tflm_outputs(m.raw, x))
    return {"models": models, "refs": refs, "inputs": inputs, "build": build_host(models, workdir)}


def assert_case_bit_exact(built: dict, cases: list[dict], i: int) -> None:
    """Case ``i`` of a :func:`build_cases` result: the host program's outputs are tflite_micro's."""
    m = built["models"][i]
    got = built["build"].run(i, built["inputs"][i])
    assert_identical(got, built["refs"][i], f"{cases[i]['id']} {m.op_names} {cases[i]}")


def split_outputs(raw: bytes, models: list[TfliteModel], inputs: list[np.ndarray], who: str) -> list[np.ndarray]:
    """A harness program's printed outputs, model after model, each (len(x), *output shape) int8."""
    data = np.frombuffer(raw, dtype=np.int8)
    outs, pos = [], 0
    for m, x in zip(models, inputs):
        n = len(x) * m.output_tensor().nbytes
        if pos + n > len(data):
            raise AssertionError(f"{who}: {len(data)} output bytes, expected more")
        outs.append(data[pos:pos + n].reshape((len(x),) + tuple(m.output_tensor().shape)))
        pos += n
    return outs


def run_fixedpoint_program(workdir: Path, source: str, stdin: str) -> subprocess.CompletedProcess:
    """``source`` (a C reference reading stdin) built on the host against the runtime's fixed-point
    files with the host check's flags, then run on ``stdin``."""
    sources = kernel_sources()
    for name in ("tg_fixedpoint.h", "tg_dsp.h", "tg_kernels.h", "tg_fixedpoint.c"):
        (workdir / name).write_text(sources[name])
    (workdir / "ref.c").write_text(source)
    cc = host_check.find_compiler()
    subprocess.run([cc, *host_check.HOST_CFLAGS, "ref.c", "tg_fixedpoint.c", "-o", "ref"], cwd=workdir, check=True)
    return subprocess.run([str(workdir / "ref")], input=stdin, capture_output=True, text=True, timeout=120)


def assert_identical(got: np.ndarray, want: np.ndarray, label: str = "") -> None:
    if got.shape != want.shape:
        raise AssertionError(f"{label}: shape {got.shape} != {want.shape}")
    diff = got.astype(np.int32) - want.astype(np.int32)
    bad = np.nonzero(diff.reshape(len(diff), -1).any(axis=1))[0]
    if len(bad):
        i = bad[0]
        raise AssertionError(
            f"{label}: {len(bad)}/{len(got)} input vectors differ (max |diff| {np.abs(diff).max()} LSB); "
            f"first at vector {i}: want {want[i].ravel()[:16]} got {got[i].ravel()[:16]}")


# ---- Cortex-M4 cross build ------------------------------------------------------

def require(available: bool, what: str) -> None:
    """conftest.require: skip, or fail under TINYGEN_REQUIRE_TOOLS."""
    from conftest import require as _require

    _require(available, what)


def have_python_deps() -> bool:
    """TensorFlow (conversion) and tflite_micro (the reference)."""
    import importlib.util

    return importlib.util.find_spec("tensorflow") is not None and importlib.util.find_spec("tflite_micro") is not None


def have_gcc() -> bool:
    return shutil.which("gcc") is not None


def have_arm_gcc() -> bool:
    return shutil.which("arm-none-eabi-gcc") is not None


def m4_compile_sizes(model: TfliteModel, workdir: Path, extra_flags: tuple[str, ...] = ()) -> dict[str, int]:
    """Compile the kernel .c files and the emitted tg_model.c for Cortex-M4 (-c, no link);
    return the summed section sizes (text, rodata, data, bss) from arm-none-eabi-size -A."""
    workdir.mkdir(parents=True, exist_ok=True)
    for name, text in host_check.emitted_sources(model, "tg").items():
        (workdir / name).write_text(text)
    totals = {"text": 0, "rodata": 0, "data": 0, "bss": 0}
    for src in kernel_c_files() + ["tg_model.c"]:
        obj = src[:-2] + ".o"
        _run(["arm-none-eabi-gcc", "-std=c99", *M4_CFLAGS, *extra_flags, "-c", src, "-o", obj], cwd=workdir)
        out = _run(["arm-none-eabi-size", "-A", obj], cwd=workdir).stdout
        for line in out.splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[1].isdigit():
                name = parts[0]
                for key in totals:
                    if name == f".{key}" or name.startswith(f".{key}."):
                        totals[key] += int(parts[1])
    return totals


# Minimal bare-metal harness for QEMU's mps2-an386 (Cortex-M4F): vector table,
# reset code, semihosting for output and exit. Inputs are compiled in.
_M4_LD = r"""
MEMORY { FLASH (rx) : ORIGIN = 0x00000000, LENGTH = 4M
         RAM (rwx)  : ORIGIN = 0x20000000, LENGTH = 4M }
ENTRY(tgq_reset)
_estack = ORIGIN(RAM) + LENGTH(RAM);
SECTIONS {
  .vectors : { KEEP(*(.vectors)) } > FLASH
  .text : { *(.text .text.*) *(.rodata .rodata.*) . = ALIGN(4); } > FLASH
  .ARM.exidx : { *(.ARM.exidx*) } > FLASH
  _sidata = LOADADDR(.data);
  .data : { . = ALIGN(4); _sdata = .; *(.data .data.*) . = ALIGN(4); _edata = .; } > RAM AT > FLASH
  .bss (NOLOAD) : { . = ALIGN(4); _sbss = .; *(.bss .bss.* COMMON) . = ALIGN(4); _ebss = .; } > RAM
}
"""

_M4_MAIN = r"""
#include <stdint.h>
#include <string.h>
%(includes)s

extern uint32_t _estack, _sidata, _sdata, _edata, _sbss, _ebss;
void tgq_reset(void);
static void tgq_fault(void) { for (;;) { } }

__attribute__((section(".vectors"), used))
static const void *const tgq_vectors[16] = {
    &_estack, (const void *)tgq_reset, (const void *)tgq_fault, (const void *)tgq_fault,
    (const void *)tgq_fault, (const void *)tgq_fault, (const void *)tgq_fault, 0, 0, 0, 0,
    (const void *)tgq_fault, (const void *)tgq_fault, 0, (const void *)tgq_fault, (const void *)tgq_fault,
};

static int32_t tgq_semihost(int32_t op, const void *arg)
{
    register int32_t r0 __asm__("r0") = op;
    register const void *r1 __asm__("r1") = arg;
    __asm__ volatile("bkpt 0xAB" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}

static char tgq_line[256];
static int tgq_len;
static void tgq_flush(void) { tgq_line[tgq_len] = 0; tgq_semihost(0x04, tgq_line); tgq_len = 0; }
static void tgq_hex(const int8_t *p, uint32_t n)
{
    static const char digits[] = "0123456789abcdef";
    uint32_t i;
    for (i = 0; i < n; i++) {
        if (tgq_len > 240) tgq_flush();
        tgq_line[tgq_len++] = digits[((uint8_t)p[i]) >> 4];
        tgq_line[tgq_len++] = digits[((uint8_t)p[i]) & 15];
    }
}

%(data)s

#define TGQ_SYST_CSR (*(volatile uint32_t *)0xE000E010u)
#define TGQ_SYST_RVR (*(volatile uint32_t *)0xE000E014u)
#define TGQ_SYST_CVR (*(volatile uint32_t *)0xE000E018u)
static uint32_t tgq_ticks[%(n_models)d];
static uint32_t tgq_t0;
static void tgq_start(void) { tgq_t0 = TGQ_SYST_CVR; }
static void tgq_stop(int k) { tgq_ticks[k] += (tgq_t0 - TGQ_SYST_CVR) & 0x00FFFFFFu; }

int main(void)
{
    static int8_t out[%(max_out)d];
    uint32_t i;
    TGQ_SYST_RVR = 0x00FFFFFFu;
    TGQ_SYST_CVR = 0u;
    TGQ_SYST_CSR = 5u; /* enable, processor clock, no interrupt */
    tgq_line[tgq_len++] = '<';
%(runs)s
    tgq_line[tgq_len++] = '>';
    for (i = 0; i < %(n_models)du; i++) {
        tgq_line[tgq_len++] = ' ';
        tgq_hex((const int8_t *)&tgq_ticks[i], 4u);
    }
    tgq_line[tgq_len++] = '|';
    tgq_flush();
    return 0;
}

void tgq_reset(void)
{
    uint32_t *src = &_sidata, *dst = &_sdata;
    while (dst < &_edata) *dst++ = *src++;
    for (dst = &_sbss; dst < &_ebss;) *dst++ = 0;
#if defined(__ARM_FP)
    *(volatile uint32_t *)0xE000ED88u |= (0xFu << 20); /* CPACR: enable the FPU */
    __asm__ volatile("dsb\n isb" ::: "memory");
#endif
    main();
    {
        static const uint32_t args[2] = {0x20026u, 0u}; /* ADP_Stopped_ApplicationExit */
        tgq_semihost(0x18, args);
    }
    for (;;) { }
}
"""


def have_qemu() -> bool:
    return have_arm_gcc() and shutil.which("qemu-system-arm") is not None


# The Cortex-M3 (QEMU mps2-an385, same memory map): no FPU and no DSP extension, so the kernels
# compile to their portable C path there.
M3_CFLAGS = ["-mcpu=cortex-m3", "-mthumb", "-mfloat-abi=soft", "-Os", "-Wall", "-Wextra", "-Werror"]

# The Cortex-M55 (QEMU mps3-an547, the qemu-m55 board's machine and flags: FPU and Helium/MVE), run
# Secure at the Secure aliases as firmware/hal/mps2/mps3_an547.ld: vectors in the ITCM (the initial
# SVTOR), code in the FPGA SRAM, data in the ISRAM.
M55_CFLAGS = ["-mcpu=cortex-m55", "-mthumb", "-mfloat-abi=hard", "-mfpu=auto", "-Os", "-Wall", "-Wextra", "-Werror"]
M55_LD = (_M4_LD.replace("MEMORY { FLASH (rx) : ORIGIN = 0x00000000, LENGTH = 4M",
                         "MEMORY { ITCM (rx) : ORIGIN = 0x10000000, LENGTH = 512K\n"
                         "         FLASH (rx) : ORIGIN = 0x11000000, LENGTH = 2M")
          .replace("RAM (rwx)  : ORIGIN = 0x20000000, LENGTH = 4M", "RAM (rwx)  : ORIGIN = 0x31000000, LENGTH = 4M")
          .replace("KEEP(*(.vectors)) } > FLASH", "KEEP(*(.vectors)) } > ITCM"))


def run_qemu_m4(models: list[TfliteModel], inputs: list[np.ndarray], workdir: Path,
                extra_flags: tuple[str, ...] = (), timeout: float = 300.0, instructions: list | None = None,
                cflags: list[str] | None = None, machine: str = "mps2-an386", ld: str = _M4_LD) -> list[np.ndarray]:
    """Build all models + the kernels for Cortex-M4 (DSP path unless TG_NO_DSP), run
    them on QEMU mps2-an386 over the given inputs, return the outputs per model.

    If ``instructions`` is a list, it receives each model's mean guest instructions per
    inference (QEMU -icount shift=0: 1 ns per instruction; SysTick at 25 MHz = 40
    instructions per tick, so the figure has a resolution of 40 instructions)."""
    workdir.mkdir(parents=True, exist_ok=True)
    prefixes = write_sources(models, workdir)
    data, runs = [], []
    max_out = 1
    for k, (m, p, x) in enumerate(zip(models, prefixes, inputs)):
        x = np.ascontiguousarray(x, dtype=np.int8).reshape(len(x), -1)
        vals = ", ".join(str(int(v)) for v in x.reshape(-1))
        data.append(f"static const int8_t in{k}[{x.size}] = {{{vals}}};")
        out_b = m.output_tensor().nbytes
        max_out = max(max_out, out_b)
        runs.append(f"    for (i = 0; i < {len(x)}u; i++) {{ tgq_start(); {p}_invoke(in{k} + i * {x.shape[1]}u, out); "
                    f"tgq_stop({k}); tgq_hex(out, {out_b}u); }}")
    includes = "\n".join(f'#include "{p}_model.h"' for p in prefixes)
    (workdir / "qemu_main.c").write_text(_M4_MAIN % {
        "includes": includes, "data": "\n".join(data), "runs": "\n".join(runs), "max_out": max_out,
        "n_models": len(models)})
    (workdir / "qemu.ld").write_text(ld)
    sources = kernel_c_files() + ["qemu_main.c"] + [f"{p}_model.c" for p in prefixes]
    _run(["arm-none-eabi-gcc", "-std=c99", *(cflags or M4_CFLAGS), *extra_flags, "-nostartfiles", "-T", "qemu.ld",
          *sources, "-o", "qemu.elf", "--specs=nosys.specs"], cwd=workdir)
    p = subprocess.run(["qemu-system-arm", "-M", machine, "-display", "none", "-monitor", "none",
                        "-serial", "none", "-semihosting-config", "enable=on,target=native",
                        "-icount", "shift=0", "-kernel", "qemu.elf"], cwd=workdir, capture_output=True,
                       timeout=timeout)
    text = p.stdout.decode("ascii", "replace").strip() + p.stderr.decode("ascii", "replace").strip()
    found = re.search(r"<([0-9a-f\s]*)>", text)
    if found is None:
        raise AssertionError(f"QEMU run produced no result (exit {p.returncode}): {text[:500]}")
    hexdigits = "".join(found.group(1).split())
    if instructions is not None:
        ticks = re.search(r">([0-9a-f\s]*)\|", text)
        if ticks is None:
            raise AssertionError(f"QEMU run printed no tick counts: {text[-300:]}")
        words = ticks.group(1).split()
        for word, x in zip(words, inputs):
            t = int.from_bytes(bytes.fromhex(word), "little")
            instructions.append(t * 40 / max(len(x), 1))
    return split_outputs(bytes.fromhex(hexdigits), models, inputs, f"QEMU; output: {text[:500]}")



# ---- RV32IMC on QEMU virt (the qemu-rv32 board) ------------------------------------------
#
# The board's own HAL (firmware/hal/riscv-virt: startup, linker script, 16550 UART, minstret)
# carries the run; the outputs leave through the UART as hex and QEMU exits through virt's
# sifive_test device. Flags and QEMU arguments are the board's (tinygen-riscv, boards/qemu-rv32.json).
RV32_CFLAGS = ["--specs=picolibc.specs", "-march=rv32imc_zicsr", "-mabi=ilp32", "-mcmodel=medany",
               "-Os", "-Wall", "-Wextra", "-Werror", "-ffunction-sections", "-fdata-sections"]
# GCC 12's multilib table knows rv32imc, not rv32imc_zicsr (see tinygen-riscv's builder).
RV32_LINK = ["--specs=picolibc.specs", "-march=rv32imc", "-mabi=ilp32", "-nostartfiles", "-Wl,--gc-sections"]

_RV32_MAIN = r"""
#include <stdint.h>
#include "tg_hal.h"
%(includes)s

%(data)s

static uint32_t tgq_instr[%(n_models)d];
static void tgq_hex(const void *data, uint32_t n)
{
    static const char digits[] = "0123456789abcdef";
    const uint8_t *p = (const uint8_t *)data;
    uint32_t i;
    uint8_t two[2];
    for (i = 0; i < n; i++) {
        two[0] = (uint8_t)digits[p[i] >> 4];
        two[1] = (uint8_t)digits[p[i] & 15u];
        tg_hal_write(two, 2u);
    }
}

int main(void)
{
    static int8_t out[%(max_out)d];
    uint32_t i, t0;
    tg_hal_init();
    tg_hal_write((const uint8_t *)"<", 1u);
%(runs)s
    tg_hal_write((const uint8_t *)">", 1u);
    for (i = 0; i < %(n_models)du; i++) {
        tg_hal_write((const uint8_t *)" ", 1u);
        tgq_hex(&tgq_instr[i], 4u);
    }
    tg_hal_write((const uint8_t *)"|", 1u);
    *(volatile uint32_t *)0x00100000u = 0x5555u; /* virt's sifive_test: power off, exit 0 */
    for (;;) {
    }
}
"""


def have_rv32() -> bool:
    gcc = shutil.which("riscv64-unknown-elf-gcc")
    if gcc is None or shutil.which("qemu-system-riscv32") is None:
        return False
    specs = subprocess.run([gcc, "-print-file-name=picolibc.specs"], capture_output=True, text=True).stdout.strip()
    return Path(specs).is_absolute()



def build_and_run_rv32(workdir: Path, sources: list[str], timeout: float) -> tuple[subprocess.CompletedProcess, str]:
    """Compile ``sources`` (in ``workdir``) for RV32IMC, link with the qemu-rv32 startup and linker
    script, and run the ELF under the board file's QEMU; the process and what it printed."""
    from tinygen.common.boards import get_board

    _run(["riscv64-unknown-elf-gcc", "-std=c99", *RV32_CFLAGS, "-I.", "-c", *sources], cwd=workdir)
    objects = [src[:-2] + ".o" for src in sources]
    _run(["riscv64-unknown-elf-gcc", *RV32_LINK, "-T", "riscv_virt.ld", *objects, "-o", "rv32.elf"], cwd=workdir)
    emu = get_board("qemu-rv32").emulator
    p = subprocess.run([emu.binary, "-M", emu.machine, *emu.args, "-display", "none", "-monitor", "none",
                        "-serial", "stdio", "-kernel", "rv32.elf"], cwd=workdir, stdin=subprocess.DEVNULL,
                       capture_output=True, timeout=timeout)
    return p, p.stdout.decode("ascii", "replace") + p.stderr.decode("ascii", "replace")


def run_qemu_rv32(models: list[TfliteModel], inputs: list[np.ndarray], workdir: Path,
                  timeout: float = 300.0, instructions: list | None = None) -> list[np.ndarray]:
    """Build all models + the kernels (portable C) for RV32IMC, run them on QEMU virt with the
    qemu-rv32 board's HAL over the given inputs, return the outputs per model. ``instructions``
    (a list) receives each model's mean retired instructions per inference (minstret, exact)."""
    from tinygen.common.paths import firmware_dir

    workdir.mkdir(parents=True, exist_ok=True)
    prefixes = write_sources(models, workdir)
    hal = firmware_dir() / "hal"
    for f in [hal / "tg_hal.h", *sorted((hal / "riscv-virt").glob("*"))]:
        if f.name != "main.c":
            shutil.copy2(f, workdir / f.name)
    data, runs = [], []
    max_out = 1
    for k, (m, p, x) in enumerate(zip(models, prefixes, inputs)):
        x = np.ascontiguousarray(x, dtype=np.int8).reshape(len(x), -1)
        data.append(f"static const int8_t in{k}[{x.size}] = {{{', '.join(str(int(v)) for v in x.reshape(-1))}}};")
        out_b = m.output_tensor().nbytes
        max_out = max(max_out, out_b)
        runs.append(f"    for (i = 0; i < {len(x)}u; i++) {{ t0 = tg_hal_ticks(); {p}_invoke(in{k} + i * {x.shape[1]}u, "
                    f"out); tgq_instr[{k}] += tg_hal_ticks() - t0; tgq_hex(out, {out_b}u); }}")
    (workdir / "rv32_main.c").write_text(_RV32_MAIN % {
        "includes": "\n".join(f'#include "{p}_model.h"' for p in prefixes), "data": "\n".join(data),
        "runs": "\n".join(runs), "max_out": max_out, "n_models": len(models)})
    sources = kernel_c_files() + ["rv32_main.c", "startup_riscv_virt.c", "tg_hal_riscv_virt.c"] + \
        [f"{p}_model.c" for p in prefixes]
    p, text = build_and_run_rv32(workdir, sources, timeout)
    found = re.search(r"<([0-9a-f]*)>([0-9a-f ]*)\|", text)
    if found is None or p.returncode != 0:
        raise AssertionError(f"QEMU rv32 run produced no result (exit {p.returncode}): {text[:500]}")
    if instructions is not None:
        for word, x in zip(found.group(2).split(), inputs):
            instructions.append(int.from_bytes(bytes.fromhex(word), "little") / max(len(x), 1))
    return split_outputs(bytes.fromhex(found.group(1)), models, inputs, "QEMU rv32")


# ---- Keras model cases (built and converted in worker processes) -------------------------
#
# A case is a plain dict (picklable); build_keras(case) turns it into a Keras
# model, convert_case(case) into int8 .tflite bytes. Conversions run in a small
# spawn-based process pool so that the test process itself never imports
# TensorFlow and two conversions run at once on two cores.


def _act(name):
    return None if name == "linear" else name


def build_keras(case: dict):
    import keras

    L = keras.layers
    keras.utils.set_random_seed(int(case["seed"]))
    kind = case["kind"]
    init = keras.initializers.RandomNormal(stddev=float(case.get("w_std", 0.3)), seed=int(case["seed"]))
    binit = keras.initializers.RandomNormal(stddev=float(case.get("b_std", 0.5)), seed=int(case["seed"]) + 1)
    inp = L.Input(tuple(case["shape"]))
    if kind == "fc":
        y = L.Dense(case["units"], activation=_act(case["act"]), use_bias=case["bias"],
                    kernel_initializer=init, bias_initializer=binit)(inp)
    elif kind == "conv":
        y = L.Conv2D(case["filters"], tuple(case["k"]), strides=tuple(case["strides"]), padding=case["padding"],
                     dilation_rate=tuple(case["dil"]), groups=case["groups"], activation=_act(case["act"]),
                     use_bias=case["bias"], kernel_initializer=init, bias_initializer=binit)(inp)
    elif kind == "dw":
        y = L.DepthwiseConv2D(tuple(case["k"]), strides=tuple(case["strides"]), padding=case["padding"],
                              depth_multiplier=case["dm"], dilation_rate=tuple(case["dil"]),
                              activation=_act(case["act"]), use_bias=case["bias"],
                              depthwise_initializer=init, bias_initializer=binit)(inp)
    elif kind in ("avgpool", "maxpool"):
        cls = L.AveragePooling2D if kind == "avgpool" else L.MaxPooling2D
        y = cls(tuple(case["pool"]), strides=tuple(case["strides"]), padding=case["padding"])(inp)
    elif kind == "softmax":
        x = inp
        if case.get("dense"):
            x = L.Dense(case["shape"][-1], kernel_initializer=init, bias_initializer=binit)(x)
        y = L.Softmax()(x)
    elif kind in ("sigmoid", "tanh", "relu", "relu6"):
        if kind == "relu":
            y = L.ReLU()(inp)
        elif kind == "relu6":
            y = L.ReLU(6.0)(inp)
        else:
            y = L.Activation(kind)(inp)
    elif kind in ("add", "mul") and case["mode"] == "mean_5d":
        # 5-D (with the batch) broadcasting: (1,A,B,C,D) op (1,1,B,1,D)
        b = L.Lambda(lambda t: keras.ops.mean(t, axis=(1, 3), keepdims=True))(inp)
        a = inp
        y = L.Lambda(lambda t: t[0] + t[1] if kind == "add" else t[0] * t[1])([a, b])
    elif kind == "log_softmax":  # an int8 op TFLM has and the compiled runtime does not
        y = L.Activation("log_softmax")(L.Dense(4, kernel_initializer=init)(inp))
    elif kind in ("add", "mul"):
        c = case["shape"][-1]
        a = L.Conv2D(c, 1, kernel_initializer=init, bias_initializer=binit)(inp)
        mode = case["mode"]
        if mode == "same":
            b = L.Conv2D(c, 1, kernel_initializer=keras.initializers.RandomNormal(
                stddev=float(case["w_std"]) * 3, seed=int(case["seed"]) + 7))(inp)
        elif mode == "mean_hw":
            b = L.GlobalAveragePooling2D(keepdims=True)(inp)
        elif mode == "mean_w":
            b = L.Lambda(lambda t: keras.ops.mean(t, axis=2, keepdims=True))(inp)
        elif mode == "mean_c":
            b = L.Lambda(lambda t: keras.ops.mean(t, axis=3, keepdims=True))(inp)
        else:  # constant operand broadcast over the channels
            const = np.random.default_rng(int(case["seed"])).uniform(-2, 2, size=(c,)).astype(np.float32)
            b = None
        if b is None:
            if kind == "add":
                y = L.Lambda(lambda t: t + const)(a)
            else:
                y = L.Lambda(lambda t: t * const)(a)
        else:
            first, second = (a, b) if case.get("order", 0) == 0 else (b, a)
            y = L.Lambda(lambda t: t[0] + t[1] if kind == "add" else t[0] * t[1])([first, second])
        if case.get("act") == "relu":
            y = L.ReLU()(y)
    elif kind == "reshape":
        if case["mode"] == "alone":
            y = L.Reshape((-1, case["shape"][0]))(inp)
        else:
            x = L.Conv2D(4, 3, padding="same", kernel_initializer=init)(inp)
            x = L.Flatten()(x)
            x = L.Dense(6, kernel_initializer=init, activation="relu")(x)
            y = L.Softmax()(L.Reshape((2, 3))(x))
    elif kind == "pad":
        y = L.ZeroPadding2D(tuple(tuple(p) for p in case["pad"]))(inp)
    elif kind == "mean":
        if case["axes"] == "gap":
            y = L.GlobalAveragePooling2D(keepdims=case["keep"])(inp)
        else:
            axes = tuple(case["axes"])
            keep = case["keep"]
            y = L.Lambda(lambda t: keras.ops.mean(t, axis=axes, keepdims=keep))(inp)
    elif kind == "concat":
        branches = []
        for j, src in enumerate(case["srcs"]):
            if src == "input":
                branches.append(inp)
            else:
                t = L.Conv2D(case["width"][j], 1, kernel_initializer=keras.initializers.RandomNormal(
                    stddev=float(case["w_std"]) * (j + 1), seed=int(case["seed"]) + j))(inp)
                if src in ("sigmoid", "tanh", "relu"):
                    t = L.Activation(src)(t)
                branches.append(t)
        y = L.Concatenate(axis=case["axis"])(branches)
    elif kind == "dead":
        # A ReLU that is never active: every later scale collapses and TFLM's softmax
        # Prepare aborts; the compiled runtime must refuse the model instead.
        x = L.Dense(4, activation="relu", kernel_initializer="zeros",
                    bias_initializer=keras.initializers.Constant(-1.0))(inp)
        y = L.Softmax()(L.Dense(3, kernel_initializer=init)(x))
    elif kind == "graph":
        y = _random_graph(inp, case)
    else:
        raise ValueError(kind)
    return keras.Model(inp, y)


def _random_graph(inp, case: dict):
    """A small random graph of supported Keras layers (deterministic in case['seed'])."""
    import keras

    L = keras.layers
    rng = np.random.default_rng(int(case["seed"]))

    def init():
        return keras.initializers.RandomNormal(stddev=float(rng.uniform(0.1, 0.6)), seed=int(rng.integers(1 << 30)))

    acts = ["linear", "relu", "relu6", "sigmoid", "tanh"]
    x = inp
    spatial = [x]
    for _ in range(int(rng.integers(3, 8))):
        c = int(rng.integers(2, 7))
        choice = int(rng.integers(0, 8))
        if choice == 0:
            y = L.Conv2D(c, int(rng.integers(1, 4)), strides=int(rng.integers(1, 3)), padding="same",
                         activation=_act(acts[int(rng.integers(0, 3))]), kernel_initializer=init())(x)
        elif choice == 1:
            y = L.DepthwiseConv2D(3, padding="same", depth_multiplier=int(rng.integers(1, 3)),
                                  activation=_act(acts[int(rng.integers(0, 3))]), depthwise_initializer=init())(x)
        elif choice == 2 and x.shape[1] >= 2 and x.shape[2] >= 2:
            y = (L.MaxPooling2D if rng.random() < 0.5 else L.AveragePooling2D)(2, padding="same")(x)
        elif choice == 3:
            other = spatial[int(rng.integers(0, len(spatial)))]
            if other.shape[1:3] == x.shape[1:3]:
                y = L.Concatenate()([x, L.Activation(acts[int(rng.integers(0, 5))])(other)])
            else:
                y = L.ZeroPadding2D(1)(x)
        elif choice == 4:
            a = L.Conv2D(x.shape[-1], 1, kernel_initializer=init())(x)
            y = (L.Add() if rng.random() < 0.5 else L.Multiply())([x, a])
        elif choice == 5:
            y = L.Activation(acts[int(rng.integers(1, 5))])(x)
        elif choice == 6:
            y = L.ZeroPadding2D(((int(rng.integers(0, 2)), 1), (1, int(rng.integers(0, 2)))))(x)
        else:
            y = L.Conv2D(c, 1, activation="relu6", kernel_initializer=init(),
                         bias_initializer=keras.initializers.Constant(0.5))(x)
        x = y
        spatial.append(x)
    if rng.random() < 0.5:
        x = L.GlobalAveragePooling2D()(x)
    else:
        x = L.Flatten()(x)
    x = L.Dense(int(rng.integers(4, 12)), activation=_act(acts[int(rng.integers(0, 5))]), kernel_initializer=init())(x)
    if rng.random() < 0.5:
        x = L.Reshape((2, -1))(x) if x.shape[-1] % 2 == 0 else x
    x = L.Dense(int(rng.integers(2, 8)), kernel_initializer=init())(x)
    if rng.random() < 0.6:
        x = L.Softmax()(x)
    return x


def representative(case: dict, n: int = 48) -> np.ndarray:
    rng = np.random.default_rng(int(case["seed"]) + 12345)
    mu, sigma = case.get("rep", (0.0, 1.0))
    shape = tuple(case["shape"])
    x = rng.normal(mu, sigma, size=(n,) + shape)
    if case.get("rep_skew"):
        x = np.abs(x)  # one-signed data: zero point near -128
    return x.astype(np.float32)


def convert_case(case: dict) -> bytes:
    model = build_keras(case)
    return quantize_quiet(model, representative(case), per_channel_dense=bool(case.get("per_channel", False)))


def recipe_tflite(name: str) -> tuple[bytes, bytes]:
    """Train a built-in recipe once; return its int8 model with per-tensor and with
    per-channel FULLY_CONNECTED weights."""
    from tinygen.intake.recipes import train

    with quiet_native():
        tr = train(name)
    return (quantize_quiet(tr.model, tr.x_rep, per_channel_dense=False),
            quantize_quiet(tr.model, tr.x_rep, per_channel_dense=True))


def _call(fn_name: str, arg):
    try:
        return globals()[fn_name](*arg) if isinstance(arg, tuple) else globals()[fn_name](arg)
    except Exception as exc:  # report, do not kill the pool
        return exc


_POOL = None


def pool():
    """A shared 2-process spawn pool (one per test session)."""
    global _POOL
    if _POOL is None:
        import atexit
        import multiprocessing
        import sys
        from concurrent.futures import ProcessPoolExecutor

        here = str(Path(__file__).resolve().parents[1])  # tests/: spawn children import support.*
        if here not in sys.path:
            sys.path.insert(0, here)
        _POOL = ProcessPoolExecutor(max_workers=2, mp_context=multiprocessing.get_context("spawn"))
        atexit.register(_POOL.shutdown, wait=False, cancel_futures=True)
    return _POOL


def submit(fn_name: str, arg):
    return pool().submit(_call, fn_name, arg)


_JOBS_REGISTERED: dict[str, tuple[str, object]] = {}
_FUTURES: dict = {}


def register(key: str, fn_name: str, arg) -> None:
    """Declare a conversion job (no work yet); the first result() call submits all of them."""
    _JOBS_REGISTERED.setdefault(key, (fn_name, arg))


def result(key: str):
    """Result of a registered job (bytes), raising what the worker raised."""
    if key not in _FUTURES:
        fn_name, arg = _JOBS_REGISTERED[key]
        _FUTURES[key] = submit(fn_name, arg)
        for k, (fn_name, arg) in _JOBS_REGISTERED.items():
            if k not in _FUTURES:
                _FUTURES[k] = submit(fn_name, arg)
    out = _FUTURES[key].result()
    if isinstance(out, Exception):
        raise out
    return out


# ---- TFLM arena --------------------------------------------------------------------------


def tflm_min_arena(model_bytes: bytes) -> int:
    """Smallest arena (within 16 bytes) with which the tflite_micro interpreter allocates and
    invokes the model: the product's own bisection (child processes; a crashing probe counts
    as too small), so tests and the arena the product writes can never disagree on method."""
    from tinygen.analysis.reference import measure_arena
    from tinygen.tflite.model import parse_model

    return measure_arena(model_bytes, parse_model(model_bytes)).host_min_bytes
