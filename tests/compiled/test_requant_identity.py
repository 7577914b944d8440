"""The kernels' requantization identities against a plain C transcription of TFLM's reference
(gemmlowp SaturatingRoundingDoublingHighMul + RoundingDivideByPOT, MultiplyByQuantizedMultiplier,
double rounding), compiled and run on the host under ASan/UBSan.

* the linked primitives (tg_fixedpoint.c), random and edge operands, INT32_MIN * INT32_MIN included;
* the fused requantization (tg_fixedpoint.h, tg_rq_fused + the SSAT clamp) with the constants
  quant.fused_requant_constants emits: for random multipliers, output offsets and accumulator
  bounds, every accumulator in a window around 0 and around the bound, and random ones up to the
  bound; where that function refuses (None) nothing is checked, and the refusals are pinned.

The reference below is written from the TFLM / gemmlowp definitions, not from tinygen's code.
"""

from __future__ import annotations

import random

from conftest import require
from support.compiled_harness import have_gcc, run_fixedpoint_program

from tinygen.codegen.compiled import quant

_REF = r"""
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include "tg_fixedpoint.h"
#include "tg_kernels.h"

/* gemmlowp, written out as in fixedpoint.h */
static int32_t ref_srdhm(int32_t a, int32_t b)
{
    int overflow = a == b && a == INT32_MIN;
    int64_t a_64 = a, b_64 = b;
    int64_t ab_64 = a_64 * b_64;
    int32_t nudge = ab_64 >= 0 ? (1 << 30) : (1 - (1 << 30));
    int32_t ab_x2_high32 = (int32_t)((ab_64 + nudge) / (1ll << 31));
    return overflow ? INT32_MAX : ab_x2_high32;
}

static int32_t ref_rdbpot(int32_t x, int exponent)
{
    const int32_t mask = (int32_t)((1ll << exponent) - 1);
    const int32_t zero = 0, one = 1;
    const int32_t remainder = x & mask;
    const int32_t threshold = (mask >> 1) + ((x < zero) ? one : zero);
    return (x >> exponent) + ((remainder > threshold) ? one : zero);
}

static int32_t ref_mbqm(int32_t x, int32_t m, int shift)
{
    int left = shift > 0 ? shift : 0, right = shift > 0 ? 0 : -shift;
    return ref_rdbpot(ref_srdhm((int32_t)((uint32_t)x << left), m), right);
}

static uint64_t rng = 88172645463325252ull;
static uint32_t next32(void) { rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17; return (uint32_t)rng; }

static int check(int32_t acc, int32_t m, int shift, int32_t off, const int32_t *q)
{
    int32_t want = ref_mbqm(acc, m, shift) + off;
    want = want < -128 ? -128 : want > 127 ? 127 : want;
    int32_t got = tg_rq_clamp(tg_rq_fused(acc, q[0], q[1], q[2], q[3]), -128, 127, 1);
    if (got != want) {
        printf("MISMATCH acc=%d m=%d shift=%d off=%d got=%d want=%d\n", acc, m, shift, off, got, want);
        return 1;
    }
    return 0;
}

int main(void)
{
    static const int32_t edge[] = {INT32_MIN, INT32_MIN + 1, -1073741824, -65536, -2, -1, 0, 1, 2, 65535,
                                   1073741823, 1073741824, INT32_MAX - 1, INT32_MAX};
    const int ne = (int)(sizeof edge / sizeof edge[0]);
    long bad = 0, n = 0;
    int i, j, e;
    for (i = 0; i < ne; i++) {
        for (j = 0; j < ne; j++) {
            bad += tg_sat_rounding_doubling_high_mul(edge[i], edge[j]) != ref_srdhm(edge[i], edge[j]);
        }
        for (e = 0; e <= 31; e++) {
            bad += tg_rounding_divide_by_pot(edge[i], e) != ref_rdbpot(edge[i], e);
        }
    }
    for (i = 0; i < 200000; i++) {
        int32_t a = (int32_t)next32(), b = (int32_t)next32(), x = (int32_t)next32() >> (next32() & 31);
        int32_t m = (int32_t)(next32() | 0x40000000u) & INT32_MAX;
        int s = (int)(next32() % 32) - 31;
        bad += tg_sat_rounding_doubling_high_mul(a, b) != ref_srdhm(a, b);
        e = (int)(next32() & 31);
        bad += tg_rounding_divide_by_pot(a, e) != ref_rdbpot(a, e);
        bad += tg_multiply_by_quantized_multiplier(x, m, s) != ref_mbqm(x, m, s);
    }
    if (bad) {
        printf("primitives: %ld mismatches\n", bad);
        return 1;
    }
    /* fused cases from stdin: m shift off bound q0 q1 q2 q3 */
    {
        int32_t m, off, bound, q[4];
        int shift;
        while (scanf("%d %d %d %d %d %d %d %d", &m, &shift, &off, &bound, &q[0], &q[1], &q[2], &q[3]) == 8) {
            int32_t w = bound < 3000 ? bound : 3000;
            int32_t a;
            for (a = -w; a <= w; a++, n++) bad += check(a, m, shift, off, q);
            for (a = bound - w; a <= bound; a++, n += 2) {
                bad += check(a, m, shift, off, q);
                bad += check(-a, m, shift, off, q);
            }
            for (i = 0; i < 4000; i++, n++) {
                a = (int32_t)(next32() % ((uint32_t)bound + 1u));
                bad += check((next32() & 1) ? a : -a, m, shift, off, q);
            }
            if (bad > 20) break;
        }
    }
    printf("checked %ld fused values, %ld mismatches\n", n, bad);
    return bad != 0;
}
"""


def _cases(rnd: random.Random):
    """(m, shift, offset, bound, constants) with the constants the lowering would emit."""
    out = []
    for _ in range(400):
        scale = 10 ** rnd.uniform(-6.5, -0.31)  # below 0.5: right >= 1
        m, s = quant.quantize_multiplier(scale)
        off = rnd.randint(-128, 127)
        limit = (1 << 30) >> max(s, 0)
        bound = rnd.choice([rnd.randint(1, 5000), rnd.randint(1, limit - 1), limit - 1, int(2.0 / scale)])
        bound = max(1, min(bound, limit - 1))
        q = quant.fused_requant_constants([bound], [m], [s], off)
        if q is not None:
            out.append((m, s, off, bound, q))
    return out


def test_fused_requantization_equals_tflm_reference(tmp_path):
    require(have_gcc(), "gcc")
    rnd = random.Random(10)
    cases = _cases(rnd)
    assert len(cases) > 300
    stdin = "".join(f"{m} {s} {off} {b} {' '.join(map(str, q))}\n" for m, s, off, b, q in cases)
    p = run_fixedpoint_program(tmp_path, _REF, stdin)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    assert "0 mismatches" in p.stdout


def test_fused_constants_refused_where_not_exact():
    """The preconditions of the identity, each refused on its own."""
    m, s = quant.quantize_multiplier(0.003)
    assert quant.fused_requant_constants([1000], [m], [s], -5) is not None
    assert quant.fused_requant_constants([1000], [m], [0], -5) is None          # right == 0
    assert quant.fused_requant_constants([1000], [1 << 30], [s], -5) is None    # m == 2^30
    assert quant.fused_requant_constants([1 << 30], [m], [s], -5) is None       # doubling overflows
    assert quant.fused_requant_constants([(1 << 30) - 1], [m], [-30], 127) is None  # sum overflows
