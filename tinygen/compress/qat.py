"""Quantization-aware training for a Keras 3 model, without tensorflow-model-optimization.

Why not tfmot: its QAT wrappers (``quantize_model``) are written for tf-keras (Keras 2).  Checked
here with TF 2.21 and Keras 3.15: tfmot 0.8.0 alone cannot import Keras ("Keras cannot be
imported": it wants ``tf_keras``); with tf_keras 2.21 installed, ``quantize_model`` on a Keras 3
model raises "`to_quantize` can only either be a keras Sequential or Functional model", and tf-keras
cannot read a Keras 3 ``.keras`` file, which is what users have.  So the training graph simulates int8 here, with TensorFlow's own fake-quant ops
(straight-through gradients):

* weights: symmetric int8, range +-max|w| (narrow range, [-127, 127]) per output channel for
  Conv1D/Conv2D/DepthwiseConv1D/2D (and Dense when the board's library computes it per-channel), per tensor
  otherwise: the same scales the TFLite converter computes from the trained weights;
* activations: asymmetric int8 on the model input and every layer's output, over a range tracked
  as an exponential moving average of the batch min/max (what the converter's calibration sees).

Each layer (any class: QAT rewrites none) runs through ``stateless_call`` with its fake-quantized
weights, in the model's graph order (an Add or a Concatenate gets its inputs' fake-quantized outputs, as the int8 ADD and
CONCATENATION read them), so no layer is rewritten; after training the plain model (real weights)
goes through the normal int8 converter, calibrated on the same samples.  Runs in the compression child.
"""

from __future__ import annotations

import inspect

import numpy as np

from tinygen.compress.prune import MERGE, graph

EMA = 0.9


def _fake_weight(layer, v, per_channel_dense: bool):
    import tensorflow as tf

    cls = type(layer).__name__
    if len(v.shape) < 2:  # biases stay float: the converter makes them int32 at the product's scale
        return v
    if cls in ("DepthwiseConv1D", "DepthwiseConv2D"):  # per channel over in*multiplier, as TFLite stores it
        flat = tf.reshape(v, (-1, v.shape[-2] * v.shape[-1]))
        m = tf.stop_gradient(tf.maximum(tf.reduce_max(tf.abs(flat), axis=0), 1e-8))
        q = tf.quantization.fake_quant_with_min_max_vars_per_channel(flat, -m, m, num_bits=8, narrow_range=True)
        return tf.reshape(q, v.shape)
    if cls in ("Conv1D", "Conv2D") or (cls == "Dense" and per_channel_dense):
        flat = tf.reshape(v, (-1, v.shape[-1]))
        m = tf.stop_gradient(tf.maximum(tf.reduce_max(tf.abs(flat), axis=0), 1e-8))
        return tf.reshape(tf.quantization.fake_quant_with_min_max_vars_per_channel(
            flat, -m, m, num_bits=8, narrow_range=True), v.shape)
    m = tf.stop_gradient(tf.maximum(tf.reduce_max(tf.abs(v)), 1e-8))
    return tf.quantization.fake_quant_with_min_max_vars(v, -m, m, num_bits=8, narrow_range=True)


class FakeQuantForward:
    """forward(x): the model's pass with int8 simulated on weights and activations."""

    def __init__(self, model, x_sample: np.ndarray, per_channel_dense: bool):
        import tensorflow as tf

        self.model = model
        self.first, self.layers, self.last = graph(model, prune=False)
        self.per_channel_dense = per_channel_dense
        # Start every range from the float model's own activations, so the first steps are sane.
        values = {self.first: tf.constant(np.asarray(x_sample, dtype=np.float32))}
        for lay, srcs in self.layers:
            values[lay.name] = lay(self._inputs(lay, srcs, values), training=False)
        outs = [np.asarray(values[self.first])] + [np.asarray(values[lay.name]) for lay, _ in self.layers]
        self.ranges = [(tf.Variable(min(float(o.min()), 0.0), trainable=False),
                        tf.Variable(max(float(o.max()), 0.0), trainable=False)) for o in outs]

    @staticmethod
    def _inputs(lay, srcs, values):
        return [values[n] for n in srcs] if len(srcs) > 1 or type(lay).__name__ in MERGE else values[srcs[0]]

    def _act(self, i: int, y, training: bool):
        import tensorflow as tf

        lo, hi = self.ranges[i]
        if training:
            lo.assign(EMA * lo + (1 - EMA) * tf.minimum(tf.reduce_min(y), 0.0))
            hi.assign(EMA * hi + (1 - EMA) * tf.maximum(tf.reduce_max(y), 0.0))
        return tf.quantization.fake_quant_with_min_max_vars(y, tf.stop_gradient(lo), tf.stop_gradient(hi + 1e-6),
                                                            num_bits=8)

    def __call__(self, x, training: bool = True):
        values = {self.first: self._act(0, x, training)}
        for i, (lay, srcs) in enumerate(self.layers):
            trainable = [_fake_weight(lay, v, self.per_channel_dense) for v in lay.trainable_variables]
            kwargs = {"training": False} if "training" in inspect.signature(lay.call).parameters else {}
            y, _ = lay.stateless_call(trainable, [v.value for v in lay.non_trainable_variables],
                                      self._inputs(lay, srcs, values), **kwargs)
            values[lay.name] = self._act(i + 1, y, training)
        return values[self.last]
