"""Bad input: one clear line on stderr, a non-zero exit, no traceback, nothing half-written."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import assert_one_line_error, run_cli


def assert_nothing_written(parent, name="out"):
    assert not (parent / name).exists()
    assert not [p for p in parent.iterdir() if p.name.startswith(f".{name}.tmp")]


@pytest.fixture(scope="module")
def float_tflite():
    """A float .tflite that TFLM's own package ships (not written by tinygen)."""
    from importlib.resources import files

    return files("tflite_micro.python.tflite_micro").joinpath("sine_float.tflite").read_bytes()


def test_missing_model_file(tmp_path):
    res = run_cli("build", "--board", "esp32", "--model", str(tmp_path / "nope.tflite"), "--out", str(tmp_path / "out"))
    assert_one_line_error(res, "does not exist", code=2)
    assert_nothing_written(tmp_path)


def test_truncated_tflite(tmp_path, sine_project):
    bad = tmp_path / "trunc.tflite"
    bad.write_bytes((sine_project / "model.tflite").read_bytes()[:700])
    res = run_cli("build", "--board", "esp32", "--model", str(bad), "--out", str(tmp_path / "out"))
    assert_one_line_error(res, "truncated or corrupt")
    assert_nothing_written(tmp_path)


def test_corrupt_tflite(tmp_path, sine_project):
    raw = bytearray((sine_project / "model.tflite").read_bytes())
    rng = np.random.default_rng(0)
    for i in rng.integers(8, 200, size=60):  # scribble over the flatbuffer's tables
        raw[i] = 0xFF
    bad = tmp_path / "corrupt.tflite"
    bad.write_bytes(bytes(raw))
    res = run_cli("inspect", str(bad))
    assert_one_line_error(res, "corrupt")


def test_file_that_is_not_a_model(tmp_path):
    bad = tmp_path / "notes.tflite"
    bad.write_text("these are my notes, not a model\n" * 10)
    res = run_cli("build", "--board", "esp32", "--model", str(bad), "--out", str(tmp_path / "out"))
    assert_one_line_error(res, "not a TFLite flatbuffer")
    assert_nothing_written(tmp_path)
    other = tmp_path / "model.pt"  # a PyTorch checkpoint: export it to .onnx (docs/from-pytorch.md)
    other.write_bytes(b"\x08\x07")
    assert_one_line_error(run_cli("build", "--board", "esp32", "--model", str(other)), "unknown model type")


def test_float_only_tflite_is_refused_with_the_reason(tmp_path, float_tflite):
    f = tmp_path / "sine_float.tflite"
    f.write_bytes(float_tflite)
    res = run_cli("build", "--board", "esp32", "--model", str(f), "--out", str(tmp_path / "out"))
    assert_one_line_error(res, "float .tflite", "re-quantized", code=3)
    assert_nothing_written(tmp_path)


def _with_opcode(model_bytes: bytes, new_builtin: int) -> bytes:
    """Rewrite the first operator code of a model (via the flatbuffer object API)."""
    import flatbuffers
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

    m = schema.ModelT.InitFromPackedBuf(model_bytes, 0)
    m.operatorCodes[0].builtinCode = new_builtin
    m.operatorCodes[0].deprecatedBuiltinCode = min(new_builtin, 127)
    b = flatbuffers.Builder(1024)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def test_op_tflm_lacks_is_refused_by_name(tmp_path, sine_project):
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

    bad = tmp_path / "lsh.tflite"
    bad.write_bytes(_with_opcode((sine_project / "model.tflite").read_bytes(),
                                 schema.BuiltinOperator.LSH_PROJECTION))
    res = run_cli("build", "--board", "esp32", "--model", str(bad), "--out", str(tmp_path / "out"))
    assert_one_line_error(res, "LSH_PROJECTION", "TFLM", code=3)
    assert_nothing_written(tmp_path)


