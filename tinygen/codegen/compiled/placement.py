"""Offsets for the arena's buffers: dynamic storage allocation over known lifetimes.

A buffer has a size and a closed lifetime [first, last] in op indices; two buffers alive at
the same op must not share a byte, except a declared overlap (x, y, shift): op y-first's
output y may start ``shift`` or more bytes below its input x and overlap it (overlap.py says
when a kernel allows that).  The problem is NP-hard; this tries several greedy orders (each
buffer at the lowest aligned offset that is free of everything placed and alive at the same
time -- TFLM's greedy planner is one of them), then, while the best is above the live-bytes
lower bound, a bounded local search over placement orders and, for up to EXACT_BUFFERS buffers,
a branch and bound over all orders (node budget); it keeps the smallest peak.  Every step
is deterministic: the same problem gives the same offsets.
"""

from __future__ import annotations

import bisect
import heapq
from dataclasses import dataclass

from tinygen.common.align import align_up


@dataclass(frozen=True)
class Buffer:
    key: int
    size: int
    first: int
    last: int


# Placement orders (sort keys): the first is the previous planner's (greedy by size).
_ORDERS = (
    lambda b: (-b.size, b.first, b.key),
    lambda b: (-b.size, -(b.last - b.first), b.key),
    lambda b: (-b.size * (b.last - b.first + 1), b.key),
    lambda b: (b.first, -b.size, b.key),
    lambda b: (-(b.last - b.first), -b.size, b.key),
    lambda b: (b.last, -b.size, b.key),
    # Latest first: an overlapped output is placed before its input, which then goes above
    # it; a chain of overlapped ops drifts down from the top instead of piling up from 0.
    lambda b: (-b.first, -b.size, b.key),
    lambda b: (-b.last, -b.size, b.key),
)
SEARCH_NODES = 4000  # placements the order search may try after the greedy orders ...
SEARCH_WORK = 1_000_000  # ... and at most this many buffer pairs over all of them (build time)


def live_pairs(bufs: list[Buffer]):
    """Every pair (a, b) of buffers alive at a common op, a before b in ``bufs``' order.

    A sweep over the buffers by first op: time O(n log n + pairs), where the chain
    models' pairs are O(n) (the all-pairs scan was quadratic: 20,000 ops took minutes)."""
    pos = {b.key: i for i, b in enumerate(bufs)}
    by_first = sorted(bufs, key=lambda b: (b.first, pos[b.key]))
    live: list[tuple[int, int, Buffer]] = []  # heap of (last, position, buffer)
    for b in by_first:
        while live and live[0][0] < b.first:
            heapq.heappop(live)
        for _, _, a in live:
            yield (a, b) if pos[a.key] < pos[b.key] else (b, a)
        heapq.heappush(live, (b.last, pos[b.key], b))


def _conflicts(bufs: list[Buffer]) -> dict[int, list[Buffer]]:
    out: dict[int, list[Buffer]] = {b.key: [] for b in bufs}
    for a, b in live_pairs(bufs):
        out[a.key].append(b)
        out[b.key].append(a)
    pos = {b.key: i for i, b in enumerate(bufs)}
    for v in out.values():  # the order the all-pairs scan gave (bufs' order)
        v.sort(key=lambda b: pos[b.key])
    return out


class _Problem:
    def __init__(self, bufs: list[Buffer], overlaps: dict[tuple[int, int], int], align: int):
        self.bufs = sorted(bufs, key=lambda b: b.key)
        self.by_key = {b.key: b for b in self.bufs}
        self.overlaps = overlaps
        self.align = align
        self.conf = _conflicts(self.bufs)

    def forbidden(self, b: Buffer, p: Buffer, off_p: int) -> tuple[int, int]:
        """Open interval of offsets b may not take next to p placed at off_p."""
        s = self.overlaps.get((p.key, b.key))  # b is the output written below p
        if s is not None:
            return off_p - min(s, b.size), off_p + p.size
        s = self.overlaps.get((b.key, p.key))  # b is the input read above p
        if s is not None:
            return off_p - b.size, off_p + min(s, p.size)
        return off_p - b.size, off_p + p.size

    def lowest(self, b: Buffer, offsets: dict[int, int]) -> int:
        ivs = [self.forbidden(b, p, offsets[p.key]) for p in self.conf[b.key] if p.key in offsets]
        cand = 0
        moved = True
        while moved:
            moved = False
            for lo, hi in ivs:
                if lo < cand < hi:
                    cand = align_up(hi, self.align)
                    moved = True
        return cand

    def place(self, order: list[Buffer], bound: int | None = None) -> tuple[dict[int, int], int] | None:
        offsets: dict[int, int] = {}
        peak = 0
        for b in order:
            o = self.lowest(b, offsets)
            offsets[b.key] = o
            peak = max(peak, o + b.size)
            if bound is not None and peak >= bound:
                return None
        return offsets, peak

    def lower_bound(self) -> int:
        """Bytes alive at the busiest op, a declared overlap counted at its best.

        Only ops where a lifetime starts or ends can be the busiest; the bytes alive at each
        are summed with a difference array over those ops (linear after sorting)."""
        times = sorted({b.first for b in self.bufs} | {b.last for b in self.bufs})
        at = {t: i for i, t in enumerate(times)}
        delta = [0] * (len(times) + 1)
        for b in self.bufs:
            delta[at[b.first]] += b.size
            delta[at[b.last] + 1] -= b.size
        for (x, y), s in self.overlaps.items():
            bx, by = self.by_key.get(x), self.by_key.get(y)
            if bx is None or by is None:
                continue
            lo, hi = max(bx.first, by.first), min(bx.last, by.last)
            saved = max(bx.size + by.size - max(min(s, by.size) + bx.size, by.size), 0)
            if lo > hi or not saved:
                continue
            # the busiest op counted is one of `times`: those inside [lo, hi]
            i, j = bisect.bisect_left(times, lo), bisect.bisect_right(times, hi)
            if i < j:
                delta[i] -= saved
                delta[j] += saved
        best = total = 0
        for d in delta[:-1]:
            total += d
            best = max(best, total)
        return best


