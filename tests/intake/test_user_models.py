"""User models through `tinygen build --model`: .keras, .h5, SavedModel, int8 .tflite, with --data."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import build_ok, run_cli


@pytest.fixture(scope="module")
def user_model(tmp_path_factory):
    """A small trained classifier on generated data (3 classes of noisy sinusoids)."""
    import tensorflow as tf

    d = tmp_path_factory.mktemp("user")
    rng = np.random.default_rng(7)
    n = 300
    y = rng.integers(0, 3, size=n)
    t = np.linspace(0, 1, 16, dtype=np.float32)
    x = np.stack([np.sin(2 * np.pi * (k + 1) * t + rng.uniform(0, 6)) for k in y]).astype(np.float32)
    x += rng.normal(0, 0.1, size=x.shape).astype(np.float32)
    tf.keras.utils.set_random_seed(7)
    model = tf.keras.Sequential([tf.keras.Input(shape=(16,)), tf.keras.layers.Dense(24, activation="relu"),
                                 tf.keras.layers.Dense(3), tf.keras.layers.Softmax()])
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=30, verbose=0)
    model.save(d / "m.keras")
    model.save(d / "m.h5")
    model.export(str(d / "saved"))
    np.savez(d / "data.npz", x=x, y=y)
    with open(d / "data.csv", "w") as f:
        f.write(",".join([f"f{i}" for i in range(16)] + ["label"]) + "\n")
        for xi, yi in zip(x, y):
            f.write(",".join(f"{v:.6f}" for v in xi) + f",{yi}\n")
    return d


@pytest.mark.parametrize("model_file,data_file", [("m.keras", "data.npz"), ("m.h5", "data.csv"),
                                                  ("saved", "data.npz")])
def test_user_model_builds_and_its_vectors_match_tflite_micro(user_model, model_file, data_file, tmp_path):
    from conftest import tflm_outputs

    out = tmp_path / "p"
    res = build_ok("--board", "nano33ble", "--model", str(user_model / model_file), "--data",
                   str(user_model / data_file), "--out", str(out), "--json")
    summary = json.loads(res.stdout)
    assert summary["task"] == "classification"
    assert summary["quality"]["samples"] == 60  # the held-out last 20 %
    assert summary["quality"]["top1_agreement"] >= 0.9
    raw = (out / "model.tflite").read_bytes()
    with np.load(out / "vectors" / "reference.npz") as z:
        np.testing.assert_array_equal(tflm_outputs(raw, z["inputs"]), z["outputs"])
        labels = np.load(user_model / "data.npz")["y"][-60:][: len(z["labels"])]
        np.testing.assert_array_equal(z["labels"], labels)


def test_int8_tflite_is_used_as_is(sine_project, tmp_path):
    src = sine_project / "model.tflite"
    out = tmp_path / "p"
    build_ok("--board", "nano33ble", "--model", str(src), "--out", str(out))
    assert (out / "model.tflite").read_bytes() == src.read_bytes()


def test_float_model_without_data_is_refused(user_model, tmp_path):
    res = run_cli("build", "--board", "esp32", "--model", str(user_model / "m.keras"), "--out", str(tmp_path / "o"))
    assert res.returncode == 2 and "--data is required" in res.stderr and "Traceback" not in res.stderr


def test_inspect_reports_ops_tensors_and_fit(sine_project):
    import tensorflow as tf

    raw = (sine_project / "model.tflite").read_bytes()
    res = run_cli("inspect", str(sine_project / "model.tflite"), "--json")
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    interp = tf.lite.Interpreter(model_content=raw)
    assert len(data["tensors"]) == len(interp.get_tensor_details())
    assert data["ops"] == ["FULLY_CONNECTED"]
    assert data["params"] == 16 + 16 + 16 * 16 + 16 + 16 + 1  # weights + biases of 1-16-16-1
    assert data["macs"] == 16 + 16 * 16 + 16
    assert data["model_bytes"] == len(raw)
    assert data["fits"]["esp32"]["tflm"]["fits"] and data["fits"]["nano33ble"]["tflm"]["fits"]
    # The arena the model was given must really be enough for the tflite_micro interpreter
    from tflite_micro.python.tflite_micro import runtime

    it = runtime.Interpreter.from_bytes(raw, arena_size=data["arena"]["recommended_bytes"])
    it.set_input(np.zeros((1, 1), np.int8), 0)
    it.invoke()
    for t in data["tensors"]:
        d = interp.get_tensor_details()[t["index"]]
        assert list(d["shape"]) == t["shape"]


def test_boards_lists_known_boards():
    res = run_cli("boards", "--json")
    assert res.returncode == 0
    ids = {b["id"] for b in json.loads(res.stdout)}
    assert {"esp32", "nano33ble"} <= ids
    res = run_cli("boards")
    assert "esp32dev" in res.stdout and "Chirale" in res.stdout


def test_inspect_compiled_memory_plan_beside_tflm_arena(digits_project):
    res = run_cli("inspect", str(digits_project / "model.tflite"), "--runtime", "compiled", "--json")
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    plan = data["compiled_memory_plan"]
    assert 0 < plan["peak_bytes"] <= data["arena"]["host_min_bytes"]
    arena = [t for t in plan["tensors"] if t["location"] == "arena"]
    assert arena and max(t["offset"] + t["size"] for t in arena) <= plan["peak_bytes"]
    # tensors alive at the same time never overlap, but as a declared overlap allows: an op's output
    # starting at least `shift` bytes below the input it writes over (overlap.py)
    def writes_over(y, x):
        return any(o["tensor"] == x["tensor"] and y["offset"] <= x["offset"] - o["shift"] for o in y["writes_over"])

    for a in arena:
        for b in arena:
            if a is b or a["last_op"] < b["first_op"] or b["last_op"] < a["first_op"]:
                continue
            if b["tensor"] in a.get("shares_with", []) or writes_over(a, b) or writes_over(b, a):
                continue
            assert a["offset"] + a["size"] <= b["offset"] or b["offset"] + b["size"] <= a["offset"], (a, b)
