"""tinygen's compiled runtime: an int8 model as plain C99, no interpreter.

The emitted ``tg_model.c`` calls our own kernels (``firmware/runtime/``:
``tg_kernels.h`` and the files it lists) in a straight line over one static
arena.  Results are bit-identical to the TensorFlow Lite Micro interpreter
(the tflite_micro Python wheel is the reference the tests compare against).

The way through, each step reading the previous one's value only::

    lower(model) -> Program                   # lowering/ -> ir.py: numbers, no C; once per build
                                              # (packing.py: the kernels' weight layouts)
    schedule(program) -> Program              # band.py: op order and bands for the smallest arena
    plan_memory(program) -> MemoryPlan        # memory.py: the static arena
    print_c(program, plan, prefix) -> {"<prefix>_model.h": text, "<prefix>_model.c": text}
                                              # printer.py: the only place C is written

    compile_model(model) -> CompiledBuild     # lower + check + plan, what a build keeps
    check_supported(program) / unsupported_ops(program) / op_table(build) / memory_table(plan)
    emit(model, *, prefix="tg")               # the whole way at once (tests, benchmarks)
    kernel_sources() -> {"tg_kernels.h": text, "tg_conv.c": text, ...}   # every kernel file
"""

from __future__ import annotations

from dataclasses import dataclass

from tinygen.codegen.compiled.band import schedule
from tinygen.codegen.compiled.ir import OpIR, Program
from tinygen.codegen.compiled.lowering import SUPPORTED_OPS, lower
from tinygen.codegen.compiled.memory import MemoryPlan, TensorPlacement, memory_table, plan_memory
from tinygen.codegen.compiled.printer import KERNELS_ABI_VERSION, print_c
from tinygen.tflite.model import TfliteModel

__all__ = [
    "KERNELS_ABI_VERSION", "SUPPORTED_OPS", "CompiledBuild", "MemoryPlan", "OpIR", "Program", "TensorPlacement",
    "check_supported", "compile_model", "emit", "kernel_sources", "lower", "memory_table", "op_table",
    "plan_memory", "print_c", "schedule", "unsupported_ops",
]

# firmware/runtime/ files that are not kernels: the runtime glue render.py copies itself.
@dataclass(frozen=True, eq=False)
class CompiledBuild:
    """What a build keeps for the compiled runtime: the lowered model and its memory plan.
    C is printed from it at render time (:meth:`sources`)."""
    program: Program
    memory: MemoryPlan

    @property
    def peak_bytes(self) -> int:
        return self.memory.peak_bytes

    @property
    def arena_bytes(self) -> int:
        return self.memory.arena_bytes

    @property
    def constant_bytes(self) -> int:
        """Flash the emitted model's constant data takes: every op's arrays (packed and widened
        weights, folded biases, requantization constants) and the model tensors passed as data,
        each once -- what the firmware stores, not the .tflite's weight bytes."""
        arrays = sum(int(a.values.nbytes) for op in self.program.ops for a in op.arrays)
        tensors = dict.fromkeys(t for op in self.program.ops for t in op.const_inputs)
        return arrays + sum(int(self.program.tensors[t].nbytes) for t in tensors)

    def sources(self, prefix: str = "tg") -> dict[str, str]:
        return print_c(self.program, self.memory, prefix)


def check_supported(program: Program) -> None:
    """Raise UnsupportedModel (one line) unless the compiled runtime can take the model."""
    program.check()


def unsupported_ops(program: Program) -> list[str]:
    """Distinct op names (first-use order) the compiled runtime cannot run in this model.

    An op name appears if the op has no compiled kernel, or if this use of it
    (types, quantization, options) is outside what the kernel supports.
    """
    return program.unsupported_ops()


def compile_model(model: TfliteModel) -> CompiledBuild:
    """Lower the model once, refuse it (UnsupportedModel) if it cannot be compiled, plan its memory."""
    program = lower(model)
    program.check()
    program = schedule(program)
    return CompiledBuild(program, plan_memory(program))


def emit(model: TfliteModel, *, prefix: str = "tg") -> dict[str, str]:
    """``{f"{prefix}_model.h": text, f"{prefix}_model.c": text}``; pure and deterministic."""
    return compile_model(model).sources(prefix)


def op_table(build: CompiledBuild) -> list[dict]:
    """One row per operator for ``tinygen inspect --runtime compiled``: the kernel that
    runs it, its output tensor, MACs, and how its output is placed ("view" for a RESHAPE
    that costs nothing, "in-place" when it overwrites its input, "overlaps input" when it
    starts below its input and writes over it behind the kernel's reads, "rows in a band" /
    "band output" for the ops band.py runs row by row), in the order the ops run."""
    program, plan = build.program, build.memory
    buf = {t.index: t.buffer for t in plan.tensors}
    band_of = {p: band for band in program.bands for p in band.positions}
    rows = []
    for pos, op in enumerate(program.ops):
        band = band_of.get(pos)
        if band is not None and pos < band.stop - 1:
            how = "rows in a band"
        elif band is not None:
            how = "band output" + (", over its input" if band.output_over_input else "")
        elif op.index in plan.views:
            how = "view"
        elif any(buf.get(x) == buf.get(op.output) for x in op.reads):
            how = "in-place"
        elif any(o[0] == op.index and o[2] == op.output for o in plan.overlaps):
            how = "overlaps input"
        else:
            how = "new"
        rows.append({
            "op": op.index,
            "opcode": op.opcode,
            "kernel": "-" if how == "view" else op.kernel,
            "output": op.output,
            "output_shape": list(program.tensors[op.output].shape),
            "macs": op.macs,
            "placement": how,
        })
    return rows


def kernel_sources() -> dict[str, str]:
    """Every kernel file of firmware/runtime/ (the public tg_kernels.h, the internal headers
    and all .c files), ``{name: text}`` in sorted name order; a build compiles each .c."""
    from tinygen.common.paths import firmware_dir

    d = firmware_dir() / "runtime"
    names = sorted(p.name for p in d.iterdir()
                   if p.suffix in (".c", ".h") and p.is_file())
    return {name: (d / name).read_text(encoding="utf-8") for name in names}
