"""The compiled runtime's numeric IR: what lowering decided, as numbers only.

:func:`tinygen.codegen.compiled.lowering.lower` builds one :class:`Program` per model;
the memory plan (:mod:`.memory`), the support checks and the C printer
(:mod:`.printer`) all read that one value, so an operator is lowered once per build.
Nothing here is C text: kernel parameters are integers, packed weights are
read-only numpy arrays, tensors are buffer ids (indices into ``Program.tensors``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

import numpy as np

from tinygen.common.errors import UnsupportedModel
from tinygen.tflite.model import Tensor


@dataclass(frozen=True)
class ArrayRef:
    """A params-struct field that points at one of the op's :class:`ConstArray` s."""
    role: str


# A params-struct field: an int, a (nested) tuple of ints (a C array or sub-struct),
# an ArrayRef, or None (a NULL pointer).
Field = Union[int, tuple, ArrayRef, None]


@dataclass(frozen=True, eq=False)
class ConstArray:
    """Constant data one op owns (packed weights, folded bias, multipliers, ...)."""
    role: str  # unique within the op: "w", "b", "w16", "rq", "mult", "shift", "inner"
    values: np.ndarray  # 1-D, int8 or int32, read-only
    align: int = 0  # byte alignment the kernel relies on (0: the type's own)

    def __post_init__(self):
        v = np.array(self.values).reshape(-1)  # a private copy, frozen below
        if v.dtype not in (np.int8, np.int32):
            raise TypeError(f"constant array {self.role} is {v.dtype}, not int8 or int32")
        v.setflags(write=False)
        object.__setattr__(self, "values", v)

    @property
    def nbytes(self) -> int:
        # An empty array is stored as one zero (C has no empty arrays).
        return max(len(self.values), 1) * self.values.dtype.itemsize


@dataclass(frozen=True, eq=False)
class OpIR:
    """One operator, lowered to one call of a tg_kernels.h function."""
    index: int  # operator index in the model
    opcode: str  # TFLite builtin name
    kernel: str  # the tg_kernels.h function that runs it
    inputs: tuple[int, ...]  # tensors passed to the kernel, in argument order
    output: int  # tensor written
    reads: tuple[int, ...]  # activation (non-constant) tensors read
    params: tuple[tuple[str, Field], ...] = ()  # the kernel's parameters, in struct order
    arrays: tuple[ConstArray, ...] = ()  # constant data, in declaration order
    const_inputs: tuple[int, ...] = ()  # constant model tensors passed as data
    inplace: tuple[int, ...] = ()  # reads whose buffer the output may reuse
    alias: int | None = None  # RESHAPE: the output may be a view of this tensor
    # (read, shift): the output may start `shift` or more bytes below that read's first byte
    # and overlap the rest of it, the kernel writing behind what it still reads (overlap.py)
    overlap: tuple[tuple[int, int], ...] = ()
    macs: int = 0
    scratch_bytes: int = 0  # kernel scratch (in the arena) while the op runs

    def param(self, name: str) -> Field:
        for key, value in self.params:
            if key == name:
                return value
        raise KeyError(name)


@dataclass(frozen=True)
class Refusal:
    """One operator the compiled runtime cannot run, and why (a short phrase)."""
    op: int
    opcode: str
    reason: str


@dataclass(frozen=True)
class Band:
    """Ops ``start .. stop - 1`` (positions in ``Program.ops``) run as one band, row by row
    (band.py, firmware/runtime/tg_band.c): convolution stages, then a residual ADD when
    ``row_bytes`` is not 0.  Their intermediate tensors get no arena bytes; the band's
    scratch (one arena buffer while it runs) holds the stages' windows, the last stage's
    output row and the convolutions' im2col scratch, in that order."""
    start: int
    stop: int
    input: int  # tensor stage 0 reads (and the ADD's shortcut)
    output: int  # tensor the band writes (the last stage's, or the ADD's)
    windows: tuple[int, ...]  # bytes of each stage's window but the last's (16-byte multiples)
    row_bytes: int  # the last stage's output row before the ADD (0: no ADD)
    conv_scratch: int  # the CONV_2D stages' im2col scratch
    add_input_first: bool  # the ADD's first operand is the band's input
    output_over_input: bool  # the output may take the input's bytes (row r after its last read)

    @property
    def scratch_bytes(self) -> int:
        return sum(self.windows) + self.row_bytes + self.conv_scratch

    @property
    def positions(self) -> range:
        return range(self.start, self.stop)


@dataclass(frozen=True, eq=False)
class Program:
    """A model as the compiled runtime sees it: tensors, lowered ops, I/O, and what it refused."""
    model_sha256: str
    tensors: tuple[Tensor, ...]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    ops: tuple[OpIR, ...]  # every op that lowered (all of them when supported)
    problems: tuple[str, ...] = ()  # whole-model reasons it cannot be compiled
    refusals: tuple[Refusal, ...] = ()  # per-op reasons, model order
    bands: tuple[Band, ...] = ()  # ops run row by row (band.py), in op order, disjoint

    @property
    def input(self) -> int:
        return self.inputs[0]

    @property
    def output(self) -> int:
        return self.outputs[0]

    @property
    def supported(self) -> bool:
        return not self.problems and not self.refusals

    def unsupported_ops(self) -> list[str]:
        """Distinct op names (first-use order) that have no kernel or a use outside it."""
        return list(dict.fromkeys(r.opcode for r in self.refusals))

    def check(self) -> None:
        """Raise UnsupportedModel (one line) unless the compiled runtime can take the model."""
        if self.problems:
            raise UnsupportedModel("the compiled runtime cannot run this model: " + "; ".join(self.problems)
                                   + "; use --runtime tflm")
        if not self.refusals:
            return
        grouped: dict[tuple[str, str], list[int]] = {}
        for r in self.refusals:
            grouped.setdefault((r.opcode, r.reason), []).append(r.op)
        by_name: dict[str, list[str]] = {}
        for (name, reason), idx in grouped.items():
            where = f"op {idx[0]}" if len(idx) == 1 else "ops " + ", ".join(map(str, idx[:4])) + \
                (", ..." if len(idx) > 4 else "")
            by_name.setdefault(name, []).append(f"{where}: {reason}")
        parts = [f"{name} ({'; '.join(reasons)})" for name, reasons in by_name.items()]
        raise UnsupportedModel("the compiled runtime cannot run this model: unsupported ops: "
                               + ", ".join(parts) + "; use --runtime tflm")
