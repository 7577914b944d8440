"""Scheduling for RAM: the op order and the bands that give the smallest arena.

Two ideas, both chosen only where the memory plan says they lower the arena's peak:

* **Op order.** A model's operators may run in any order that respects the data flow.  The
  order in the file is one of them; another is the greedy one that, step by step, runs the
  ready op that leaves the fewest live bytes (a ResNet block's 1x1 shortcut convolution before
  its 3x3 branch, so the block input dies at the branch's first convolution and that
  convolution's output can overlap it).

* **Bands** (MCUNetV2's patch-based inference, in rows).  A chain of CONV_2D /
  DEPTHWISE_CONV_2D ops whose intermediate tensors are read only by the next op of the chain
  runs one output row at a time (firmware/runtime/tg_band.c): each stage keeps only the rows
  the next stage's filter still needs (a *window*), so the intermediate tensors never exist
  whole.  A *residual band* also takes the ADD that joins the chain's output with the chain's
  input (a ResNet block with an identity shortcut): the ADD runs per row and its output may
  take the input's bytes, row r written once input row r is read for the last time.  Every
  output pixel is computed by the same kernel code as without the band (the kernel is called
  on the rows the pixel reads, with its padding recomputed), so results are identical; the
  tests compare banded models with tflite_micro bit for bit.  The cost is a kernel call per
  stage and output row plus the windows' row shifts (a few hundred instructions per call).

What it trades: the intermediate tensors of a band are not observable.  ``verify --layers``
receives no bytes for those ops (the op hook fires with none, before the band runs) and says
they were not compared; ``profile`` counts the band's time on its last op.

:func:`schedule` is the only entry point: it takes a lowered Program (ops in model order) and
returns it with its ops possibly reordered and ``bands`` set.  Deterministic: the candidates are
tried in a fixed order and ties keep the model's order and fewer bands.
"""

from __future__ import annotations

from dataclasses import replace

from tinygen.codegen.compiled.ir import Band, OpIR, Program
from tinygen.common.align import ARENA_ALIGN

_CONVS = ("tg_conv2d_s8", "tg_depthwise_conv2d_s8")
MAX_STAGES = 16  # TG_BAND_MAX_STAGES in firmware/runtime/tg_kernels.h
# Whole-plan evaluations per model: the placer searches orders itself, so each costs
# milliseconds on small models; beyond this many ops the model keeps its order and no bands.
MAX_OPS = 400


