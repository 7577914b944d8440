"""Hostile or broken user input never crashes, hangs or silently corrupts a build (issue 8, items 2-3).

End-to-end through the real CLI (a child process): non-finite data is refused with where it is,
files that are not regular (FIFOs, links to /dev/zero, directories) or too large are refused
before they are opened, and a TFLite converter crash on a real LSTM model becomes one line naming
the step, the signal and what to try, instead of tinygen dying with SIGSEGV.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from conftest import REPO, assert_one_line_error, run_cli

FAST = 120  # seconds: every refusal here happens before any model is converted


def one_line_error(res, *needles: str, code: int = 2) -> str:
    return assert_one_line_error(res, *needles, code=code)


def build(tmp_path, model, data=None, timeout=FAST):
    args = ["build", "--board", "esp32", "--model", str(model), "--out", str(tmp_path / "out")]
    if data is not None:
        args += ["--data", str(data)]
    try:
        res = run_cli(*args, timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"tinygen {' '.join(args)} hung for {timeout} s")
    assert not (tmp_path / "out").exists()
    return res


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Untrained tiny models (weights do not matter to what is tested): a Dense model on (4,) and an
    LSTM(4) on (8, 3) sequences, which the int8 converter crashes on while calibrating."""
    import tensorflow as tf

    d = tmp_path_factory.mktemp("models")
    tf.keras.utils.set_random_seed(0)
    tf.keras.Sequential([tf.keras.Input((4,)), tf.keras.layers.Dense(3)]).save(d / "dense.keras")
    # A generic RNN loop over an LSTM cell: tinygen unrolls LSTM/GRU/SimpleRNN layers, not this.
    tf.keras.Sequential([tf.keras.Input((8, 3)), tf.keras.layers.RNN(tf.keras.layers.LSTMCell(4), name="LSTM_loop"),
                         tf.keras.layers.Dense(2)]).save(d / "lstm.keras")
    return d


def samples(n=20, shape=(4,)):
    return np.random.default_rng(0).uniform(-1, 1, size=(n,) + shape).astype(np.float32)


# ---------------------------------------------------------------- non-finite data

@pytest.mark.parametrize("value,shown", [(np.inf, "inf"), (-np.inf, "-inf"), (np.nan, "nan"), (1e300, "1e+300")])
def test_non_finite_npz_is_refused_with_the_sample(models, tmp_path, value, shown):
    x = samples().astype(np.float64)
    x[7, 2] = value
    np.savez(tmp_path / "d.npz", x=x, y=np.arange(20) % 3)
    one_line_error(build(tmp_path, models / "dense.keras", tmp_path / "d.npz"), "x[7, 2]", f"is {shown};")


def test_non_finite_npy_is_refused_with_the_sample(models, tmp_path):
    x = samples(30)
    x[29, 0] = np.nan
    x[12, 3] = np.inf  # the first one is reported
    np.save(tmp_path / "d.npy", x)
    one_line_error(build(tmp_path, models / "dense.keras", tmp_path / "d.npy"), "x[12, 3]", "sample 12", "inf")


def test_nan_target_is_refused(models, tmp_path):
    y = np.zeros(20, dtype=np.float32)
    y[3] = np.nan
    np.savez(tmp_path / "d.npz", x=samples(), y=y)
    one_line_error(build(tmp_path, models / "dense.keras", tmp_path / "d.npz"), "y[3]", "nan")


@pytest.mark.parametrize("cell", ["inf", "nan", "-Infinity", "1e300", "1e400"])
def test_non_finite_csv_cell_is_refused_with_row_and_column(models, tmp_path, cell):
    rows = ["a,b,c,d,label"] + [",".join(f"{v:.3f}" for v in r) + ",1" for r in samples(10)]
    cells = rows[3].split(",")
    cells[2] = cell
    rows[3] = ",".join(cells)
    (tmp_path / "s.csv").write_text("\n".join(rows) + "\n")
    one_line_error(build(tmp_path, models / "dense.keras", tmp_path / "s.csv"), "s.csv row 4, column 3 is")


def test_csv_rows_of_different_length_name_the_row(models, tmp_path):
    (tmp_path / "s.csv").write_text("1,2,3,4\n1,2,3,4\n1,2,3\n")
    one_line_error(build(tmp_path, models / "dense.keras", tmp_path / "s.csv"), "row 3 has 3 columns")


# ---------------------------------------------------------------- malformed arrays

def test_zero_d_x_is_refused(models, tmp_path):
    np.savez(tmp_path / "d.npz", x=np.float32(3.0))
    one_line_error(build(tmp_path, models / "dense.keras", tmp_path / "d.npz"), "single number")


def test_string_y_is_refused(models, tmp_path):
    np.savez(tmp_path / "d.npz", x=samples(), y=np.array(["cat", "dog"] * 10))
    one_line_error(build(tmp_path, models / "dense.keras", tmp_path / "d.npz"), "'y' holds", "not numbers")


def test_y_of_wrong_length_is_refused(models, tmp_path):
    np.savez(tmp_path / "d.npz", x=samples(), y=np.arange(19))
    one_line_error(build(tmp_path, models / "dense.keras", tmp_path / "d.npz"), "20 samples", "19")


def test_empty_x_is_refused(models, tmp_path):
    np.savez(tmp_path / "d.npz", x=np.zeros((0, 4), np.float32))
    one_line_error(build(tmp_path, models / "dense.keras", tmp_path / "d.npz"), "no samples")


def test_object_array_is_refused_without_unpickling(models, tmp_path):
    np.savez(tmp_path / "d.npz", x=np.array([[1.0, 2.0], "evil"], dtype=object))
    one_line_error(build(tmp_path, models / "dense.keras", tmp_path / "d.npz"), "python objects")


