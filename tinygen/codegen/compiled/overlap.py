"""How far below its input a windowed op's output may start and still overlap it.

TinyEngine runs depthwise convolutions in place; the same holds, with a shift, for
any op whose kernel writes behind what it still has to read.  This module turns an
op's window geometry into that shift: the output may start ``shift`` bytes (or more)
below the input's first byte and overlap the rest of it.  The lowering attaches the
result to the op (``OpIR.overlap``); memory.py allows exactly those overlaps.

The kernel contract this relies on (firmware/runtime/tg_conv.c: tg_conv2d_s8, tg_depthwise_conv.c:
tg_depthwise_conv2d_s8; tg_pool.c: tg_avg_pool_s8, tg_max_pool_s8; read
2026-12 -- a kernel change that breaks it must change this module too):

* one batch (batches == 1; other ops get no overlap);
* output pixels (oy, ox) are produced in row-major order; every byte of output
  pixel k is written before any byte of pixel k + 2, and no byte of pixel k + 2
  is written before the reads of pixel k are done (CONV_2D builds the im2col
  columns of 2 pixels, per channel group, then writes those 2 pixels' channels
  of that group; depthwise and pooling go pixel by pixel, channel chunk by
  channel chunk);
  CONV_2D's 4-pixel paths (tg_conv_pointwise_4px, tg_conv_window_4px) build the
  columns of 4 pixels b..b+3, then write their channels in any order: it breaks the first half of
  the rule above but not the shift, since when it writes up to pixel b + 3 all
  its reads are done and the input still needed starts at need(b + 4) >=
  need(b + 2), which the condition below at k = b + 2 already keeps clear (the
  condition for 2 pixels read then written covers any block read whole before
  it is written); tests/compiled/test_overlap_lookahead.py replays it;
* pixel k reads only input pixels of its receptive field: rows from
  oy * stride_h - pad_h, columns from ox * stride_w - pad_w (both clipped at 0)
  on, never below; padding taps read zero-point bytes from the stack or the
  scratch column, not the input;
* scratch (CONV_2D's im2col columns) is a separate arena buffer.

So while pixels k and k + 1 are being written, the input still needed starts at
need(k) = the lowest byte any pixel >= k reads.  Output base = input base - shift
is safe when (k + 2) * out_pixel_bytes - shift <= need(k) for every k.  No margin
is added on purpose: a chain of overlapped ops drifts down the arena by the sum of
their shifts, so each byte of margin costs RAM once per op.  The tests plan models
at exactly this shift and compare them bit for bit with tflite_micro, so a kernel
that starts computing further ahead of its writes fails them.
"""

from __future__ import annotations

import numpy as np


def window_shift(batches: int, in_h: int, in_w: int, in_c: int, out_h: int, out_w: int, out_c: int,
                 stride_h: int, stride_w: int, pad_h: int, pad_w: int) -> int | None:
    """Smallest safe shift in bytes (see the module docstring), or None for no overlap."""
    if batches != 1 or min(in_h, in_w, in_c, out_h, out_w, out_c, stride_h, stride_w) <= 0:
        return None
    oy = np.arange(out_h, dtype=np.int64)
    ox = np.arange(out_w, dtype=np.int64)
    row = np.maximum(oy * stride_h - pad_h, 0)
    col = np.maximum(ox * stride_w - pad_w, 0)
    first = (row[:, None] * in_w + col[None, :]).reshape(-1) * in_c  # lowest byte pixel k reads
    need = np.minimum.accumulate(first[::-1])[::-1]  # lowest byte any pixel >= k reads
    n_pix = out_h * out_w
    written = np.minimum(np.arange(n_pix, dtype=np.int64) + 2, n_pix) * out_c
    return int(max((written - need).max(), 0))
