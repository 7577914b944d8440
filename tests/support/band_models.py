"""Int8 convolution models written as flatbuffers (no TensorFlow), shaped so the compiled runtime's
scheduler (tinygen/codegen/compiled/band.py) runs part of them as a band: a ResNet-style residual
block, and a plain chain with strides, valid padding, a depthwise multiplier and rows whose byte
count is not a multiple of 4.  Weights are seeded; output scales are set from the accumulator's
spread so the outputs use the int8 range instead of saturating."""

from __future__ import annotations

import math

import numpy as np

from support.flat_model import FlatModel

from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as S

I8, I32 = S.TensorType.INT8, S.TensorType.INT32
B, O = S.BuiltinOperator, S.BuiltinOptions


class _Net:
    def __init__(self, seed: int, shape):
        self.fm = FlatModel()
        self.rng = np.random.default_rng(seed)
        self.x = self.fm.tensor(list(shape), I8, [0.05], [-3])
        self.shape, self.scale, self.zp = list(shape), 0.05, -3

    def _out_scale(self, k: int) -> float:
        # accumulator spread ~ sqrt(K) * 73 * 73 (uniform int8 weights and inputs); aim for ~40 LSB
        return self.scale * 0.015 * math.sqrt(k) * 73 * 73 / 40

    def conv(self, t: int, shape_in, filters: int, k: int, stride: int = 1, padding=S.Padding.SAME,
             depthwise: bool = False, dm: int = 1, relu: bool = True) -> tuple[int, list[int]]:
        n, h, w, c = shape_in
        cout = c * dm if depthwise else filters
        if padding == S.Padding.SAME:
            oh, ow = -(-h // stride), -(-w // stride)
        else:
            oh, ow = (h - k) // stride + 1, (w - k) // stride + 1
        ws = [0.015 * (1 + 0.1 * i) for i in range(cout)]
        wshape = [1, k, k, cout] if depthwise else [cout, k, k, c]
        wt = self.fm.tensor(wshape, I8, ws, [0] * cout, self.rng.integers(-127, 128, wshape, dtype=np.int8),
                            qdim=3 if depthwise else 0)
        bt = self.fm.tensor([cout], I32, [self.scale * s for s in ws], [0] * cout,
                            self.rng.integers(-3000, 3000, cout).astype(np.int32))
        out_scale = self._out_scale(k * k * (1 if depthwise else c))
        zp = -128 if relu else int(self.rng.integers(-20, 20))
        y = self.fm.tensor([n, oh, ow, cout], I8, [out_scale], [zp])
        o = S.DepthwiseConv2DOptionsT() if depthwise else S.Conv2DOptionsT()
        o.padding, o.strideH, o.strideW = padding, stride, stride
        o.dilationHFactor = o.dilationWFactor = 1
        o.fusedActivationFunction = S.ActivationFunctionType.RELU if relu else S.ActivationFunctionType.NONE
        if depthwise:
            o.depthMultiplier = dm
            self.fm.op(B.DEPTHWISE_CONV_2D, [t, wt, bt], [y], O.DepthwiseConv2DOptions, o)
        else:
            self.fm.op(B.CONV_2D, [t, wt, bt], [y], O.Conv2DOptions, o)
        self.scale, self.zp = out_scale, zp
        return y, [n, oh, ow, cout]

    def add_relu(self, a: int, b: int, a_scale: float, shape) -> int:
        """ADD(a, b) with a fused RELU, b being the last op's output (``self.scale``); the result is the
        model's current tensor."""
        y_scale = (a_scale + self.scale) * 0.8
        y = self.fm.tensor(shape, I8, [y_scale], [-128])
        ao = S.AddOptionsT()
        ao.fusedActivationFunction = S.ActivationFunctionType.RELU
        self.fm.op(B.ADD, [a, b], [y], O.AddOptions, ao)
        self.scale, self.zp = y_scale, -128
        return y

    def head(self, t: int, shape, classes: int = 5) -> bytes:
        """AVERAGE_POOL over the whole map -> RESHAPE -> FULLY_CONNECTED -> the model."""
        n, h, w, c = shape
        p = self.fm.tensor([n, 1, 1, c], I8, [self.scale], [self.zp])
        po = S.Pool2DOptionsT()
        po.padding, po.strideH, po.strideW, po.filterHeight, po.filterWidth = S.Padding.VALID, 1, 1, h, w
        self.fm.op(B.AVERAGE_POOL_2D, [t], [p], O.Pool2DOptions, po)
        shp = self.fm.tensor([2], I32, data=np.array([1, c], dtype=np.int32))
        f = self.fm.tensor([1, c], I8, [self.scale], [self.zp])
        ro = S.ReshapeOptionsT()
        ro.newShape = [1, c]
        self.fm.op(B.RESHAPE, [p, shp], [f], O.ReshapeOptions, ro)
        fw = self.fm.tensor([classes, c], I8, [0.01], [0], self.rng.integers(-127, 128, (classes, c), dtype=np.int8))
        fb = self.fm.tensor([classes], I32, [self.scale * 0.01], [0],
                            self.rng.integers(-500, 500, classes).astype(np.int32))
        y = self.fm.tensor([1, classes], I8, [self.scale * 0.01 * math.sqrt(c) * 73 * 73 / 40], [0])
        self.fm.op(B.FULLY_CONNECTED, [f, fw, fb], [y], O.FullyConnectedOptions, S.FullyConnectedOptionsT())
        return self.fm.pack([self.x], [y], b"tinygen band test")


def residual_block(seed: int = 5, h: int = 14, w: int = 10, c: int = 8, stages: int = 2) -> bytes:
    """input [1,h,w,3] -> CONV 3x3 (x) -> ``stages`` CONV 3x3 'same' -> ADD(x, .) RELU -> head. The
    block's tensors are the largest, so the scheduler bands it."""
    net = _Net(seed, [1, h, w, 3])
    x, shape = net.conv(net.x, [1, h, w, 3], c, 3)
    x_scale = net.scale
    t = x
    for j in range(stages):
        t, shape = net.conv(t, shape, c, 3, relu=j + 1 < stages)
    return net.head(net.add_relu(x, t, x_scale, shape), shape)


def plain_chain(seed: int = 9, h: int = 23, w: int = 11) -> bytes:
    """input [1,h,w,3] -> CONV 3x3 stride 2 'valid' 6 -> DEPTHWISE 3x3 x2 'same' -> CONV 1x1 12 ->
    DEPTHWISE 5x5 stride 2 'same' -> CONV 1x1 3 -> head: strides, valid and 'same' padding, a depth
    multiplier, and with w = 11 rows of 5 x 6 = 30 bytes (not a multiple of 4: a window's row shift
    takes its byte path) and 5 x 12 = 60."""
    net = _Net(seed, [1, h, w, 3])
    t, shape = net.conv(net.x, [1, h, w, 3], 6, 3, stride=2, padding=S.Padding.VALID)
    t, shape = net.conv(t, shape, 0, 3, depthwise=True, dm=2)
    t, shape = net.conv(t, shape, 12, 1)
    t, shape = net.conv(t, shape, 0, 5, stride=2, depthwise=True)
    t, shape = net.conv(t, shape, 3, 1, relu=False)
    return net.head(t, shape)


def projection_block(seed: int = 13, h: int = 16, w: int = 12, c: int = 8) -> bytes:
    """input [1,h,w,3] -> CONV 3x3 (x) -> CONV 3x3 stride 2, 3c channels -> CONV 3x3 (b); x -> CONV 1x1
    stride 2 (s), written after the branch as ResNet-8's converter output has it; ADD(b, s) -> head.
    In the model's order x stays alive through the branch; run the 1x1 shortcut first and the
    branch's first convolution can write over x."""
    net = _Net(seed, [1, h, w, 3])
    x, shape = net.conv(net.x, [1, h, w, 3], c, 3)
    x_scale, x_zp, x_shape = net.scale, net.zp, shape
    t, shape = net.conv(x, shape, 3 * c, 3, stride=2)
    b, shape = net.conv(t, shape, 2 * c, 3, relu=False)
    b_scale = net.scale
    net.scale, net.zp = x_scale, x_zp
    s, _ = net.conv(x, x_shape, 2 * c, 1, stride=2, relu=False)
    return net.head(net.add_relu(b, s, b_scale, shape), shape)
