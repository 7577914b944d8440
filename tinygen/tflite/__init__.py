"""The .tflite format: our own plain reader of the flatbuffer (:mod:`.model`), its
parse-time validation of indices, buffers and quantization (:mod:`.checks`), and the
"is this fully int8?" check (:mod:`.int8`); :mod:`.schema` holds the flatbuffer bindings
they (and codegen's TFLite rewrite) read and write with.  Every later stage sees a model only
through :class:`tinygen.tflite.model.TfliteModel`.

May import: :mod:`tinygen.common`.
"""
