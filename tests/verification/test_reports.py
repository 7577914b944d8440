"""Issue 23 item 11: reports a person would rather look at.

* verify's multi-class confusion matrix (verify.json ``metrics.confusion``, a table in verify.md,
  reports/confusion.png) from a real run on the emulated Cortex-M4, checked against a matrix this
  test computes itself (scikit-learn) from the board's outputs and the project's labels;
* the build's int8 confusion on the held-out set (tinygen.json ``quality.int8_confusion_matrix``)
  against scikit-learn on the reference vectors, and the build summary's grid;
* the summary's flash and RAM lines: exact + measured + estimated bytes that add up to the total;
* the compression chart: a RAM panel and "RAM decided the fit" when RAM decided it.
"""

from __future__ import annotations

import json
import re
import struct

import numpy as np
import pytest
from sklearn.metrics import confusion_matrix as sk_confusion

import tinygen
from conftest import require_tool
from support.markdown_check import check_tables, tables


@pytest.fixture(scope="module")
def qemu_classifier(digits_project, tmp_path_factory):
    """The digits model (int8 .tflite, no retraining) with its labelled held-out data on qemu-m4,
    built, run under QEMU and verified once."""
    require_tool("arm-none-eabi-gcc")
    require_tool("qemu-system-arm")
    root = tmp_path_factory.mktemp("reports")
    with np.load(digits_project / "vectors" / "reference.npz") as z:
        x, y = z["float_inputs"][:, 0], z["labels"]
    np.savez(root / "digits.npz", x=x, y=y)
    project = tinygen.build(digits_project / "model.tflite", board="qemu-m4", data=root / "digits.npz",
                            out=root / "p", vectors=48)
    project.build_firmware()
    report = project.verify(fresh_vectors=2, seed=1)
    assert report.passed, report.metrics
    return project, report


def test_verify_confusion_is_the_boards_argmax_against_the_labels(qemu_classifier):
    project, report = qemu_classifier
    saved = json.loads((project.path / "reports" / "verify.json").read_text())
    c = saved["metrics"]["confusion"]
    assert c == report.metrics["confusion"]
    with np.load(project.path / "vectors" / "reference.npz") as z:
        labels = z["labels"]
    assert len(labels) == 48 and len(report.outputs) == 48 + 2  # fresh vectors have no label
    pred = report.outputs[:len(labels)].reshape(len(labels), -1).argmax(axis=1)
    expected = sk_confusion(labels, pred, labels=list(range(10)))
    assert np.array_equal(np.array(c["matrix"]), expected)
    assert c["classes"] == [str(i) for i in range(10)] and c["vectors"] == 48  # a .tflite: no class names
    assert c["rows"] == "true label" and "argmax" in c["columns"]
    # the diagonal is the board accuracy verify reports beside it
    assert 100.0 * np.trace(expected) / len(labels) == pytest.approx(saved["metrics"]["board_accuracy_pct"])


def test_verify_md_shows_the_matrix_as_a_table_and_links_the_png(qemu_classifier):
    project, report = qemu_classifier
    text = (project.path / "reports" / "verify.md").read_text(encoding="utf-8")
    check_tables(text, "verify.md")  # every row keeps its header's columns
    (grid,) = [t for t in tables(text) if t[0][0] == "true / predicted"]
    assert grid[0][1:] == [str(i) for i in range(10)]
    assert all(len(row) == 11 for row in grid)  # K + 1 columns
    assert [row[0] for row in grid[1:]] == [str(i) for i in range(10)]
    cells = [[int(v) for v in row[1:]] for row in grid[1:]]
    assert cells == report.metrics["confusion"]["matrix"]
    assert "![confusion matrix](confusion.png)" in text
    png = project.path / "reports" / "confusion.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and str(png) == report.reports["confusion_plot"]


def test_report_pngs_are_the_same_bytes_when_written_again(qemu_classifier, tmp_path):
    from tinygen.verification.verify import load_project, write_reports

    project, report = qemu_classifier
    result = json.loads((project.path / "reports" / "verify.json").read_text())
    man, _, vectors = load_project(project.path)
    write_reports(tmp_path, result, report.outputs, report.expected, vectors, man)
    for name in ("confusion.png", "verify.png", "verify.md", "verify.json"):
        assert (tmp_path / name).read_bytes() == (project.path / "reports" / name).read_bytes(), name