def test_npy_header_claiming_a_huge_shape_is_refused(models, tmp_path):
    path = tmp_path / "d.npy"
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False,
                                                 "shape": (10 ** 12, 4)})
        f.write(b"\0" * 64)
    one_line_error(build(tmp_path, models / "dense.keras", path), "truncated or corrupt")


# ---------------------------------------------------------------- files that are not regular

@pytest.mark.parametrize("name,role", [("x.tflite", "model"), ("x.keras", "model"), ("d.npy", "data"),
                                       ("d.csv", "data")])
def test_fifo_is_refused_without_hanging(models, tmp_path, name, role):
    os.mkfifo(tmp_path / name)
    model = tmp_path / name if role == "model" else models / "dense.keras"
    data = tmp_path / name if role == "data" else (None if name.endswith(".tflite") else tmp_path / "none.npy")
    one_line_error(build(tmp_path, model, data, timeout=60), "FIFO")


@pytest.mark.parametrize("name,role", [("x.tflite", "model"), ("d.npy", "data")])
def test_symlink_to_dev_zero_is_refused(models, tmp_path, name, role):
    os.symlink("/dev/zero", tmp_path / name)
    model = tmp_path / name if role == "model" else models / "dense.keras"
    data = tmp_path / name if role == "data" else None
    one_line_error(build(tmp_path, model, data, timeout=60), "character device")


@pytest.mark.parametrize("kind", ["fifo", "dev-zero"])
def test_inspect_refuses_what_is_not_a_regular_file(tmp_path, kind):
    p = tmp_path / "x.tflite"
    if kind == "fifo":
        os.mkfifo(p)
    else:
        os.symlink("/dev/zero", p)
    try:
        res = run_cli("inspect", str(p), timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail(f"tinygen inspect on a {kind} hung")
    one_line_error(res, "FIFO" if kind == "fifo" else "character device")


def test_directory_named_like_a_keras_file_is_refused(tmp_path):
    (tmp_path / "x.h5").mkdir()
    np.save(tmp_path / "d.npy", samples())
    one_line_error(build(tmp_path, tmp_path / "x.h5", tmp_path / "d.npy"), "directory")


def test_model_over_the_size_limit_is_refused_before_reading(tmp_path):
    with open(tmp_path / "big.tflite", "wb") as f:
        f.truncate(65 << 20)  # sparse: nothing is written
    one_line_error(build(tmp_path, tmp_path / "big.tflite"), "64 MiB limit")


def test_savedmodel_with_a_fifo_inside_is_refused(tmp_path):
    sm = tmp_path / "sm"
    (sm / "variables").mkdir(parents=True)
    (sm / "saved_model.pb").write_bytes(b"\0")
    os.mkfifo(sm / "variables" / "variables.index")
    np.save(tmp_path / "d.npy", samples())
    one_line_error(build(tmp_path, sm, tmp_path / "d.npy", timeout=60), "FIFO", "variables.index")


# ---------------------------------------------------------------- broken models

@pytest.mark.parametrize("name", ["x.keras", "x.h5"])
def test_garbage_bytes_as_a_keras_model_are_refused(tmp_path, name):
    (tmp_path / name).write_bytes(os.urandom(512))
    np.save(tmp_path / "d.npy", samples())
    one_line_error(build(tmp_path, tmp_path / name, tmp_path / "d.npy"), "not a")


def test_zip_that_is_not_a_keras_model_is_refused_by_the_worker(tmp_path):
    with zipfile.ZipFile(tmp_path / "x.keras", "w") as z:
        z.writestr("config.json", "{not json")
    np.save(tmp_path / "d.npy", samples())
    one_line_error(build(tmp_path, tmp_path / "x.keras", tmp_path / "d.npy"), "could not be loaded as a Keras model")


def test_lstm_converter_crash_is_one_line_naming_step_signal_and_fix(models, tmp_path):
    """The TFLite converter really segfaults on this LSTM while calibrating; tinygen survives it."""
    np.savez(tmp_path / "seq.npz", x=samples(20, (8, 3)))
    res = build(tmp_path, models / "lstm.keras", tmp_path / "seq.npz", timeout=600)
    assert res.returncode not in (139, -11, 70)
    line = one_line_error(res, "LSTM", "crashed (SIG", "while calibrating int8 ranges", "GRU(..., unroll=True)",
                          "int8 .tflite", code=4)
    assert "tinygen-work" not in line  # names the user's model, not our private copy


# ---------------------------------------------------------------- the parent stays light

def test_user_model_is_never_loaded_into_tinygen_itself(models, tmp_path):
    """Describing a user's Keras model happens in the worker: the CLI process never imports TensorFlow."""
    np.save(tmp_path / "d.npy", samples())
    code = ("import sys; from tinygen.intake.sources import source_from_user\n"
            f"src = source_from_user({str(models / 'dense.keras')!r}, {str(tmp_path / 'd.npy')!r})\n"
            "assert src.x_rep.shape[1:] == (4,), src.x_rep.shape\n"
            "print('tensorflow' in sys.modules, 'keras' in sys.modules)\n"
            "src.work.cleanup()\n")
    env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="3")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["False", "False"]


def test_read_user_file_is_bounded(tmp_path):
    from tinygen.common.errors import TinygenError
    from tinygen.common.userfiles import read_user_file

    (tmp_path / "f").write_bytes(b"x" * 100)
    assert read_user_file(tmp_path / "f", "data file", 100) == b"x" * 100
    with pytest.raises(TinygenError, match="limit"):
        read_user_file(tmp_path / "f", "data file", 99)
