"""Refusals in the user's words (issue 16, item 5): a refused op is named by the Keras layer that made
it (class and the user's layer name), with a replacement that converts to ops the chosen runtime has,
and another runtime suggested only where the board can use it.

Real Keras models through the real converter; the CLI where the one-line error and exit code matter.
Which ops each runtime has is read from the runtimes (SUPPORTED_OPS, TFLM's resolver list), so the
checks hold as kernels are added: an op a runtime gains stops being refused.
"""

from __future__ import annotations

import numpy as np
import pytest

from conftest import assert_one_line_error, run_cli


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    """Small untrained Keras models (saved), the int8 .tflite of two of them, and calibration data."""
    import tensorflow as tf

    from tinygen.intake.quantize import quantize
    from tinygen.intake.sources import quiet_native
    from tinygen.intake.jobs import _walk_layers

    L = tf.keras.layers
    d = tmp_path_factory.mktemp("zoo")
    tf.keras.utils.set_random_seed(0)
    x = np.random.default_rng(0).normal(size=(16, 8, 8, 3)).astype(np.float32)
    np.savez(d / "img.npz", x=x)
    np.savez(d / "ids.npz", x=np.random.default_rng(1).integers(0, 30, size=(16, 10)).astype(np.float32))

    def seq(*layers, name=None):
        return tf.keras.Sequential([tf.keras.Input((8, 8, 3)), *layers], name=name)

    up = seq(L.Conv2D(4, 3, padding="same"), L.UpSampling2D(name="zoom_in"), L.Flatten(), L.Dense(2))
    leaky = seq(L.Conv2D(4, 3), L.LeakyReLU(name="leak"), L.GlobalMaxPooling2D(name="gmax"), L.Dense(2))
    elu = seq(L.Conv2D(4, 3), L.ELU(name="smooth"), L.GlobalAveragePooling2D(), L.Dense(2))
    emb = tf.keras.Sequential([tf.keras.Input((10,)), L.Embedding(30, 4, name="tokens"), L.Flatten(), L.Dense(2)])
    i = tf.keras.Input((8, 8, 3))
    h = L.GlobalAveragePooling2D()(L.Conv2D(4, 3)(i))
    two = tf.keras.Model(i, [L.Dense(2, name="head_a")(h), L.Dense(1, name="head_b")(h)])
    out = {"dir": d, "x": x, "elu": elu, "up_layers": _walk_layers(up), "leaky_layers": _walk_layers(leaky)}
    with quiet_native():
        for name, model in (("emb", emb), ("two", two)):
            model.save(d / f"{name}.keras")
        out["up"] = quantize(up, x)
        out["leaky"] = quantize(leaky, x)
    (d / "up.tflite").write_bytes(out["up"])
    return out


def _refusal(raw: bytes, board: str, runtime: str, layers=None, tflm_dir=None) -> str | None:
    from tinygen.codegen.refusals import check_ops
    from tinygen.common.boards import get_board
    from tinygen.common.errors import UnsupportedModel
    from tinygen.tflite.model import parse_model

    try:
        check_ops(parse_model(raw), get_board(board), runtime, name="m", layers=layers, tflm_dir=tflm_dir)
    except UnsupportedModel as exc:
        assert "\n" not in str(exc)
        return str(exc)
    return None


def test_upsampling_is_named_with_a_replacement_the_runtime_has(zoo):
    """UpSampling2D converts to TILE, which neither runtime has: the message names the layer, offers
    bilinear/nearest resizing only where the runtime has those ops, and suggests no other runtime."""
    from tinygen.codegen.refusals import runtime_ops

    for board, runtime in (("esp32", "tflm"), ("esp32", "compiled"), ("qemu-m4", "compiled")):
        msg = _refusal(zoo["up"], board, runtime, zoo["up_layers"])
        assert msg is not None and "UpSampling2D layer 'zoom_in'" in msg and "TILE" in msg, msg
        assert "--runtime" not in msg  # the other runtime lacks TILE too
        ops = runtime_ops(runtime)
        assert ('interpolation="bilinear"' in msg) == ("RESIZE_BILINEAR" in ops), msg
        assert ('interpolation="nearest"' in msg) == ("RESIZE_NEAREST_NEIGHBOR" in ops), msg


