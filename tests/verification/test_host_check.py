"""`tinygen inspect --runtime compiled --check`: the emitted C, compiled on this host under
ASan/UBSan, against the tflite_micro interpreter (tinygen/verification/host_check.py).

The check must pass on a model the compiled runtime gets right, and must fail, with exit 5,
when one weight in the emitted C is wrong: otherwise a passing check would mean nothing.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

import support.compiled_harness as H
from conftest import assert_one_line_error, run_cli
from tinygen.common.errors import TinygenError, VerificationFailed
from tinygen.verification import host_check

# A linear Dense layer: no activation clamp can hide a wrong weight from the outputs.
CASE = {"kind": "fc", "id": "hostcheck_fc", "seed": 424242, "shape": [12], "units": 6, "act": "linear",
        "bias": True, "rep": (0.0, 1.0), "w_std": 0.3}
H.register("hostcheck:fc", "convert_case", CASE)


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    H.require(H.have_python_deps(), "tensorflow and tflite_micro")
    p = tmp_path_factory.mktemp("hostcheck") / "fc.tflite"
    p.write_bytes(H.result("hostcheck:fc"))
    return p


@pytest.fixture
def gcc():
    H.require(H.have_gcc(), "gcc")


def corrupt_one_weight(c_text: str) -> str:
    """The first value of the first int8 constant array, moved to the far end of the int8 range."""
    found = re.search(r"static const int8_t \w+\[\d+\][^=]*=\s*\{\s*(-?\d+)", c_text)
    assert found, "no int8 constant array in the emitted C"
    old = int(found.group(1))
    new = 127 if old < 0 else -128
    return c_text[:found.start(1)] + str(new) + c_text[found.end(1):]


def emitted_with(monkeypatch, edit) -> None:
    """The test hook: the host check compiles ``edit(model .c text)`` instead of what codegen emitted."""
    real = host_check.emitted_sources

    def edited(model, prefix):
        files = real(model, prefix)
        files[f"{prefix}_model.c"] = edit(files[f"{prefix}_model.c"])
        return files

    monkeypatch.setattr(host_check, "emitted_sources", edited)


def test_cli_check_passes_on_a_model(model_file, gcc):
    res = run_cli("inspect", str(model_file), "--runtime", "compiled", "--check", "--vectors", "20", "--json")
    assert res.returncode == 0, res.stderr
    hc = json.loads(res.stdout)["host_check"]
    assert (hc["matches"], hc["vectors"], hc["max_lsb_diff"], hc["mismatched_elements"]) == (True, 20, 0, 0)
    assert hc["sanitizer_findings"] == [] and hc["stopped"] is None
    assert {"-Wall", "-Wextra", "-Werror", "-fsanitize=address,undefined"} <= set(hc["flags"])
    res = run_cli("inspect", str(model_file), "--runtime", "compiled", "--check", "--vectors", "8")
    assert res.returncode == 0, res.stderr
    verdict = [ln for ln in res.stdout.splitlines() if ln.startswith("host check")]
    assert len(verdict) == 1 and "passed" in verdict[0] and "8 vectors" in verdict[0], res.stdout


def test_check_with_the_callers_vectors(model_file, gcc):
    from tinygen.tflite.model import read_model

    m = read_model(model_file)
    x = np.random.default_rng(5).integers(-128, 128, size=(7, 12), dtype=np.int8)
    r = host_check.check_model(m, inputs=x)
    assert r.matches and r.vectors == 7 and r.max_lsb_diff == 0, r.verdict()
    with pytest.raises(TinygenError, match="int8 vectors of 12 values"):
        host_check.check_model(m, inputs=x.astype(np.float32))


def test_cli_check_fails_on_a_corrupted_weight(model_file, gcc, monkeypatch, capsys):
    from tinygen.cli.main import main

    emitted_with(monkeypatch, corrupt_one_weight)
    with pytest.raises(SystemExit) as ei:
        main(["inspect", str(model_file), "--runtime", "compiled", "--check", "--json"])
    assert ei.value.code == VerificationFailed.exit_code == 5
    out, err = capsys.readouterr()
    hc = json.loads(out)["host_check"]
    assert not hc["matches"] and hc["mismatched_elements"] > 0 and hc["max_lsb_diff"] > 0
    assert hc["stopped"] is None  # a wrong number, not a crash
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: host check FAILED") and "differs" in lines[0], err


def test_check_reports_a_sanitizer_finding(model_file, gcc, monkeypatch):
    """A read one byte past the input buffer: ASan stops the program and the check says why."""
    from tinygen.tflite.model import read_model

    def overread(c_text: str) -> str:
        head = re.search(r"int (\w+)_invoke\(const int8_t \*input, int8_t \*output\)\s*\{", c_text)
        assert head, "no invoke function in the emitted C"
        probe = (f"\n    {{ volatile int8_t tg_probe = input[{head.group(1).upper()}_CM_INPUT_BYTES]; "
                 "(void)tg_probe; }\n")
        return c_text[:head.end()] + probe + c_text[head.end():]

    emitted_with(monkeypatch, overread)
    r = host_check.check_model(read_model(model_file), vectors=4)
    assert not r.matches and r.stopped is not None
    assert any("AddressSanitizer" in f and "heap-buffer-overflow" in f for f in r.sanitizer_findings), r
    assert "stopped under the sanitizers" in r.verdict()


def test_missing_compiler_is_one_line(model_file, tmp_path):
    empty = tmp_path / "bin"
    empty.mkdir()
    res = run_cli("inspect", str(model_file), "--runtime", "compiled", "--check",
                  env={"PATH": str(empty), "CC": ""})
    assert_one_line_error(res, "C compiler", "gcc", "clang", "install", code=4)
    assert "arena" not in res.stderr.lower()  # named before the slow bisection


def test_check_needs_the_compiled_runtime(model_file):
    res = run_cli("inspect", str(model_file), "--check")
    assert_one_line_error(res, "--runtime compiled", code=2)
