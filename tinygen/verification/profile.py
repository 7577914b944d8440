"""`tinygen verify --profile`: where an inference spends its time, op by op.

The board runs one inference with the PROFILE request (:mod:`tinygen.device.op_stream`) and
reports, per op, the ticks from the end of the previous op to the end of this one.  On an
emulated board (QEMU ``-icount``) ticks are instructions (``instructions_per_tick``); on a real
board they are cycles when the tick counter runs at the core clock, else microseconds.
Several runtimes (``compiled`` and ``tflm``) can be put side by side: one column each.
"""

from __future__ import annotations

from pathlib import Path

from tinygen.common.escape import markdown, terminal
from tinygen.tflite.model import TfliteModel


def profile_dict(model: TfliteModel, records: list[tuple[int, int]], *, runtime: str, tick_hz: int,
                 instr_per_tick: int | None, clock_hz: int | None) -> dict:
    """JSON-ready profile of one run: unit, total, and ops sorted slowest first."""
    if instr_per_tick:
        unit, factor = "instructions (emulated)", float(instr_per_tick)
    elif clock_hz and int(tick_hz) == int(clock_hz):
        unit, factor = "cycles", 1.0
    elif int(tick_hz) > 0:
        unit, factor = "µs", 1e6 / float(tick_hz)
    else:  # a board whose HELLO says 0 Hz: its ticks have no rate, so they stay ticks
        unit, factor = "ticks (the board reports a 0 Hz timer)", 1.0
    ops = []
    for index, ticks in records:
        opcode = model.operators[index].opcode if 0 <= index < len(model.operators) else "?"
        ops.append({"op": int(index), "type": opcode, "ticks": int(ticks), "value": round(ticks * factor, 3)})
    total = sum(o["value"] for o in ops)
    for o in ops:
        o["share_pct"] = round(100.0 * o["value"] / total, 2) if total else 0.0
    ops.sort(key=lambda o: (-o["value"], o["op"]))
    return {"runtime": runtime, "unit": unit, "tick_hz": int(tick_hz), "total": round(total, 3), "ops": ops,
            "factor": factor}


def add_frontend(profile: dict, frontend_ticks: float, model_ticks: float) -> None:
    """A raw-signal project (INFER_RAW): the front end's median ticks per inference beside the model's, in the
    profile's unit (``frontend``; ``frontend_plus_model`` from the same runs), so the table shows both."""
    f = float(profile.get("factor", 1.0))
    profile["frontend"] = round(frontend_ticks * f, 3)
    profile["frontend_plus_model"] = round((frontend_ticks + model_ticks) * f, 3)


def _rows(profiles: list[dict]) -> tuple[list[str], list[tuple[int, str, list]]]:
    """Column names and (op, type, [value per profile]) rows, slowest (in the first profile) first."""
    cols = [p["runtime"] for p in profiles]
    by_op: dict[int, tuple[list, list]] = {}
    for k, p in enumerate(profiles):
        for o in p["ops"]:
            entry = by_op.setdefault(o["op"], ([None] * len(profiles), [None] * len(profiles)))
            entry[0][k], entry[1][k] = o["type"], o["value"]
    # Models that differ (TFLM boards rewrite per-channel FULLY_CONNECTED) line up by index only:
    # then each run's op type is shown.
    rows = [(op, types[0] if len(set(types)) == 1 else " / ".join(t or "-" for t in types), vals)
            for op, (types, vals) in by_op.items()]
    rows.sort(key=lambda r: (-(r[2][0] if r[2][0] is not None else -1), r[0]))
    return cols, rows


def _fmt(v) -> str:
    if v is None:
        return "-"
    return f"{v:,.0f}" if v >= 100 else f"{v:,.2f}"


