"""Weight layouts and broadcast strides the kernels of tg_kernels.h expect: pure numpy,
no checks (lowering/ decides what is accepted) and no C."""

from __future__ import annotations

import numpy as np

MAX_DIMS = 6


def pack_weights(w: np.ndarray, bias, input_offset: int, groups: int = 1):
    """Packed weights and folded bias for tg_conv2d_s8 / tg_fully_connected_s8.

    ``w`` is [out_c][K], ``bias`` [out_c] or None. Returns (packed int8 array, folded
    bias as int64 (the caller checks it fits the kernel's int32 accumulator), K4): rows
    zero-padded to K4 (a multiple of 4); within each group the channels stored
    in pairs, interleaved per block of 4 values (an odd last channel alone);
    bias' = bias + input_offset * sum_k w[oc][k] (see tg_kernels.h)."""
    w = np.asarray(w, dtype=np.int64)
    out_c, k = w.shape
    k4 = (k + 3) // 4 * 4
    nblk = k4 // 4
    wp = np.zeros((out_c, k4), dtype=np.int64)
    wp[:, :k] = w
    per_group = out_c // groups
    parts = []
    for g in range(groups):
        rows = wp[g * per_group:(g + 1) * per_group]
        n_pairs = per_group // 2
        if n_pairs:
            pairs = rows[:2 * n_pairs].reshape(n_pairs, 2, nblk, 4).transpose(0, 2, 1, 3)
            parts.append(pairs.reshape(-1))
        if per_group % 2:
            parts.append(rows[-1].reshape(-1))
    packed = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
    b = np.zeros(out_c, dtype=np.int64) if bias is None else np.asarray(bias, dtype=np.int64).reshape(-1)
    folded = b + int(input_offset) * w.sum(axis=1)
    return packed.astype(np.int8), folded, k4


def acc_bound_packed(w2, folded) -> np.ndarray:
    """|accumulator| bound of the packed products: raw int8 inputs, folded bias."""
    w2 = np.asarray(w2, dtype=np.int64)
    return np.abs(np.asarray(folded, dtype=np.int64)) + 128 * np.abs(w2).sum(axis=1)


def dw3x3_widened(w, out_c: int, dm: int = 1, bias=None, input_offset: int = 0, scale: int = 1) -> list[int]:
    """Depthwise 3x3 weights pre-widened to int16 pairs (layout: tg_kernels.h, dw3x3_widened).

    One 22-word block per (group of 4 input channels, multiplier m), for the output
    channels c_j = (4 g + j) * dm + m, so one widened input word serves every m: the
    biases of c_0..c_3 with input_offset * sum of the channel's 9 weights folded in
    (the kernel then widens raw inputs; equal in integer arithmetic), then 18 words
    of weights. ``scale`` multiplies weights and biases (2: the kernel's accumulators are
    doubled, see quant.fused_requant_constants)."""
    wt = np.asarray(w, dtype=np.int64).reshape(9, out_c) * int(scale)
    b = np.zeros(out_c, dtype=np.int64) if bias is None else np.asarray(bias, dtype=np.int64).reshape(-1) * int(scale)
    folded = b + int(input_offset) * wt.sum(axis=0)

    def pk(lo, hi):
        v = (int(lo) & 0xFFFF) | ((int(hi) & 0xFFFF) << 16)
        return v - (1 << 32) if v >= 1 << 31 else v

    out: list[int] = []
    for g in range(out_c // dm // 4):
        for m in range(dm):
            c = [(4 * g + j) * dm + m for j in range(4)]
            out += [int(folded[cj]) for cj in c]
            for t in (0, 2, 4, 6):
                out += [pk(wt[t][c[j]], wt[t + 1][c[j]]) for j in (0, 2, 1, 3)]
            out += [pk(wt[8][c[0]], wt[8][c[2]]), pk(wt[8][c[1]], wt[8][c[3]])]
    return out


def broadcast_plan(a_shape, b_shape, out_shape):
    """Broadcast description (rank, out_dims, a_strides, b_strides) or None if same shape."""
    rank = max(len(a_shape), len(b_shape))
    if rank > MAX_DIMS:
        raise ValueError(f"rank {rank} > {MAX_DIMS}")
    a = [1] * (rank - len(a_shape)) + list(a_shape)
    b = [1] * (rank - len(b_shape)) + list(b_shape)
    out = []
    for da, db in zip(a, b):
        if da != db and da != 1 and db != 1:
            raise ValueError(f"shapes {tuple(a_shape)} and {tuple(b_shape)} do not broadcast")
        out.append(max(da, db))
    if list(out_shape) != out and [1] * (len(out) - len(out_shape)) + list(out_shape) != out:
        raise ValueError(f"output shape {tuple(out_shape)} is not the broadcast shape {tuple(out)}")
    if a == out and b == out:
        return None

    def strides(dims):
        st, acc = [0] * rank, 1
        for d in range(rank - 1, -1, -1):
            st[d] = 0 if (dims[d] == 1 and out[d] != 1) else acc
            acc *= dims[d]
        return st

    return rank, out, strides(a), strides(b)
