"""overlap.window_shift against kernels that read a block of pixels whole, then write it.

tg_conv_pointwise_4px (firmware/runtime/tg_conv.c) builds the columns of 4 output pixels of a 1x1
layer, then writes their channels in channel order (pixel b + 2's first channel before pixel b's
second). overlap.py's docstring argues the 2-pixel shift still covers it; this replays such a
kernel byte by byte (independently of overlap.py's formula) and checks that no write at the
declared shift lands on an input byte a later pixel still reads.
"""

from __future__ import annotations

import pytest

from tinygen.codegen.compiled.overlap import window_shift


def _first_read(in_h, in_w, in_c, out_w, sh, sw, ph, pw, kh, kw, k):
    """Lowest input byte output pixel k reads (its receptive field, clipped to the input)."""
    oy, ox = divmod(k, out_w)
    lo = None
    for fy in range(kh):
        for fx in range(kw):
            iy, ix = oy * sh - ph + fy, ox * sw - pw + fx
            if 0 <= iy < in_h and 0 <= ix < in_w:
                b = (iy * in_w + ix) * in_c
                lo = b if lo is None else min(lo, b)
    return lo if lo is not None else 1 << 40


def _replay_blocks(in_h, in_w, in_c, out_h, out_w, out_c, sh, sw, ph, pw, kh, kw, block) -> int:
    """Smallest shift at which a kernel reading `block` pixels whole, then writing them in any
    order, never overwrites an input byte that a later pixel reads."""
    n = out_h * out_w
    reads = [_first_read(in_h, in_w, in_c, out_w, sh, sw, ph, pw, kh, kw, k) for k in range(n)]
    worst = 0
    for b in range(0, n, block):
        end = min(b + block, n) * out_c  # every byte of the block may be written
        still = min(reads[b + block:], default=1 << 40)
        worst = max(worst, end - still)
    return worst


@pytest.mark.parametrize("geom", [
    (25, 5, 64, 25, 5, 64, 1, 1, 0, 0, 1, 1),  # DS-CNN's 1x1 layers
    (48, 48, 8, 48, 48, 16, 1, 1, 0, 0, 1, 1),  # MobileNetV1-0.25's first 1x1: channels up
    (3, 7, 12, 3, 7, 40, 1, 1, 0, 0, 1, 1),  # 21 pixels: 5 blocks of 4, then one; x3.3 channels
    (6, 6, 128, 6, 6, 128, 1, 1, 0, 0, 1, 1),  # the largest K the 4-pixel path takes
    (10, 10, 6, 10, 10, 6, 1, 1, 1, 1, 3, 3),  # and any window read whole in blocks
    (9, 9, 4, 5, 5, 8, 2, 2, 1, 1, 3, 3),
])
@pytest.mark.parametrize("block", [2, 4])
def test_declared_shift_covers_blocks_read_whole_before_written(geom, block):
    in_h, in_w, in_c, out_h, out_w, out_c, sh, sw, ph, pw, _, _ = geom
    shift = window_shift(1, in_h, in_w, in_c, out_h, out_w, out_c, sh, sw, ph, pw)
    need = _replay_blocks(*geom, block)
    assert shift is not None and shift >= need
    if in_c < out_c and block == 4:
        assert need > 0  # the replay does constrain these layers (not a vacuous check)
