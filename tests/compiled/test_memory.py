"""The compiled runtime's memory plan: placement and declared overlaps.

* Random placement problems (sizes, lifetimes, declared overlaps): the plan never lets two
  buffers alive at once share a byte beyond a declared overlap (checked here, independently
  of the planner's own check), and its peak is never above the previous planner's (greedy by
  size, lowest fit, no overlaps; re-implemented below).
* overlap.window_shift against a step-by-step replay of the kernel contract it documents.
* A hand-written int8 graph (no TensorFlow) whose plan writes CONV_2D (3x3 stride 1 and 2,
  1x1), DEPTHWISE_CONV_2D (stride 1 and 2, multiplier 1 and 2, the 3x3 fast path and the
  scalar channel tail) and pooling outputs over their inputs at exactly the declared shift,
  and a residual ADD in place: emitted C built with ASan/UBSan on the host, and run on QEMU
  (Cortex-M4, DSP path), bit-exact with the tflite_micro interpreter.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

import support.compiled_harness as H
from conftest import require
import tinygen.codegen.compiled as compiled
from tinygen.codegen.compiled import compile_model, memory, op_table
from tinygen.codegen.compiled.overlap import window_shift
from tinygen.codegen.compiled.placement import Buffer, place_buffers
from tinygen.common.align import align_up
from tinygen.tflite.model import parse_model

ALIGN = 16


def _greedy_by_size(bufs: list[Buffer]) -> int:
    """The planner before overlaps: largest first, lowest aligned offset free of live buffers."""
    placed: list[tuple[int, Buffer]] = []
    peak = 0
    for b in sorted(bufs, key=lambda b: (-b.size, b.first, b.key)):
        live = sorted((o, p.size) for o, p in placed if not (p.last < b.first or b.last < p.first))
        cand = 0
        for o, s in live:
            if cand + b.size <= o:
                break
            cand = max(cand, align_up(o + s, ALIGN))
        placed.append((cand, b))
        peak = max(peak, cand + b.size)
    return peak


def _random_problem(rng) -> tuple[list[Buffer], dict[tuple[int, int], int]]:
    n_ops = int(rng.integers(2, 14))
    bufs, overlaps = [], {}
    key = 0
    chain: Buffer | None = None
    for op in range(n_ops):
        for _ in range(int(rng.integers(0, 3))):  # tensors born at op, random lifetimes
            b = Buffer(key, int(rng.integers(1, 400)), op, int(rng.integers(op, n_ops)))
            bufs.append(b)
            key += 1
        # a chain tensor: dies at the next op, whose output may overlap it
        b = Buffer(key, int(rng.integers(1, 400)), op, min(op + 1, n_ops - 1))
        if chain is not None and chain.last == op and rng.random() < 0.8:
            overlaps[(chain.key, b.key)] = int(rng.integers(0, 500))
        bufs.append(b)
        chain = b
        key += 1
    return bufs, overlaps


def _assert_no_bad_overlap(bufs, overlaps, offsets):
    for a in bufs:
        assert offsets[a.key] >= 0 and offsets[a.key] % ALIGN == 0
        for b in bufs:
            if a.key >= b.key or a.last < b.first or b.last < a.first:
                continue
            oa, ob = offsets[a.key], offsets[b.key]
            if oa < ob + b.size and ob < oa + a.size:
                ok = (ob <= oa - overlaps.get((a.key, b.key), 1 << 40)
                      or oa <= ob - overlaps.get((b.key, a.key), 1 << 40))
                assert ok, (a, b, oa, ob, overlaps)


def test_random_plans_are_legal_and_never_worse_than_greedy_by_size():
    rng = np.random.default_rng(20261202)
    better = 0
    for _ in range(80):
        bufs, overlaps = _random_problem(rng)
        offsets, peak = place_buffers(bufs, overlaps, ALIGN, search_nodes=100)
        _assert_no_bad_overlap(bufs, overlaps, offsets)
        assert peak == max(offsets[b.key] + b.size for b in bufs)
        greedy = _greedy_by_size(bufs)
        assert peak <= greedy
        better += peak < greedy
        # deterministic: the same problem, in another order, gives the same offsets
        assert place_buffers(list(reversed(bufs)), overlaps, ALIGN, search_nodes=100) == (offsets, peak)
    assert better > 15  # the orders and the overlaps do find smaller arenas


def _replay_first_bad_shift(in_h, in_w, in_c, out_h, out_w, out_c, sh, sw, ph, pw, kh, kw) -> int:
    """Smallest shift at which a kernel keeping the contract never overwrites an input byte it
    still reads: pixels computed two at a time, then written (the worst the contract allows)."""
    n = out_h * out_w
    reads = []
    for k in range(n):
        oy, ox = divmod(k, out_w)
        lo = None
        for fy in range(kh):
            for fx in range(kw):
                iy, ix = oy * sh - ph + fy, ox * sw - pw + fx
                if 0 <= iy < in_h and 0 <= ix < in_w:
                    b = (iy * in_w + ix) * in_c
                    lo = b if lo is None else min(lo, b)
        reads.append(lo if lo is not None else 1 << 40)
    worst = 0
    for k in range(0, n, 2):  # the pair (k, k + 1) is written after both are read
        end = min(k + 2, n) * out_c  # bytes written so far
        still = min(reads[k + 2:], default=1 << 40)  # earliest byte later pixels read
        # and, in a grouped conv, the pair's own later channel groups are read after its writes
        still = min(still, reads[k])
        worst = max(worst, end - still)
    return worst


@pytest.mark.parametrize("geom", [
    (10, 10, 6, 10, 10, 6, 1, 1, 1, 1, 3, 3),  # depthwise / conv 3x3 same
    (12, 12, 8, 6, 6, 8, 2, 2, 0, 0, 3, 3),  # stride 2 same (TF pads bottom/right)
    (9, 9, 4, 5, 5, 8, 2, 2, 1, 1, 3, 3),  # odd size, stride 2, channels x2
    (5, 25, 64, 5, 25, 64, 1, 1, 0, 0, 1, 1),  # 1x1
    (6, 6, 16, 3, 3, 16, 2, 2, 0, 0, 2, 2),  # pool 2x2
    (7, 7, 3, 7, 7, 5, 1, 1, 2, 2, 5, 5),  # 5x5 same
])
def test_window_shift_matches_a_replay_of_the_kernel_contract(geom):
    in_h, in_w, in_c, out_h, out_w, out_c, sh, sw, ph, pw, kh, kw = geom
    shift = window_shift(1, in_h, in_w, in_c, out_h, out_w, out_c, sh, sw, ph, pw)
    assert shift is not None and shift >= _replay_first_bad_shift(*geom)
    assert window_shift(2, in_h, in_w, in_c, out_h, out_w, out_c, sh, sw, ph, pw) is None


# ---- a whole graph through the host build and QEMU ---------------------------------------


def _graph() -> bytes:
    """int8 [1,12,12,3] -> CONV 3x3 (8) = a -> CONV 3x3 (8) = b -> ADD(a, b) -> CONV 3x3 (6)
    -> DW 3x3 -> CONV 3x3 /2 (8) -> DW 3x3 /2 x2 -> CONV 1x1 -> DW 3x3 -> MAX_POOL 2x2 /1
    -> AVERAGE_POOL 2x2: per-channel weights, fused ReLU on most ops."""
    from support.flat_model import FlatModel

    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as S

    rng = np.random.default_rng(5)
    fm = FlatModel()
    tensor, op, tensors = fm.tensor, fm.op, fm.tensors
    I8, I32 = S.TensorType.INT8, S.TensorType.INT32
    B, O = S.BuiltinOperator, S.BuiltinOptions

    act_scale = {}  # tensor -> (scale, zero point)

    def act(shape, scale, relu):
        zp = -128 if relu else int(rng.integers(-10, 10))
        t = tensor(shape, I8, [scale], [zp])
        act_scale[t] = (scale, zp)
        return t

    def conv(x, out_shape, k, stride, depthwise=False, relu=True, padding="SAME", dm=1):
        in_c = tensors[x].shape[3]
        out_c = out_shape[3]
        s_in = act_scale[x][0]
        w_s = [float(v) for v in rng.uniform(0.004, 0.012, out_c)]
        shape = [1, k, k, out_c] if depthwise else [out_c, k, k, in_c]
        w = tensor(shape, I8, w_s, [0] * out_c, rng.integers(-127, 128, shape, dtype=np.int8),
                   qdim=3 if depthwise else 0)
        b = tensor([out_c], I32, [s_in * s for s in w_s], [0] * out_c,
                   rng.integers(-2000, 2000, out_c).astype(np.int32))
        fan = k * k * (1 if depthwise else in_c)
        y = act(out_shape, s_in * 0.008 * 70 * np.sqrt(fan) / 60, relu)
        opts = (S.DepthwiseConv2DOptionsT if depthwise else S.Conv2DOptionsT)()
        opts.padding = S.Padding.SAME if padding == "SAME" else S.Padding.VALID
        opts.strideH = opts.strideW = stride
        opts.dilationHFactor = opts.dilationWFactor = 1
        opts.fusedActivationFunction = S.ActivationFunctionType.RELU if relu else S.ActivationFunctionType.NONE
        if depthwise:
            opts.depthMultiplier = dm
            op(B.DEPTHWISE_CONV_2D, [x, w, b], [y], O.DepthwiseConv2DOptions, opts)
        else:
            op(B.CONV_2D, [x, w, b], [y], O.Conv2DOptions, opts)
        return y

    def pool(code, x, out_shape, k, stride):
        y = tensor(out_shape, I8, [act_scale[x][0]], [act_scale[x][1]])
        act_scale[y] = act_scale[x]
        o = S.Pool2DOptionsT()
        o.padding, o.strideH, o.strideW, o.filterHeight, o.filterWidth = S.Padding.VALID, stride, stride, k, k
        op(code, [x], [y], O.Pool2DOptions, o)
        return y

    x = act([1, 12, 12, 3], 0.05, False)
    a = conv(x, [1, 12, 12, 8], 3, 1)
    b = conv(a, [1, 12, 12, 8], 3, 1, relu=False)
    e = act([1, 12, 12, 8], act_scale[a][0] * 1.5, True)
    add = S.AddOptionsT()
    add.fusedActivationFunction = S.ActivationFunctionType.RELU
    op(B.ADD, [a, b], [e], O.AddOptions, add)
    f = conv(e, [1, 12, 12, 6], 3, 1)
    g = conv(f, [1, 12, 12, 6], 3, 1, depthwise=True)  # 4 channels on the fast path + 2 in the tail
    h = conv(g, [1, 6, 6, 8], 3, 2)
    i = conv(h, [1, 3, 3, 16], 3, 2, depthwise=True, dm=2)
    j = conv(i, [1, 3, 3, 16], 1, 1)
    k = conv(j, [1, 3, 3, 16], 3, 1, depthwise=True)
    m = pool(B.MAX_POOL_2D, k, [1, 2, 2, 16], 2, 1)
    out = pool(B.AVERAGE_POOL_2D, m, [1, 1, 1, 16], 2, 1)

    return fm.pack([x], [out], b"tinygen memory-plan test")


def _tight(bufs, overlaps, align, **_):
    """One placement order: the buffers of declared overlaps latest first, so each input lands
    exactly its shift above its output; everything else after them."""
    chain = {k for pair in overlaps for k in pair}
    order = (lambda b: (b.key not in chain, -b.first, -b.size, b.key),)
    return place_buffers(bufs, overlaps, align, search_nodes=0, orders=order, baseline=False)


@pytest.fixture(scope="module")
def graph():
    require(importlib.util.find_spec("tflite_micro") is not None, "tflite_micro (Python package)")
    m = parse_model(_graph(), name="overlaps")
    default = compile_model(m)
    x = H.input_vectors(m.input_tensor().shape, 24, np.random.default_rng(3))
    ref = H.tflm_outputs(m.raw, x)
    with pytest.MonkeyPatch.context() as mp:
        # while this module runs, every build of the graph (host, QEMU) has tight overlaps, in the
        # model's order and with no bands (band.py would run the convolutions row by row instead;
        # tests/compiled/test_band.py checks those)
        mp.setattr(memory, "place_buffers", _tight)
        mp.setattr(compiled, "schedule", lambda program: program)
        yield m, compile_model(m), x, ref, default


def test_the_graph_plan_overlaps_every_kind_at_the_declared_shift(graph):
    m, build, _, _, default = graph
    plan, program = build.memory, build.program
    places = {t.index: t for t in plan.tensors}
    ops = {op.index: op for op in program.ops}
    tight = set()
    for op_i, x, y, shift in plan.overlaps:
        assert places[y].offset <= places[x].offset - shift
        assert dict(ops[op_i].overlap)[x] == shift
        if places[y].offset == places[x].offset - align_up(shift, ALIGN):  # as close as aligned
            op = ops[op_i]
            tight.add((op.opcode, op.param("stride_h"), op.param("depth_multiplier")
                       if op.opcode == "DEPTHWISE_CONV_2D" else 1))
    # the kernels are run with their output written as close behind their reads as declared
    assert {("CONV_2D", 1, 1), ("CONV_2D", 2, 1), ("DEPTHWISE_CONV_2D", 1, 1),
            ("DEPTHWISE_CONV_2D", 2, 2), ("MAX_POOL_2D", 1, 1)} <= tight, tight
    how = {r["opcode"]: r["placement"] for r in op_table(build)}
    assert how["ADD"] == "in-place"
    # the product's own plan of the graph: no larger than the tight one, nor than greedy by size
    assert default.peak_bytes <= build.peak_bytes
    groups: dict[int, list] = {}
    for t in default.memory.tensors:
        if t.location == "arena":
            groups.setdefault(t.buffer, []).append(t)
    old = [Buffer(k, max(t.size for t in g), min(t.first_op for t in g), max(t.last_op for t in g))
           for k, g in groups.items()]
    old += [Buffer(1000 + s.op, s.size, s.op, s.op) for s in default.memory.scratch]
    assert default.peak_bytes <= _greedy_by_size(old)


def test_the_graph_is_bit_exact_on_the_host_with_sanitizers(graph, tmp_path):
    require(H.have_gcc(), "gcc")
    m, _, x, ref, _ = graph
    got = H.build_host([m], tmp_path).run(0, x)
    H.assert_identical(got, ref, "overlapping plan, host ASan/UBSan")


def test_the_graph_is_bit_exact_on_cortex_m4_qemu(graph, tmp_path):
    require(H.have_qemu(), "arm-none-eabi-gcc / qemu-system-arm")
    m, _, x, ref, _ = graph
    outs = H.run_qemu_m4([m], [x[:8]], tmp_path)
    H.assert_identical(outs[0], ref[:8], "overlapping plan, qemu-m4")
