"""The TFLite flatbuffer schema bindings every reader and writer of .tflite bytes uses.

They are the ones shipped inside the ``tflite_micro`` wheel, so reading a model does not
import TensorFlow.  Imported on first use (the bindings are a large module that
``tinygen --help`` does not need).
"""

from __future__ import annotations


def schema():
    """The generated ``schema_py_generated`` module (ModelT, BuiltinOperator, ...)."""
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated

    return schema_py_generated
