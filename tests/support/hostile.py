"""Hostile text the tests feed tinygen (tensor names that try to leave C comments) and the
compiler's view of a generated file; shared by the hostile-text and model-library tests."""

from __future__ import annotations

import subprocess
from pathlib import Path

from conftest import require_tool

MARK = "PWNED"
# Tensor names inside a .tflite (what the compiled runtime writes into C comments).
TENSOR_NAMES = {
    "close-comment": f"*/ #include \"/etc/passwd\" /* {MARK}",
    "incbin": f"*/ __asm__(\".incbin \\\"/etc/hostname\\\"\"); /* {MARK}",
    "newline": f"a\n#error {MARK}\n",
    "trigraph": f"??/\n#error {MARK}",
    "nested": f"/*/ {MARK} */*/",
}


def rename_tensors(raw: bytes, name: str) -> bytes:
    """The same model with every tensor named ``name`` + its index (flatbuffer object API)."""
    import flatbuffers
    from tensorflow.lite.python import schema_py_generated as schema

    m = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(raw, 0))
    for i, t in enumerate(m.subgraphs[0].tensors):
        t.name = f"{name}{i}".encode()
    b = flatbuffers.Builder(0)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def strip_c_comments(path: Path, lang: str = "c") -> str:
    """The compiler's own view of a file without comments (-fpreprocessed: no includes, no macros)."""
    cc = require_tool("gcc" if lang == "c" else "g++")
    res = subprocess.run([cc, "-x", "c" if lang == "c" else "c++", "-std=c99" if lang == "c" else "-std=c++11",
                          "-fpreprocessed", "-dD", "-E", "-P", str(path)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    return res.stdout
