"""Where C is written: the plan for one board and runtime (:mod:`.plan`), the
compiled runtime's lowering, memory plan and C printer (:mod:`.compiled`), the protocol's C headers
(:mod:`.protocol_header`), rendering the project's files from templates
(:mod:`.render`, pure; the model library and the example: :mod:`.model_library`), the one writer of output directories (:mod:`.project`) and
each board's flash and RAM budget for a model (:mod:`.board_budgets`; "fit" is only
compress's ``--fit`` search).

May import: :mod:`tinygen.common`, :mod:`tinygen.tflite`, :mod:`tinygen.intake`,
:mod:`tinygen.analysis`; from intake only its values (the Source, the front end's definition):
intake's steps (training, loading, the int8 conversion) are run by the conductor,
:mod:`tinygen.api.building`, which hands codegen what they return (tests/test_architecture.py).
"""
