"""What the commands print, shared by :mod:`tinygen.cli.main` and :mod:`tinygen.cli.device`:
the two consoles, JSON, status lines, and the build summary and verify tables."""

from __future__ import annotations

import json
import sys

from rich.console import Console
from rich.table import Table
from rich.text import Text

from tinygen.common.escape import rich_text, terminal

# Piped output (CI logs, tests) gets wide tables instead of rich's 80-column default.
out = Console(highlight=False, width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def grouped(n) -> str:
    """An int with thousands separators; anything else as is."""
    return f"{n:,}" if isinstance(n, int) else str(n)


def print_json(data) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def step(text: str) -> None:
    """One "… what happens now" line on stderr (the text may quote file names)."""
    err.print(f"… {terminal(text)}", markup=False)


def trace_line(line: str) -> None:
    err.print(line, markup=False)


class StatusLine:
    """A status line on stderr for long steps (training, conversion, bisection); call it with the text."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self._status = None

    def __enter__(self):
        if self.enabled:
            self._status = err.status("starting")
            self._status.__enter__()
        return self

    def __call__(self, text: str) -> None:
        if self._status is not None:
            text = rich_text(text)  # may quote file names: no control characters, no markup
            self._status.update(text)
            if not err.is_terminal:
                err.print(f"[dim]… {text}[/dim]")

    def __exit__(self, *exc):
        if self._status is not None:
            self._status.__exit__(*exc)


def print_build_summary(plan, cache: list[str] | None = None, project=None) -> None:
    """``cache``: what the build reused from tinygen's cache (``Project.cache``), a row when anything;
    ``project``: the project's directory, for the real-board row naming its emulated twin's command."""
    a = plan.analysis
    it, ot = plan.io.input, plan.io.output
    t = Table(title=Text(terminal(f"tinygen build: {plan.name} → {plan.board.id} ({plan.runtime})")),
              show_header=False)
    t.add_column("what")
    t.add_column("value")
    t.add_row("source", Text(terminal(plan.source)))
    t.add_row("ops", Text(terminal(", ".join(f"{op}×{a.op_counts[op]}" for op in a.ops))))  # CUSTOM:<name>
    t.add_row("parameters", grouped(a.params))
    t.add_row("MACs / inference", grouped(a.macs))
    t.add_row("model bytes", grouped(a.model_bytes))
    t.add_row("input", f"{it.dtype} {list(it.shape)} scale={it.scale:.6g} zp={it.zero_point}")
    t.add_row("output", f"{ot.dtype} {list(ot.shape)} scale={ot.scale:.6g} zp={ot.zero_point}")
    t.add_row("quantization", Text(terminal(f"full-integer int8; {plan.quantization_note}")))
    t.add_row("TFLM arena", f"{grouped(plan.arena.recommended_bytes)} B (host minimum "
                            f"{grouped(plan.arena.host_min_bytes)} B + scratch "
                            f"{grouped(plan.arena.scratch_bound_bytes)} B + 10% + 1 KiB)")
    if plan.compiled:
        t.add_row("compiled arena", f"{grouped(plan.compiled.peak_bytes)} B (static plan)")
    b = plan.budget
    t.add_row("flash", budget_line(b, "flash"))
    t.add_row("RAM", budget_line(b, "ram"))
    t.add_row("budget parts", "; ".join(f"{p['part']} {grouped(p['flash_bytes'])}/{grouped(p['ram_bytes'])} B "
                                        f"{p['kind']}" for p in b["parts"]) + " (flash/RAM)")
    if b.get("frontend"):  # raw samples in: the front end's share, beside the model's (docs/frontend.md)
        t.add_row("front end", frontend_budget_line(b))
    t.add_row(*_quality_row(plan.quality))
    if "int8_confusion_matrix" in plan.quality:
        t.add_row(*_confusion_row(plan.quality))
    if cache:
        t.add_row("cache", "reused: " + ", ".join(cache))
    from tinygen.verification.twin import summary_line

    twin = summary_line(plan.board, plan.runtime, project)
    if twin is not None:  # what verifies this real board's bytes before flashing (verify --emulate)
        t.add_row("emulated twin", Text(terminal(twin)))
    out.print(t)


# How a budget part's bytes are known (tinygen.codegen.plan.budget_parts), as the summary says it.
_KIND_WORDS = (("exact", "exact (from the model)"), ("measured", "measured"), ("estimate", "estimated"))


def budget_line(b: dict, resource: str) -> str:
    """"62,016 / 1,048,576 B (5.9%) = 45,000 B exact (from the model) + 8,273 B measured + 8,743 B
    estimated": the total, the board's budget, and how much of the total is known how."""
    total, limit = b[f"{resource}_bytes"], b[f"{resource}_budget"]
    sums = {kind: sum(p[f"{resource}_bytes"] for p in b["parts"] if p["kind"] == kind) for kind, _ in _KIND_WORDS}
    terms = [f"{grouped(sums[kind])} B {words}" for kind, words in _KIND_WORDS if sums[kind]]
    share = f"{100 * total / limit:.1f}%" if limit else "no budget"
    return f"{grouped(total)} / {grouped(limit)} B ({share}) = " + (" + ".join(terms) or "0 B")


def frontend_budget_line(b: dict) -> str:
    """"flash 7,520 B, RAM 13,428 B of the totals (model and the rest: flash 10,084 B, RAM 2,937 B)":
    the front end's parts (tinygen.codegen.frontend_budget) beside everything else."""
    fe = b["frontend"]
    return (f"flash {grouped(fe['flash_bytes'])} B, RAM {grouped(fe['ram_bytes'])} B of the totals (model "
            f"and the rest: flash {grouped(b['flash_bytes'] - fe['flash_bytes'])} B, RAM "
            f"{grouped(b['ram_bytes'] - fe['ram_bytes'])} B); its instructions: see verify")


MAX_SUMMARY_CLASSES = 12


def _confusion_row(q: dict) -> tuple[str, Text]:
    """The int8 model's confusion on the held-out samples, as a small grid (rows true, columns
    predicted); over MAX_SUMMARY_CLASSES classes, a pointer to the reports."""
    matrix = q["int8_confusion_matrix"]
    k = len(matrix)
    label = "int8 confusion (held-out)"
    if k > MAX_SUMMARY_CLASSES:
        return label, Text(f"{k} classes: see tinygen.json (quality) and verify's reports")
    names = q.get("class_names")
    names = [terminal(n)[:8] for n in names] if isinstance(names, list) and len(names) == k else \
        [str(i) for i in range(k)]
    width = max([len(n) for n in names] + [len(str(v)) for row in matrix for v in row])
    head = max(len("true\\pred"), *(len(n) for n in names))
    lines = ["true\\pred".ljust(head) + " " + " ".join(n.rjust(width) for n in names)]
    lines += [name.rjust(head) + " " + " ".join(str(v).rjust(width) for v in row) for name, row in zip(names, matrix)]
    return label, Text("\n".join(lines))


def _quality_row(q: dict) -> tuple[str, str]:
    label, text = _quality_parts(q)
    if "onnx_vs_converted_max_abs" in q:  # an ONNX model: the float reference is onnxruntime
        conv = f"converted float vs ONNX max |Δ| {q['onnx_vs_converted_max_abs']:.2g}"
        if "onnx_vs_converted_top1" in q:
            conv += f", top-1 {100 * q['onnx_vs_converted_top1']:.1f}%"
        text = f"{text}; {conv}" if text and not text.startswith("no held-out") else conv
    return label, text


def _quality_parts(q: dict) -> tuple[str, str]:
    parts = []
    if q.get("task") in ("classification", "binary"):
        if q.get("task") == "binary":
            parts.append(f"binary, output >= {q['threshold']}")
        if "float_accuracy" in q:
            parts.append(f"float accuracy {100 * q['float_accuracy']:.1f}%")
        if "int8_accuracy" in q:
            parts.append(f"int8 accuracy {100 * q['int8_accuracy']:.1f}%")
        if "top1_agreement" in q:
            parts.append(f"top-1 agreement {100 * q['top1_agreement']:.1f}%")
        if "int8_confusion" in q:
            c = q["int8_confusion"]
            parts.append(f"int8 confusion TN {c['tn']} FP {c['fp']} FN {c['fn']} TP {c['tp']}")
        return f"quality ({q['samples']} held-out)", ", ".join(parts)
    if "int8_vs_float_rmse" in q or "int8_rmse" in q:
        if "float_rmse" in q:
            parts.append(f"float RMSE {q['float_rmse']:.4f}")
        if "int8_rmse" in q:
            parts.append(f"int8 RMSE {q['int8_rmse']:.4f}")
        if "int8_vs_float_rmse" in q:
            parts.append(f"int8 vs float RMSE {q['int8_vs_float_rmse']:.4f} (max {q['int8_vs_float_max_abs']:.4f})")
        return f"quality ({q['samples']} held-out)", ", ".join(parts)
    return "quality", "no held-out data (pass --data to report it)"


def print_verification(report, as_json: bool) -> None:
    """A verify result as JSON or a table, after the warning if its report files could not be written."""
    from tinygen.verification.verify import latency_rows

    if report.report_error:
        err.print(f"warning: {terminal(report.report_error)}; the result below stands", markup=False)
    result = report.to_dict()
    if as_json:
        print_json(result)
        return
    m = result["metrics"]
    t = Table(title=Text(terminal(f"tinygen verify: {result['board']} ({result['runtime']}) on {result['port']} — "
                                  f"{'PASS' if m['passed'] else 'FAIL'}")), show_header=False)
    t.add_column("metric")
    t.add_column("value")
    t.add_row("vectors", f"{m['vectors']} ({result['reference_vectors']} reference + {result['fresh_vectors']} fresh)")
    t.add_row("exact match", f"{m['exact_match_pct']:.2f} % of {m['elements']} outputs")
    t.add_row("max |Δ|", f"{m['max_abs_diff_lsb']} LSB (tolerance {m['tolerance_lsb']})")
    t.add_row("MAE / RMSE", f"{m['mae_lsb']:.4f} / {m['rmse_lsb']:.4f} LSB")
    t.add_row("cosine similarity", f"{m['cosine_similarity']:.6f}")
    if "top1_agreement_pct" in m:
        t.add_row("top-1 agreement", f"{m['top1_agreement_pct']:.2f} %")
    if "board_accuracy_pct" in m:
        t.add_row("accuracy vs labels", f"board {m['board_accuracy_pct']:.2f} %, reference "
                                        f"{m['reference_accuracy_pct']:.2f} %")
    if "board_confusion" in m:
        c = m["board_confusion"]
        t.add_row("confusion (board)", f"TN {c['tn']}, FP {c['fp']}, FN {c['fn']}, TP {c['tp']}")
    elif "confusion" in m:
        c = m["confusion"]
        t.add_row("confusion (board)", f"{len(c['matrix'])} x {len(c['matrix'])} over {c['vectors']} labelled "
                                       "vectors: see the Markdown report")
    if "frontend" in m:  # raw samples in: features compared first, then outputs (docs/frontend.md)
        t.add_row("front end (raw samples)", Text(terminal(m["frontend"]["summary"])))
    for label, text in latency_rows(m):
        t.add_row(label, text)
    t.add_row("link", f"{m['vectors_per_second']:.1f} vectors/s")
    t.add_row("reports", Text(terminal(", ".join(result["reports"].values()) or "not written (see the warning)")))
    out.print(t)
