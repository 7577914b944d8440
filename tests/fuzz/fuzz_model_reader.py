"""Atheris (libFuzzer for Python) harness for the .tflite reader.

    python tests/fuzz/fuzz_model_reader.py [libFuzzer flags] CORPUS_DIR [SEED_FILES...]

Every input goes through tinygen.tflite.model.parse_model. Refusing it with a
TinygenError is the contract; any other exception (and a crash, a hang past
-timeout, or memory past -rss_limit_mb) is a finding, which libFuzzer saves as
crash-*/timeout-*/oom-* in the current directory (or -artifact_prefix).
An accepted input must come back with every buffer inside the flatbuffer (what
tflite_micro reads) and parse again to the same bytes.
Seeds: any .tflite files (tests/fuzz/test_fuzz.py uses the one tflite_micro ships,
an int8 model tinygen built, the same with its weights stored out of line, and a
chain of RELU ops).
"""

from __future__ import annotations

import sys
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

with atheris.instrument_imports():
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated  # noqa: F401  (coverage)

    from tinygen.common.errors import TinygenError
    from tinygen.tflite.model import parse_model


def one_input(data: bytes) -> None:
    try:
        m = parse_model(data, "fuzz.tflite")
    except TinygenError as exc:
        if "\n" in str(exc):
            raise AssertionError(f"error message spans lines: {exc!r}") from None
        return
    root = schema_py_generated.Model.GetRootAs(m.raw, 0)
    for i in range(root.BuffersLength()):
        b = root.Buffers(i)
        if b.Offset() > 1 and not b.DataLength():
            raise AssertionError(f"buffer {i} is still stored out of line after parsing")
    if parse_model(m.raw, "fuzz.tflite").raw != m.raw:
        raise AssertionError("parsing the parsed model changed its bytes")


def main() -> None:
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
