"""Static memory plan for the compiled runtime.

Every non-constant tensor gets a place:

* ``"input"``  -- the caller's input buffer (the model input, and RESHAPE views
  of it): read in place, never copied into the arena;
* ``"output"`` -- the caller's output buffer (the model output, and tensors
  it is a RESHAPE view of): the last kernel writes straight into it;
* ``"arena"``  -- an offset in the one static arena.

Tensors that can share bytes are grouped into buffers first: a RESHAPE output
is a view of its input, and an elementwise op (RELU, RELU6, QUANTIZE,
LOGISTIC, TANH, SOFTMAX, non-broadcast ADD/MUL) writes over its input when
nothing reads that input afterwards.  A windowed op (CONV_2D, DEPTHWISE_CONV_2D,
pooling) may write its output over the input that dies there, starting at least
the op's declared shift below it (``OpIR.overlap``, computed by overlap.py from the
kernel's write-behind-read order).  Arena buffers are then placed by placement.py:
several greedy orders plus a bounded order search, each buffer at the lowest
16-byte-aligned offset free of every buffer alive at the same time (lifetimes are
closed op-index intervals), but the declared overlaps; the smallest peak wins.
Independently of the placer, the plan is checked: two buffers alive at once share
bytes only as a declared overlap allows.

A kernel's scratch buffer (``OpIR.scratch_bytes``, e.g. the im2col columns of
CONV_2D) is one more arena buffer, alive only while its op runs.  A band's
(``Program.bands``, band.py) is alive while its ops run and holds their
intermediate tensors' rows; those tensors get no arena bytes of their own
(location ``"band"``), and a residual band's output may take its input's bytes.

Works on the lowered :class:`~tinygen.codegen.compiled.ir.Program` alone.
"""

from __future__ import annotations

from dataclasses import dataclass

from tinygen.codegen.compiled.ir import Program
from tinygen.codegen.compiled.placement import Buffer, check_placement, live_pairs, place_buffers
from tinygen.common.align import ARENA_ALIGN
from tinygen.common.errors import DoesNotFit



@dataclass(frozen=True)
class TensorPlacement:
    index: int  # tensor index in the model
    name: str
    offset: int  # byte offset in the arena; -1 when location != "arena"
    size: int  # bytes
    first_op: int  # op that writes it (0 for the model input)
    last_op: int  # last op that reads it (the last op for the model output)
    location: str  # "arena" | "input" | "output" | "band" (rows inside a band's scratch only)
    buffer: int  # tensors with the same buffer id share bytes


@dataclass(frozen=True)
class ScratchPlacement:
    op: int  # operator index
    offset: int  # byte offset in the arena
    size: int  # bytes


@dataclass(frozen=True)
class MemoryPlan:
    tensors: tuple[TensorPlacement, ...]
    peak_bytes: int  # arena size: highest offset + size over arena tensors and scratch buffers
    alignment: int = ARENA_ALIGN
    scratch: tuple[ScratchPlacement, ...] = ()
    views: frozenset[int] = frozenset()  # ops (RESHAPE) whose output is a view: no code runs
    # (op, input tensor, output tensor, shift): the output starts `shift` or more bytes below
    # the input and shares bytes with it (declared by the op, see overlap.py)
    overlaps: tuple[tuple[int, int, int, int], ...] = ()

    def scratch_for(self, op_index: int) -> ScratchPlacement | None:
        for s in self.scratch:
            if s.op == op_index:
                return s
        return None

    @property
    def scratch_bytes(self) -> int:
        return max((s.size for s in self.scratch), default=0)

    def placement(self, tensor_index: int) -> TensorPlacement:
        for t in self.tensors:
            if t.index == tensor_index:
                return t
        raise KeyError(tensor_index)

    @property
    def arena_bytes(self) -> int:
        return self.peak_bytes


