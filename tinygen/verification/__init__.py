"""Where reports are made: run the project's test vectors on the board, compare with
the reference, compute metrics and latency, and write JSON/Markdown/PNG reports
(:mod:`.verify`); the workflow from a project and a port to a Report (:mod:`.workflow`).

May import: every stage before it (:mod:`tinygen.common` ... :mod:`tinygen.device`).
"""
