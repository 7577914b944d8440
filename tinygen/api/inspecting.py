"""What a model is, without building anything: :func:`inspect` -> :class:`ModelInfo`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from tinygen.api.project import Progress, RUNTIMES, silent
from tinygen.common.errors import TinygenError

if TYPE_CHECKING:
    from tinygen.analysis.ops import Analysis, OpInfo
    from tinygen.analysis.reference import ArenaInfo
    from tinygen.verification.host_check import HostCheckResult
    from tinygen.tflite.model import TfliteModel


@dataclass
class ModelInfo:
    """What :func:`inspect` found in an int8 .tflite.  :meth:`to_dict` is ``tinygen inspect --json``."""

    path: Path
    model: TfliteModel = field(repr=False)
    analysis: Analysis = field(repr=False)
    arena: ArenaInfo
    tensors: list[dict] = field(repr=False)  # index, name, shape, dtype, scale, zero_point, constant, bytes
    fits: dict[str, dict[str, dict]] = field(repr=False)  # {board id: {runtime: budget}}
    compiled_memory_plan: dict | None = field(default=None, repr=False)  # {"peak_bytes", "tensors"}
    host_check: HostCheckResult | None = None  # inspect(..., check=True): the emitted C run on this host
    # inspect(..., frontend=): the front end's definition (FrontendSpec JSON) and its budget parts
    # (tinygen.codegen.frontend_budget; the same on every board, and counted in every budget of ``fits``)
    frontend: dict | None = field(default=None, repr=False)
    frontend_parts: list[dict] | None = field(default=None, repr=False)

    @property
    def frontend_budget(self) -> dict | None:
        """{"flash_bytes", "ram_bytes"} of the front end (raw samples in); None without one."""
        if self.frontend_parts is None:
            return None
        from tinygen.codegen.frontend_budget import frontend_totals

        return frontend_totals(self.frontend_parts)

    @property
    def sha256(self) -> str:
        return self.model.sha256

    @property
    def ops(self) -> list[str]:
        return self.analysis.ops

    @property
    def op_counts(self) -> dict[str, int]:
        return self.analysis.op_counts

    @property
    def params(self) -> int:
        return self.analysis.params

    @property
    def macs(self) -> int:
        return self.analysis.macs

    @property
    def model_bytes(self) -> int:
        return self.analysis.model_bytes

    @property
    def layers(self) -> list[OpInfo]:
        return self.analysis.layers

    def to_dict(self) -> dict:
        data = {"model": str(self.path), "sha256": self.sha256, "ops": self.ops, "op_counts": self.op_counts,
                "params": self.params, "macs": self.macs, "model_bytes": self.model_bytes,
                "arena": self.arena.as_dict(), "tensors": self.tensors, "fits": self.fits}
        if self.compiled_memory_plan is not None:
            data["compiled_memory_plan"] = self.compiled_memory_plan
        if self.host_check is not None:
            data["host_check"] = self.host_check.as_dict()
        if self.frontend is not None:
            data["frontend"] = {"definition": self.frontend, **self.frontend_budget, "parts": self.frontend_parts}
        return data


def _tensor_rows(m: TfliteModel) -> list[dict]:
    return [{"index": t.index, "name": t.name, "shape": list(t.shape), "dtype": t.dtype,
             "scale": list(t.scale) if len(t.scale) <= 1 else f"per-channel ({len(t.scale)}, axis "
             f"{t.quantized_dimension})", "zero_point": list(t.zero_point[:1]) if t.zero_point else [],
             "constant": t.is_constant, "bytes": t.nbytes} for t in m.tensors]


def inspect(path: str | Path, runtime: str = "tflm", *, check: bool = False, vectors: int = 32,
            progress: Progress | None = None, frontend: str | Path | dict | None = None) -> ModelInfo:
    """Ops, tensors, parameters, MACs, the measured TFLM arena and the fit on every board of an int8
    .tflite; with ``runtime="compiled"`` also the compiled runtime's static memory plan, and with
    ``check=True`` the emitted C compiled and run on this host (ASan/UBSan) against tflite_micro
    on ``vectors`` inputs (:attr:`ModelInfo.host_check`; a mismatch is reported there, not raised).
    ``frontend``: the front end that makes the model's input from raw samples (a ``--frontend``
    FILE.json, a project's tinygen.json, or its dict; docs/frontend.md): checked against the model's
    input (one line, exit 2), its flash and RAM are :attr:`ModelInfo.frontend_budget` and join every
    board's fit, as in a build."""
    from tinygen.analysis import ops as an
    from tinygen.analysis.reference import measure_arena
    from tinygen.codegen import compiled as cmod
    from tinygen.codegen import refusals
    from tinygen.codegen.board_budgets import budgets_per_board
    from tinygen.tflite.int8 import check_int8
    from tinygen.tflite.model import read_model
    from tinygen.verification import host_check

    if runtime not in RUNTIMES:
        raise TinygenError(f"unknown runtime '{runtime}'; choose one of: {', '.join(RUNTIMES)}")
    if check and runtime != "compiled":
        raise TinygenError("--check runs the compiled runtime's C on this host; add --runtime compiled")
    if check:
        host_check.find_compiler()  # a missing compiler is named before the slow arena bisection
    progress = progress or silent
    fe_json = _frontend_json(frontend)  # a bad definition is refused before the model is even read
    p = Path(path)
    if p.exists() and p.suffix.lower() != ".tflite":
        raise TinygenError(f"inspect reads .tflite files; {p.name} is not one (convert it with "
                           f"'tinygen build --model {p}')")
    m = read_model(p)
    check_int8(m, str(p))
    # the arena is measured with TFLM: its missing ops first, and no other runtime to offer for that
    refusals.check_ops(m, None, "tflm", name=str(p), offer_other=False)
    an.check_tflm_ops(m, str(p))
    fe_parts = None
    if fe_json is not None:  # before the arena bisection: the front end must feed this model's input
        from tinygen.codegen.frontend_budget import frontend_parts
        from tinygen.intake.frontend import for_model
        from tinygen.tflite.int8 import model_io

        it = model_io(m).input
        spec, rq = for_model(fe_json, it.shape, it.scale, it.zero_point)
        fe_parts = frontend_parts(spec, rq, it.nbytes)
    analysis = an.analyze(m)
    progress("measuring the TFLM arena (tflite_micro, bisection)")
    arena = measure_arena(m.raw, m, str(p))
    program = cmod.lower(m)  # once: the support check and the memory plan read the same IR
    if runtime == "compiled":
        if program.refusals:
            # in Keras terms; inspect runs either runtime on any model, whatever the board
            refusals.check_ops(m, None, "compiled", name=str(p))
        cmod.check_supported(program)
    # One static plan serves every board's fit check (and the memory table when runtime="compiled").
    # (in the order, and with the bands, a build uses: band.py's schedule)
    compiled_plan = cmod.plan_memory(cmod.schedule(program)) if program.supported else None
    fits = budgets_per_board(m, arena, str(p), compiled_plan.peak_bytes if compiled_plan else None, progress,
                             frontend=fe_json)
    memory = None
    if runtime == "compiled":
        memory = {"peak_bytes": compiled_plan.peak_bytes, "tensors": cmod.memory_table(compiled_plan)}
    hc = None
    if check:
        progress(f"host check: compiling the emitted C (ASan/UBSan), running {vectors} vectors vs tflite_micro")
        hc = host_check.check_model(m, vectors=vectors, name=str(p))
    return ModelInfo(p, m, analysis, arena, _tensor_rows(m), fits, memory, hc, fe_json, fe_parts)


def _frontend_json(frontend) -> dict | None:
    """The validated FrontendSpec JSON of ``frontend`` (a path or a dict); None without one."""
    if frontend is None:
        return None
    from tinygen.intake.frontend import load_spec, spec_from_json

    return (spec_from_json(frontend, "frontend") if isinstance(frontend, dict) else load_spec(frontend)).to_json()
