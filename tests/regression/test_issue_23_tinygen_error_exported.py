"""Issue 23 item 3: ``tinygen.TinygenError``, which docs/python-api.md promises (every API call raises a
``TinygenError`` subclass), did not exist: ``tinygen.TinygenError`` raised AttributeError.

Fails before the fix (tinygen/__init__.py exported only the API functions and classes).
"""

from __future__ import annotations

import subprocess
import sys

from conftest import REPO


def test_a_bad_call_is_caught_as_tinygen_error_with_its_exit_code():
    # A child process: the first access must work on a fresh import, and must not pull in TensorFlow.
    code = ("import sys, tinygen\n"
            "try:\n"
            "    tinygen.build(board='no-such-board', recipe='sine')\n"
            "except tinygen.TinygenError as exc:\n"
            "    print(type(exc).__name__, exc.exit_code)\n"
            "assert 'tensorflow' not in sys.modules\n"
            "assert tinygen.ToolFailure.exit_code == 4 and tinygen.VerificationFailed.exit_code == 5\n"
            "assert issubclass(tinygen.DoesNotFit, tinygen.TinygenError)\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["TinygenError", "2"]
