"""A PyTorch user's ``.onnx`` model in the worker child: checked, converted by onnx2tf, then
tinygen's own int8 path.  (The parent side, staging and ``--data``: :mod:`tinygen.intake.onnx_source`.)

:func:`job_describe` and :func:`job_convert` run in :mod:`tinygen.intake.jobs`'s child, since
ONNX protobuf parsing, onnx2tf and onnxruntime are native code fed with user bytes:

* the graph is checked first: one float input of fixed size (a dynamic batch becomes 1), opset
  ``MIN_OPSET..MAX_OPSET``, only :data:`SUPPORTED_OPS` (a refusal names the node, its op and what
  to use instead, :data:`REPLACEMENTS`), external data named by relative paths;
* onnx2tf (pinned in pyproject.toml) turns the graph into a TensorFlow graph with
  channels-last tensors (NCHW -> NHWC, NCL -> NLC), in a temporary directory of its own
  inside the work directory, its console output captured;
* that graph goes through :func:`tinygen.intake.quantize.quantize_saved_model`, the same
  int8 conversion and full-integer checks a SavedModel gets;
* the float reference is onnxruntime on the user's samples in the user's layout, and the
  converted float graph is compared with it (``onnx_vs_converted_*`` quality figures), so a
  layout or conversion error shows as a number, and a gross one is refused.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import numpy as np

from tinygen.common import child
from tinygen.common.errors import TinygenError, ToolFailure, UnsupportedModel
from tinygen.common.userfiles import MODEL_LIMIT

# ONNX default-domain opsets tinygen accepts: torch.onnx.export's TorchScript exporter writes 17
# by default (any of 11..20 on request), the dynamo exporter 18; onnx2tf 1.28 converts these.
MIN_OPSET, MAX_OPSET = 11, 21
EXTERNAL_LIMIT = MODEL_LIMIT  # all external-data files of one model together
SUBDIR = "onnx"  # inside the work directory: the staged model and its external data, nothing else

# ONNX ops that convert to ops both of tinygen's runtimes run in int8 (shape plumbing that
# the converter folds into constants for a fixed input shape included).
SUPPORTED_OPS = frozenset({
    "Conv", "BatchNormalization", "Relu", "Clip", "HardSwish", "Sigmoid", "Tanh", "LeakyRelu", "PRelu",
    "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "Flatten", "Reshape", "Squeeze",
    "Unsqueeze", "Identity", "Dropout", "Gemm", "MatMul", "Add", "Sub", "Mul", "Div", "Concat", "Softmax",
    "Transpose", "Pad", "ReduceMean", "ReduceMax", "ReduceSum", "Max", "Min", "Abs", "Constant", "Shape",
    "Gather", "Cast", "Slice", "Split",
})
LAYERS = ("Conv1d/Conv2d (groups for depthwise), BatchNorm, ReLU/ReLU6/Hardswish/Sigmoid/Tanh/LeakyReLU, "
          "MaxPool/AvgPool, AdaptiveAvgPool to 1, Flatten/view, Linear, +, torch.cat, Softmax")
# What to use instead of an ONNX op tinygen refuses, in PyTorch terms.
REPLACEMENTS = {
    "Gelu": "nn.ReLU or nn.Hardswish", "Erf": "nn.ReLU or nn.Hardswish instead of nn.GELU",
    "Mish": "nn.Hardswish", "Softplus": "nn.ReLU", "Elu": "nn.LeakyReLU", "Selu": "nn.LeakyReLU",
    "HardSigmoid": "nn.Sigmoid, or nn.Hardswish for x*hardsigmoid(x)",
    "LayerNormalization": "nn.BatchNorm1d/2d (folded into the layer before it)",
    "InstanceNormalization": "nn.BatchNorm2d", "GroupNormalization": "nn.BatchNorm2d",
    "LSTM": "Conv1d layers over the sequence", "GRU": "Conv1d layers over the sequence",
    "RNN": "Conv1d layers over the sequence",
    "Loop": "a graph without data-dependent control flow", "If": "a graph without data-dependent control flow",
    "Scan": "a graph without data-dependent control flow",
    "QuantizeLinear": "the float model: tinygen quantizes it to int8 with --data",
    "DequantizeLinear": "the float model: tinygen quantizes it to int8 with --data",
    "QLinearConv": "the float model: tinygen quantizes it to int8 with --data",
    "QLinearMatMul": "the float model: tinygen quantizes it to int8 with --data",
    "ConvTranspose": "nn.Upsample(mode='nearest') followed by Conv2d, or a model without upsampling",
    "Resize": "a model without upsampling", "Upsample": "a model without upsampling",
}


def text(s: str, limit: int = 60) -> str:
    """A name from the model (the author's text), printable and bounded, for a one-line message."""
    s = "".join(c if c.isprintable() else "?" for c in str(s))
    return s if len(s) <= limit else s[:limit] + "..."


# ---------------------------------------------------------------- child side

LAYOUTS = {2: ("NF", "NF", (0, 1)), 3: ("NCL", "NLC", (0, 2, 1)), 4: ("NCHW", "NHWC", (0, 2, 3, 1))}


def _parse(path: Path, display: str):
    import onnx
    from google.protobuf.message import DecodeError

    try:
        model = onnx.load_model_from_string(path.read_bytes())
    except (DecodeError, ValueError, RuntimeError, TypeError) as exc:
        raise TinygenError(f"{display} is not a readable ONNX model (the protobuf does not parse: "
                           f"{text(str(exc).splitlines()[0] if str(exc) else type(exc).__name__, 120)}); "
                           "export it again with torch.onnx.export") from None
    if not model.graph.node and not model.graph.output:
        raise TinygenError(f"{display} is not an ONNX model (no graph in it); export it with torch.onnx.export")
    return model


def _opset(model, display: str) -> int:
    versions = {o.domain or "ai.onnx": int(o.version) for o in model.opset_import}
    if "ai.onnx" not in versions:
        raise TinygenError(f"{display} imports no standard ONNX opset; export it with torch.onnx.export(..., "
                           "opset_version=17)")
    v = versions["ai.onnx"]
    if not MIN_OPSET <= v <= MAX_OPSET:
        raise UnsupportedModel(f"{display} uses ONNX opset {v}; tinygen converts opsets {MIN_OPSET}..{MAX_OPSET}: "
                               "export it with torch.onnx.export(..., opset_version=17)")
    return v


def _check_nodes(model, display: str) -> None:
    for node in model.graph.node:
        domain = node.domain or "ai.onnx"
        if domain == "ai.onnx" and node.op_type in SUPPORTED_OPS:
            continue
        op = node.op_type if domain == "ai.onnx" else f"{domain}.{node.op_type}"
        name = node.name or (node.output[0] if node.output else "?")
        fix = REPLACEMENTS.get(node.op_type) if domain == "ai.onnx" else None
        raise UnsupportedModel(f"{display}: ONNX node '{text(name)}' ({text(op, 40)}) cannot be made int8 or run "
                               f"by tinygen; use {fix or 'one of: ' + LAYERS}")


def _input(model, display: str):
    """(name, shape with batch 1, dynamic batch?) of the one float input."""
    init = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in init]
    outputs = list(model.graph.output)
    if len(inputs) != 1 or len(outputs) != 1:
        raise UnsupportedModel(f"{display} has {len(inputs)} inputs and {len(outputs)} outputs; tinygen supports "
                               "one input and one output (export a module whose forward takes one tensor and "
                               "returns one)")
    inp = inputs[0]
    tt = inp.type.tensor_type
    if tt.elem_type != 1:  # FLOAT
        raise UnsupportedModel(f"{display}: input '{text(inp.name)}' is not float32; export the model with a "
                               "float32 example input")
    if not tt.HasField("shape"):
        raise TinygenError(f"{display}: input '{text(inp.name)}' has no shape; export it with a fixed-size "
                           "example input")
    dims, dynamic = [], []
    for i, d in enumerate(tt.shape.dim):
        if d.HasField("dim_value") and d.dim_value > 0:
            dims.append(int(d.dim_value))
        else:
            dims.append(-1)
            dynamic.append(i)
    shown = "(" + ", ".join(str(d) if d > 0 else "?" for d in dims) + ")"
    if [i for i in dynamic if i != 0]:
        raise TinygenError(f"{display}: input '{text(inp.name)}' has a dynamic shape {shown}; export it with "
                           "fixed sizes (no dynamic_axes / dynamic_shapes except the batch)")
    if len(dims) not in LAYOUTS:
        raise UnsupportedModel(f"{display}: input '{text(inp.name)}' has rank {len(dims)} {shown}; tinygen "
                               "takes (N, features), (N, C, L) or (N, C, H, W)")
    if dims[0] > 1:
        raise TinygenError(f"{display}: input '{text(inp.name)}' has batch {dims[0]} {shown}; export it with a "
                           "batch-1 example input")
    return inp, [1] + dims[1:], 0 in dynamic


