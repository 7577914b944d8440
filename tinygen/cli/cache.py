"""``tinygen cache info|clear``: what tinygen's build cache holds, and emptying it (:mod:`tinygen.common.cache`)."""

from __future__ import annotations

import click
from rich.table import Table
from rich.text import Text

from tinygen.cli.output import grouped, out, print_json
from tinygen.common.escape import terminal


def register(cli: click.Group) -> None:
    cli.add_command(cache_cmd)


@click.group("cache")
def cache_cmd() -> None:
    """tinygen's build cache: trained recipe models, int8 conversions, reference outputs and arenas,
    reused when the same model is built again (for another board, or after a firmware change)."""


@cache_cmd.command("info")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def cache_info_cmd(as_json: bool) -> None:
    """Where the cache is, and its entries and bytes per kind."""
    from tinygen.common import cache

    data = cache.info()
    if as_json:
        print_json(data)
        return
    t = Table(title=Text(terminal(f"tinygen cache: {data['path']}")))
    for col in ("kind", "entries", "bytes"):
        t.add_column(col)
    for kind, row in data["kinds"].items():
        t.add_row(Text(terminal(cache.KINDS.get(kind, kind))), grouped(row["entries"]), grouped(row["bytes"]))
    t.add_row("total", grouped(data["entries"]), grouped(data["bytes"]))
    out.print(t)


@cache_cmd.command("clear")
def cache_clear_cmd() -> None:
    """Remove every entry (the next build computes everything again)."""
    from tinygen.common import cache

    gone = cache.clear()
    out.print(terminal(f"removed {gone['entries']} entries ({gone['bytes']:,} bytes) from {gone['path']}"),
              markup=False, soft_wrap=True)
