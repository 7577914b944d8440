"""The one C printer: ``(Program, MemoryPlan, prefix)`` -> ``<prefix>_model.h`` and ``<prefix>_model.c``.

Pure: same Program, plan and prefix, same text, byte for byte.  Every number comes
from the IR (:mod:`.ir`); this module only decides how it is spelled in C: names
(``<prefix>_op<i>_<role>``), array layout, the params structs and one call per op.

Every op is followed by a call of the op hook when one is set (``<prefix>_set_op_hook``): the
validation firmware's LAYERS and PROFILE requests stream or time each op's output through it.
The hook is a pointer compiled in always, not a build switch, so ``tinygen verify`` runs the very
object code a user's program links; unset, it costs one load and branch per op.

Why Python f-strings here when every project file is a jinja template (templates/, rendered by
:mod:`tinygen.codegen.render`): this file is printed op by op from a numeric IR (one declaration
and one call per op, arrays of numbers), which a template could only loop over while calling back
into Python for every spelling.  The rule is the same on both paths: user text (here tensor names
and op names, which come from the model file) reaches C only through
:mod:`tinygen.common.escape` (``c_comment`` here; filters in the templates); the rest of what
is printed is numbers, names this module makes (``<prefix>`` is checked by :func:`check_prefix`)
and tinygen's own text.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Callable

import numpy as np

from tinygen.codegen.compiled.ir import ArrayRef, ConstArray, OpIR, Program
from tinygen.codegen.compiled.memory import MemoryPlan
from tinygen.common.errors import TinygenError
from tinygen.common.escape import c_comment
from tinygen.common.version import VERSION

# The params struct each kernel takes (None: the kernel takes its numbers as arguments).
STRUCTS: dict[str, str | None] = {
    "tg_fully_connected_s8": "tg_fc_params_t",
    "tg_conv2d_s8": "tg_conv_params_t",
    "tg_depthwise_conv2d_s8": "tg_conv_params_t",
    "tg_avg_pool_s8": "tg_pool_params_t",
    "tg_max_pool_s8": "tg_pool_params_t",
    "tg_softmax_s8": "tg_softmax_params_t",
    "tg_logistic_s8": "tg_sigmoid_params_t",
    "tg_tanh_s8": "tg_sigmoid_params_t",
    "tg_add_s8": "tg_add_params_t",
    "tg_mul_s8": "tg_mul_params_t",
    "tg_requantize_s8": "tg_requant_params_t",
    "tg_pad_s8": "tg_pad_params_t",
    "tg_mean_s8": "tg_reduce_params_t",
    "tg_clamp_s8": None,
    "tg_copy_s8": None,
    "tg_concat_s8": None,
}
# Elementwise, activation and reduction kernels (lowering/elementwise.py, activation.py, reduce.py).
STRUCTS.update({
    "tg_leaky_relu_s8": "tg_leaky_relu_params_t",
    "tg_prelu_s8": "tg_prelu_params_t",
    "tg_hard_swish_s8": "tg_hard_swish_params_t",
    "tg_abs_s8": "tg_abs_params_t",
    "tg_sub_s8": "tg_add_params_t",
    "tg_squared_difference_s8": "tg_add_params_t",
    "tg_minimum_s8": "tg_minmax_params_t",
    "tg_maximum_s8": "tg_minmax_params_t",
    "tg_reduce_max_s8": "tg_reduce_params_t",
    "tg_reduce_min_s8": "tg_reduce_params_t",
})

# TG_KERNELS_ABI_VERSION in firmware/runtime/tg_kernels.h: the emitted model code checks it at
# compile time, so a model emitted for other kernels fails to build instead of misbehaving.
KERNELS_ABI_VERSION = 6

# Values per line of a constant array: int8 data 16, int32 data 8, except these roles.
_PER_LINE = {"shift": 16, "inner": 16}


def _c_float(value: float) -> str:
    text = "%.9g" % float(np.float32(value))
    if not any(ch in text for ch in ".en"):
        text += ".0"
    return text + "f"


def _abi_check(prefix: str) -> str:
    """Compile-time guard: kernels from another tinygen fail the build with a clear message
    instead of linking against structs or weight layouts this code was not emitted for."""
    n = KERNELS_ABI_VERSION
    return (
        f"#if !defined(TG_KERNELS_ABI_VERSION) || TG_KERNELS_ABI_VERSION != {n}\n"
        f"#error \"{prefix}_model.c was generated for tinygen kernel ABI version {n}, but tg_kernels.h is "
        "another version: regenerate the model code and the kernels with one tinygen\"\n"
        "#endif\n"
    )


def check_prefix(prefix: str) -> str:
    if not re.fullmatch(r"[a-z][a-z0-9_]{0,30}", prefix or ""):
        raise TinygenError(f"C prefix '{prefix}' must be a lowercase C identifier (letters, digits, _)")
    return prefix


def _ctype(values: np.ndarray) -> str:
    return "int8_t" if values.dtype == np.int8 else "int32_t"


def c_int_array(ctype: str, name: str, values, per_line: int = 16, align: int = 0) -> str:
    vals = [int(v) for v in np.asarray(values).reshape(-1)]
    if not vals:
        vals = [0]
    lines = []
    for i in range(0, len(vals), per_line):
        lines.append("    " + ", ".join(str(v) for v in vals[i:i + per_line]) + ",")
    attr = f" __attribute__((aligned({align})))" if align else ""
    return f"static const {ctype} {name}[{len(vals)}]{attr} = {{\n" + "\n".join(lines) + "\n};"


class _Names:
    """C spellings of an op's data: params struct, its arrays, tensor pointers."""

    def __init__(self, program: Program, memory: MemoryPlan, prefix: str):
        self.program, self.memory, self.prefix = program, memory, prefix
        self.arena = f"{prefix}_arena"
        self.places = {t.index: t for t in memory.tensors}

    def params(self, op: OpIR) -> str:
        return f"{self.prefix}_op{op.index}"

    def array(self, op: OpIR, role: str) -> str:
        return f"{self.prefix}_op{op.index}_{role}"

    def constant(self, t: int) -> str:
        return f"{self.prefix}_t{t}"

    def tensor(self, t: int) -> str:
        if self.program.tensors[t].is_constant:
            return self.constant(t)
        pl = self.places[t]
        if pl.location in ("input", "output"):
            return pl.location  # the argument of <prefix>_invoke with that name
        return f"({self.arena} + {pl.offset})" if pl.offset else self.arena

    def scratch(self, op: OpIR) -> str:
        sp = self.memory.scratch_for(op.index)
        if sp is None:
            raise AssertionError("an op without a scratch buffer asked for one")
        return f"(int16_t *)(void *)({self.arena} + {sp.offset})" if sp.offset else f"(int16_t *)(void *){self.arena}"

    def field(self, op: OpIR, value) -> str:
        if value is None:
            return "NULL"
        if isinstance(value, ArrayRef):
            return self.array(op, value.role)
        if isinstance(value, tuple):
            return "{" + ", ".join(self.field(op, v) for v in value) + "}"
        return str(int(value))


