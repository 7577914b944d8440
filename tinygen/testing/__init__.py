"""Serial-port validation tests in a user's own repository: a connected board to infer on
(:mod:`.board`), assertions with failure messages that say where and by how much
(:mod:`.assertions`), and the pytest plugin that wires them to command-line options
(:mod:`.pytest_plugin`, the ``pytest11`` entry point ``tinygen``).

It sits above :mod:`tinygen.api` because it is a consumer of the public API, like the CLI,
and beside the CLI: neither imports the other.

May import: every stage and :mod:`tinygen.api`; never :mod:`tinygen.cli`.
"""

from __future__ import annotations

__all__ = ["TinygenBoard", "Reference", "Inference", "Batch", "assert_bit_exact", "assert_accuracy",
           "assert_latency"]


def __getattr__(name: str):
    # Lazy: pytest imports the plugin module (and so this package) in every session of every
    # project where tinygen is installed; numpy and the API load only when a test uses them.
    if name in ("assert_bit_exact", "assert_accuracy", "assert_latency"):
        from tinygen.testing import assertions

        return getattr(assertions, name)
    if name in ("TinygenBoard", "Reference", "Inference", "Batch"):
        from tinygen.testing import board

        return getattr(board, name)
    raise AttributeError(f"module 'tinygen.testing' has no attribute {name!r}")