def place_buffers(bufs: list[Buffer], overlaps: dict[tuple[int, int], int], align: int,
                  search_nodes: int = SEARCH_NODES, orders=_ORDERS,
                  baseline: bool = True) -> tuple[dict[int, int], int]:
    """(offsets by key, peak bytes) for the buffers; overlaps maps (x, y) to y's shift below x.
    ``orders`` (sort keys over Buffer) and ``baseline`` let a test pin one placement order."""
    if not bufs:
        return {}, 0
    pr = _Problem(bufs, overlaps, align)
    bound = pr.lower_bound()
    best: tuple[dict[int, int], int] | None = None
    best_order: list[Buffer] = []
    if baseline:
        # The previous planner's result (greedy by size, no overlaps) is the one to beat: allowing
        # overlaps changes where the greedy orders put things, and could in principle cost bytes.
        plain = _Problem(bufs, {}, align)
        best_order = sorted(plain.bufs, key=_ORDERS[0])
        best = plain.place(best_order)
    for key in orders:
        order = sorted(pr.bufs, key=key)
        got = pr.place(order, None if best is None else best[1])
        if got is not None:
            best, best_order = got, order
        if best is not None and best[1] <= bound:
            return best
    assert best is not None
    # Local search over the best order: move one buffer earlier; keep any strict improvement.
    budget = min(search_nodes, SEARCH_WORK // (len(bufs) * len(bufs)))
    improved = True
    while improved and budget > 0 and best[1] > bound:
        improved = False
        for i in range(1, len(best_order)):
            for j in range(i):
                if budget <= 0:
                    break
                budget -= 1
                order = best_order[:j] + [best_order[i]] + best_order[j:i] + best_order[i + 1:]
                got = pr.place(order, best[1])
                if got is not None:
                    best, best_order, improved = got, order, True
                    break
            if improved or budget <= 0:
                break
    if len(bufs) <= EXACT_BUFFERS and best[1] > bound:
        best = _branch_and_bound(pr, best, bound, budget=search_nodes * 4)
    return best


EXACT_BUFFERS = 10  # up to this many buffers, every placement order is searched (node budget)


def _branch_and_bound(pr: _Problem, best: tuple[dict[int, int], int], bound: int,
                      budget: int) -> tuple[dict[int, int], int]:
    """Depth-first over placement orders, each buffer at its lowest fit, cutting any branch whose
    peak already reaches the best; stops at the lower bound or after ``budget`` placements."""
    state = {"best": best, "left": budget}
    offsets: dict[int, int] = {}

    def visit(rest: list[Buffer], peak: int) -> None:
        if not rest:
            state["best"] = (dict(offsets), peak)
            return
        for k, b in enumerate(rest):
            if state["left"] <= 0 or state["best"][1] <= bound:
                return
            state["left"] -= 1
            o = pr.lowest(b, offsets)
            if max(peak, o + b.size) >= state["best"][1]:
                continue
            offsets[b.key] = o
            visit(rest[:k] + rest[k + 1:], max(peak, o + b.size))
            del offsets[b.key]

    visit(sorted(pr.bufs, key=_ORDERS[0]), 0)
    return state["best"]


def check_placement(bufs: list[Buffer], overlaps: dict[tuple[int, int], int], offsets: dict[int, int]) -> None:
    """AssertionError unless no two buffers alive at once share a byte, but declared overlaps
    (y at least the declared shift below x)."""
    for a, b in live_pairs(bufs):
        oa, ob = offsets[a.key], offsets[b.key]
        if not (oa < ob + b.size and ob < oa + a.size):
            continue
        s = overlaps.get((a.key, b.key))
        if s is not None and ob <= oa - s:
            continue
        s = overlaps.get((b.key, a.key))
        if s is not None and oa <= ob - s:
            continue
        raise AssertionError(f"memory plan overlap: buffers {a.key} and {b.key}")
