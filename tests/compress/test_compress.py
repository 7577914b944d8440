"""Compression (tinygen.compress): structured pruning keeps the model consistent and really smaller,
and compressed models still go through the normal build and verify bit-exact on the emulated board.

Independent references: Keras' own forward pass and count_params for the pruned model (it must
compute what the original computes with the removed filters zeroed), the tflite_micro interpreter
for the board's outputs, and the plan's own budget for what the build emits.
"""

from __future__ import annotations

import numpy as np
import pytest

import tinygen
from tinygen import CompressOptions
from conftest import require_tool, run_cli, tflm_outputs
from tinygen.common.errors import DoesNotFit, UnsupportedModel


def _keras():
    import keras

    from tinygen.intake.recipes import seed_everything

    seed_everything(3)
    return keras


def _chain_cnn(keras, with_bn: bool = False):
    L = keras.layers
    layers = [keras.Input((8, 8, 1), name="img"), L.Conv2D(8, 3, activation="relu", name="c1")]
    if with_bn:
        layers.append(L.BatchNormalization(name="bn"))
    layers += [L.DepthwiseConv2D(3, padding="same", depth_multiplier=2, activation="relu", name="dw"),
               L.MaxPooling2D(2, name="pool"), L.Conv2D(12, 1, activation="relu", name="c2"),
               L.Flatten(name="flat"), L.Dense(24, activation="relu", name="d1"), L.Dense(10, name="out"),
               L.Softmax(name="sm")]
    return keras.Sequential(layers, name="tiny")


def _trained_on_digits(tmp_path_factory, build, dirname: str, filename: str):
    """A small classifier on the real digits, trained 4 epochs (2 left the residual block at chance:
    constant outputs make a weak bit-exact check), saved with its data (the user's way in)."""
    from sklearn.datasets import load_digits

    keras = _keras()
    d = load_digits()
    x = (d.images[:500].astype(np.float32) / 16.0)[..., None]
    y = d.target[:500].astype(np.int64)
    model = build(keras)
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy")
    model.fit(x[:400], y[:400], epochs=4, batch_size=32, verbose=0)
    root = tmp_path_factory.mktemp(dirname)
    model.save(root / filename)
    np.savez(root / "data.npz", x=x, y=y)
    return root, model


@pytest.fixture(scope="module")
def user_model(tmp_path_factory):
    return _trained_on_digits(tmp_path_factory, _chain_cnn, "compress", "tiny.keras")


def _zeroed_like_pruning(keras, model, ratio: float):
    """A copy of ``model`` with the filters/units pruning removes set to zero (kernel and bias), and the
    DepthwiseConv2D channels fed only by them zeroed too: then the removed parts contribute nothing."""
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    mult = {}
    for lay in copy.layers:
        w = lay.get_weights()
        name = lay.name
        if name in ("c1", "c2", "d1"):
            n = w[0].shape[-1]
            keep = int(round(n * (1 - ratio)))
            l1 = np.abs(w[0]).reshape(-1, n).sum(axis=0)
            drop = np.argsort(-l1, kind="stable")[keep:]
            w[0][..., drop] = 0
            w[1][drop] = 0
            mult[name] = drop
        elif name == "dw":
            m = w[0].shape[-1]
            for c in mult["c1"]:
                w[0][:, :, c, :] = 0
                w[1][c * m:(c + 1) * m] = 0
        lay.set_weights(w)
    return copy


def test_pruning_removes_filters_and_computes_what_the_zeroed_original_computes(user_model):
    from tinygen.compress import prune

    keras = _keras()
    _, model = user_model
    pruned = prune.prune(model, 0.5)
    widths = {lay.name: lay.get_weights()[0].shape[-1] for lay in pruned.layers if lay.name in ("c1", "c2", "d1")}
    assert widths == {"c1": 4, "c2": 6, "d1": 12}
    assert pruned.layers[-2].get_weights()[0].shape == (12, 10)  # the output layer keeps its 10 classes
    # Keras' own count of the rebuilt model: c1 3*3*1*4+4, dw 3*3*4*2+8, c2 8*6+6, d1 (3*3*6)*12+12, out 12*10+10
    assert pruned.count_params() == 40 + 80 + 54 + 660 + 130 < model.count_params()
    x = np.random.default_rng(0).random((16, 8, 8, 1), dtype=np.float32)
    np.testing.assert_allclose(pruned.predict(x, verbose=0), _zeroed_like_pruning(keras, model, 0.5).predict(
        x, verbose=0), rtol=1e-5, atol=1e-6)