def table_lines(profiles: list[dict], esc=terminal, sep: str = "  ") -> list[str]:
    """A sorted table as text lines (Markdown when ``sep`` is ``" | "``)."""
    cols, rows = _rows(profiles)
    unit = profiles[0]["unit"]
    head = ["op", "type"] + [f"{esc(c)} ({unit})" for c in cols] + (["share %"] if len(cols) == 1 else [])
    body = []
    for op, t, vals in rows:
        cells = [f"#{op}", esc(t)] + [_fmt(v) for v in vals]
        if len(cols) == 1:
            total = profiles[0]["total"]
            cells.append(f"{100.0 * vals[0] / total:.1f}" if total and vals[0] is not None else "-")
        body.append(cells)
    body.append(["total", ""] + [_fmt(p["total"]) for p in profiles] + ([""] if len(cols) == 1 else []))
    if any("frontend" in p for p in profiles):  # raw samples in: the front end beside the model's ops
        pad = [""] if len(cols) == 1 else []
        body.append(["front end", "raw samples in"] + [_fmt(p.get("frontend")) for p in profiles] + pad)
        body.append(["front end + model", "INFER_RAW"] + [_fmt(p.get("frontend_plus_model")) for p in profiles] + pad)
    if sep.strip() == "|":
        return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + \
            ["| " + " | ".join(r) + " |" for r in body]
    widths = [max(len(r[i]) for r in [head] + body) for i in range(len(head))]
    return [sep.join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip()
            for r in [head] + body]


def markdown_section(profiles: list[dict], png_name: str | None) -> list[str]:
    lines = ["", "## Per-op profile (`--profile`)", ""]
    lines += table_lines(profiles, markdown, " | ")
    if png_name:
        lines += ["", f"![per-op profile]({png_name})"]
    return lines + [""]


def plot(path: Path, profiles: list[dict], title: str, root: Path | None = None) -> None:
    """Horizontal bars per op (slowest on top), one colour per runtime; a PNG written inside ``root``
    (default: its directory) through tinygen.common.safe_write."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols, rows = _rows(profiles)
    rows = rows[:40]
    labels = [f"#{op} {t}" for op, t, _ in rows]
    fig, ax = plt.subplots(figsize=(8, 1.2 + 0.32 * len(rows) * max(1, len(cols) / 1.5)), dpi=100)
    height = 0.8 / len(cols)
    for k, name in enumerate(cols):
        ys = [i + k * height for i in range(len(rows))]
        ax.barh(ys, [r[2][k] or 0 for r in rows], height=height, label=name, color=f"C{k}")
    ax.set_yticks([i + height * (len(cols) - 1) / 2 for i in range(len(rows))])
    ax.set_yticklabels([s.replace("$", r"\$") for s in labels])
    ax.invert_yaxis()
    ax.set_xlabel(profiles[0]["unit"])
    ax.set_title(title.replace("$", r"\$"))
    if len(cols) > 1:
        ax.legend(loc="lower right")
    fig.tight_layout()
    import io

    from tinygen.common.safe_write import write_file

    png = io.BytesIO()
    fig.savefig(png, format="png", metadata={"Software": None})
    plt.close(fig)
    write_file(path, png.getvalue(), root=root)


def write_side_by_side(report_dir: Path, profiles: list[dict], title: str,
                       root: Path | None = None) -> dict[str, str]:
    """profile.json / profile.md / profile.png for several runs of one model (one column each), inside
    ``root`` (the project for its reports/; default ``report_dir`` itself)."""
    import json

    from tinygen.common.safe_write import write_text

    units = {p["unit"] for p in profiles}
    if len(units) > 1:
        from tinygen.common.errors import TinygenError

        raise TinygenError("profiles side by side need one unit; got " + ", ".join(sorted(units)))
    root = root if root is not None else report_dir
    paths = {"json": report_dir / "profile.json", "markdown": report_dir / "profile.md",
             "plot": report_dir / "profile.png"}
    write_text(paths["json"], json.dumps({"title": title, "profiles": profiles}, indent=2, sort_keys=True) + "\n",
               root=root)
    md = [f"# {markdown(title)}"] + markdown_section(profiles, "profile.png")
    write_text(paths["markdown"], "\n".join(md), root=root)
    plot(paths["plot"], profiles, title, root)
    return {k: str(v) for k, v in paths.items()}