def test_unknown_board(tmp_path):
    res = run_cli("build", "--board", "arduino-uno", "--out", str(tmp_path / "out"))
    assert_one_line_error(res, "unknown board 'arduino-uno'", "esp32", code=2)
    assert_nothing_written(tmp_path)


def test_data_with_the_wrong_shape(tmp_path):
    import tensorflow as tf

    model = tf.keras.Sequential([tf.keras.Input(shape=(4,)), tf.keras.layers.Dense(3)])
    model.save(tmp_path / "m.keras")
    np.savez(tmp_path / "d.npz", x=np.zeros((20, 5), np.float32))
    res = run_cli("build", "--board", "esp32", "--model", str(tmp_path / "m.keras"), "--data",
                  str(tmp_path / "d.npz"), "--out", str(tmp_path / "out"))
    assert_one_line_error(res, "(5,)", "(N, 4)")
    assert_nothing_written(tmp_path)
    np.savez(tmp_path / "nox.npz", samples=np.zeros((20, 4), np.float32))
    res = run_cli("build", "--board", "esp32", "--model", str(tmp_path / "m.keras"), "--data",
                  str(tmp_path / "nox.npz"), "--out", str(tmp_path / "out"))
    assert_one_line_error(res, "no array named 'x'")


def test_existing_output_directory_without_force(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    res = run_cli("build", "--board", "esp32", "--out", str(out))
    assert_one_line_error(res, "already exists", "--force")
    assert (out / "keep.txt").read_text() == "mine"


def _tree(root):
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None) for p in sorted(root.rglob("*"))}


@pytest.mark.parametrize("manifest", [None, "not json {", '{"title": "my thesis"}'],
                         ids=["no-manifest", "junk-manifest", "foreign-json"])
def test_force_never_replaces_a_directory_that_is_not_a_tinygen_project(tmp_path, sine_project, manifest):
    """The model builds (see the control below), so the refusal comes from the --force guard."""
    out = tmp_path / "thesis"
    (out / "figures").mkdir(parents=True)
    (out / "thesis.tex").write_text("\\chapter{years of work}\n")
    (out / "figures" / "plot.png").write_bytes(b"\x89PNG\r\n")
    if manifest is not None:
        (out / "tinygen.json").write_text(manifest)
    before = _tree(out)
    res = run_cli("build", "--board", "esp32", "--model", str(sine_project / "model.tflite"), "--out", str(out),
                  "--force")
    assert res.returncode != 0 and "Traceback" not in res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip() and not ln.startswith("…")]
    assert len(lines) == 1 and str(out) in lines[0], res.stderr
    assert _tree(out) == before
    assert [p.name for p in tmp_path.iterdir()] == ["thesis"]  # no temp or backup dirs left beside it


def test_force_replaces_a_tinygen_project(tmp_path, sine_project):
    """Control for the test above: the same build over a real project succeeds."""
    import shutil

    out = tmp_path / "proj"
    shutil.copytree(sine_project, out)
    (out / "README.md").write_text("edited since")
    res = run_cli("build", "--board", "esp32", "--model", str(sine_project / "model.tflite"), "--out", str(out),
                  "--force")
    assert res.returncode == 0, res.stderr
    assert (out / "tinygen.json").is_file() and (out / "README.md").read_text() != "edited since"


def test_model_too_big_for_the_board_is_refused_with_numbers(tmp_path):
    import tensorflow as tf

    tf.keras.utils.set_random_seed(0)
    model = tf.keras.Sequential([tf.keras.Input(shape=(1024,)), tf.keras.layers.Dense(1024),
                                 tf.keras.layers.Dense(512), tf.keras.layers.Dense(4)])
    model.save(tmp_path / "big.keras")
    np.savez(tmp_path / "d.npz", x=np.random.default_rng(0).normal(size=(16, 1024)).astype(np.float32))
    res = run_cli("build", "--board", "nano33ble", "--model", str(tmp_path / "big.keras"), "--data",
                  str(tmp_path / "d.npz"), "--out", str(tmp_path / "out"))
    line = assert_one_line_error(res, "does not fit nano33ble", "flash", code=3)
    assert "983,040" in line
    assert_nothing_written(tmp_path)