class _Buffers:
    """Union-find over tensors; each group's last reader is kept at its root."""

    def __init__(self):
        self.parent: dict[int, int] = {}
        self.last: dict[int, int] = {}

    def add(self, t: int, last: int) -> None:
        if t not in self.parent:
            self.parent[t], self.last[t] = t, last

    def find(self, t: int) -> int:
        while self.parent[t] != t:
            self.parent[t] = self.parent[self.parent[t]]
            t = self.parent[t]
        return t

    def union(self, keep: int, other: int) -> None:
        a, b = self.find(keep), self.find(other)
        if a != b:
            self.parent[b] = a
            self.last[a] = max(self.last[a], self.last.pop(b))

    def group_last(self, root: int) -> int:
        """The last op that reads any tensor of root's group."""
        return self.last[root]


def first_band_input(program: Program, add_position: int) -> int | None:
    """The input of the residual band whose ADD is at ``add_position``."""
    for band in program.bands:
        if band.row_bytes and band.stop - 1 == add_position:
            return band.input
    return None


def plan_memory(program: Program, *, quick: bool = False) -> MemoryPlan:
    """Static arena plan (offsets, sizes, lifetimes) for a supported Program.  ``quick``: the
    placer's greedy orders only, no search (band.py compares schedules with it)."""
    program.check()
    steps = program.ops
    n_ops = len(steps)
    in_t, out_t = program.input, program.output
    first: dict[int, int] = {in_t: 0}
    last: dict[int, int] = {in_t: 0}
    for i, st in enumerate(steps):
        first.setdefault(st.output, i)
        last.setdefault(st.output, i)
        for t in st.reads:
            last[t] = max(last.get(t, i), i)
    last[out_t] = n_ops - 1
    # A band (band.py) runs all its ops at its first position: its input lives to its end, its
    # output from its start, and its intermediate tensors are rows in the band's scratch.
    internal: set[int] = set()
    band_add: dict[int, bool] = {}  # position of a residual band's ADD -> output may take the input
    for band in program.bands:
        members = {steps[p].output for p in band.positions}
        internal |= members - {band.output}
        last[band.input] = max(last[band.input], band.stop - 1)
        first[band.output] = min(first[band.output], band.start)
        if band.row_bytes:
            band_add[band.stop - 1] = band.output_over_input
    size = {t: program.tensors[t].nbytes for t in first}

    bufs = _Buffers()
    for t in first:
        bufs.add(t, last[t])
    loc = {t: "arena" for t in first}
    loc[in_t] = "input"
    loc[out_t] = "output"
    for t in internal:
        loc[t] = "band"

    views: set[int] = set()
    for i, st in enumerate(steps):
        y = st.output
        if st.alias is not None:
            a, b = bufs.find(st.alias), bufs.find(y)
            la, lb = loc[a], loc[b]
            if la == "arena" or lb == "arena" or la == lb:
                keep_loc = la if la != "arena" else lb
                bufs.union(a, b)
                loc[bufs.find(a)] = keep_loc
                views.add(st.index)
            continue
        if y == out_t:
            continue
        for x in st.inplace:
            if i in band_add and not (band_add[i] and x == first_band_input(program, i)):
                continue
            r = bufs.find(x)
            if loc[r] != "arena" or size[x] != size[y]:
                continue
            if bufs.group_last(r) != i:
                continue
            bufs.union(r, y)
            break

    # Buffers: size, lifetime.
    groups: dict[int, list[int]] = {}
    for t in first:
        groups.setdefault(bufs.find(t), []).append(t)
    info = {}
    for r, members in groups.items():
        info[r] = (max(size[t] for t in members), min(first[t] for t in members),
                   max(last[t] for t in members))

    # Scratch buffers: keys after every tensor index, alive during their op only.
    scratch_key: dict[int, int] = {}
    base = max(first, default=0) + 1
    banded = {p for band in program.bands for p in band.positions}
    for i, st in enumerate(steps):
        if st.scratch_bytes > 0 and i not in banded:
            key = base + i
            scratch_key[key] = st.index
            info[key] = (int(st.scratch_bytes), i, i)
    for band in program.bands:
        key = base + band.start
        scratch_key[key] = steps[band.start].index
        info[key] = (band.scratch_bytes, band.start, band.stop - 1)

    # Declared overlaps (overlap.py): op i's output below the input that dies at op i.
    overlaps: dict[tuple[int, int], int] = {}
    declared: list[tuple[int, int, int, int, int, int]] = []
    for i, st in enumerate(steps):
        ry = bufs.find(st.output)
        if st.alias is not None or loc[ry] != "arena" or info[ry][1] != i:
            continue
        for x, shift in st.overlap:
            rx = bufs.find(x)
            if loc[rx] == "arena" and rx != ry and info[rx][2] == i:
                overlaps[(rx, ry)] = shift
                declared.append((st.index, x, st.output, shift, rx, ry))

    arena_roots = [r for r in groups if loc[r] == "arena"] + list(scratch_key)
    buffers = [Buffer(r, *info[r]) for r in sorted(arena_roots)]
    offsets, peak = place_buffers(buffers, overlaps, ARENA_ALIGN, **({"search_nodes": 0} if quick else {}))
    if peak > 2**31 - 1:
        # Arena offsets are int32 arithmetic in the emitted C; no microcontroller has this much.
        raise DoesNotFit(f"the compiled runtime's arena would be {peak} bytes; the model is far too large")
    # Independent of the placer: nothing alive at once shares a byte, but the declared overlaps.
    check_placement(buffers, overlaps, offsets)

    order = sorted(first, key=lambda t: (first[t], t))
    placements = tuple(
        TensorPlacement(
            index=t, name=program.tensors[t].name, offset=offsets.get(bufs.find(t), -1), size=size[t],
            first_op=first[t], last_op=last[t], location=loc[bufs.find(t)], buffer=bufs.find(t),
        )
        for t in order
    )
    scratch = tuple(ScratchPlacement(op=scratch_key[k], offset=offsets[k], size=info[k][0])
                    for k in sorted(scratch_key))
    used = tuple((op, x, y, shift) for op, x, y, shift, rx, ry in declared
                 if offsets[ry] < offsets[rx] + info[rx][0] and offsets[rx] < offsets[ry] + info[ry][0])
    return MemoryPlan(placements, peak, scratch=scratch, views=frozenset(views), overlaps=used)


