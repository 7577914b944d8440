"""One model on every emulated core: :func:`bench` -> a :class:`BenchRow` per board."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from tinygen.api.building import build
from tinygen.api.project import Progress, silent, verify
from tinygen.common.errors import TinygenError

if TYPE_CHECKING:
    from tinygen.codegen.plan import Plan


@dataclass
class BenchRow:
    """One emulated core running one runtime of a model (:func:`bench`).  ``ram_bytes`` is static
    RAM (.data + .bss: globals, the arena, the I/O buffers) plus the stack high-water mark."""

    board: str
    cpu: str
    runtime: str
    instructions: float  # per inference, median over the vectors (QEMU -icount)
    flash_bytes: int  # every allocated section with contents in the ELF
    static_ram_bytes: int
    stack_bytes: int | None  # None: the firmware does not paint its stack
    arena_bytes: int  # the compiled runtime's static arena, or TFLM's
    bit_exact: bool
    fits: list[str]  # the real boards this model and runtime fit, by tinygen's own budget check
    project: Path = field(repr=False)
    # A raw-signal model (a kws/imu recipe, or a model with a front end): the front end's median instructions
    # per inference measured in the same INFER_RAW runs as the model's, and its flash / RAM budget parts.
    frontend_instructions: float | None = None
    frontend_model_instructions: float | None = None
    frontend_flash_bytes: int | None = None
    frontend_ram_bytes: int | None = None

    @property
    def ram_bytes(self) -> int:
        return self.static_ram_bytes + (self.stack_bytes or 0)

    def to_dict(self) -> dict:
        return {"board": self.board, "cpu": self.cpu, "runtime": self.runtime, "instructions": self.instructions,
                "flash_bytes": self.flash_bytes, "static_ram_bytes": self.static_ram_bytes,
                "stack_bytes": self.stack_bytes, "ram_bytes": self.ram_bytes, "arena_bytes": self.arena_bytes,
                "bit_exact": self.bit_exact, "fits": self.fits, "project": str(self.project),
                **({"frontend": {"instructions": self.frontend_instructions,
                                 "model_instructions": self.frontend_model_instructions,
                                 "flash_bytes": self.frontend_flash_bytes, "ram_bytes": self.frontend_ram_bytes}}
                   if self.frontend_instructions is not None else {})}


def _bench_boards(boards) -> list[dict]:
    from tinygen.common.boards import all_boards, get_board, is_emulated

    if boards is None:
        return [b for b in all_boards().values() if is_emulated(b)]
    chosen = []
    for bid in boards:
        b = get_board(str(bid))
        if not is_emulated(b):
            raise TinygenError(f"bench runs on emulated boards; {bid} is a real board (choose from: "
                               f"{', '.join(k for k, v in all_boards().items() if is_emulated(v))})")
        if b not in chosen:
            chosen.append(b)
    if not chosen:
        raise TinygenError("bench needs at least one board")
    return chosen


def _real_fits(plan: Plan) -> list[str]:
    from tinygen.codegen.board_budgets import budgets_per_board
    from tinygen.common.boards import all_boards, is_emulated

    fits = budgets_per_board(plan.model, plan.arena, plan.name, plan.compiled.peak_bytes if plan.compiled else None,
                          frontend=plan.frontend)
    return [bid for bid, b in all_boards().items()
            if not is_emulated(b) and fits.get(bid, {}).get(plan.runtime, {}).get("fits")]


def bench(model: str | Path | None = None, *, boards: list[str] | None = None, recipe: str | None = None,
          tflm_dir: str | Path | None = None, out: str | Path | None = None, vectors: int = 4,
          progress: Progress | None = None, frontend: str | Path | dict | None = None) -> list[BenchRow]:
    """Build and run ``model`` (or ``recipe``) on each emulated board in ``boards`` (default: every one)
    with the compiled runtime, and with TFLM too when ``tflm_dir`` is given; return a row per board and
    runtime: instructions per inference, flash, RAM (static + measured stack high-water), whether the
    board's outputs were bit-exact with tflite_micro, and which real boards the model fits.

    Every board runs the same int8 model bytes: the first build's model.tflite.  Projects go into
    ``out`` (default: a new temporary directory), one per board and runtime.  A model with a front end
    (a kws/imu recipe, or ``frontend``: its --frontend definition) is also run from raw samples (INFER_RAW):
    the rows then carry the front end's instructions (same runs as the model's), flash and RAM."""
    import tempfile

    from tinygen.device.emulator import qemu_for_project
    from tinygen.device.guest_memory import elf_footprint, stack_high_water

    progress = progress or silent
    chosen = _bench_boards(boards)
    if not 0 <= vectors <= 10000:
        raise TinygenError(f"vectors {vectors} is not in 0..10000")
    work = Path(out) if out is not None else Path(tempfile.mkdtemp(prefix="tinygen-bench-"))
    runtimes = ["compiled"] + (["tflm"] if tflm_dir else [])
    rows: list[BenchRow] = []
    fits: dict[str, list[str]] = {}
    source = {"model": model, "recipe": recipe, **({"frontend": frontend} if frontend is not None else {})}
    for rt in runtimes:
        for b in chosen:
            if rt not in b.runtimes:
                continue
            progress(f"{b.id} {rt}: building")
            project = build(**source, board=b.id, runtime=rt, out=work / f"{b.id}-{rt}", force=True,
                            vectors=max(vectors, 1), tflm_dir=tflm_dir if rt == "tflm" else None, progress=progress)
            # same bytes everywhere, and the same front end (a recipe's own, else the user's --frontend)
            source = {"model": project.path / "model.tflite", "recipe": None,
                      **({"frontend": dict(project.plan.frontend)} if project.plan.frontend else {})}
            if rt not in fits:
                fits[rt] = _real_fits(project.plan)
            elf = project.build_firmware(progress)
            foot = elf_footprint(elf)
            with tempfile.TemporaryDirectory(prefix="tg-mon-") as tmp:
                sock = str(Path(tmp) / "monitor")
                with qemu_for_project(project.path, b, monitor_socket=sock) as qb:
                    progress(f"{b.id} {rt}: running on QEMU {b.emulator.machine}")
                    report = verify(project, port=qb.port, fresh_vectors=0, timeout=60.0)
                    stack = stack_high_water(sock, foot)
            plan = project.plan
            fe = report.metrics.get("frontend") or {}
            fe_budget = plan.budget.get("frontend") or {}
            rows.append(BenchRow(
                board=b.id, cpu=b.cpu, runtime=rt,
                instructions=float(report.metrics["instructions_per_inference"]["median"]),
                flash_bytes=foot["flash_bytes"], static_ram_bytes=foot["static_ram_bytes"], stack_bytes=stack,
                arena_bytes=int(plan.compiled.peak_bytes if plan.compiled else plan.arena.recommended_bytes),
                bit_exact=bool(report.metrics["max_abs_diff_lsb"] == 0 and fe.get("features_exact", True)
                               and fe.get("outputs_max_abs_diff_lsb", 0) == 0),
                fits=fits[rt], project=project.path,
                frontend_instructions=fe.get("frontend_instructions_per_inference"),
                frontend_model_instructions=fe.get("model_instructions_per_inference"),
                frontend_flash_bytes=fe_budget.get("flash_bytes"), frontend_ram_bytes=fe_budget.get("ram_bytes")))
    return rows