# ---- one call per op, keyed by kernel -------------------------------------------------

def _call_struct(op: OpIR, n: _Names) -> str:
    args = ", ".join(n.tensor(t) for t in op.inputs + (op.output,))
    return f"{op.kernel}(&{n.params(op)}, {args});"


def _call_conv2d(op: OpIR, n: _Names) -> str:
    x, = op.inputs
    return f"tg_conv2d_s8(&{n.params(op)}, {n.tensor(x)}, {n.tensor(op.output)}, {n.scratch(op)});"


def _call_clamp(op: OpIR, n: _Names) -> str:
    x, = op.inputs
    return (f"tg_clamp_s8({op.param('size')}, {op.param('lo')}, {op.param('hi')}, "
            f"{n.tensor(x)}, {n.tensor(op.output)});")


def _call_copy(op: OpIR, n: _Names) -> str:
    x, = op.inputs
    return f"tg_copy_s8({op.param('size')}, {n.tensor(x)}, {n.tensor(op.output)});"


def _call_concat(op: OpIR, n: _Names) -> str:
    count = op.param("count")
    lst = ", ".join(n.tensor(t) for t in op.inputs)
    return ("{\n        const int8_t *const ins[%d] = {%s};\n"
            "        tg_concat_s8(%d, %d, ins, %s, %s);\n    }"
            % (count, lst, op.param("outer"), count, n.array(op, "inner"), n.tensor(op.output)))


