"""The front end's share of a build's flash and RAM budget (issue 27 item 4; docs/frontend.md).

Input: the project's :class:`~tinygen.intake.frontend.FrontendSpec` and its requantization; output:
budget parts in :func:`tinygen.codegen.plan.budget_parts`' form.  The tables and the RAM are exact:
they are read off the generated ``tg_frontend_config.{c,h}`` (every ``static const`` array's element
type and count, the scratch and feature sizes), so they follow whatever the emitter writes.  The C
code's size is an upper bound per instruction set, checked against the compiler by
tests/verification/test_frontend_e2e.py (arm-none-eabi-gcc and riscv64-unknown-elf-gcc at -Os).
"""

from __future__ import annotations

import re

from tinygen.codegen.frontend_c import emit_config
from tinygen.codegen.protocol_header import fe_taps_buffer_bytes
from tinygen.common.protocol import INFER_RAW_SAMPLE_BYTES, MIN_RX_PAYLOAD

# tg_frontend.c compiled at -Os (text), rounded up: an estimate, tested as an upper bound.
CODE_FLASH_ESTIMATE = 3_072
# The configuration struct: kind, sizes, pointers and the requantization (padded; 64-bit pointers too).
CONFIG_STRUCT_BYTES = 96

_C_SIZES = {"int8_t": 1, "uint8_t": 1, "int16_t": 2, "uint16_t": 2, "int32_t": 4, "uint32_t": 4,
            "int64_t": 8, "uint64_t": 8}
_ARRAY = re.compile(r"static const (u?int(?:8|16|32|64)_t) \w+\[(\d+)\]")


def _macro(text: str, name: str) -> int:
    m = re.search(rf"#define \w+_{name} (\d+)u?\b", text)
    if m is None:
        raise ValueError(f"tg_frontend_config.h has no {name}")
    return int(m.group(1))


def table_bytes(config_c: str) -> int:
    """Bytes of every constant table in a generated tg_frontend_config.c, plus the config struct."""
    return sum(_C_SIZES[t] * int(n) for t, n in _ARRAY.findall(config_c)) + CONFIG_STRUCT_BYTES


def frontend_parts(spec, rq, input_bytes: int) -> list[dict]:
    """The front end's budget parts: tables (flash, exact), scratch + int32 features (RAM, exact), the
    code (flash, estimate) and what the validation firmware's receive buffer grows by for one
    inference's raw samples (INFER_RAW) or one frame's stages (FE_TAPS), beyond the model's input (RAM,
    exact)."""
    files = emit_config(spec, rq)
    h = next(v for k, v in files.items() if k.endswith(".h"))
    c = next(v for k, v in files.items() if k.endswith(".c"))
    scratch, feats = _macro(h, "FE_SCRATCH_WORDS"), _macro(h, "FE_FEATURES")
    rx = max(INFER_RAW_SAMPLE_BYTES * spec.n_samples, fe_taps_buffer_bytes(spec.frame_length, spec.fft_size,
                                                                           spec.bands))
    raw_rx = max(0, rx - max(int(input_bytes), MIN_RX_PAYLOAD))

    def part(name, flash, ram, kind):
        return {"part": name, "flash_bytes": int(flash), "ram_bytes": int(ram), "kind": kind, "frontend": True}

    return [part("front end tables; scratch + features", table_bytes(c), 4 * (scratch + feats), "exact"),
            part("front end code", CODE_FLASH_ESTIMATE, 0, "estimate"),
            part("raw-sample receive buffer (INFER_RAW)", 0, raw_rx, "exact")]


def frontend_totals(parts: list[dict]) -> dict:
    """{"flash_bytes", "ram_bytes"} of the parts marked ``frontend`` (zeros when none)."""
    fe = [p for p in parts if p.get("frontend")]
    return {"flash_bytes": sum(p["flash_bytes"] for p in fe), "ram_bytes": sum(p["ram_bytes"] for p in fe)}
