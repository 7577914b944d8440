"""Issue 16: a one-output sigmoid model with 0/1 labels was reported as a regression (RMSE, no
accuracy).  Fixed by plan.infer_task's binary guess (commit "Task detection: ..."); on the commit
before it, infer_task returns "regression" here and the quality has no accuracy.

Smallest input: a one-op int8 model (LOGISTIC), written with the TFLite schema, and 0/1 labels."""

from __future__ import annotations

import numpy as np


def _logistic_model() -> bytes:
    import flatbuffers
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

    def tensor(name: bytes, scale: float, zp: int):
        t = schema.TensorT()
        t.shape, t.type, t.buffer, t.name = [1, 1], schema.TensorType.INT8, 0, name
        t.quantization = schema.QuantizationParametersT()
        t.quantization.scale, t.quantization.zeroPoint = [scale], [zp]
        return t

    op = schema.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = 0, [0], [1]
    sub = schema.SubGraphT()
    sub.tensors = [tensor(b"x", 0.05, 0), tensor(b"p", 1 / 256, -128)]
    sub.inputs, sub.outputs, sub.operators = [0], [1], [op]
    code = schema.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.LOGISTIC
    code.version = 1
    m = schema.ModelT()
    m.version, m.operatorCodes, m.subgraphs, m.buffers = 3, [code], [sub], [schema.BufferT()]
    b = flatbuffers.Builder(1024)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def test_sigmoid_output_with_01_labels_is_binary():
    from tinygen.analysis.vectors import quality
    from tinygen.codegen.plan import infer_task
    from tinygen.intake.sources import Source
    from tinygen.tflite.model import parse_model

    m = parse_model(_logistic_model())
    y = np.array([0, 1, 1, 0, 1], dtype=np.int64)
    task = infer_task(Source("m", "m.tflite", "unknown", y_test=y), m.output_tensor().shape, m)
    assert task == "binary"
    probs = np.array([[0.1], [0.7], [0.4], [0.6], [0.9]], dtype=np.float32)
    q = quality(task, probs, None, y)
    assert q["int8_accuracy"] == 3 / 5  # 0.1->0 ok, 0.7->1 ok, 0.4->0 wrong, 0.6->1 wrong, 0.9->1 ok
    assert q["int8_confusion"] == {"tn": 1, "fp": 1, "fn": 1, "tp": 2}