CALLS: dict[str, Callable[[OpIR, _Names], str]] = {
    "tg_conv2d_s8": _call_conv2d,
    "tg_clamp_s8": _call_clamp,
    "tg_copy_s8": _call_copy,
    "tg_concat_s8": _call_concat,
}


# ---- shape and spatial ops (lowering/gather.py, shape.py, resize.py, transpose_conv.py) ----

def _call_gather(op: OpIR, n: _Names) -> str:
    arr, = op.arrays
    x, = op.inputs
    return f"tg_gather_s8({n.array(op, arr.role)}, {n.tensor(x)}, {n.tensor(op.output)});"


def _call_transpose_conv(op: OpIR, n: _Names) -> str:
    x, = op.inputs
    scratch = n.scratch(op).replace("(int16_t *)", "(int32_t *)")
    return f"tg_transpose_conv_s8(&{n.params(op)}, {n.tensor(x)}, {n.tensor(op.output)}, {scratch});"


STRUCTS.update({
    "tg_gather_s8": None,
    "tg_resize_nearest_s8": "tg_resize_params_t",
    "tg_resize_bilinear_s8": "tg_resize_params_t",
    "tg_transpose_conv_s8": "tg_transpose_conv_params_t",
})
CALLS.update({"tg_gather_s8": _call_gather, "tg_transpose_conv_s8": _call_transpose_conv})


def _array_decl(op: OpIR, arr: ConstArray, n: _Names) -> str:
    per_line = _PER_LINE.get(arr.role, 16 if arr.values.dtype == np.int8 else 8)
    return c_int_array(_ctype(arr.values), n.array(op, arr.role), arr.values, per_line, align=arr.align)


def _op_decls(op: OpIR, n: _Names, struct: bool = True) -> list[str]:
    decls = [_array_decl(op, arr, n) for arr in op.arrays]
    ctype = STRUCTS[op.kernel]
    if ctype is not None and struct:
        fields = "\n".join(f"    .{key} = {n.field(op, value)}," for key, value in op.params)
        decls.append(f"static const {ctype} {n.params(op)} = {{\n{fields}\n}};")
    return decls


# ---- bands (band.py): a chain of convolutions run row by row ------------------------------

def _hook(n: _Names, index: int, tensor: str, nbytes: int) -> str:
    p = n.prefix
    return f"    if ({p}_hook != NULL) {{\n        {p}_hook({p}_hook_ctx, {index}u, {tensor}, {nbytes}u);\n    }}"


def _band_decls(band, program: Program, n: _Names) -> list[str]:
    ops = program.ops
    name = f"{n.prefix}_band{ops[band.start].index}"
    sp = n.memory.scratch_for(ops[band.start].index)
    at = sp.offset
    stages = [ops[p] for p in band.positions][:len(band.windows) + 1]
    lines = []
    for j, op in enumerate(stages):
        if j < len(band.windows):
            window, rows = f"{n.arena} + {at}", stages[j + 1].param("filter_h")
            at += band.windows[j]
        else:
            window, rows = "NULL", 0
        kernel = "tg_band_depthwise" if op.kernel == "tg_depthwise_conv2d_s8" else "tg_conv2d_s8"
        lines.append(f"    {{&{n.params(op)}, {kernel}, {window}, {rows}}},")
    row = f"{n.arena} + {at}" if band.row_bytes else "NULL"
    at += band.row_bytes
    add, add_decl = "NULL", []
    if band.row_bytes:  # the ADD's params for one row (size = the row's bytes): no copy at run time
        op = ops[band.stop - 1]
        row_len = stages[-1].param("out_w") * stages[-1].param("out_c")
        fields = "\n".join(f"    .{key} = {row_len if key == 'size' else n.field(op, value)},"
                           for key, value in op.params)
        add_decl = [f"static const {STRUCTS[op.kernel]} {n.params(op)} = {{\n{fields}\n}};"]
        add = f"&{n.params(op)}"
    return add_decl + [
        f"static const tg_band_stage_t {name}_stages[{len(stages)}] = {{\n" + "\n".join(lines) + "\n};",
        f"static const tg_band_params_t {name} = {{\n    .stages = {len(stages)},\n    .stage = {name}_stages,\n"
        f"    .add = {add},\n    .add_input_first = {int(band.add_input_first)},\n    .row = {row},\n"
        f"    .scratch = (int16_t *)(void *)({n.arena} + {at}),\n}};",
    ]


