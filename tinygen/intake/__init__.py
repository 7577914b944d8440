"""Where a model enters and is quantized: built-in recipes (trained on generated data),
the user's .keras/.h5/SavedModel/.tflite and data files (:mod:`.sources`,
:mod:`.loader`), int8 post-training quantization (:mod:`.quantize`), and the child
process that runs TensorFlow on user models (:mod:`.jobs`).  Output: int8 .tflite
bytes plus held-out samples.

May import: :mod:`tinygen.common`, :mod:`tinygen.tflite`.
"""