def test_pruning_per_layer_and_batchnorm_and_refusals():
    from tinygen.compress import prune

    keras = _keras()
    model = _chain_cnn(keras, with_bn=True)
    model.build((None, 8, 8, 1))
    pruned = prune.prune(model, {"c1": 0.75})
    assert [lay.get_weights()[0].shape[-1] for lay in pruned.layers if lay.name in ("c1", "c2", "d1")] == [2, 12, 24]
    assert all(v.shape == (2,) for v in pruned.get_layer("bn").get_weights())
    assert pruned.predict(np.zeros((1, 8, 8, 1), np.float32), verbose=0).shape == (1, 10)
    with pytest.raises(UnsupportedModel, match="not a prunable layer"):
        prune.prune(model, {"out": 0.5})
    inp = keras.Input((8,))
    h = keras.layers.Dense(8, name="a")(inp)
    gated = keras.Model(inp, keras.layers.Multiply(name="gate")([h, keras.layers.Dense(8)(h)]))
    with pytest.raises(UnsupportedModel, match="layer 'gate' is a Multiply") as exc:
        prune.prune(gated, 0.5)
    assert "\n" not in str(exc.value)
    shared = keras.layers.Dense(8, name="twice")
    twice = keras.Model(inp, keras.layers.Add()([shared(inp), shared(h)]))
    with pytest.raises(UnsupportedModel, match="'twice' is called more than once"):
        prune.prune(twice, 0.5)


def _residual(keras):
    """A functional ResNet-like block: c1 and c2 meet in an Add, the sum is concatenated with c3."""
    L = keras.layers
    x = keras.Input((8, 8, 1), name="img")
    a = L.Conv2D(8, 3, padding="same", activation="relu", name="c1")(x)
    b = L.Conv2D(8, 3, padding="same", activation="relu", name="c2")(a)
    s = L.Add(name="add")([a, b])
    c = L.Conv2D(4, 1, activation="relu", name="c3")(s)
    cat = L.Concatenate(name="cat")([s, c])
    y = L.Dense(10, name="out")(L.GlobalAveragePooling2D(name="gap")(L.MaxPooling2D(2, name="pool")(cat)))
    return keras.Model(x, L.Softmax(name="sm")(y), name="resblock")


@pytest.fixture(scope="module")
def residual_model(tmp_path_factory):
    return _trained_on_digits(tmp_path_factory, _residual, "compress-res", "res.keras")


