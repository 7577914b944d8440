"""What `tinygen build` and `tinygen run` share: their build options, declared once (what model,
which data, where the project goes, how to compress it), and what they print about a build beyond
its summary.  :func:`build_options` adds the options to a command; :func:`build_arguments` turns the
parsed values into :func:`tinygen.api.build`'s keywords.

Not shared: ``--board`` (build requires it, run defaults to qemu-m4), and ``--vectors``, ``--seed``
and ``--json``, which mean the build's reference vectors and training seed in build, and the
fresh vectors and their seed in run.
"""

from __future__ import annotations

import click
from rich.table import Table
from rich.text import Text

from tinygen.cli.output import err, grouped, out
from tinygen.common.errors import TinygenError
from tinygen.common.escape import terminal
from tinygen.compress.options import CompressOptions

# (decorator arguments) in the order --help lists them
_OPTIONS = (
    (("--model", "model_path"), dict(metavar="FILE", help=".keras, .h5, SavedModel dir, .onnx or int8 .tflite.")),
    (("--recipe",), dict(metavar="NAME", help="Built-in recipe to train when no --model (default: sine).")),
    (("--data", "data_path"), dict(metavar="FILE",
                                   help="Samples for a user model: .npz (x[, y]), .npy or .csv.")),
    (("--frontend", "frontend_path"), dict(metavar="FILE.json",
                                           help="A user model's front end: raw int16 samples -> its input "
                                                "(docs/frontend.md); kws/imu recipes bring their own.")),
    (("--out", "out_dir"), dict(metavar="DIR", help="Output project directory (default: tinygen-<board>-<model>).")),
    (("--force",), dict(is_flag=True, help="Replace an existing tinygen project in --out.")),
    (("--runtime",), dict(type=click.Choice(["tflm", "compiled"]), default=None,
                          help="tflm (TensorFlow Lite Micro, default on real boards) or compiled (plain C, no "
                               "interpreter).")),
    (("--epochs",), dict(type=click.IntRange(1, 10000), default=None, help="Override the recipe's epochs.")),
    (("--tflm-dir",), dict(envvar="TINYGEN_TFLM_DIR", metavar="DIR",
                           help="Build TFLM from this source tree (Arduino-library layout) instead of the registry "
                                "library.")),
    (("--no-cache", "no_cache"), dict(is_flag=True, help="Neither reuse nor keep the trained model, int8 conversion, "
                                                         "reference and arena in tinygen's cache.")),
    (("--task",), dict(type=click.Choice(["classification", "binary", "regression"]), default=None,
                       help="What the model predicts, when the guess from its output and labels is wrong.")),
    (("--prune",), dict(metavar="RATIO|LAYER=RATIO,...",
                        help="Structured pruning: remove this share of filters/units (L1 norm) from every prunable "
                             "layer, or per layer, then fine-tune.")),
    (("--qat",), dict(is_flag=True, help="Quantization-aware training (simulated int8) before conversion.")),
    (("--distill",), dict(type=click.FloatRange(0, 1, min_open=True), metavar="WIDTH",
                          help="Train a student WIDTH times as wide on the model's soft outputs and the labels.")),
    (("--fit",), dict(is_flag=True, help="Search the smallest pruning or distilled student that fits the board's "
                                         "flash and RAM (with --fit-headroom; and --fit-max-instructions) and "
                                         "loses the least accuracy.")),
    (("--fit-board",), dict(metavar="BOARD", help="With --fit: fit this board's budget instead (e.g. build for "
                                                  "qemu-m4 to verify, fit a nano33ble).")),
    (("--fit-headroom",), dict(type=click.FloatRange(0, 1, max_open=True), default=0.10, show_default=True,
                               help="Share of the board's flash and RAM --fit leaves free.")),
    (("--fit-max-instructions",), dict(type=click.IntRange(1, None), default=None, metavar="N",
                                       help="With --fit: a candidate must also run in at most N instructions per "
                                            "inference, measured under QEMU on the emulated core (the build "
                                            "board if emulated, else qemu-m4).")),
    (("--fit-latency-ms",), dict(type=click.FloatRange(0, None, min_open=True), default=None, metavar="MS",
                                 help="With --fit: the same bound in milliseconds at the fit board's clock (one "
                                      "instruction a cycle).")),
    (("--fit-widths",), dict(metavar="W,W,...", default=None,
                             help="With --fit: distilled students' widths to try beside the pruning ratios "
                                  "(default 0.5,0.25; 'none': no distillation).")),
)
NAMES = ("model_path", "recipe", "data_path", "out_dir", "force", "runtime", "epochs", "tflm_dir", "task", "prune",
         "qat", "distill", "fit", "fit_board", "fit_headroom", "fit_max_instructions", "fit_latency_ms",
         "fit_widths", "no_cache", "frontend_path")


