"""The .tflite format: our own plain reader of the flatbuffer (:mod:`.model`), its
parse-time validation of indices, buffers and quantization (:mod:`.checks`), and the
"is this fully int8?" check (:mod:`.int8`); :mod:`.schema` holds the flatbuffer bindings
they and the TFLM boards' per-channel FULLY_CONNECTED -> CONV_2D 1x1 rewrite
(:mod:`.fc_rewrite`, TFLite in, TFLite out) read and write with.  Every later stage sees a model only
through :class:`tinygen.tflite.model.TfliteModel`.

May import: :mod:`tinygen.common`.
"""