def test_residual_pruning_ties_add_and_offsets_concatenate(residual_model):
    """c1 and c2 keep the same filters (the Add), chosen by their summed L1 norms; the Dense after
    the Concatenate keeps c1/c2's rows and c3's rows shifted by 8.  Reference: Keras on a copy of the
    original with the removed filters zeroed."""
    from tinygen.compress import prune

    keras = _keras()
    _, model = residual_model
    pruned = prune.prune(model, 0.5)
    assert {n: pruned.get_layer(n).get_weights()[0].shape for n in ("c1", "c2", "c3", "out")} == {
        "c1": (3, 3, 1, 4), "c2": (3, 3, 4, 4), "c3": (1, 1, 4, 2), "out": (6, 10)}
    w = {n: model.get_layer(n).get_weights() for n in ("c1", "c2", "c3")}

    def l1(k):
        return np.abs(k).reshape(-1, k.shape[-1]).sum(axis=0)

    tied = np.argsort(-(l1(w["c1"][0]) + l1(w["c2"][0])), kind="stable")[4:]
    drop3 = np.argsort(-l1(w["c3"][0]), kind="stable")[2:]
    zeroed = keras.models.clone_model(model)
    zeroed.set_weights(model.get_weights())
    for name, drop in (("c1", tied), ("c2", tied), ("c3", drop3)):
        k, b = (v.copy() for v in w[name])
        k[..., drop], b[drop] = 0, 0
        zeroed.get_layer(name).set_weights([k, b])
    x = np.random.default_rng(1).random((16, 8, 8, 1), dtype=np.float32)
    np.testing.assert_allclose(pruned.predict(x, verbose=0), zeroed.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
    # a group that meets the model's input in an Add is not pruned
    keras_in = keras.Input((4, 4, 3))
    skip = keras.Model(keras_in, keras.layers.Add()([keras_in, keras.layers.Conv2D(3, 1, name="k")(keras_in)]))
    assert prune.prunable(skip) == []


LATENCY_BOUND = 200_000  # instructions per inference on qemu-m4: the pruned block runs well under it


@pytest.fixture(scope="module")
def fitted(residual_model, session_dir):
    """--fit (with --qat, a distilled student and a latency bound measured on QEMU) of the residual
    block to a flash budget the original misses, on qemu-m4 with the compiled runtime."""
    root, model = residual_model
    # The budget from the original's own plan: with --fit's 10 % headroom it misses by 64 B, so only a
    # real compression fits (the budget counts the constants as the compiled model stores them --
    # per-channel requantization constants included -- so a share of the parameters is no guide).
    plain = tinygen.build(root / "res.keras", board="qemu-m4", data=root / "data.npz",
                          out=session_dir / "compress-plain", vectors=2)
    budget = {"flash_bytes": int((plain.plan.budget["flash_bytes"] - 64) / 0.9), "ram_bytes": 1 << 20}
    project = tinygen.build(root / "res.keras", board="qemu-m4", data=root / "data.npz",
                            out=session_dir / "compress-fit", vectors=8,
                            compress=CompressOptions(fit=True, qat=True, fit_budget=budget, fit_ratios=(0.5,),
                                                     fit_widths=(0.5,), fit_max_instructions=LATENCY_BOUND,
                                                     epochs={"prune": 3, "qat": 2, "distill": 3}))
    return project, budget


def test_fit_makes_an_over_budget_residual_model_fit_its_latency_and_it_verifies_bit_exact(fitted):
    project, budget = fitted
    rep = project.compression
    rows = {r["label"]: r for r in rep["candidates"]}
    assert not rows["original"]["fits"] and rows["original"]["flash_bytes"] > 0.9 * budget["flash_bytes"]
    assert {"prune 0.5 + QAT", "distill 0.5x + QAT"} <= set(rows)  # the student was trained beside the pruning
    chosen = rows[rep["chosen"]]
    assert rep["chosen"].endswith("+ QAT") and chosen["fits"] and chosen["trained"]
    assert chosen["macs"] < rows["original"]["macs"] and chosen["params"] < rows["original"]["params"]
    assert rep["max_instructions"] == LATENCY_BOUND and rep["latency_board"] == "qemu-m4"
    assert 0 < chosen["instructions"] <= LATENCY_BOUND and not chosen.get("instructions_same_shape")
    # what the build emitted is what the search measured, and within the budget with its headroom
    assert project.plan.budget["flash_bytes"] == chosen["flash_bytes"] <= 0.9 * budget["flash_bytes"]
    assert project.plan.analysis.macs == chosen["macs"]
    png = (project.path / "reports" / "compress.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    from tinygen.compress.fit import chart

    again = chart(rep, project.path / "reports" / "again.png").read_bytes()
    assert again == png  # deterministic: no timestamp, same figure
    require_tool("arm-none-eabi-gcc")
    require_tool("qemu-system-arm")
    project.build_firmware()
    report = project.verify(fresh_vectors=4, seed=1)
    assert report.passed and report.metrics["max_abs_diff_lsb"] == 0, report.metrics
    model = (project.path / "model.tflite").read_bytes()
    np.testing.assert_array_equal(report.outputs, tflm_outputs(model, report.inputs).reshape(report.outputs.shape))
    # the search ran the same model on the same core (the most over its few vectors; a few kernels
    # branch on values): verify's count on other inputs is within 1 % of it
    assert abs(report.metrics["instructions_per_inference"]["median"] - chosen["instructions"]) \
        <= 0.01 * chosen["instructions"], (report.metrics["instructions_per_inference"], chosen["instructions"])


def test_a_distilled_student_verifies_bit_exact(user_model, session_dir):
    root, model = user_model
    project = tinygen.build(root / "tiny.keras", board="qemu-m4", data=root / "data.npz",
                            out=session_dir / "compress-distill", vectors=8,
                            compress=CompressOptions(distill=0.5, epochs={"distill": 4}))
    rows = {r["label"]: r for r in project.compression["candidates"]}
    assert set(rows) == {"original", "distill 0.5x"} and project.compression["chosen"] == "distill 0.5x"
    assert rows["distill 0.5x"]["keras_params"] < rows["original"]["keras_params"] == model.count_params()
    assert rows["distill 0.5x"]["int8_metric"] > 0.2  # learnt something from the teacher in 4 epochs
    require_tool("arm-none-eabi-gcc")
    require_tool("qemu-system-arm")
    project.build_firmware()
    report = project.verify(fresh_vectors=4, seed=2)
    assert report.passed and report.metrics["max_abs_diff_lsb"] == 0, report.metrics


def test_fit_refuses_when_nothing_fits(user_model, session_dir):
    """The most pruned model fits flash but not the latency bound: refused at once, with what it ran."""
    root, _ = user_model
    out = session_dir / "compress-impossible"
    with pytest.raises(DoesNotFit, match="no compression tried fits qemu-m4: the smallest, prune 0.9, needs flash "
                                         r"[\d,]+ / 1,000,000 B .* and runs [\d,]+ instructions per inference on "
                                         r"qemu-m4 \(bound 1,000\)") as exc:
        tinygen.build(root / "tiny.keras", board="qemu-m4", data=root / "data.npz", out=out,
                      compress=CompressOptions(fit=True, fit_ratios=(0.5, 0.9), fit_widths=(),
                                               fit_max_instructions=1000, fit_budget={"flash_bytes": 1_000_000, "ram_bytes": 1 << 20}))
    assert "\n" not in str(exc.value) and not out.exists()


def test_cli_refuses_bad_compression_flags_in_one_line(tmp_path):
    res = run_cli("build", "--board", "qemu-m4", "--recipe", "digits", "--prune", "1.5", "--out", str(tmp_path / "o"))
    assert res.returncode == 2 and res.stderr.count("\n") == 1, res.stderr
    assert "--prune ratio 1.5 is not in [0, 1)" in res.stderr and not (tmp_path / "o").exists()
    res = run_cli("build", "--board", "qemu-m4", "--recipe", "digits", "--fit-max-instructions", "5000",
                  "--out", str(tmp_path / "o"))
    assert res.returncode == 2 and res.stderr.count("\n") == 1, res.stderr
    assert "go with --fit" in res.stderr and not (tmp_path / "o").exists()


def _conv1d(keras):
    """An accelerometer-style classifier: (128, 3) windows through Conv1D, DepthwiseConv1D, 1-D pooling."""
    L = keras.layers
    return keras.Sequential([
        keras.Input((128, 3), name="window"), L.Conv1D(8, 5, strides=2, activation="relu", name="k1"),
        L.DepthwiseConv1D(3, padding="same", depth_multiplier=2, activation="relu", name="dw1"),
        L.MaxPooling1D(2, name="p1"), L.Conv1D(12, 3, activation="relu", name="k2"),
        L.GlobalAveragePooling1D(name="gap"), L.Dense(6, activation="relu", name="d1"), L.Dense(4, name="out"),
        L.Softmax(name="sm")], name="accel")


def test_conv1d_pruning_removes_filters_and_computes_what_the_zeroed_original_computes():
    """Issue 23 item 1: Conv1D (the usual accelerometer layer) was refused by pruning.  Reference:
    Keras on a copy of the original with the removed filters (and the depthwise channels fed only by
    them) set to zero, and Keras' own parameter count of the rebuilt model."""
    from tinygen.compress import prune

    keras = _keras()
    model = _conv1d(keras)
    rng = np.random.default_rng(4)
    model.set_weights([rng.normal(size=w.shape).astype(np.float32) * 0.3 for w in model.get_weights()])
    assert prune.prunable(model) == ["k1", "k2", "d1"]
    pruned = prune.prune(model, 0.5)
    assert {n: pruned.get_layer(n).get_weights()[0].shape for n in ("k1", "dw1", "k2", "d1", "out")} == {
        "k1": (5, 3, 4), "dw1": (3, 4, 2), "k2": (3, 8, 6), "d1": (6, 3), "out": (3, 4)}
    # k1 5*3*4+4, dw1 3*4*2+8, k2 3*8*6+6, d1 6*3+3, out 3*4+4
    assert pruned.count_params() == 64 + 32 + 150 + 21 + 16 < model.count_params()
    zeroed = keras.models.clone_model(model)
    zeroed.set_weights(model.get_weights())
    drop = {}
    for name in ("k1", "k2", "d1"):
        k, b = (v.copy() for v in model.get_layer(name).get_weights())
        n = k.shape[-1]
        drop[name] = np.argsort(-np.abs(k).reshape(-1, n).sum(axis=0), kind="stable")[n // 2:]
        k[..., drop[name]], b[drop[name]] = 0, 0
        zeroed.get_layer(name).set_weights([k, b])
    dk, db = (v.copy() for v in model.get_layer("dw1").get_weights())
    for c in drop["k1"]:
        dk[:, c, :], db[c * 2:(c + 1) * 2] = 0, 0
    zeroed.get_layer("dw1").set_weights([dk, db])
    x = rng.normal(size=(8, 128, 3)).astype(np.float32)
    np.testing.assert_allclose(pruned.predict(x, verbose=0), zeroed.predict(x, verbose=0), rtol=1e-5, atol=1e-6)


@pytest.fixture(scope="module")
def conv1d_reshape(tmp_path_factory):
    """A Conv1D classifier with a Reshape (a layer pruning cannot follow, QAT can), untrained but
    seeded, with (N, 128, 3) windows and integer labels of its 4 classes."""
    keras = _keras()
    L = keras.layers
    model = keras.Sequential([keras.Input((128, 3)),
                              L.Conv1D(6, 8, strides=4, padding="same", activation="relu", name="k1"),
                              L.Reshape((16, 12), name="fold"), L.Conv1D(8, 3, activation="relu", name="k2"),
                              L.GlobalAveragePooling1D(), L.Dense(4, name="out"), L.Softmax()], name="accel2")
    root = tmp_path_factory.mktemp("compress-conv1d")
    model.save(root / "accel.keras")
    rng = np.random.default_rng(6)
    np.savez(root / "d.npz", x=rng.normal(size=(60, 128, 3)).astype(np.float32), y=rng.integers(0, 4, size=60))
    return root


def test_qat_alone_takes_any_layer_and_a_classifier_with_data(conv1d_reshape, tmp_path):
    """Issue 23 item 1: --qat alone was refused with pruning's message (the layer walk refused the
    Reshape), and every classifier with more than two classes failed the task check (a made-up
    output shape of 2).  The chosen QAT model is what the project holds."""
    project = tinygen.build(conv1d_reshape / "accel.keras", board="qemu-m4", data=conv1d_reshape / "d.npz",
                            out=tmp_path / "p", vectors=4,
                            compress=CompressOptions(qat=True, epochs={"qat": 1}))
    rep = project.compression
    assert [r["label"] for r in rep["candidates"]] == ["original", "QAT"] and rep["chosen"] == "QAT"
    assert rep["metric"] == "accuracy" and project.plan.task == "classification"
    qat_row = rep["candidates"][1]
    assert project.plan.analysis.macs == qat_row["macs"] and len(project.plan.model.raw) == qat_row["model_bytes"]


def test_pruning_a_layer_it_cannot_follow_is_refused_before_any_training(conv1d_reshape, tmp_path):
    seen = []
    with pytest.raises(UnsupportedModel, match="layer 'fold' is a Reshape: compress with --qat alone") as exc:
        tinygen.build(conv1d_reshape / "accel.keras", board="qemu-m4", data=conv1d_reshape / "d.npz",
                      out=tmp_path / "p", compress=CompressOptions(prune=0.5),
                      progress=seen.append)
    assert "\n" not in str(exc.value) and not (tmp_path / "p").exists()
    assert not any("fine-tuning" in s or "pruning" in s for s in seen), seen  # the compression child never ran


def test_layer_refusals_from_the_described_layers_need_no_model():
    """What the parent refuses from the [name, class] pairs the describe job returned, before any
    training: a layer pruning cannot follow, and a --prune layer=ratio naming no Conv/Dense layer."""
    from tinygen.compress.prune import check_layer_classes

    layers = [["k1", "Conv1D"], ["gap", "GlobalAveragePooling1D"], ["d1", "Dense"], ["sm", "Softmax"]]
    check_layer_classes(layers, {"k1": 0.5})
    with pytest.raises(UnsupportedModel, match="names layer 'gap', which is not a prunable layer of this model; "
                                               "its Conv1D/Conv2D/Dense layers: k1, d1"):
        check_layer_classes(layers, {"gap": 0.5})
    with pytest.raises(UnsupportedModel, match="layer 'rnn' is a LSTM: compress with --qat alone"):
        check_layer_classes(layers + [["rnn", "LSTM"]], 0.5)