def test_usage_errors_are_one_line(tmp_path):
    assert_one_line_error(run_cli("build"), "--board")
    assert_one_line_error(run_cli("build", "--board", "esp32", "--recipe", "nope"), "unknown recipe")
    assert_one_line_error(run_cli("build", "--board", "esp32", "--data", "x.npz"), "--data goes with --model")


def test_reference_interpreter_crash_becomes_a_clear_error(tmp_path):
    """MobileNetV1-0.25 96x96x3 int8 makes the tflite_micro interpreter abort (SIGABRT); tinygen runs
    it in a child process and reports the crash in one line instead of dying with it."""
    from support.models import build_model
    from tinygen.intake.sources import quiet_native
    from tinygen.intake.quantize import quantize

    model, shape = build_model("mobilenet")
    x = np.random.default_rng(0).uniform(-1, 1, size=(4,) + shape).astype(np.float32)
    with quiet_native():
        raw = quantize(model, x)
    path = tmp_path / "mobilenet.tflite"
    path.write_bytes(raw)
    res = run_cli("inspect", str(path))
    line = assert_one_line_error(res, "tflite_micro reference interpreter", "mobilenet.tflite", code=4)
    assert "SIGABRT" in line or "crashed" in line


def _model_with_sin():
    import tensorflow as tf

    tf.keras.utils.set_random_seed(0)
    inp = tf.keras.Input((4,))
    h = tf.keras.layers.Dense(4)(inp)
    h = tf.keras.layers.Lambda(lambda t: tf.math.sin(t))(h)  # SIN has no int8 kernel
    return tf.keras.Model(inp, tf.keras.layers.Dense(2)(h))


def test_model_that_cannot_be_fully_int8_names_the_ops(tmp_path):
    from tinygen.common.errors import UnsupportedModel
    from tinygen.intake.sources import quiet_native
    from tinygen.intake.quantize import quantize

    with pytest.raises(UnsupportedModel, match="no int8 kernel for .*op SIN"):
        with quiet_native():
            quantize(_model_with_sin(), np.random.default_rng(0).random((10, 4), dtype=np.float32))


def test_partially_quantized_tflite_names_the_float_ops(tmp_path):
    import tensorflow as tf

    conv = tf.lite.TFLiteConverter.from_keras_model(_model_with_sin())
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([np.random.default_rng(i).random((1, 4), dtype=np.float32)]
                                           for i in range(10))
    conv.inference_input_type = conv.inference_output_type = tf.int8
    path = tmp_path / "partial.tflite"
    path.write_bytes(conv.convert())
    res = run_cli("build", "--board", "esp32", "--model", str(path), "--out", str(tmp_path / "out"))
    assert_one_line_error(res, "not fully int8", "SIN", code=3)
    assert_nothing_written(tmp_path)


def test_a_reference_crash_is_blamed_by_what_tflite_says(tmp_path):
    """A tflite_micro crash at every arena size: TFLite's own interpreter, in a child, decides whose
    fault it is. A model TFLite runs is a limit of tflite_micro (exit 4, as the MobileNet above); a
    file TFLite cannot run either is corrupt (exit 2)."""
    from tinygen.analysis.reference import _crash
    from tinygen.common.errors import ToolFailure

    sine_tflite = (Path(__file__).resolve().parents[1] / "fixtures" / "models" / "sine_int8.tflite").read_bytes()
    good = tmp_path / "good.tflite"
    good.write_bytes(sine_tflite)
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(sine_tflite[: len(sine_tflite) // 2])
    runs = _crash("good.tflite", -6, good)
    corrupt = _crash("bad.tflite", -6, bad)
    assert isinstance(runs, ToolFailure) and runs.exit_code == 4 and "limit of tflite_micro" in str(runs)
    assert not isinstance(corrupt, ToolFailure) and corrupt.exit_code == 2 and "corrupt" in str(corrupt)
