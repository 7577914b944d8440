"""Is a parsed model fully int8?  The one check every entry point (a user's .tflite, a
converter's result, ``inspect``) applies before anything downstream sees the model."""

from __future__ import annotations

from dataclasses import dataclass

from tinygen.common.errors import UnsupportedModel
from tinygen.common.protocol import MAX_RANK
from tinygen.tflite.model import Tensor, TfliteModel


@dataclass(frozen=True)
class IoQuant:
    """One end of a model that passed :func:`check_int8`: what the board reads or writes
    (``dtype``, ``shape``, ``nbytes``) and its per-tensor quantization, real = scale * (q - zero_point)."""
    scale: float
    zero_point: int
    dtype: str
    shape: tuple[int, ...]
    nbytes: int

    @classmethod
    def of(cls, t: Tensor) -> "IoQuant":
        return cls(t.scale[0], t.zero_point[0], t.dtype, t.shape, t.nbytes)


@dataclass(frozen=True)
class ModelIo:
    """The model's input and output, read once (``Plan.io`` in :mod:`tinygen.codegen.plan`)."""
    input: IoQuant
    output: IoQuant


def model_io(m: TfliteModel) -> ModelIo:
    """The I/O quantization of an int8 model (one scale and zero point each: :func:`check_int8`)."""
    return ModelIo(IoQuant.of(m.input_tensor()), IoQuant.of(m.output_tensor()))


def check_io(m: TfliteModel, name: str = "model") -> None:
    if len(m.inputs) != 1 or len(m.outputs) != 1:
        from tinygen.tflite.keras_names import ONE_TENSOR

        raise UnsupportedModel(f"{name} has {len(m.inputs)} inputs and {len(m.outputs)} outputs; {ONE_TENSOR}: "
                               "re-convert a model with one input and one output")
    # The device protocol (HELLO, tg_model_info.h) describes each tensor as rank 1..MAX_RANK with
    # positive dims: refused here, so inspect and build agree (build used to fail at render, exit 4).
    for what, t in (("input", m.input_tensor()), ("output", m.output_tensor())):
        if not 1 <= len(t.shape) <= MAX_RANK or any(d <= 0 for d in t.shape):
            kind = "a scalar (rank 0)" if not t.shape else f"rank {len(t.shape)}" \
                if len(t.shape) > MAX_RANK else "a zero dimension"
            raise UnsupportedModel(
                f"{name}: the model {what} has shape {list(t.shape)}, {kind}; tinygen's device protocol "
                f"carries tensors of rank 1 to {MAX_RANK} with every dimension > 0: re-convert the model "
                "with such a shape (a scalar as shape [1])")


def float_ops(m: TfliteModel) -> list[str]:
    """Distinct ops (first-use order) that still compute in float; QUANTIZE/DEQUANTIZE are the
    converters between the two and do not count."""
    found: list[str] = []
    for op in m.operators:
        if op.opcode in ("QUANTIZE", "DEQUANTIZE"):
            continue
        if any(m.tensors[i].dtype in ("float32", "float16") for i in op.outputs) and op.opcode not in found:
            found.append(op.opcode)
    return found


def check_int8(m: TfliteModel, name: str = "model") -> None:
    """Refuse float or partially quantized models, naming the float ops."""
    check_io(m, name)
    inp, out = m.input_tensor(), m.output_tensor()
    for what, t in (("input", inp), ("output", out)):
        if t.dtype == "int8" and (len(t.scale) != 1 or len(t.zero_point) != 1):
            raise UnsupportedModel(
                f"{name}: the model {what} is int8 without one scale and zero point (per-tensor "
                "quantization); re-convert with full-integer quantization")
    in_float = float_ops(m)
    if inp.dtype == "float32" and out.dtype == "float32" and len(in_float) == len(m.op_names):
        raise UnsupportedModel(
            f"{name} is a float .tflite; a .tflite cannot be re-quantized without its training graph. "
            "Pass the .keras/.h5/SavedModel it came from (with --data for calibration), "
            "or convert it to full-integer int8 yourself"
        )
    if in_float:
        raise UnsupportedModel(
            f"{name} is not fully int8: ops computing in float: {', '.join(in_float)}; "
            "re-convert with full-integer quantization (TFLITE_BUILTINS_INT8)"
        )
    if inp.dtype != "int8" or out.dtype != "int8":
        raise UnsupportedModel(
            f"{name} has {inp.dtype} input and {out.dtype} output; tinygen needs int8 input and output "
            "(converter: inference_input_type = inference_output_type = tf.int8)"
        )
