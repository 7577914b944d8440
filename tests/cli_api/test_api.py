"""The public Python API as a notebook user drives it: build, verify on the emulator, inspect, errors.

Expected values come from outside tinygen: the tflite_micro interpreter for the board's outputs,
TensorFlow Lite's own reader for what inspect reports, the files on disk for the project.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import numpy as np
import pytest

import tinygen
from conftest import REPO, require_tool, tflm_outputs
from tinygen.common.errors import TinygenError, VerificationFailed


@pytest.fixture(scope="module")
def project(session_dir):
    """One tiny training: the sine recipe for the emulated Cortex-M4 (compiled runtime)."""
    return tinygen.build(recipe="sine", board="qemu-m4", out=session_dir / "api-sine-qemu", epochs=2, seed=7,
                         vectors=8, tflm_dir=None)


def test_importing_tinygen_loads_neither_tensorflow_nor_the_cli():
    code = ("import json, sys, tinygen, tinygen.common.errors\n"
            "assert not {'tensorflow', 'click', 'tinygen.cli', 'tinygen.api'} & set(sys.modules)\n"
            "api = [getattr(tinygen, name) for name in tinygen.__all__]  # loads tinygen.api, still no TF\n"
            "assert not {'tensorflow', 'click', 'tinygen.cli'} & set(sys.modules)\n"
            "print(json.dumps(sorted(tinygen.__all__)))\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout) == sorted(["build", "verify", "inspect", "flash", "doctor", "Project", "Report",
                                             "ModelInfo", "__version__", "bench", "BenchRow", "CompressOptions",
                                             "TinygenError", "UnsupportedModel", "DoesNotFit", "ToolFailure", "VerificationFailed",
                                             "UnsafeText"])


def test_build_returns_the_project_it_wrote(project):
    assert project.path.is_dir() and project.board.id == "qemu-m4" and project.runtime == "compiled"
    on_disk = {p.relative_to(project.path).as_posix(): p.read_bytes()
               for p in project.path.rglob("*") if p.is_file()}
    assert on_disk == project.files
    assert json.loads(on_disk["tinygen.json"]) == json.loads(json.dumps(project.manifest))
    loaded = tinygen.Project.load(project.path)
    assert loaded.plan is None and loaded.files is None
    assert (loaded.manifest, loaded.board, loaded.runtime) == (json.loads(on_disk["tinygen.json"]), project.board,
                                                               "compiled")


def test_verify_on_the_emulator_matches_tflite_micro(project, capfd):
    require_tool("arm-none-eabi-gcc")
    require_tool("qemu-system-arm")
    elf = project.build_firmware()
    assert elf.is_file()
    capfd.readouterr()
    report = project.verify(fresh_vectors=5, seed=3)  # port None: QEMU on the ELF just built
    printed = capfd.readouterr()
    assert (printed.out, printed.err) == ("", ""), "the API must not print"
    assert isinstance(report, tinygen.Report)
    assert report.passed, report.metrics
    report.raise_if_failed()
    model = (project.path / "model.tflite").read_bytes()
    with np.load(project.path / "vectors" / "reference.npz") as z:
        project_inputs = z["inputs"]
    assert report.inputs.shape[0] == len(project_inputs) + 5
    np.testing.assert_array_equal(report.inputs[:len(project_inputs)], project_inputs)
    np.testing.assert_array_equal(report.outputs, tflm_outputs(model, report.inputs).reshape(report.outputs.shape))
    assert report.outputs.dtype == np.int8
    d = report.to_dict()
    assert (d["board"], d["runtime"], d["reference_vectors"], d["fresh_vectors"]) == ("qemu-m4", "compiled", 8, 5)
    assert d["model_sha256"] == hashlib.sha256(model).hexdigest()
    written = json.loads((project.path / "reports" / "verify.json").read_text())
    assert written == json.loads(json.dumps({k: v for k, v in d.items() if k != "reports"}))
    assert sorted(d["reports"]) == ["json", "markdown", "plot"]


def test_inspect_reports_the_models_own_facts(project):
    import tensorflow as tf

    path = project.path / "model.tflite"
    raw = path.read_bytes()
    info = tinygen.inspect(path)
    assert isinstance(info, tinygen.ModelInfo)
    assert info.sha256 == hashlib.sha256(raw).hexdigest() and info.model_bytes == len(raw)
    interp = tf.lite.Interpreter(model_content=raw)
    ops = [op["op_name"] for op in interp._get_ops_details()]
    assert [layer.opcode for layer in info.layers] == ops
    assert info.ops == list(dict.fromkeys(ops))
    details = {t["index"]: t for t in interp.get_tensor_details()}
    for t in info.tensors:
        want = details[t["index"]]
        assert (t["name"], t["shape"], t["dtype"]) == (want["name"], list(want["shape"]), np.dtype(want["dtype"]).name)
        scales = want["quantization_parameters"]["scales"]
        if isinstance(t["scale"], list) and t["scale"]:
            assert t["scale"][0] == pytest.approx(float(scales[0]), rel=1e-6)
            assert t["zero_point"] == [int(want["quantization_parameters"]["zero_points"][0])]
    weights = sum(int(np.prod(details[t["index"]]["shape"])) for t in info.tensors if t["constant"])
    assert info.params <= weights
    # The arena inspect measured is enough for tflite_micro itself.
    from tflite_micro.python.tflite_micro import runtime

    it = runtime.Interpreter.from_bytes(raw, arena_size=info.arena.host_min_bytes)
    it.set_input(np.zeros(info.model.input_tensor().shape, np.int8), 0)
    it.invoke()
    assert info.fits["qemu-m4"]["compiled"]["fits"]
    assert json.loads(json.dumps(info.to_dict(), default=str))["sha256"] == info.sha256


@pytest.mark.parametrize("call, needle, code", [
    (lambda tmp: tinygen.build(board="no-such-board", out=tmp / "x"), "no-such-board", 2),
    (lambda tmp: tinygen.build("m.keras", recipe="sine", board="qemu-m4", out=tmp / "x"), "not both", 2),
    (lambda tmp: tinygen.build(recipe="sine", board="qemu-m4", runtime="tflm", out=tmp / "x"), "--tflm-dir", 2),
    (lambda tmp: tinygen.build(recipe="sine", board="qemu-m4", out=tmp / "x",
                               compress=tinygen.CompressOptions(fit_board="nano33ble")), "--fit-board goes with --fit", 2),
    (lambda tmp: tinygen.build(recipe="sine", board="qemu-m4", out=tmp / "x",
                               compress=tinygen.CompressOptions(prune=1.5)), "--prune ratio 1.5", 2),
    (lambda tmp: tinygen.build(recipe="sine", board="qemu-m4", out=tmp / "x", compress={"prune": 0.5}),
     "compress= takes a tinygen.CompressOptions", 2),
    (lambda tmp: tinygen.inspect(tmp / "missing.tflite"), "missing.tflite", 2),
    (lambda tmp: tinygen.inspect(tmp / "x.tflite", runtime="fast"), "unknown runtime", 2),
    (lambda tmp: tinygen.verify(tmp), "not a tinygen project", 2),
    (lambda tmp: tinygen.Project.load(tmp).flash(), "not a tinygen project", 2),
])
def test_api_errors_are_one_line_tinygen_errors(tmp_path, capfd, call, needle, code):
    with pytest.raises(TinygenError) as exc:
        call(tmp_path)
    message = str(exc.value)
    assert needle in message and "\n" not in message
    assert exc.value.exit_code == code
    assert capfd.readouterr() == ("", "")
    assert not (tmp_path / "x").exists()


def test_the_build_commands_compression_flags_become_one_compress_options():
    """Every compression flag lands in its CompressOptions field (and nothing else is a compression keyword)."""
    from tinygen.cli.main import cli
    from tinygen.cli.options import build_arguments

    argv = ["build", "--board", "qemu-m4", "--model", "m.keras", "--data", "d.npz", "--fit", "--qat",
            "--fit-board", "nano33ble", "--fit-headroom", "0.2", "--fit-latency-ms", "10", "--fit-widths", "0.5,0.125"]
    ctx = cli.make_context("tinygen", argv)
    sub = cli.get_command(ctx, "build").make_context("build", argv[1:], parent=ctx)
    kwargs = build_arguments(dict(sub.params))
    assert kwargs["compress"] == tinygen.CompressOptions(qat=True, fit=True, fit_board="nano33ble", fit_headroom=0.2,
                                                         fit_latency_ms=10.0, fit_widths=(0.5, 0.125))
    assert not {"prune", "qat", "distill", "fit", "fit_board", "fit_widths"} & set(kwargs)
    plain = cli.get_command(ctx, "build").make_context("build", ["--board", "qemu-m4", "--prune", "a=0.5"], parent=ctx)
    assert build_arguments(dict(plain.params))["compress"] == tinygen.CompressOptions(prune="a=0.5")


def test_every_compress_options_example_in_the_docs_is_a_real_value():
    """docs/*.md show CompressOptions(...) inline (compression trains for minutes: not in the run snippet):
    each must construct, with fields the dataclass has."""
    import dataclasses
    import re

    found = []
    for doc in sorted((REPO / "docs").glob("*.md")):
        for call in re.findall(r"tinygen\.CompressOptions\([^()]*\)", doc.read_text(encoding="utf-8")):
            value = eval(call, {"tinygen": tinygen})  # the docs' own text, from this repository
            assert isinstance(value, tinygen.CompressOptions) and value.active, (doc.name, call)
            found.append(call)
    assert len(found) >= 3, found
    fields = {f.name for f in dataclasses.fields(tinygen.CompressOptions)}
    assert {"prune", "qat", "distill", "fit", "fit_board", "fit_budget", "epochs"} <= fields


def test_verify_refuses_a_nan_timeout_before_anything_else(tmp_path):
    with pytest.raises(TinygenError, match="timeout nan"):
        tinygen.verify(tmp_path, port="/dev/null", timeout=float("nan"))


def test_a_failed_report_raises_verification_failed():
    report = tinygen.Report(project="p", board="qemu-m4", port="p", runtime="compiled",
                            model_sha256="0" * 64, reference_vectors=1, fresh_vectors=0,
                            metrics={"passed": False, "max_abs_diff_lsb": 3, "tolerance_lsb": 0,
                                     "exact_match_pct": 50.0}, reports={"markdown": "r/verify.md"})
    assert not report.passed
    with pytest.raises(VerificationFailed) as exc:
        report.raise_if_failed()
    assert exc.value.exit_code == 5
    assert str(exc.value) == ("board outputs differ from the reference: max |Δ| 3 LSB > tolerance 0 LSB "
                              "(50.00 % exact); see r/verify.md")