def memory_table(plan: MemoryPlan) -> list[dict]:
    """Rows for ``tinygen inspect --runtime compiled``: one per non-constant tensor."""
    rows = []
    # shares_with: the tensors of the same buffer alive at an op this one is alive at (a RESHAPE
    # view, an elementwise op's input it writes over). Members alive at other times are only in
    # the same buffer id; listing every member made a chain of n in-place ops n^2 entries.
    members: dict[int, list[TensorPlacement]] = {}
    for t in plan.tensors:
        members.setdefault(t.buffer, []).append(t)
    shares: dict[int, list[int]] = {t.index: [] for t in plan.tensors}
    for group in members.values():
        if len(group) < 2:
            continue
        pos = {t.index: k for k, t in enumerate(group)}
        pairs = live_pairs([Buffer(t.index, t.size, t.first_op, t.last_op) for t in group])
        for a, b in pairs:
            shares[a.key].append(b.key)
            shares[b.key].append(a.key)
        for t in group:
            shares[t.index].sort(key=pos.__getitem__)
    over_by: dict[int, list[dict]] = {}
    for _, x, y, shift in plan.overlaps:
        over_by.setdefault(y, []).append({"tensor": x, "shift": shift})
    for t in plan.tensors:
        # a declared overlap (overlap.py): this tensor starts at least `shift` bytes below that input
        # and its op writes behind what it still reads, so the two may share bytes while both live
        over = over_by.get(t.index, [])
        rows.append({
            "tensor": t.index,
            "name": t.name,
            "location": t.location,
            "offset": t.offset if t.location == "arena" else None,
            "size": t.size,
            "first_op": t.first_op,
            "last_op": t.last_op,
            "buffer": t.buffer,
            "shares_with": shares[t.index],
            "writes_over": over,
        })
    return rows