def _tensors(model):
    """Every tensor stored in the graph: initializers and Constant values (control flow is refused)."""
    yield from model.graph.initializer
    for node in model.graph.node:
        for a in node.attribute:
            if a.HasField("t"):
                yield a.t
            yield from a.tensors


def _external_locations(model) -> list[str]:
    out = []
    for t in _tensors(model):
        if t.data_location == 1:  # EXTERNAL
            loc = next((e.value for e in t.external_data if e.key == "location"), "")
            if loc not in out:
                out.append(loc)
    return out


def job_describe(args: dict, work: Path, step) -> dict:
    step("onnx_load")
    display = args["display"]
    model = _parse(Path(args["model"]), display)
    step("describe")
    opset = _opset(model, display)
    if model.functions:
        import onnx.inliner

        model = onnx.inliner.inline_local_functions(model)
    _check_nodes(model, display)
    inp, shape, _ = _input(model, display)
    layout, board_layout, perm = LAYOUTS[len(shape)]
    board_shape = [shape[p] for p in perm]
    return {"input_shape": shape, "board_shape": board_shape, "perm": list(perm), "layout": layout,
            "board_layout": board_layout, "opset": opset, "external": _external_locations(model), "layers": []}


@contextlib.contextmanager
def _captured(where: Path):
    """onnx2tf prints tables and progress on stdout and stderr: into a file, file-descriptor level
    (the worker's stdout carries its STEP lines)."""
    with open(where, "wb") as sink, child.native_output_to(sink):
        yield


