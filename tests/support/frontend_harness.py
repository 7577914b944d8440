"""Build firmware/frontend/tg_frontend.c with a generated configuration: on this host under
ASan/UBSan (samples or frames on stdin, features / stage taps on stdout), for Cortex-M4 on QEMU
mps2-an386 and for RV32 on QEMU virt (inputs compiled in, features as hex, instructions counted).

The expected values always come from tinygen/intake/frontend.py's twin or numpy, never from this C.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np

import support.compiled_harness as ch
from tinygen.codegen.frontend_c import emit_config, frontend_sources
from tinygen.intake.frontend import FrontendSpec, Requant, features_count

FE_C = ["tg_frontend.c", "tg_frontend_config.c"]

_HOST_MAIN = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "tg_frontend_config.h"

int main(int argc, char **argv)
{
    const tg_fe_config_t *cfg = &tg_fe_config;
    size_t nf = TG_FE_FEATURES, L = cfg->frame_length, m = cfg->fft_size / 2u;
    int32_t *scratch = (int32_t *)malloc(TG_FE_SCRATCH_WORDS * sizeof(int32_t));
    if (argc != 2 || scratch == NULL) return 2;
    if (strcmp(argv[1], "feat") == 0) {
        int16_t *in = (int16_t *)malloc(TG_FE_SAMPLES * sizeof(int16_t));
        int32_t *feat = (int32_t *)malloc(nf * sizeof(int32_t));
        int8_t *q = (int8_t *)malloc(nf);
        if (in == NULL || feat == NULL || q == NULL) return 3;
        while (fread(in, sizeof(int16_t), TG_FE_SAMPLES, stdin) == TG_FE_SAMPLES) {
            if (tg_fe_features(cfg, in, TG_FE_SAMPLES, feat, scratch, TG_FE_SCRATCH_WORDS) != TG_FE_OK) return 4;
            tg_fe_requantize(cfg, feat, nf, q);
            fwrite(feat, sizeof(int32_t), nf, stdout);
            fwrite(q, 1, nf, stdout);
        }
        /* a wrong size is refused */
        if (tg_fe_features(cfg, in, TG_FE_SAMPLES - 1u, feat, scratch, TG_FE_SCRATCH_WORDS) != TG_FE_BAD_SIZE) return 6;
        if (tg_fe_features(cfg, in, TG_FE_SAMPLES, feat, scratch, TG_FE_SCRATCH_WORDS - 1u) != TG_FE_BAD_SIZE) return 7;
        free(in); free(feat); free(q);
    } else {
        int32_t *frame = (int32_t *)malloc(L * sizeof(int32_t));
        int32_t *win = (int32_t *)malloc(L * sizeof(int32_t));
        int32_t *fft = (int32_t *)malloc(2u * (m + 1u) * sizeof(int32_t));
        uint64_t *fb = (uint64_t *)malloc(cfg->n_bands * sizeof(uint64_t));
        int32_t *lg = (int32_t *)malloc(cfg->n_bands * sizeof(int32_t));
        int32_t *out = (int32_t *)malloc(cfg->n_bands * sizeof(int32_t));
        int32_t shift;
        tg_fe_taps_t taps;
        if (frame == NULL || win == NULL || fft == NULL || fb == NULL || lg == NULL || out == NULL) return 3;
        taps.window = win; taps.shift = &shift; taps.fft = fft; taps.filterbank = fb; taps.log = lg;
        while (fread(frame, sizeof(int32_t), L, stdin) == L) {
            if (tg_fe_spectrum_frame(cfg, frame, out, scratch, TG_FE_SCRATCH_WORDS, &taps) != TG_FE_OK) return 4;
            fwrite(win, sizeof(int32_t), L, stdout);
            fwrite(&shift, sizeof(int32_t), 1, stdout);
            fwrite(fft, sizeof(int32_t), 2u * (m + 1u), stdout);
            fwrite(fb, sizeof(uint64_t), cfg->n_bands, stdout);
            fwrite(lg, sizeof(int32_t), cfg->n_bands, stdout);
        }
        free(frame); free(win); free(fft); free(fb); free(lg); free(out);
    }
    free(scratch);
    return 0;
}
"""