def test_build_quality_holds_the_int8_confusion_on_the_held_out_set(digits_project):
    man = json.loads((digits_project / "tinygen.json").read_text())
    q = man["quality"]
    with np.load(digits_project / "vectors" / "reference.npz") as z:
        labels, outputs = z["labels"], z["outputs"]
    assert q["samples"] == len(labels) == 360  # every held-out sample is a reference vector
    expected = sk_confusion(labels, outputs.reshape(len(outputs), -1).argmax(axis=1), labels=list(range(10)))
    assert np.array_equal(np.array(q["int8_confusion_matrix"]), expected)
    assert np.trace(expected) / 360 == pytest.approx(q["int8_accuracy"])
    assert q["class_names"] == [str(i) for i in range(10)]  # the recipe's


def _summary(plan) -> str:
    from tinygen.cli.output import out, print_build_summary

    with out.capture() as cap:
        print_build_summary(plan)
    return cap.get()


def _row(text: str, label: str) -> str:
    (line,) = [ln for ln in text.splitlines() if re.match(rf"[│|]\s*{re.escape(label)}\s*[│|]", ln)]
    return line.split("│")[2].strip()


_TERM = re.compile(r"([\d,]+) B (exact \(from the model\)|measured|estimated)")


def _terms(line: str) -> dict[str, int]:
    total, _, parts = line.partition(" = ")
    terms = {kind.split()[0]: int(n.replace(",", "")) for n, kind in _TERM.findall(parts)}
    terms["total"] = int(total.split(" / ")[0].replace(",", ""))
    return terms


def test_summary_says_how_much_is_measured_and_how_much_estimated(qemu_classifier, digits_project):
    from tinygen.cli.output import budget_line

    project, _ = qemu_classifier
    text = _summary(project.plan)
    b = project.plan.budget
    for label, key in (("flash", "flash"), ("RAM", "ram")):
        terms = _terms(_row(text, label))
        assert terms["total"] == b[f"{key}_bytes"]
        assert sum(v for k, v in terms.items() if k != "total") == terms["total"]
        assert terms.get("estimated", 0) == b[f"{key}_estimated_bytes"]
        by_kind = {"exact": 0, "measured": 0, "estimated": 0}
        for p in b["parts"]:  # the board file's marks, summed here
            by_kind["estimated" if p["kind"] == "estimate" else p["kind"]] += p[f"{key}_bytes"]
        assert {k: v for k, v in by_kind.items() if v} == {k: v for k, v in terms.items() if k != "total"}
    # the nano33ble budget has estimated parts (mbed-os): said, and the three add up
    nb = json.loads((digits_project / "tinygen.json").read_text())["budget"]
    terms = _terms(budget_line(nb, "flash"))
    assert terms["estimated"] == nb["flash_estimated_bytes"] > 0
    assert terms["exact"] + terms.get("measured", 0) + terms["estimated"] == terms["total"] == nb["flash_bytes"]


def test_summary_shows_the_int8_confusion_grid(qemu_classifier):
    project, _ = qemu_classifier
    lines = _summary(project.plan).splitlines()
    start = [i for i, ln in enumerate(lines) if "int8 confusion (held-out)" in ln]
    assert len(start) == 1
    grid = [ln.split("│")[2].split() for ln in lines[start[0]:start[0] + 11]]
    assert grid[0] == ["true\\pred"] + [str(i) for i in range(10)]
    assert [[int(v) for v in row[1:]] for row in grid[1:]] == project.plan.quality["int8_confusion_matrix"]


def test_summary_points_to_the_reports_over_twelve_classes():
    from tinygen.cli.output import _confusion_row

    label, text = _confusion_row({"int8_confusion_matrix": [[0] * 13 for _ in range(13)]})
    assert str(text) == "13 classes: see tinygen.json (quality) and verify's reports"