def _band_body(band, program: Program, n: _Names) -> list[str]:
    """The band's call; before it, the op hook for each op whose output exists only as rows (no
    bytes: LAYERS says it was not compared, PROFILE counts the band on its last op)."""
    ops, tensors = program.ops, program.tensors
    members = [ops[p] for p in band.positions]
    body = [f"    /* ops {', '.join(str(op.index) for op in members)}: a band ("
            f"{', '.join(c_comment(op.opcode) for op in members)}) run row by row -> tensor {band.output} "
            f"{list(tensors[band.output].shape)} */"]
    for op in members[:-1]:
        body.append(_hook(n, op.index, "NULL", 0))
    body.append(f"    tg_band_s8(&{n.prefix}_band{members[0].index}, {n.tensor(band.input)}, "
                f"{n.tensor(band.output)});")
    body.append(_hook(n, members[-1].index, n.tensor(band.output), tensors[band.output].nbytes))
    return body


# ---- the two files ----------------------------------------------------------------------

def print_c(program: Program, memory: MemoryPlan, prefix: str = "tg") -> dict[str, str]:
    """``{f"{prefix}_model.h": text, f"{prefix}_model.c": text}`` for a supported Program."""
    check_prefix(prefix)
    program.check()
    n = _Names(program, memory, prefix)
    up = prefix.upper()
    x = program.tensors[program.input]
    y = program.tensors[program.output]
    tensors = program.tensors

    const_tensors = list(dict.fromkeys(t for op in program.ops for t in op.const_inputs))
    ops_count = Counter(op.opcode for op in program.ops)
    ops_text = ", ".join(f"{c_comment(k)} x{v}" for k, v in sorted(ops_count.items()))

    body: list[str] = []
    decls: list[str] = []
    weights_bytes = 0
    for t in const_tensors:
        tensor = tensors[t]
        if tensor.dtype != "int8":
            raise TinygenError(f"constant tensor '{tensor.name}' is {tensor.dtype}, expected int8")
        # Tensor names come from the model file: c_comment() keeps them from closing the comment.
        decls.append(f"/* constant tensor {t}: {c_comment(tensor.name, 64)} {list(tensor.shape)} */")
        decls.append(c_int_array("int8_t", n.constant(t), tensor.data, 16))
        weights_bytes += max(int(np.asarray(tensor.data).size), 1)
    # An op with several outputs (SPLIT, UNPACK) is several kernel calls with one op index: the hook
    # fires once per TFLite op, after its last call, with its first output (what --layers compares).
    last_call = {op.index: k for k, op in enumerate(program.ops)}
    first_output = {}
    for op in program.ops:
        first_output.setdefault(op.index, op.output)
    band_at = {band.start: band for band in program.bands}
    banded = {p: band for band in program.bands for p in band.positions}
    band_decls: list[str] = []
    for k, op in enumerate(program.ops):
        decls.append(f"/* op {op.index}: {c_comment(op.opcode)} */")
        # a residual band's ADD: its params are printed for one row with the band (_band_decls)
        decls.extend(_op_decls(op, n, struct=not (k in banded and banded[k].row_bytes and k == banded[k].stop - 1)))
        weights_bytes += sum(arr.nbytes for arr in op.arrays)
        if k in band_at:
            band_decls.extend(_band_decls(band_at[k], program, n))
            body.extend(_band_body(band_at[k], program, n))
        if k in banded:
            continue
        body.append(f"    /* op {op.index}: {c_comment(op.opcode)} -> tensor {op.output} "
                    f"{list(tensors[op.output].shape)} */")
        if op.index in memory.views:
            body.append("    /* view of the input tensor: no code */")
        else:
            body.append("    " + CALLS.get(op.kernel, _call_struct)(op, n))
        if last_call[op.index] == k:
            hooked = first_output[op.index]
            body.append(_hook(n, op.index, n.tensor(hooked), tensors[hooked].nbytes))

    arena_bytes = memory.peak_bytes
    banner = (
        f" * Generated by tinygen {VERSION} (compiled runtime). Do not edit.\n"
        f" * Model sha256: {program.model_sha256}\n"
        f" * Operators: {len(program.ops)} ({ops_text})\n"
        f" * Arena: {arena_bytes} bytes (incl. {memory.scratch_bytes} of kernel scratch); "
        f"constant data: {weights_bytes} bytes\n"
    )
    guard = f"{up}_MODEL_H"
    h = (
        f"/*\n * {prefix}_model.h -- the model as plain C (tinygen compiled runtime).\n *\n{banner} */\n"
        f"#ifndef {guard}\n#define {guard}\n\n#include <stdint.h>\n\n"
        "#ifdef __cplusplus\nextern \"C\" {\n#endif\n\n"
        f"#define {up}_CM_INPUT_BYTES {x.nbytes}\n"
        f"#define {up}_CM_OUTPUT_BYTES {y.nbytes}\n"
        f"#define {up}_CM_ARENA_BYTES {arena_bytes}\n"
        f"#define {up}_CM_INPUT_SCALE {_c_float(x.scale[0])}\n"
        f"#define {up}_CM_INPUT_ZERO_POINT ({x.zero_point[0]})\n"
        f"#define {up}_CM_OUTPUT_SCALE {_c_float(y.scale[0])}\n"
        f"#define {up}_CM_OUTPUT_ZERO_POINT ({y.zero_point[0]})\n"
        f"#define {up}_CM_MODEL_SHA256 \"{program.model_sha256}\"\n\n"
        f"/* Run the model once: input holds {up}_CM_INPUT_BYTES int8 values, output\n"
        f" * receives {up}_CM_OUTPUT_BYTES (row-major, shapes {list(x.shape)} -> {list(y.shape)}).\n"
        " * Returns 0 (-1 if a pointer is NULL). Not reentrant: one static arena. */\n"
        f"int {prefix}_invoke(const int8_t *input, int8_t *output);\n\n"
        "/* Called after every op of the following invokes when set (NULL: none, the default): op is the\n"
        " * model's operator index, output the tensor it wrote (bytes long), valid during the call only.\n"
        " * The validation firmware streams (LAYERS) or times (PROFILE) the ops through it. */\n"
        f"typedef void (*{prefix}_op_hook_t)(void *ctx, uint32_t op, const void *output, uint32_t bytes);\n"
        f"void {prefix}_set_op_hook({prefix}_op_hook_t hook, void *ctx);\n\n"
        "#ifdef __cplusplus\n}\n#endif\n\n"
        f"#endif /* {guard} */\n"
    )
    arena_decl = (
        f"static int8_t {n.arena}[{up}_CM_ARENA_BYTES] __attribute__((aligned(16)));\n"
        if arena_bytes > 0 else "/* no arena: every tensor lives in the caller's buffers */\n"
    )
    c = (
        f"/*\n * {prefix}_model.c -- the model as plain C (tinygen compiled runtime).\n *\n{banner} */\n"
        f"#include <stddef.h>\n#include <stdint.h>\n\n#include \"tg_kernels.h\"\n#include \"{prefix}_model.h\"\n\n"
        f"{_abi_check(prefix)}\n"
        + "\n\n".join(decls) + "\n\n"
        + arena_decl + "\n"
        + ("\n\n".join(band_decls) + "\n\n" if band_decls else "")
        + f"static {prefix}_op_hook_t {prefix}_hook;\nstatic void *{prefix}_hook_ctx;\n\n"
        f"void {prefix}_set_op_hook({prefix}_op_hook_t hook, void *ctx)\n{{\n"
        f"    {prefix}_hook = hook;\n    {prefix}_hook_ctx = ctx;\n}}\n\n"
        f"int {prefix}_invoke(const int8_t *input, int8_t *output)\n{{\n"
        "    if (input == NULL || output == NULL) {\n        return -1;\n    }\n"
        + "\n".join(body) + "\n    return 0;\n}\n"
    )
    return {f"{prefix}_model.h": h, f"{prefix}_model.c": c}
