"""`.onnx` models (issue 24): graphs built with onnx.helper as torch.onnx.export (opset 17) and the
dynamo exporter emit them, through `tinygen run --board qemu-m4` (real QEMU, bit-exact against
tflite_micro) and `tinygen build`, with the float reference checked against onnxruntime run here
on the user's own NCHW / NCL samples; and every bad input refused with one line, nothing written.

No torch is needed: the graphs mirror what the exporters write (node names like '/conv1/Conv',
BatchNormalization after Conv, Clip(0, 6) for ReLU6, GlobalAveragePool for AdaptiveAvgPool2d(1),
Flatten, Gemm for Linear under the TorchScript exporter, MatMul + Add and a constant-shape Reshape
under dynamo).  A real nn.Module export runs too when torch is importable (not installed by setup:
a CPU torch is hundreds of MB for one test).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import assert_one_line_error, require_tool, run_cli

import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

RNG = np.random.default_rng(24)


def _w(name, shape, scale=0.3):
    return numpy_helper.from_array(RNG.normal(0, scale, shape).astype(np.float32), name)


def _model(nodes, inits, in_name, in_shape, out_shape, opset=17, dims=None):
    inp = helper.make_tensor_value_info(in_name, TensorProto.FLOAT, dims or list(in_shape))
    out = helper.make_tensor_value_info("output", TensorProto.FLOAT, list(out_shape))
    g = helper.make_graph(nodes, "main_graph", [inp], [out], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], producer_name="pytorch")
    m.ir_version = 8
    return m


def cnn_nchw():
    """Conv2d+BatchNorm+ReLU, MaxPool, depthwise Conv2d (groups=8)+Hardswish, residual add, ReLU6 (Clip),
    torch.cat on channels, AdaptiveAvgPool2d(1) (GlobalAveragePool), Flatten, Linear (Gemm), Softmax."""
    n = helper.make_node
    inits = [_w("conv1.weight", (8, 3, 3, 3)), _w("conv1.bias", (8,), 0.1),
             numpy_helper.from_array(RNG.uniform(.5, 1.5, 8).astype(np.float32), "bn.weight"),
             _w("bn.bias", (8,), 0.1), _w("bn.running_mean", (8,), 0.1),
             numpy_helper.from_array(RNG.uniform(.5, 1.5, 8).astype(np.float32), "bn.running_var"),
             _w("dw.weight", (8, 1, 3, 3)), _w("dw.bias", (8,), 0.05),
             _w("fc.weight", (5, 16)), _w("fc.bias", (5,), 0.1),
             numpy_helper.from_array(np.float32(0), "zero"), numpy_helper.from_array(np.float32(6), "six")]
    nodes = [
        n("Conv", ["input", "conv1.weight", "conv1.bias"], ["/conv1/Conv_output_0"], name="/conv1/Conv",
          kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[1, 1], dilations=[1, 1], group=1),
        n("BatchNormalization", ["/conv1/Conv_output_0", "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var"],
          ["/bn/BatchNormalization_output_0"], name="/bn/BatchNormalization", epsilon=1e-5, momentum=0.9),
        n("Relu", ["/bn/BatchNormalization_output_0"], ["/act/Relu_output_0"], name="/act/Relu"),
        n("MaxPool", ["/act/Relu_output_0"], ["/pool/MaxPool_output_0"], name="/pool/MaxPool",
          kernel_shape=[2, 2], strides=[2, 2], pads=[0, 0, 0, 0], ceil_mode=0),
        n("Conv", ["/pool/MaxPool_output_0", "dw.weight", "dw.bias"], ["/dw/Conv_output_0"], name="/dw/Conv",
          kernel_shape=[3, 3], pads=[1, 1, 1, 1], group=8),
        n("HardSwish", ["/dw/Conv_output_0"], ["/hs/HardSwish_output_0"], name="/hs/HardSwish"),
        n("Add", ["/hs/HardSwish_output_0", "/pool/MaxPool_output_0"], ["/Add_output_0"], name="/Add"),
        n("Clip", ["/pool/MaxPool_output_0", "zero", "six"], ["/relu6/Clip_output_0"], name="/relu6/Clip"),
        n("Concat", ["/Add_output_0", "/relu6/Clip_output_0"], ["/Concat_output_0"], name="/Concat", axis=1),
        n("GlobalAveragePool", ["/Concat_output_0"], ["/gap/GlobalAveragePool_output_0"],
          name="/gap/GlobalAveragePool"),
        n("Flatten", ["/gap/GlobalAveragePool_output_0"], ["/Flatten_output_0"], name="/Flatten", axis=1),
        n("Gemm", ["/Flatten_output_0", "fc.weight", "fc.bias"], ["/fc/Gemm_output_0"], name="/fc/Gemm",
          alpha=1.0, beta=1.0, transB=1),
        n("Softmax", ["/fc/Gemm_output_0"], ["output"], name="/Softmax", axis=1),
    ]
    return _model(nodes, inits, "input", (1, 3, 12, 12), (1, 5))


def conv1d_ncl():
    """Dynamo-style: Conv1d on (N, C, L) + LeakyReLU, depthwise Conv1d + Sigmoid, Tanh, AvgPool1d,
    view(1, -1) as a constant-shape Reshape, Linear as MatMul + Add; a dynamic batch dimension."""
    n = helper.make_node
    inits = [_w("c1.weight", (6, 2, 3)), _w("c1.bias", (6,), 0.1), _w("c2.weight", (6, 1, 3)),
             _w("c2.bias", (6,), 0.1), _w("fc.weight_t", (6 * 8, 3), 0.2), _w("fc.bias", (3,), 0.1),
             numpy_helper.from_array(np.array([1, -1], np.int64), "shape")]
    nodes = [
        n("Conv", ["x", "c1.weight", "c1.bias"], ["conv1d"], name="node_conv1d", kernel_shape=[3], pads=[1, 1]),
        n("LeakyRelu", ["conv1d"], ["leaky_relu"], name="node_leaky_relu", alpha=0.1),
        n("Conv", ["leaky_relu", "c2.weight", "c2.bias"], ["conv1d_1"], name="node_conv1d_1", kernel_shape=[3],
          pads=[1, 1], group=6),
        n("Sigmoid", ["conv1d_1"], ["sigmoid"], name="node_sigmoid"),
        n("Tanh", ["sigmoid"], ["tanh"], name="node_tanh"),
        n("AveragePool", ["tanh"], ["avg_pool1d"], name="node_avg_pool1d", kernel_shape=[2], strides=[2]),
        n("Reshape", ["avg_pool1d", "shape"], ["view"], name="node_view"),
        n("MatMul", ["view", "fc.weight_t"], ["matmul"], name="node_matmul"),
        n("Add", ["matmul", "fc.bias"], ["output"], name="node_linear"),
    ]
    return _model(nodes, inits, "x", (1, 2, 16), ("batch", 3), opset=18, dims=["batch", 2, 16])


def ort_run(model, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return np.concatenate([sess.run(None, {name: x[i:i + 1]})[0] for i in range(len(x))])


def held_out(x):
    """The samples tinygen holds out (loader.Dataset.split: the last 20 %)."""
    return x[len(x) - max(1, len(x) // 5):]


@pytest.fixture(scope="module")
def cnn(tmp_path_factory):
    d = tmp_path_factory.mktemp("onnx-cnn")
    m = cnn_nchw()
    onnx.checker.check_model(m, full_check=True)
    onnx.save(m, d / "cnn.onnx")
    x = RNG.normal(0, 1, (60, 3, 12, 12)).astype(np.float32)
    y = ort_run(m, x).argmax(1)  # labels the float model gets right: a garbled layout scores at chance
    np.savez(d / "data.npz", x=x, y=y)
    return d, m, x, y


def test_cnn_from_onnx_runs_bit_exact_on_qemu_m4_against_onnxruntime(cnn):
    require_tool("qemu-system-arm")
    d, m, x, y = cnn
    out = d / "proj"
    res = run_cli("run", "--board", "qemu-m4", "--model", str(d / "cnn.onnx"), "--data", str(d / "data.npz"),
                  "--out", str(out), "--json")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    report = json.loads((out / "reports" / "verify.json").read_text())
    assert report["metrics"]["passed"] and report["metrics"]["exact_match_pct"] == 100.0  # board == tflite_micro

    # The float reference is onnxruntime on the user's NCHW samples: recompute it here.
    ref = np.load(out / "vectors" / "reference.npz")
    n = len(ref["float_outputs"])
    xs = held_out(x)[:n]
    np.testing.assert_allclose(ref["float_outputs"].reshape(n, -1), ort_run(m, xs), rtol=0, atol=1e-6)
    # The board's input is NHWC: the user's NCHW sample, channels moved last.
    np.testing.assert_array_equal(ref["float_inputs"].reshape(n, 12, 12, 3), xs.transpose(0, 2, 3, 1))

    manifest = json.loads((out / "tinygen.json").read_text())
    q = manifest["quality"]
    assert q["float_accuracy"] == 1.0  # onnxruntime on the held-out samples, against its own labels
    assert q["onnx_vs_converted_max_abs"] < 1e-4 and q["onnx_vs_converted_top1"] == 1.0
    assert q["int8_accuracy"] >= 0.75 and q["top1_agreement"] >= 0.75  # int8 vs ONNX float: not chance (0.2)
    # int8 on the board against onnxruntime, computed here from the board's own reference outputs.
    oq = manifest["output"]
    board = (ref["outputs"].reshape(n, -1).astype(np.float32) - oq["zero_point"]) * oq["scale"]
    assert np.mean(board.argmax(1) == ort_run(m, xs).argmax(1)) >= 0.75
    assert "NCHW (1, 3, 12, 12) -> board NHWC (1, 12, 12, 3)" in manifest["source"]


def test_conv1d_dynamo_graph_builds_with_onnxruntime_as_reference(tmp_path):
    m = conv1d_ncl()
    onnx.checker.check_model(m, full_check=True)
    onnx.save(m, tmp_path / "sig.onnx")
    x = RNG.normal(0, 1, (40, 2, 16)).astype(np.float32)  # (N, C, L) as PyTorch takes it
    t = ort_run(m, x)
    np.savez(tmp_path / "sig.npz", x=x, y=t)
    out = tmp_path / "proj"
    res = run_cli("build", "--board", "qemu-m4", "--model", str(tmp_path / "sig.onnx"),
                  "--data", str(tmp_path / "sig.npz"), "--out", str(out))
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "converted float vs ONNX" in res.stdout
    manifest = json.loads((out / "tinygen.json").read_text())
    q = manifest["quality"]
    assert q["float_rmse"] < 1e-5  # the reference is onnxruntime, and y is onnxruntime's output
    assert q["int8_rmse"] < 0.1 * float(np.std(t))  # int8 tracks the ONNX model, not noise
    ref = np.load(out / "vectors" / "reference.npz")
    n = len(ref["float_inputs"])
    np.testing.assert_array_equal(ref["float_inputs"].reshape(n, 16, 2), held_out(x)[:n].transpose(0, 2, 1))
    assert manifest["input"]["shape"] == [1, 16, 2]


# ---------------------------------------------------------------- refusals

def _refused(tmp_path, model_bytes_or_path, *needles, code, data=True, name="m.onnx"):
    p = tmp_path / name
    if isinstance(model_bytes_or_path, bytes):
        p.write_bytes(model_bytes_or_path)
    args = ["build", "--board", "qemu-m4", "--model", str(p), "--out", str(tmp_path / "out")]
    if data:
        np.savez(tmp_path / "d.npz", x=RNG.normal(0, 1, (10, 3, 12, 12)).astype(np.float32))
        args += ["--data", str(tmp_path / "d.npz")]
    res = run_cli(*args, timeout=300)
    line = assert_one_line_error(res, *needles, code=code)
    assert not (tmp_path / "out").exists()
    return line


def test_float_onnx_without_data_is_refused(tmp_path):
    _refused(tmp_path, cnn_nchw().SerializeToString(), "--data is required", "m.onnx", code=2, data=False)


def test_corrupt_protobuf_is_refused(tmp_path):
    raw = cnn_nchw().SerializeToString()
    _refused(tmp_path, b"\x0a\xff\xff\xff\xff\x0f" + raw[:200], "not a readable ONNX model", code=2)


def test_dynamic_shape_is_refused(tmp_path):
    m = cnn_nchw()
    dim = m.graph.input[0].type.tensor_type.shape.dim[2]
    dim.Clear()
    dim.dim_param = "height"
    _refused(tmp_path, m.SerializeToString(), "dynamic shape", "(1, 3, ?, 12)", code=2)


def test_unsupported_opset_is_refused(tmp_path):
    m = cnn_nchw()
    m.opset_import[0].version = 9
    _refused(tmp_path, m.SerializeToString(), "opset 9", "opset_version=17", code=3)


def test_unsupported_op_names_the_node_and_the_replacement(tmp_path):
    m = cnn_nchw()
    relu = next(nd for nd in m.graph.node if nd.op_type == "Relu")
    relu.op_type, relu.name = "Erf", "/act/Erf"
    _refused(tmp_path, m.SerializeToString(), "'/act/Erf' (Erf)", "nn.GELU", code=3)


def test_external_data_outside_the_model_folder_is_refused(tmp_path):
    from onnx.external_data_helper import set_external_data

    m = cnn_nchw()
    secret = tmp_path / "secret.bin"
    secret.write_bytes(b"\0" * 1024)
    folder = tmp_path / "model"
    folder.mkdir()
    t = next(i for i in m.graph.initializer if i.name == "fc.weight")
    set_external_data(t, location="../secret.bin", offset=0, length=5 * 16 * 4)
    t.data_location = TensorProto.EXTERNAL
    t.ClearField("raw_data")
    t.ClearField("float_data")
    (folder / "m.onnx").write_bytes(m.SerializeToString())
    res = run_cli("build", "--board", "qemu-m4", "--model", str(folder / "m.onnx"), "--data",
                  str(_data(tmp_path)), "--out", str(tmp_path / "out"), timeout=300)
    assert_one_line_error(res, "outside the model's folder", "../secret.bin", code=2)
    assert not (tmp_path / "out").exists()


def _data(tmp_path):
    np.savez(tmp_path / "d.npz", x=RNG.normal(0, 1, (10, 3, 12, 12)).astype(np.float32))
    return tmp_path / "d.npz"


def test_channels_last_data_is_refused_not_reshaped(tmp_path):
    (tmp_path / "m.onnx").write_bytes(cnn_nchw().SerializeToString())
    np.savez(tmp_path / "nhwc.npz", x=RNG.normal(0, 1, (10, 12, 12, 3)).astype(np.float32))
    res = run_cli("build", "--board", "qemu-m4", "--model", str(tmp_path / "m.onnx"), "--data",
                  str(tmp_path / "nhwc.npz"), "--out", str(tmp_path / "out"), timeout=300)
    assert_one_line_error(res, "(12, 12, 3)", "channels-last", code=2)
    assert not (tmp_path / "out").exists()


def test_real_torch_module_export(tmp_path):
    """A real nn.Module through torch.onnx.export (opset 17), when torch is installed."""
    try:
        import torch
    except ImportError:  # optional: setup does not install a CPU torch (hundreds of MB) for one test
        pytest.skip("torch is not installed (optional: pip install torch, CPU wheel)")
    from torch import nn

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU6(), nn.MaxPool2d(2),
                        nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.Hardswish(), nn.AdaptiveAvgPool2d(1),
                        nn.Flatten(), nn.Linear(8, 4)).eval()
    torch.onnx.export(net, torch.zeros(1, 3, 12, 12), str(tmp_path / "t.onnx"), opset_version=17, dynamo=False)
    x = RNG.normal(0, 1, (40, 3, 12, 12)).astype(np.float32)
    with torch.no_grad():
        y = net(torch.from_numpy(x)).numpy().argmax(1)
    np.savez(tmp_path / "t.npz", x=x, y=y)
    out = tmp_path / "proj"
    res = run_cli("build", "--board", "qemu-m4", "--model", str(tmp_path / "t.onnx"), "--data",
                  str(tmp_path / "t.npz"), "--out", str(out))
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    q = json.loads((out / "tinygen.json").read_text())["quality"]
    assert q["float_accuracy"] == 1.0 and q["onnx_vs_converted_top1"] == 1.0
