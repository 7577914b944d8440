"""What an int8 model is and what it computes: ops, parameters and MACs
(:mod:`.ops`), the reference outputs and arena size from the ``tflite_micro``
interpreter run in a child process (:mod:`.reference`), whether a rewritten model computes
what the original does on it (:mod:`.equivalence`), and test-vector arithmetic (:mod:`.vectors`).

May import: :mod:`tinygen.common`, :mod:`tinygen.tflite`, :mod:`tinygen.intake`.
"""