def build_options(f):
    """Add the shared build options to a click command (its function receives them by name)."""
    for args, kwargs in reversed(_OPTIONS):
        f = click.option(*args, **kwargs)(f)
    return f


def build_arguments(values: dict) -> dict:
    """The shared options' values (pulled out of ``values``) as :func:`tinygen.api.build` keywords."""
    v = {k: values.pop(k) for k in NAMES}
    return {"model": v["model_path"], "recipe": v["recipe"], "data": v["data_path"], "out": v["out_dir"],
            "force": v["force"], "runtime": v["runtime"], "epochs": v["epochs"], "tflm_dir": v["tflm_dir"] or None,
            "task": v["task"], "use_cache": not v["no_cache"],
            "compress": CompressOptions(prune=v["prune"], qat=v["qat"], distill=v["distill"], fit=v["fit"],
                                        fit_headroom=v["fit_headroom"], fit_board=v["fit_board"],
                                        fit_max_instructions=v["fit_max_instructions"],
                                        fit_latency_ms=v["fit_latency_ms"], fit_widths=_widths(v["fit_widths"])),
            "frontend": v["frontend_path"]}


def _widths(text: str | None) -> tuple | None:
    if text is None:
        return None
    if text.strip().lower() == "none":
        return ()
    try:
        return tuple(float(w) for w in text.split(","))
    except ValueError:
        raise TinygenError(f"--fit-widths takes widths like 0.5,0.25 (or 'none'), not '{text[:40]}'") from None


def print_notes(project, as_json: bool) -> None:
    """What the build changed in the user's data (channels moved, one-hot labels), a ``note:`` line each
    on stderr: after the status line is gone, so it stays on the screen (JSON carries them as "notes")."""
    if as_json:
        return
    for note in project.notes:
        err.print(f"note: {terminal(note)}", markup=False, highlight=False)


def print_compression(report: dict) -> None:
    metric = report["metric"]
    timed = bool(report.get("max_instructions"))
    fe = any("frontend" in r for r in report["candidates"])  # raw samples in: flash and RAM count the front end
    t = Table(title=Text(terminal(f"compression candidates ({report['board']}, {report['runtime']}; "
                                  f"chosen: {report['chosen']}" + ("; flash and RAM include the front end"
                                                                   if fe else "") + ")")))
    for col in ("candidate", "MACs", "params", "weights B", "flash B", "RAM B",
                *([f"instructions / {report['max_instructions']:,}"] if timed else []), f"float {metric}",
                f"int8 {metric}", "fits"):
        t.add_column(col)

    def fmt(v):
        return "-" if v is None else f"{v:.4f}"

    for r in report["candidates"]:
        if "skipped" in r:
            t.add_row(Text(terminal(r["label"])), *(["-"] * (8 if timed else 7)), f"skipped ({r['skipped']})")
            continue
        ins = r.get("instructions")
        ins = ["-" if ins is None else grouped(ins) + (" (same shape)" if r.get("instructions_same_shape") else "")]
        fits = r.get("fits")
        # labels may carry the model's layer names (--prune layer=ratio): user text, no markup
        t.add_row(Text(terminal(r["label"] + ("" if r.get("trained", True) else " (not fine-tuned)"))),
                  grouped(r["macs"]),
                  grouped(r["params"]), grouped(r["weights_bytes"]),
                  f"{grouped(r['flash_bytes'])} / {grouped(r['flash_budget'])}",
                  f"{grouped(r['ram_bytes'])} / {grouped(r['ram_budget'])}", *(ins if timed else []),
                  fmt(r.get("float_metric")),
                  fmt(r.get("int8_metric")), "-" if fits is None else ("yes" if fits else "no"))
    out.print(t)
    if report.get("chart"):
        out.print(Text(terminal(f"chart: {report['chart']}")))
