"""Short libFuzzer runs of the harnesses in tests/fuzz/ (the long runs: docs/architecture.md, "Fuzzing").

Each run is seeded and bounded by a number of executions; a crash, a sanitizer
report or a wrong reply (the frame harness checks every reply against the
documented protocol) fails the test with libFuzzer's report.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import fuzz_build as FB
from conftest import require

HERE = Path(__file__).resolve().parent


def _findings(workdir: Path) -> list[str]:
    return sorted(p.name for p in workdir.iterdir() if p.name.split("-")[0] in ("crash", "leak", "timeout", "oom"))


@pytest.fixture(scope="module")
def libfuzzer(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("libfuzzer")
    require(FB.libfuzzer_works(d), "clang with libFuzzer (Debian: clang libclang-rt-14-dev)")
    return d


@pytest.mark.parametrize("model,sealed", [("big", False), ("small", True)], ids=["wire-400B", "sealed-12B"])
def test_frame_parser_fuzz(libfuzzer, model, sealed):
    workdir = libfuzzer / f"{model}-{sealed}"
    workdir.mkdir()
    exe = FB.build(workdir, model, sealed)
    rc, out, execs = FB.run(exe, workdir, model, sealed, "-seed=1", "-runs=60000", "-max_total_time=120")
    assert rc == 0 and not _findings(workdir), out[-3000:]
    assert execs >= 1000, out[-3000:]


def test_model_reader_fuzz(tmp_path, sine_project):
    require(importlib.util.find_spec("atheris") is not None, "atheris (pip install atheris)")
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    shipped = Path(importlib.util.find_spec("tflite_micro").submodule_search_locations[0])
    shutil.copy(shipped / "python" / "tflite_micro" / "sine_float.tflite", corpus / "float.tflite")
    shutil.copy(sine_project / "model.tflite", corpus / "int8.tflite")
    from support.flat_model import buffers_out_of_line, relu_chain

    (corpus / "int8_out_of_line.tflite").write_bytes(buffers_out_of_line((sine_project / "model.tflite").read_bytes()))
    (corpus / "chain.tflite").write_bytes(relu_chain(40))
    r = subprocess.run([sys.executable, str(HERE / "fuzz_model_reader.py"), "-seed=1", "-runs=4000",
                        "-timeout=20", "-rss_limit_mb=2048", f"-artifact_prefix={tmp_path}/", str(corpus)],
                       capture_output=True, text=True, cwd=tmp_path, timeout=600)
    out = r.stdout + r.stderr
    assert r.returncode == 0 and not _findings(tmp_path), out[-3000:]
    assert "Done 4000 runs" in out, out[-3000:]
