"""One exception type for everything a user can get wrong.

The CLI turns a TinygenError into one line on stderr (what is wrong, what to
do) and a non-zero exit code, never a traceback.
"""


class TinygenError(Exception):
    """A user-facing failure: bad input, a missing tool, a failed check.

    ``exit_code`` lets callers tell classes of failure apart (2 = bad input,
    3 = does not fit / unsupported, 4 = tool failure, 5 = verification failed); README.md's
    "Exit codes" table lists them with 0, 130 (interrupted) and 70 (a tinygen bug, nothing else).
    """

    exit_code = 2

    def __init__(self, message: str, exit_code: int | None = None):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class UnsafeText(TinygenError):
    """User text (a name, a path) that cannot be written where it must go without changing its
    meaning, e.g. a path with '$' that PlatformIO and SCons would expand (tinygen/common/escape.py)."""


class UnsupportedModel(TinygenError):
    exit_code = 3


class DoesNotFit(TinygenError):
    exit_code = 3


class ToolFailure(TinygenError):
    exit_code = 4


class VerificationFailed(TinygenError):
    exit_code = 5