def test_compiled_refusal_suggests_tflm_only_where_the_board_can_build_it(zoo):
    from tinygen.codegen.refusals import runtime_ops

    missing = [op for op in ("LEAKY_RELU", "REDUCE_MAX") if op not in runtime_ops("compiled")]
    msg = _refusal(zoo["leaky"], "esp32", "compiled", zoo["leaky_layers"])
    if not missing:  # the compiled runtime gained both kernels: nothing is refused any more
        assert msg is None
        return
    assert msg is not None and msg.endswith("or use --runtime tflm (it has "
                                            + ("this op)" if len(missing) == 1 else "these ops)")), msg
    if "REDUCE_MAX" in missing:
        assert "GlobalMaxPooling2D layer 'gmax'" in msg and "MaxPooling2D(pool_size=(height, width))" in msg
    if "LEAKY_RELU" in missing:
        assert "LeakyReLU layer 'leak'" in msg
    # qemu-m4 builds TFLM from a source tree: without one, --runtime tflm is no way out.
    msg_m4 = _refusal(zoo["leaky"], "qemu-m4", "compiled", zoo["leaky_layers"])
    assert "--runtime tflm" not in msg_m4
    assert "--runtime tflm" in _refusal(zoo["leaky"], "qemu-m4", "compiled", zoo["leaky_layers"],
                                        tflm_dir="/some/tree")


def test_tflite_without_layer_list_is_named_by_its_tensor_names(zoo, tmp_path):
    """A .tflite carries no layer classes: the layer name comes from the tensor names, the likely
    Keras classes from the op; one line, exit 3, nothing written."""
    res = run_cli("build", "--board", "esp32", "--model", str(zoo["dir"] / "up.tflite"), "--out",
                  str(tmp_path / "out"))
    line = assert_one_line_error(res, "TFLM cannot run", "'zoom_in'", "UpSampling2D", "TILE",
                                 'interpolation="bilinear"', code=3)
    assert "--runtime" not in line
    assert not (tmp_path / "out").exists()


def test_float_only_op_names_the_keras_layer(zoo):
    """ELU has no int8 kernel in the converter (run here in-process, as the worker runs it): the
    user's ELU layer is named, with replacements the chosen runtime can run (LeakyReLU only where
    the runtime has LEAKY_RELU)."""
    from tinygen.codegen.refusals import runtime_ops
    from tinygen.common.errors import UnsupportedModel
    from tinygen.intake.quantize import quantize
    from tinygen.intake.sources import quiet_native
    from tinygen.intake.jobs import _walk_layers

    for runtime in ("compiled", "tflm"):
        with pytest.raises(UnsupportedModel) as exc, quiet_native():
            quantize(zoo["elu"], zoo["x"], layers=_walk_layers(zoo["elu"]), runtime_ops=runtime_ops(runtime))
        line = str(exc.value)
        assert "\n" not in line and "int8" in line and "ELU layer 'smooth'" in line and 'activation="relu"' in line
        assert ("LeakyReLU()" in line) == ("LEAKY_RELU" in runtime_ops(runtime)), line


def _describe_refusal(zoo, name: str) -> str:
    """The worker's describe job, in-process (the CLI's one-line path is the .tflite test's), on a
    saved model: the one-line refusal, exit code 3."""
    from tinygen.common.errors import UnsupportedModel
    from tinygen.intake.jobs import _job_describe

    args = {"kind": "keras", "model": str(zoo["dir"] / name), "display": name}
    with pytest.raises(UnsupportedModel) as exc:
        _job_describe(args, zoo["dir"], "describe")
    assert exc.value.exit_code == 3 and "\n" not in str(exc.value)
    return str(exc.value)


def test_embedding_is_refused_before_its_ids_are_quantized(zoo):
    line = _describe_refusal(zoo, "emb.keras")
    assert "Embedding layer 'tokens'" in line and "token ids" in line and "Dense(output_dim, use_bias=False)" in line


def test_two_outputs_are_refused_with_what_to_do(zoo):
    line = _describe_refusal(zoo, "two.keras")
    assert "2 outputs" in line and "Concatenate()" in line and "model.outputs[0]" in line


def test_hostile_layer_names_stay_one_printable_line():
    from tinygen.tflite.keras_names import Origin, describe

    msg = describe([(Origin("TILE", "up\n\x1b[31mred" + "x" * 200, "UpSampling2D"), "")], None)
    assert "\n" not in msg and "\x1b" not in msg and len(msg) < 400
    assert "UpSampling2D layer 'up?red" in msg
