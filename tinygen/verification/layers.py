"""`tinygen verify --layers`: the first op whose output on the board differs from the reference.

The board runs one inference with the LAYERS request and streams every op's output tensor
(:mod:`tinygen.device.op_stream`); the tflite_micro interpreter runs the same input with
``InterpreterConfig.kPreserveAllTensors`` (in a child process, as :mod:`tinygen.analysis.reference`
does, since the interpreter can crash its host) and hands back every tensor by index.  The ops
are compared in the order the board ran them; the first that differs is reported with what
explains most such faults: its type, output tensor, quantization (per-channel or not), fused
activation, how far and how often it is off, and a diagnosis where the pattern is a known one.
Every op before it matched, so its inputs were right: the fault is in this op's kernel or
parameters.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from tinygen.common.errors import ToolFailure
from tinygen.common.escape import markdown, terminal
from tinygen.tflite.model import TfliteModel


def reference_tensors(model_bytes: bytes, x: np.ndarray, arena_bytes: int) -> dict[int, np.ndarray]:
    """{tensor index: array} of every tensor after one tflite_micro inference on ``x``."""
    with tempfile.TemporaryDirectory(prefix="tinygen-layers-") as tmp:
        mpath, ipath, opath = (Path(tmp) / n for n in ("model.tflite", "x.npy", "tensors.npz"))
        mpath.write_bytes(model_bytes)
        np.save(ipath, np.asarray(x, dtype=np.int8), allow_pickle=False)
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
        # kPreserveAllTensors gives every tensor its own place: room for all of them on top.
        arena = int(arena_bytes) * 2 + (1 << 16)
        try:
            res = subprocess.run([sys.executable, "-P", "-m", "tinygen.verification.layers", str(mpath), str(ipath),
                                  str(opath), str(arena)], capture_output=True, text=True, errors="replace",
                                 timeout=300, env=env, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise ToolFailure("the tflite_micro interpreter did not finish the per-op reference in 300 s") from None
        if res.returncode != 0 or not opath.is_file():
            tail = (res.stderr.strip().splitlines() or ["(no output)"])[-1][:200]
            raise ToolFailure(f"the tflite_micro interpreter failed on the per-op reference "
                              f"(exit {res.returncode}): {tail}")
        with np.load(opath, allow_pickle=False) as z:
            return {int(k[1:]): z[k] for k in z.files}


def _child(mpath: str, ipath: str, opath: str, arena: str) -> int:
    from tflite_micro.python.tflite_micro import runtime

    from tinygen.tflite.model import parse_model

    raw = Path(mpath).read_bytes()
    model = parse_model(raw)
    interp = runtime.Interpreter.from_bytes(raw, arena_size=int(arena),
                                            intrepreter_config=runtime.InterpreterConfig.kPreserveAllTensors)
    x = np.load(ipath, allow_pickle=False)
    interp.set_input(x.reshape(model.input_tensor().shape), 0)
    interp.invoke()
    out = {}
    for t in model.tensors:
        if t.is_constant:
            continue
        got = interp.GetTensor(t.index, 0)
        out[f"t{t.index}"] = np.asarray(got["tensor_data"]).reshape(-1)
    np.savez(opath, **out)
    return 0


def _quant(t) -> dict:
    per_channel = len(t.scale) > 1
    q = {"per_channel": per_channel, "channels": len(t.scale)}
    if per_channel:
        q.update(scale_min=float(min(t.scale)), scale_max=float(max(t.scale)), axis=int(t.quantized_dimension))
    elif t.scale:
        q.update(scale=float(t.scale[0]), zero_point=int(t.zero_point[0]) if t.zero_point else 0)
    return q


def _weights(model: TfliteModel, op) -> object | None:
    ins = [i for i in op.inputs if i >= 0]
    consts = [model.tensors[i] for i in ins[1:] if model.tensors[i].is_constant and model.tensors[i].dtype == "int8"]
    return consts[0] if consts else None


def diagnose(op, weights, board: np.ndarray, ref: np.ndarray, qmin: int, qmax: int) -> str:
    """A short known explanation of the difference pattern at the first divergent op."""
    d = board.astype(np.int64) - ref.astype(np.int64)
    bad = d != 0
    maxd = int(np.abs(d).max())
    act = str(op.options.get("fusedActivationFunction", "NONE"))
    if op.opcode == "FULLY_CONNECTED" and weights is not None and len(weights.scale) > 1 and bad.sum() > 1:
        return ("per-channel FULLY_CONNECTED: a library that computes FULLY_CONNECTED per-tensor (one weight "
                "scale) gets every channel but the first wrong; requantize the weights per-tensor, or have "
                "tinygen rewrite it as a 1x1 CONV_2D (its TFLM boards do)")
    if maxd == 1 and bad.mean() >= 0.2:
        return ("off by one on many elements: a rounding-mode difference in the requantization (e.g. single "
                "vs double rounding, or round-half-up vs half-away-from-zero), not a wrong weight")
    if maxd == 1:
        return ("an isolated 1-LSB difference: a rounding tie or an off-by-one in this op's kernel "
                "(its inputs matched the reference)")
    if act != "NONE" and np.any(bad & ((board == qmin) | (board == qmax)) & (ref != board)):
        return (f"the board clamps where the reference does not: check the fused activation ({act}) and the "
                "output range this op's kernel uses")
    return "large differences: this op's kernel computes something else (parameters, weight layout or a bug)"


def compare(model: TfliteModel, dump, ref: dict[int, np.ndarray]) -> dict:
    """The per-op comparison as a JSON-ready dict: ``divergence`` is None when every op matched."""
    result: dict = {"ops_reported": len(dump.order), "ops_in_model": len(model.operators), "ops_compared": 0,
                    "divergence": None}
    missing = [op.index for op in model.operators if op.index not in dump.tensors]
    if missing:
        result["ops_not_reported"] = missing[:20]
    for index in dump.order:
        if not 0 <= index < len(model.operators):
            result["unknown_ops_reported"] = result.get("unknown_ops_reported", 0) + 1
            continue
        op = model.operators[index]
        t = model.tensors[op.outputs[0]]
        want = ref.get(t.index)
        if want is None:
            continue
        if not dump.tensors[index] and want.size:
            # the runtime has no whole output for this op (a compiled-runtime band keeps only rows
            # of it, codegen/compiled/band.py): nothing to compare; the next reported op covers it
            result.setdefault("ops_without_output", []).append(int(index))
            continue
        got = np.frombuffer(dump.tensors[index], dtype=np.dtype(want.dtype).newbyteorder("<"))
        result["ops_compared"] += 1
        if got.size != want.size:
            result["divergence"] = _entry(model, op, t, None, None)
            result["divergence"]["diagnosis"] = (f"the board's tensor has {got.size} elements, the reference "
                                                 f"{want.size}: a shape or layout mismatch")
            return result
        if np.array_equal(got, want):
            continue
        info = np.iinfo(want.dtype) if want.dtype.kind in "iu" else None
        qmin, qmax = (int(info.min), int(info.max)) if info is not None else (0, 0)
        result["divergence"] = _entry(model, op, t, got, want)
        result["divergence"]["diagnosis"] = diagnose(op, _weights(model, op), got, want, qmin, qmax)
        return result
    return result


def _entry(model: TfliteModel, op, t, got, want) -> dict:
    w = _weights(model, op)
    e = {"op": int(op.index), "type": op.opcode, "tensor": int(t.index), "tensor_name": t.name,
         "shape": [int(s) for s in t.shape], "dtype": t.dtype, "output_quantization": _quant(t),
         "fused_activation": str(op.options.get("fusedActivationFunction", "NONE"))}
    if w is not None:
        e["weights_quantization"] = _quant(w)
    if got is not None:
        d = np.abs(got.astype(np.int64) - want.astype(np.int64))
        first = int(np.flatnonzero(d)[0])
        e.update(max_abs_diff_lsb=int(d.max()), differing_elements=int(np.count_nonzero(d)),
                 elements=int(d.size), first_difference={"element": first, "board": int(got[first]),
                                                          "reference": int(want[first])})
    return e


def _quant_text(q: dict) -> str:
    if q.get("per_channel"):
        return f"per-channel ({q['channels']} scales {q['scale_min']:.3g}..{q['scale_max']:.3g}, axis {q['axis']})"
    if "scale" in q:
        return f"per-tensor (scale {q['scale']:.6g}, zero point {q['zero_point']})"
    return "none"


def summary_lines(layers: dict, esc=terminal) -> list[str]:
    """Plain lines for the console (``esc``: how user text is escaped for where it goes)."""
    if layers.get("frontend_summary"):  # raw input: the front end diverged before any model op ran
        return [f"per-op check: {layers['frontend_summary']}"]
    d = layers.get("divergence")
    head = f"per-op check on vector {layers['vector']}: {layers['ops_compared']} ops compared"
    if layers.get("ops_without_output"):
        fused = layers["ops_without_output"]
        head += (f" ({len(fused)} not: op{'s' if len(fused) > 1 else ''} "
                 f"{', '.join(map(str, fused[:8]))}{', ...' if len(fused) > 8 else ''} run inside a band, "
                 "their outputs never whole)")
    if d is None:
        return [head + ", no divergence: every op's output equals the reference"]
    lines = [head, f"first divergent op: #{d['op']} {esc(d['type'])} -> tensor {d['tensor']} "
                   f"'{esc(d['tensor_name'])}' {d['shape']}"]
    if "max_abs_diff_lsb" in d:
        lines.append(f"  off by up to {d['max_abs_diff_lsb']} LSB on {d['differing_elements']} of "
                     f"{d['elements']} elements (first: element {d['first_difference']['element']}, board "
                     f"{d['first_difference']['board']}, reference {d['first_difference']['reference']})")
    lines.append(f"  output quantization: {_quant_text(d['output_quantization'])}; fused activation: "
                 f"{esc(d['fused_activation'])}")
    if "weights_quantization" in d:
        lines.append(f"  weights quantization: {_quant_text(d['weights_quantization'])}")
    lines.append(f"  diagnosis: {d['diagnosis']}")
    return lines


def markdown_section(layers: dict) -> list[str]:
    lines = ["", "## Per-op check (`--layers`)", ""]
    lines += [ln if not ln.startswith("  ") else "- " + ln.strip() for ln in summary_lines(layers, markdown)]
    return lines + [""]


if __name__ == "__main__":
    sys.exit(_child(*sys.argv[1:]))
