"""`tinygen inspect` handed the refusal check a dict where the typed Board had replaced it (52e510f), so a
model with an op a runtime lacks ended in "internal error: AttributeError" (exit 70) instead of the
one-line refusal.  Smallest input: one LOG_SOFTMAX (the compiled runtime has no kernel; TFLM has), and
the custom-op case of tests/tflite/test_model_validation.py for the TFLM side.  Fails before the fix:
exit 70."""

from __future__ import annotations

import support.compiled_harness as H
from conftest import run_cli

CASE = {"kind": "log_softmax", "seed": 5, "shape": [6], "id": "log_softmax", "rep": (0.0, 1.0), "w_std": 0.5}
H.register("op:log_softmax", "convert_case", CASE)


def test_inspect_compiled_names_the_op_and_offers_tflm(tmp_path):
    H.require(H.have_python_deps(), "tensorflow / tflite_micro (Python packages)")
    model = tmp_path / "m.tflite"
    model.write_bytes(H.result("op:log_softmax"))
    res = run_cli("inspect", str(model), "--runtime", "compiled")
    assert res.returncode == 3, res.stderr
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]  # progress lines come before
    assert len(errors) == 1 and "Traceback" not in res.stderr
    assert "LOG_SOFTMAX" in errors[0] and "or use --runtime tflm (it has this op)" in errors[0]
