"""Full-integer int8 post-training quantization with the TFLite converter.

Input: a float Keras model (or SavedModel path) and calibration samples.
Output: .tflite bytes whose input, output, weights and activations are int8
(biases int32).  Errors: :class:`UnsupportedModel` naming the ops that cannot
be made int8.

Two deliberate choices:

* The batch dimension is fixed to 1 before conversion.  With a free batch
  dimension, TF 2.21 lowers ``Flatten``/``Reshape`` to SHAPE + STRIDED_SLICE +
  PACK + RESHAPE; with batch 1 it is one RESHAPE.
* ``per_channel_dense`` chooses per-channel or per-tensor FULLY_CONNECTED
  weights.  TF 2.21 quantizes Dense per-channel by default, but the TFLM
  Arduino libraries pinned for our boards (CMSIS-NN / ESP-NN kernels) compute
  per-tensor FULLY_CONNECTED only and silently return wrong results for
  per-channel weights.  The board file says what its library supports
  (``tflm.per_channel_fully_connected``); the build summary reports the choice.
"""

from __future__ import annotations

import os

import numpy as np

from tinygen.common.errors import TinygenError, UnsupportedModel
from tinygen.intake.loader import CALIBRATION_SAMPLES

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _dtype_of(inp) -> str:
    """The Input's own dtype: int32 token ids must stay integers, not become float."""
    return str(getattr(inp.dtype, "name", inp.dtype) or "float32")


def _batch1_model(model):
    """The same layers and weights with every input's batch dimension fixed to 1."""
    import tensorflow as tf

    from tinygen.intake.recurrent import unroll_recurrent

    model, _ = unroll_recurrent(model)  # LSTM / GRU / SimpleRNN: plain int8 ops, not a loop
    inputs = []
    for inp in model.inputs:
        shape = tuple(inp.shape)[1:]
        if any(d is None for d in shape):
            raise TinygenError(
                f"model input '{inp.name}' has an unknown dimension {tuple(inp.shape)}; "
                "give the Keras Input a fixed shape"
            )
        inputs.append(tf.keras.Input(shape=shape, batch_size=1, name=inp.name.split(":")[0], dtype=_dtype_of(inp)))
    if len(inputs) != 1:
        raise UnsupportedModel(f"model has {len(inputs)} inputs; tinygen supports single-input models")
    if len(model.outputs) != 1:
        raise UnsupportedModel(f"model has {len(model.outputs)} outputs; tinygen supports single-output models")
    return tf.keras.Model(inputs[0], model(inputs[0], training=False), name=model.name)


def _representative(samples: np.ndarray, limit: int = CALIBRATION_SAMPLES, on_calibrate=None):
    samples = np.asarray(samples, dtype=np.float32)

    def gen():
        if on_calibrate:
            on_calibrate(False)
        for i in range(min(len(samples), limit)):
            yield [samples[i: i + 1]]
        if on_calibrate:  # the converter goes on to quantize with the ranges it saw
            on_calibrate(True)

    return gen


def _refuse_float_ops(tflite_bytes: bytes, layers=None, runtime_ops=None) -> None:
    """Raise UnsupportedModel naming the Keras layers whose ops still compute in float, with what
    replaces them on a runtime with ``runtime_ops`` (every replacement when not given)."""
    from tinygen.tflite.int8 import float_ops
    from tinygen.tflite.keras_names import explain_ops
    from tinygen.tflite.model import parse_model

    m = parse_model(tflite_bytes)
    bad = float_ops(m)
    if bad:
        refused = {op.index: "" for op in m.operators if op.opcode in bad}
        raise UnsupportedModel("the model cannot be fully int8-quantized: the converter has no int8 kernel for "
                               + explain_ops(m, refused, layers, runtime_ops))


def quantize(model, representative: np.ndarray, *, per_channel_dense: bool = False, on_calibrate=None,
             layers=None, runtime_ops=None) -> bytes:
    """Convert a float Keras model, or a loaded SavedModel (:class:`tinygen.intake.loader.SavedModelFn`),
    to a full-integer int8 .tflite with the batch fixed to 1.

    This runs the TFLite converter in the calling process; tinygen itself calls it only in
    the child of :mod:`tinygen.intake.jobs`.  ``on_calibrate(done)`` is told when calibration
    starts (False) and ends (True), so a crash can be attributed to its step.  ``layers`` ([name, class]
    pairs) and ``runtime_ops`` word a refusal in Keras terms (:mod:`tinygen.tflite.keras_names`)."""
    import tensorflow as tf

    from tinygen.intake.loader import SavedModelFn

    if isinstance(model, SavedModelFn):
        return quantize_saved_model(model, representative, per_channel_dense=per_channel_dense,
                                    on_calibrate=on_calibrate)
    conv = tf.lite.TFLiteConverter.from_keras_model(_batch1_model(model))
    return _convert(conv, representative, per_channel_dense, on_calibrate, layers, runtime_ops)


def quantize_saved_model(sm, representative: np.ndarray, *, per_channel_dense: bool = False,
                         on_calibrate=None) -> bytes:
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec(list(sm.input_shape), tf.float32, name=sm.input_name)])
    def serve(x):
        out = sm.fn(**{sm.input_name: x})
        return list(out.values())[0] if isinstance(out, dict) else out

    conv = tf.lite.TFLiteConverter.from_concrete_functions([serve.get_concrete_function()], sm.loaded)
    return _convert(conv, representative, per_channel_dense, on_calibrate)


def _convert(conv, representative, per_channel_dense: bool, on_calibrate=None, layers=None,
             runtime_ops=None) -> bytes:
    import tensorflow as tf

    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = _representative(representative, on_calibrate=on_calibrate)
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    if not per_channel_dense:
        conv._experimental_disable_per_channel_quantization_for_dense_layers = True
    from tinygen.intake.recurrent import convert_settled

    try:
        result = convert_settled(conv)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        # Find which ops stay float by converting again with float fallback allowed.
        try:
            conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS]
            conv.inference_input_type = tf.float32
            conv.inference_output_type = tf.float32
            fallback = bytes(conv.convert())
        except Exception:
            fallback = None
        if fallback is not None:
            _refuse_float_ops(fallback, layers, runtime_ops)
        raise UnsupportedModel(f"int8 conversion failed: {first[:300]}") from None
    # The converter can leave an op without an int8 kernel in float, wrapped in
    # DEQUANTIZE/QUANTIZE, and still succeed: that is not a full-integer model.
    _refuse_float_ops(result, layers, runtime_ops)
    return result