def write_frontend(spec: FrontendSpec, rq: Requant, workdir: Path, extra: dict[str, str] | None = None) -> None:
    workdir.mkdir(parents=True, exist_ok=True)
    files = {**frontend_sources(), **emit_config(spec, rq), **(extra or {})}
    for name, text in files.items():
        (workdir / name).write_text(text, encoding="utf-8")


class HostFrontend:
    def __init__(self, spec: FrontendSpec, rq: Requant, workdir: Path, cflags: tuple[str, ...] = (),
                 fault: tuple[str, str] | None = None):
        """``fault``: (text, replacement) applied once to tg_frontend.c (fault-injection tests)."""
        self.spec, self.rq = spec, rq
        extra = {"fe_main.c": _HOST_MAIN}
        if fault is not None:
            src = frontend_sources()["tg_frontend.c"]
            if src.count(fault[0]) != 1:
                raise AssertionError(f"the fault's text is not in tg_frontend.c exactly once: {fault[0]}")
            extra["tg_frontend.c"] = src.replace(fault[0], fault[1])
        write_frontend(spec, rq, workdir, extra)
        cc = shutil.which("gcc") or "gcc"
        ch._run([cc, *ch.HOST_CFLAGS, *cflags, "-I.", *FE_C, "fe_main.c", "-o", "fe_host"], cwd=workdir)
        self.binary = workdir / "fe_host"

    def _run(self, mode: str, data: bytes) -> bytes:
        p = subprocess.run([str(self.binary), mode], input=data, capture_output=True, timeout=300)
        if p.returncode != 0:
            raise AssertionError(f"host front end exited {p.returncode}: {p.stderr.decode(errors='replace')[-3000:]}")
        return p.stdout

    def features(self, samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(int32 features (rows, *feature_shape), int8 requantized) for int16 rows."""
        x = np.ascontiguousarray(samples, dtype=np.int16).reshape(-1, self.spec.n_samples)
        raw = self._run("feat", x.tobytes())
        nf = features_count(self.spec)
        rec = np.frombuffer(raw, dtype=np.uint8).reshape(len(x), nf * 5)
        feat = rec[:, :nf * 4].copy().view(np.int32).reshape((len(x),) + self.spec.feature_shape)
        q = rec[:, nf * 4:].copy().view(np.int8).reshape((len(x),) + self.spec.feature_shape)
        return feat, q

    def taps(self, frames: np.ndarray) -> dict[str, np.ndarray]:
        """Each stage's integers for int32 frames (rows of frame_length)."""
        s = self.spec
        x = np.ascontiguousarray(frames, dtype=np.int32).reshape(-1, s.frame_length)
        m = s.fft_size // 2
        raw = self._run("taps", x.tobytes())
        sizes = [("window", 4 * s.frame_length), ("shift", 4), ("fft", 8 * (m + 1)), ("filterbank", 8 * s.bands),
                 ("log", 4 * s.bands)]
        rec = np.frombuffer(raw, dtype=np.uint8).reshape(len(x), sum(n for _, n in sizes))
        out, pos = {}, 0
        for name, n in sizes:
            part = rec[:, pos:pos + n].copy()
            pos += n
            if name == "filterbank":
                out[name] = part.view(np.uint64).astype(np.int64)
            else:
                out[name] = part.view(np.int32).astype(np.int64)
        out["shift"] = out["shift"][:, 0]
        out["fft"] = out["fft"].reshape(len(x), m + 1, 2)
        return out


def _runs(spec: FrontendSpec, samples: np.ndarray, timer: tuple[str, str]) -> tuple[str, str]:
    x = np.ascontiguousarray(samples, dtype=np.int16).reshape(-1, spec.n_samples)
    data = (f"static const int16_t fe_in[{x.size}] = {{{', '.join(str(int(v)) for v in x.reshape(-1))}}};\n"
            f"static int32_t fe_feat[TG_FE_FEATURES];\nstatic int32_t fe_scratch[TG_FE_SCRATCH_WORDS];\n")
    start, stop = timer
    runs = (f"    for (i = 0; i < {len(x)}u; i++) {{ {start} "
            f"if (tg_fe_features(&tg_fe_config, fe_in + i * TG_FE_SAMPLES, TG_FE_SAMPLES, fe_feat, fe_scratch, "
            f"TG_FE_SCRATCH_WORDS) != TG_FE_OK) return 1; tg_fe_requantize(&tg_fe_config, fe_feat, TG_FE_FEATURES, "
            f"out); {stop} tgq_hex((const void *)fe_feat, 4u * TG_FE_FEATURES); tgq_hex(out, TG_FE_FEATURES); }}")
    return data, runs


def _decode(spec: FrontendSpec, hexdigits: str, rows: int) -> tuple[np.ndarray, np.ndarray]:
    nf = features_count(spec)
    raw = np.frombuffer(bytes.fromhex(hexdigits), dtype=np.uint8)
    if raw.size != rows * nf * 5:
        raise AssertionError(f"the board printed {raw.size} bytes, expected {rows * nf * 5}")
    rec = raw.reshape(rows, nf * 5)
    feat = rec[:, :nf * 4].copy().view(np.int32).reshape((rows,) + spec.feature_shape)
    q = rec[:, nf * 4:].copy().view(np.int8).reshape((rows,) + spec.feature_shape)
    return feat, q


# The profile hook (tg_frontend.c built with -DTG_FE_PROFILE calls it between stages): the
# SysTick ticks since the previous mark go to `stage`, and the marks are counted per stage.
_PROFILE_HOOK = r"""
static uint32_t tgq_mark_t;
void tg_fe_profile_mark(int stage);
void tg_fe_profile_mark(int stage)
{
    uint32_t t = TGQ_SYST_CVR;
    tgq_ticks[1 + stage] += (tgq_mark_t - t) & 0x00FFFFFFu;
    tgq_ticks[1 + TG_FE_PROFILE_STAGES + stage] += 1u;
    tgq_mark_t = TGQ_SYST_CVR;
}
"""


def run_m4(spec: FrontendSpec, rq: Requant, samples: np.ndarray, workdir: Path, timeout: float = 300,
           cflags: list[str] | None = None, machine: str = "mps2-an386",
           profile: dict | None = None) -> tuple[np.ndarray, np.ndarray, float, dict[str, int]]:
    """Features, int8 input, instructions per inference (QEMU -icount, 40-instruction resolution)
    and the front end's section sizes (text, rodata, data, bss of its two objects) on Cortex-M4
    (``cflags`` / ``machine``: e.g. compiled_harness.M3_CFLAGS on mps2-an385).

    ``profile`` (a dict): the C is built with -DTG_FE_PROFILE and the dict receives, per stage of
    tg_frontend.h's TG_FE_PROFILE_NAMES, (instructions per inference, marks per inference); the
    marks' own cost is in those figures (the caller calibrates it against an unprofiled run)."""
    from tinygen.intake.frontend import PROFILE_STAGES

    cflags = list(cflags or ch.M4_CFLAGS)
    write_frontend(spec, rq, workdir)
    n_stages = len(PROFILE_STAGES)
    data, runs = _runs(spec, samples, ("tgq_start(); tgq_mark_t = tgq_t0;" if profile is not None else "tgq_start();",
                                       "tgq_stop(0);"))
    main = ch._M4_MAIN.replace('%(includes)s', '#include "tg_frontend_config.h"') % {
        "data": data, "runs": runs, "max_out": features_count(spec),
        "n_models": 1 + 2 * n_stages if profile is not None else 1}
    if profile is not None:
        main = main.replace("int main(void)", f"#define TG_FE_PROFILE_STAGES {n_stages}\n" + _PROFILE_HOOK
                            + "\nint main(void)", 1)
        cflags += ["-DTG_FE_PROFILE"]
    (workdir / "qemu_main.c").write_text(main)
    (workdir / "qemu.ld").write_text(ch._M4_LD)
    ch._run(["arm-none-eabi-gcc", "-std=c99", *cflags, "-nostartfiles", "-T", "qemu.ld", *FE_C, "qemu_main.c",
             "-o", "qemu.elf", "--specs=nosys.specs"], cwd=workdir)
    sizes = {"text": 0, "rodata": 0, "data": 0, "bss": 0}
    for src in FE_C:
        ch._run(["arm-none-eabi-gcc", "-std=c99", *cflags, "-c", src, "-o", src[:-2] + ".o"], cwd=workdir)
        for line in ch._run(["arm-none-eabi-size", "-A", src[:-2] + ".o"], cwd=workdir).stdout.splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[1].isdigit():
                for key in sizes:
                    if parts[0] == f".{key}" or parts[0].startswith(f".{key}."):
                        sizes[key] += int(parts[1])
    p = subprocess.run(["qemu-system-arm", "-M", machine, "-display", "none", "-monitor", "none", "-serial",
                        "none", "-semihosting-config", "enable=on,target=native", "-icount", "shift=0", "-kernel",
                        "qemu.elf"], cwd=workdir, capture_output=True, timeout=timeout)
    text = p.stdout.decode("ascii", "replace") + p.stderr.decode("ascii", "replace")
    found = re.search(r"<([0-9a-f\s]*)>((?:\s*[0-9a-f]{8})+)", text)
    if found is None:
        raise AssertionError(f"QEMU m4 front-end run printed no result: {text[:300]}")
    rows = len(np.asarray(samples).reshape(-1, spec.n_samples))
    feat, q = _decode(spec, "".join(found.group(1).split()), rows)
    words = [int.from_bytes(bytes.fromhex(w), "little") for w in found.group(2).split()]
    if profile is not None:
        for i, name in enumerate(PROFILE_STAGES):
            profile[name] = (words[1 + i] * 40 / rows, words[1 + n_stages + i] / rows)
    return feat, q, words[0] * 40 / rows, sizes


def run_rv32(spec: FrontendSpec, rq: Requant, samples: np.ndarray, workdir: Path,
             timeout: float = 300) -> tuple[np.ndarray, np.ndarray, float]:
    """Features, int8 input and retired instructions per inference on RV32IMC (QEMU virt)."""
    from tinygen.common.paths import firmware_dir

    write_frontend(spec, rq, workdir)
    hal = firmware_dir() / "hal"
    for f in [hal / "tg_hal.h", *sorted((hal / "riscv-virt").glob("*"))]:
        if f.name != "main.c":
            shutil.copy2(f, workdir / f.name)
    data, runs = _runs(spec, samples, ("t0 = tg_hal_ticks();", "tgq_instr[0] += tg_hal_ticks() - t0;"))
    main = ch._RV32_MAIN.replace('%(includes)s', '#include "tg_frontend_config.h"') % {
        "data": data, "runs": runs, "max_out": features_count(spec), "n_models": 1}
    (workdir / "rv32_main.c").write_text(main)
    sources = [*FE_C, "rv32_main.c", "startup_riscv_virt.c", "tg_hal_riscv_virt.c"]
    p, text = ch.build_and_run_rv32(workdir, sources, timeout)
    found = re.search(r"<([0-9a-f]*)>\s*([0-9a-f]+)\|", text)
    if found is None or p.returncode != 0:
        raise AssertionError(f"QEMU rv32 front-end run printed no result (exit {p.returncode}): {text[:300]}")
    rows = len(np.asarray(samples).reshape(-1, spec.n_samples))
    feat, q = _decode(spec, found.group(1), rows)
    return feat, q, int.from_bytes(bytes.fromhex(found.group(2)), "little") / rows