def _prepared(args: dict, work: Path):
    """The staged model, checked again, its dynamic batch fixed to 1, saved as onnx2tf's input."""
    import onnx

    display = args["display"]
    path = Path(args["model"])
    model = _parse(path, display)
    _opset(model, display)
    if model.functions:
        import onnx.inliner

        model = onnx.inliner.inline_local_functions(model)
    _check_nodes(model, display)
    inp, shape, dynamic = _input(model, display)
    if _external_locations(model):
        from onnx.external_data_helper import load_external_data_for_model

        load_external_data_for_model(model, str(path.parent))
    if dynamic:
        inp.type.tensor_type.shape.dim[0].Clear()
        inp.type.tensor_type.shape.dim[0].dim_value = 1
    return model, shape


def _onnx2tf(model, board_rep: np.ndarray, tmp: Path, display: str):
    """The tf_keras model onnx2tf builds from ``model`` (channels-last input), in ``tmp``."""
    import onnx

    src = tmp / "model.onnx"
    onnx.save_model(model, str(src))
    # onnx2tf checks each converted op against onnxruntime on sample images it would download
    # from GitHub into the current directory; it gets the user's own samples there instead, and
    # any other download attempt fails at once (no network use, nothing written outside tmp).
    if board_rep.ndim == 4:
        np.save(tmp / "calibration_image_sample_data_20x128x128x3_float32.npy",
                np.ascontiguousarray(board_rep[:20], dtype=np.float32), allow_pickle=False)
    os.environ["HTTPS_PROXY"] = os.environ["HTTP_PROXY"] = "http://127.0.0.1:9"
    os.environ.pop("NO_PROXY", None)
    os.environ.pop("no_proxy", None)
    cwd = os.getcwd()
    os.chdir(tmp)
    try:
        with _captured(tmp / "onnx2tf.log"):
            import onnx2tf

            keras_model = onnx2tf.convert(input_onnx_file_path=str(src), output_folder_path=str(tmp / "out"),
                                          disable_model_save=True, not_use_onnxsim=True, non_verbose=True,
                                          verbosity="error")
    except ImportError as exc:
        raise ToolFailure(f"onnx2tf cannot be imported ({text(str(exc), 120)}); install tinygen's ONNX "
                          "dependencies: pip install -e . and pip install --no-deps tf-keras==2.21.0") from None
    except SystemExit:  # onnx2tf exits on some conversion errors after printing why
        raise ToolFailure(f"onnx2tf could not convert {display}; {_log_tail(tmp)}") from None
    except Exception as exc:
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise ToolFailure(f"onnx2tf could not convert {display} ({text(first, 200)}); check that onnxruntime "
                          "runs it, and use the layers listed in tinygen's 'From PyTorch' guide") from None
    finally:
        os.chdir(cwd)
    return keras_model