def test_binary_matrix_matches_its_counts_and_hostile_class_names_stay_cells(tmp_path):
    from tinygen.verification.verify import confusion_plot, metrics, write_reports

    # binary: the 2 x 2 matrix is the TN/FP/FN/TP counts, in the same places
    out = np.array([[-128], [100], [0], [127], [-50], [20]], dtype=np.int8)  # scale 1/256, zp -128
    labels = np.array([0, 0, 1, 1, 1, 0])
    man = {"name": "b", "output": {"scale": 1 / 256, "zero_point": -128}, "task": "binary"}
    m = metrics(out, out, man, float_out=None, labels=labels, ticks=[1] * 6, tick_hz=1000, instr_per_tick=None,
                tolerance=0, seconds=1.0)
    pred = ((out[:, 0].astype(int) + 128) / 256 >= 0.5).astype(int)
    assert m["confusion"]["matrix"] == sk_confusion(labels, pred, labels=[0, 1]).tolist()
    c = m["board_confusion"]
    assert m["confusion"]["matrix"] == [[c["tn"], c["fp"]], [c["fn"], c["tp"]]]
    # class names from tinygen.json, with a '|' and markup: one cell each
    names = ["a|b", "*c*", "d"]
    out3 = np.array([[1, 0, 0], [0, 9, 0], [0, 0, 9], [9, 0, 0]], dtype=np.int8)
    man3 = {"name": "m|x", "model_sha256": "ab" * 32, "output": {"scale": 0.1, "zero_point": 0},
            "task": "classification", "quality": {"class_names": names}}
    m3 = metrics(out3, out3, man3, float_out=None, labels=np.array([0, 1, 2, 2]), ticks=[1] * 4, tick_hz=1000,
                 instr_per_tick=None, tolerance=0, seconds=1.0)
    assert m3["confusion"]["matrix"] == [[1, 0, 0], [0, 1, 0], [1, 0, 1]]
    result = {"metrics": m3, "board": "qemu-m4", "runtime": "compiled", "port": "p"}
    write_reports(tmp_path, result, out3, out3, {"inputs": np.zeros((4, 1), np.int8)}, man3)
    text = (tmp_path / "verify.md").read_text(encoding="utf-8")
    check_tables(text, "verify.md")
    (grid,) = [t for t in tables(text) if t[0][0] == "true / predicted"]
    assert grid[0] == ["true / predicted"] + names and [row[0] for row in grid[1:]] == names
    confusion_plot(tmp_path / "again.png", m3["confusion"], "m|x on qemu-m4", tmp_path)
    assert (tmp_path / "again.png").read_bytes() == (tmp_path / "confusion.png").read_bytes()


def _candidates(ram: tuple[int, int, int]) -> dict:
    def row(label, flash, ram_bytes, acc, trained=True):
        return {"label": label, "flash_bytes": flash, "ram_bytes": ram_bytes, "flash_budget": 100_000,
                "ram_budget": 20_000, "int8_metric": acc, "macs": flash * 3, "trained": trained}

    return {"metric": "accuracy", "chosen": "prune 0.5", "board": "nano33ble", "runtime": "tflm", "headroom": 0.1,
            "candidates": [row("original", 80_000, ram[0], 0.95), row("prune 0.875", 40_000, ram[1], None, False),
                           row("prune 0.5", 60_000, ram[2], 0.93)]}


def _png_width(path) -> int:
    data = path.read_bytes()
    assert data[12:16] == b"IHDR"
    return struct.unpack(">I", data[16:20])[0]


@pytest.mark.parametrize("ram,decided", [((30_000, 12_000, 17_000), ["RAM"]),  # only RAM was over
                                         ((15_000, 9_000, 12_000), ["flash"])])  # flash over (set below), RAM fits
def test_compression_chart_draws_ram_when_ram_decided(tmp_path, monkeypatch, ram, decided):
    import matplotlib.pyplot as plt

    from tinygen.compress.fit import chart, deciding_resources

    report = _candidates(ram)
    if decided == ["flash"]:
        report["candidates"][0]["flash_bytes"] = 95_000  # over the flash budget less headroom, RAM fits
    assert deciding_resources(report) == decided
    figures = []
    close = plt.close
    monkeypatch.setattr(plt, "close", lambda fig=None: (figures.append(fig), close(fig)))
    png = chart(report, tmp_path / "c.png")
    (fig,) = figures
    xlabels = [ax.get_xlabel() for ax in fig.axes]
    assert fig._suptitle.get_text().endswith(f"{decided[0]} decided the fit")
    assert any(x.startswith("RAM") for x in xlabels) == (decided == ["RAM"])
    assert xlabels[0].startswith("firmware flash")
    if decided == ["RAM"]:
        ram_ax = fig.axes[1]
        lines = {ln.get_label(): ln.get_xdata()[0] for ln in ram_ax.get_lines()}
        assert lines["RAM budget"] == pytest.approx(20_000 / 1024)
        assert lines["budget less 10% headroom"] == pytest.approx(18_000 / 1024)
    assert _png_width(png) == 500 * len(fig.axes)
    monkeypatch.undo()
    assert chart(report, tmp_path / "again.png").read_bytes() == png.read_bytes()  # the same bytes