def _align(n: int) -> int:
    return -(-n // ARENA_ALIGN) * ARENA_ALIGN


def _readers(ops: tuple[OpIR, ...]) -> dict[int, list[int]]:
    readers: dict[int, list[int]] = {}
    for pos, op in enumerate(ops):
        for t in dict.fromkeys(op.reads):
            readers.setdefault(t, []).append(pos)
    return readers


def _bandable(op: OpIR) -> bool:
    if op.kernel not in _CONVS or len(op.reads) != 1 or op.inputs != op.reads:
        return False
    return op.param("batches") == 1 and op.param("dilation_h") == 1


def _rows_needed(op: OpIR, n: int) -> tuple[int, int]:
    top = n * op.param("stride_h") - op.param("pad_h")
    return max(top, 0), min(top + op.param("filter_h") - 1, op.param("in_h") - 1)


def _row_bytes(op: OpIR) -> int:
    return op.param("out_w") * op.param("out_c")


def _input_dead_by_row(stages: list[OpIR]) -> bool:
    """A residual band writes output row r over input row r: safe when, once the last stage's
    row r is done, no row stage 0 has still to produce reads input row r (input rows are read
    in order, so none reads a row above it either).  Simulates tg_band.c's production order."""
    k = len(stages)
    produced = [0] * k

    def fill(j: int, upto: int) -> None:
        while produced[j] <= upto:
            _lo, hi = _rows_needed(stages[j], produced[j])
            if j > 0:
                fill(j - 1, hi)
            produced[j] += 1

    last = stages[-1]
    for r in range(last.param("out_h")):
        _lo, hi = _rows_needed(last, r)
        if k > 1:
            fill(k - 2, hi)
        # the next row stage 0 will produce reads input rows from its `lo` on
        nxt = produced[0] if k > 1 else r + 1
        if nxt < stages[0].param("out_h") and _rows_needed(stages[0], nxt)[0] <= r:
            return False
    return True


def _make_band(start: int, stages: list[OpIR], add: OpIR | None,
               x: int) -> Band:
    windows = tuple(_align(stages[j + 1].param("filter_h") * _row_bytes(stages[j]))
                    for j in range(len(stages) - 1))
    row = _align(_row_bytes(stages[-1])) if add is not None else 0
    conv_scratch = max((op.scratch_bytes for op in stages), default=0)
    stop = start + len(stages) + (1 if add is not None else 0)
    return Band(start=start, stop=stop, input=x, output=(add or stages[-1]).output,
                windows=windows, row_bytes=row, conv_scratch=_align(conv_scratch),
                add_input_first=bool(add is not None and add.inputs[0] == x),
                output_over_input=bool(add is not None and _input_dead_by_row(stages)))


def candidates(program: Program) -> list[tuple[Band, tuple[int, int] | None]]:
    """Every band the op order allows beside ``program.bands``, in op order: each residual block
    (chain + ADD; ``None``), then each maximal plain chain of two or more convolutions with its
    position range (a sub-range is a band too)."""
    ops = program.ops
    readers = _readers(ops)
    outputs = set(program.outputs)
    producer = {op.output: pos for pos, op in enumerate(ops)}
    taken = {p for band in program.bands for p in band.positions}
    index_count: dict[int, int] = {}
    for op in ops:
        index_count[op.index] = index_count.get(op.index, 0) + 1

    def stage(pos: int) -> bool:  # a convolution with one kernel call, not in a band yet
        return pos not in taken and _bandable(ops[pos]) and index_count[ops[pos].index] == 1

    found: list[tuple[Band, tuple[int, int] | None]] = []
    # residual: ADD(x, chain(x)) with the chain's ops right before the ADD
    for e, add in enumerate(ops):
        if (e in taken or add.kernel != "tg_add_s8" or index_count[add.index] != 1 or len(set(add.reads)) != 2
                or add.inputs != add.reads or add.param("bcast")[0] != 0):
            continue
        for x, b in ((add.inputs[0], add.inputs[1]), (add.inputs[1], add.inputs[0])):
            chain: list[OpIR] = []
            t = b
            while t in producer and t != x and len(chain) < MAX_STAGES:
                pos = producer[t]
                if not stage(pos) or readers.get(t) != [pos + 1] or t in outputs:
                    break
                chain.insert(0, ops[pos])
                t = ops[pos].reads[0]
            if t != x or not chain:
                continue
            start = e - len(chain)
            if [producer[op.output] for op in chain] != list(range(start, e)):
                continue
            if sorted(readers.get(x, [])) != [start, e]:
                continue
            shape = program.tensors[x].shape
            if program.tensors[b].shape != shape or program.tensors[add.output].shape != shape:
                continue
            found.append((_make_band(start, chain, add, x), None))
            break
    # plain chains: maximal runs of convolutions, each reading the one before it only
    pos = 0
    while pos < len(ops):
        if not stage(pos):
            pos += 1
            continue
        end = pos
        while (end + 1 < len(ops) and end + 1 - pos < MAX_STAGES and stage(end + 1)
               and ops[end + 1].reads[0] == ops[end].output
               and readers.get(ops[end].output) == [end + 1] and ops[end].output not in outputs):
            end += 1
        if end > pos:
            found.append((chain_band(program, pos, end), (pos, end)))
        pos = end + 1
    return found


def chain_band(program: Program, first: int, last: int) -> Band:
    """The plain band of ops ``first .. last`` (positions; a run :func:`candidates` found)."""
    ops = program.ops
    return _make_band(first, list(ops[first:last + 1]), None, ops[first].reads[0])


def _groups(ops: tuple[OpIR, ...]) -> list[list[OpIR]]:
    """Ops grouped by TFLite op (SPLIT / UNPACK are several calls that must stay together)."""
    groups: list[list[OpIR]] = []
    for op in ops:
        if groups and groups[-1][0].index == op.index:
            groups[-1].append(op)
        else:
            groups.append([op])
    return groups


def greedy_order(program: Program) -> tuple[OpIR, ...]:
    """A topological order that runs, each step, the ready op leaving the fewest live bytes
    (ties: the model's order)."""
    groups = _groups(program.ops)
    size = {i: program.tensors[i].nbytes for i in range(len(program.tensors))}
    made = {op.output: g for g, group in enumerate(groups) for op in group}
    need = [{t for op in group for t in op.reads if t in made} for group in groups]
    left_readers: dict[int, int] = {}
    for group in groups:
        for t in {t for op in group for t in op.reads}:
            left_readers[t] = left_readers.get(t, 0) + 1
    done: set[int] = set()
    avail = {t for t in range(len(program.tensors)) if t not in made}
    order: list[OpIR] = []
    while len(done) < len(groups):
        best = None
        for g, group in enumerate(groups):
            if g in done or not need[g] <= avail:
                continue
            reads = {t for op in group for t in op.reads}
            freed = sum(size[t] for t in reads if left_readers[t] == 1 and t not in program.outputs)
            grown = sum(size[op.output] for op in group)
            key = (grown - freed, g)
            if best is None or key < best[0]:
                best = (key, g)
        g = best[1]
        done.add(g)
        for op in groups[g]:
            avail.add(op.output)
        for t in {t for op in groups[g] for t in op.reads}:
            left_readers[t] -= 1
        order.extend(groups[g])
    return tuple(order)


def _with(program: Program, band: Band) -> Program:
    return replace(program, bands=tuple(sorted(program.bands + (band,), key=lambda b: b.start)))


def _bands(program: Program, peak: int, plan) -> tuple[Program, int]:
    """Add bands while one lowers the peak, the best first; a plain chain is cut to the shortest
    sub-chain that gets the same peak (fewer kernel calls, more ops left observable)."""
    while True:
        best = None
        for band, run in candidates(program):
            got = plan(_with(program, band))
            if got >= peak:
                continue
            if run is not None:
                first, last = run
                while last - first > 1 and plan(_with(program, chain_band(program, first + 1, last))) <= got:
                    first += 1
                while last - first > 1 and plan(_with(program, chain_band(program, first, last - 1))) <= got:
                    last -= 1
                band = chain_band(program, first, last)
            if best is None or (got, band.start) < best[:2]:
                best = (got, band.start, band)
        if best is None:
            return program, peak
        program, peak = _with(program, best[2]), best[0]


def schedule(program: Program) -> Program:
    """The Program in the order, and with the bands, whose memory plan has the smallest peak
    (ties: the model's order, then fewer bands)."""
    from tinygen.codegen.compiled.memory import plan_memory

    if not program.supported or len(program.ops) > MAX_OPS or program.bands:
        return program

    def plan(p: Program) -> int:
        return plan_memory(p, quick=True).peak_bytes

    orders = [program]
    greedy = greedy_order(program)
    if greedy != program.ops:
        orders.append(replace(program, ops=greedy))
    best = None
    for rank, base in enumerate(orders):
        seen: dict[tuple[Band, ...], int] = {}

        def plan_once(p: Program) -> int:  # the same bands on the same order: the same plan
            if p.bands not in seen:
                seen[p.bands] = plan(p)
            return seen[p.bands]

        got, peak = _bands(base, plan_once(base), plan_once)
        if best is None or (peak, rank) < best[:2]:
            best = (peak, rank, got)
    chosen = best[2]
    # compared with the placer's quick orders; kept only if its real plan is smaller too
    if chosen is not program and plan_memory(chosen).peak_bytes >= plan_memory(program).peak_bytes:
        return program
    return chosen
