"""The .tflite format: our own plain reader of the flatbuffer (:mod:`.model`), its
parse-time validation of indices, buffers and quantization (:mod:`.checks`), and the
"is this fully int8?" check (:mod:`.int8`).  Every later stage sees a model only
through :class:`tinygen.tflite.model.TfliteModel`.

May import: :mod:`tinygen.common`.
"""
