"""Compression to fit a board: structured pruning (:mod:`.prune`), quantization-aware training
(:mod:`.qat`), distillation into a width-scaled student (:mod:`.distill`), the shared training loop
(:mod:`.train`), the compression jobs all Keras training runs as, in the command's worker
(:mod:`.jobs`), and the search for the smallest compression that fits a board (:mod:`.fit`).

It sits after :mod:`tinygen.codegen` because deciding whether a candidate fits needs the plan's
budget (:func:`tinygen.codegen.plan.budget`) and the compiled runtime's memory plan; what it
produces is an ordinary Keras model that goes back through the normal build path.

May import: :mod:`tinygen.common`, :mod:`tinygen.tflite`, :mod:`tinygen.intake`,
:mod:`tinygen.analysis`, :mod:`tinygen.codegen`.
"""