def _log_tail(tmp: Path) -> str:
    try:
        lines = [ln for ln in (tmp / "onnx2tf.log").readtext(errors="replace").splitlines() if ln.strip()]
    except OSError:
        lines = []
    return text(lines[-1], 200) if lines else "set TINYGEN_DEBUG=1 to see its messages"


class ConvertedGraph:
    """The converted graph behind :class:`tinygen.intake.loader.SavedModelFn`'s interface."""

    def __init__(self, keras_model):
        self.model = keras_model

    def __call__(self, input):  # noqa: A002 - the keyword SavedModelFn calls it with
        return self.model(input, training=False)


def _onnx_predict(model, x_onnx: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return np.concatenate([np.asarray(sess.run(None, {name: x_onnx[i:i + 1]})[0], dtype=np.float32)
                           for i in range(len(x_onnx))])


def agreement(ref: np.ndarray, got: np.ndarray) -> dict:
    """How the converted float graph's outputs ``got`` compare with onnxruntime's ``ref``."""
    r = ref.reshape(len(ref), -1).astype(np.float64)
    g = got.reshape(len(got), -1).astype(np.float64)
    d = np.abs(r - g)
    out = {"onnx_vs_converted_max_abs": float(d.max()), "onnx_vs_converted_rmse": float(np.sqrt(np.mean(d ** 2)))}
    if r.shape[1] > 1:
        out["onnx_vs_converted_top1"] = float(np.mean(r.argmax(1) == g.argmax(1)))
    return out


def job_convert(args: dict, work: Path, job: str, step) -> dict:
    import tempfile

    from tinygen.intake import quantize as q
    from tinygen.intake.loader import SavedModelFn

    display = args["display"]
    step("onnx_load")
    model, shape = _prepared(args, work)
    rep = np.load(work / f"{job}.rep.npy", allow_pickle=False)
    perm = LAYOUTS[len(shape)][2]
    board_shape = tuple(shape[p] for p in perm)
    step("onnx2tf")
    with tempfile.TemporaryDirectory(prefix="onnx2tf-", dir=work) as tmp:
        keras_model = _onnx2tf(model, rep, Path(tmp), display)
    step("convert")
    got = tuple(int(d) if d is not None else -1 for d in keras_model.inputs[0].shape)
    if got[1:] != board_shape[1:]:
        raise ToolFailure(f"onnx2tf gave {display} the input {got}, not the channels-last {board_shape} tinygen "
                          "expected; export the model with a (N, C, H, W), (N, C, L) or (N, features) input")
    sm = SavedModelFn(Path(args["model"]), keras_model, ConvertedGraph(keras_model), "input",
                      (1,) + board_shape[1:])

    def on_calibrate(done: bool) -> None:
        step("quantize" if done else "calibrate")

    try:
        raw = q.quantize_saved_model(sm, rep, per_channel_dense=bool(args["per_channel_dense"]),
                                     on_calibrate=on_calibrate)
    except UnsupportedModel as exc:
        raise UnsupportedModel(f"{display}: {exc} (ONNX ops in the model: "
                               f"{', '.join(sorted({n.op_type for n in model.graph.node}))})") from None
    (work / f"{job}.model.tflite").write_bytes(raw)
    result = {"model": f"{job}.model.tflite", "predictions": False}
    test_path = work / f"{job}.test.npy"
    if test_path.exists():
        step("predict")
        x = np.load(test_path, allow_pickle=False)
        inverse = np.argsort(perm)
        ref = _onnx_predict(model, np.ascontiguousarray(np.transpose(x, inverse), dtype=np.float32))
        conv = sm.predict(x).reshape(ref.shape)
        check = agreement(ref, conv)
        scale = float(np.max(np.abs(ref))) or 1.0
        if not np.isfinite(check["onnx_vs_converted_max_abs"]) or check["onnx_vs_converted_max_abs"] > 0.05 * scale:
            raise ToolFailure(f"onnx2tf's conversion of {display} does not compute what onnxruntime computes "
                              f"(max |difference| {check['onnx_vs_converted_max_abs']:.3g} on outputs up to "
                              f"{scale:.3g}); tinygen will not build a model it cannot vouch for")
        np.save(work / f"{job}.pred.npy", ref, allow_pickle=False)
        result.update(predictions=True, quality_extra=check)
    return result
