"""``tinygen bench``: one model on every emulated core, and which real boards it fits.

The work is :func:`tinygen.api.bench`'s; this command parses, calls it and prints a table (or JSON).
"""

from __future__ import annotations

from pathlib import Path

import click
from rich.table import Table

from tinygen import api
from tinygen.cli.output import StatusLine, grouped, out, print_json


def register(cli: click.Group) -> None:
    cli.add_command(bench_cmd)


@click.command("bench")
@click.argument("model", required=False, metavar="[MODEL]")
@click.option("--boards", default=None, metavar="ID,ID,...",
              help="Emulated boards to run on (default: every emulated board; see `tinygen boards`).")
@click.option("--recipe", metavar="NAME", help="A built-in recipe instead of MODEL (default: sine).")
@click.option("--tflm-dir", envvar="TINYGEN_TFLM_DIR", metavar="DIR",
              help="TFLM source tree (Arduino-library layout): runs the TFLM runtime too.")
@click.option("--frontend", "frontend_path", metavar="FILE.json",
              help="MODEL's front end (raw int16 samples -> its input, docs/frontend.md): timed beside the model.")
@click.option("--out", "out_dir", metavar="DIR", help="Where the projects go (default: a new temporary directory).")
@click.option("--vectors", type=click.IntRange(1, 10000), default=4, show_default=True,
              help="Reference vectors each board runs (all must be bit-exact).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def bench_cmd(model, boards, recipe, tflm_dir, frontend_path, out_dir, vectors, as_json) -> None:
    """Per emulated core: instructions per inference, flash, RAM (static + stack high-water), and the
    real boards the model fits -- "which MCU do I need?"."""
    ids = [b.strip() for b in boards.split(",") if b.strip()] if boards is not None else None
    with StatusLine(not as_json) as progress:
        rows = api.bench(model, boards=ids, recipe=recipe, tflm_dir=tflm_dir or None, frontend=frontend_path,
                         out=Path(out_dir) if out_dir else None, vectors=vectors, progress=progress)
    if as_json:
        print_json([r.to_dict() for r in rows])
        return
    t = Table(title="tinygen bench")
    for col in ("board", "core", "runtime", "instructions / inference", "flash B", "RAM B (static + stack)",
                "arena B", "bit-exact", "fits (real boards)"):
        t.add_column(col)
    for r in rows:
        stack = grouped(r.stack_bytes) if r.stack_bytes is not None else "not measured"
        t.add_row(r.board, r.cpu, r.runtime, f"{r.instructions:,.0f}", grouped(r.flash_bytes),
                  f"{r.ram_bytes:,} ({r.static_ram_bytes:,} + {stack})", grouped(r.arena_bytes),
                  "yes" if r.bit_exact else "NO", ", ".join(r.fits) or "none")
    out.print(t)
    fe_rows = [r for r in rows if r.frontend_instructions is not None]
    if fe_rows:  # raw samples in: the front end beside the model, measured in the same INFER_RAW runs
        t = Table(title="front end (raw samples in), per inference")
        for col in ("board", "runtime", "front end instructions", "model instructions", "front end + model",
                    "front end flash B", "front end RAM B"):
            t.add_column(col)
        for r in fe_rows:
            f, mo = r.frontend_instructions, r.frontend_model_instructions or 0.0
            t.add_row(r.board, r.runtime, f"{f:,.0f}", f"{mo:,.0f}", f"{f + mo:,.0f}",
                      grouped(r.frontend_flash_bytes or 0), grouped(r.frontend_ram_bytes or 0))
        out.print(t)
