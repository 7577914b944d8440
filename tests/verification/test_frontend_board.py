"""The front end on the board, from raw samples (issue 27 item 2): `INFER_RAW` on QEMU.

The imu recipe's project carries its front end (manifest, lib/tinygen_model/src/tg_frontend*), the
firmware answers INFER_RAW with the model input its C front end made and the model's outputs; verify
compares the features with tinygen's fixed-point twin and the outputs with tflite_micro run on the
twin's features (both computed on the host, not by the firmware). A fault injected into the project's
copy of the front-end C must come back as a feature divergence, before any model op.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from support.compiled_harness import have_python_deps, have_qemu, require

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def imu_project(tmp_path_factory):
    require(have_python_deps(), "tensorflow and tflite_micro")
    require(have_qemu() and shutil.which("pio") is not None, "arm-none-eabi-gcc, qemu-system-arm and pio")
    import tinygen

    out = tmp_path_factory.mktemp("fe") / "imu-m4"
    project = tinygen.build(recipe="imu", board="qemu-m4", out=out, vectors=8)
    project.build_firmware()
    return project


def test_manifest_and_library_carry_the_front_end(imu_project):
    from tinygen.intake.frontend import IMU_SPEC, compute_int, requant_params, requantize

    man = json.loads((imu_project.path / "tinygen.json").read_text())
    assert man["frontend"] == IMU_SPEC.to_json()
    src = imu_project.path / "lib" / "tinygen_model" / "src"
    for f in ("tg_frontend.c", "tg_frontend.h", "tg_frontend_config.c", "tg_frontend_config.h"):
        assert (src / f).is_file() and f"lib/tinygen_model/src/{f}" in man["files"]
    assert "tinygen_model_predict_raw(const int16_t *samples, size_t n, float *out, size_t n_out)" in \
        (src / "tinygen_model.h").read_text()
    with np.load(imu_project.path / "vectors" / "reference.npz") as z:
        raw, feats, outs = z["raw_inputs"], z["raw_features"], z["raw_outputs"]
    assert raw.dtype == np.int16 and raw.shape == (8, IMU_SPEC.n_samples)
    # the stored features are the twin's, requantized with the model's input scale (not the firmware's)
    rq = requant_params(man["input"]["scale"], man["input"]["zero_point"])
    assert np.array_equal(feats.reshape(8, -1), requantize(compute_int(raw, IMU_SPEC), rq).reshape(8, -1))
    from tinygen.analysis.reference import run_reference

    ref = run_reference((imu_project.path / "model.tflite").read_bytes(), feats, "imu",
                        arena_bytes=man["arena"]["recommended_bytes"])
    assert np.array_equal(ref.reshape(8, -1), outs.reshape(8, -1))


def test_raw_samples_on_qemu_m4_are_bit_exact(imu_project):
    report = imu_project.verify(fresh_vectors=0, timeout=30.0)
    fe = report.metrics["frontend"]
    assert report.passed, fe
    assert fe["vectors"] == 8 and fe["features_exact"] and fe["differing_features"] == 0
    assert fe["outputs_max_abs_diff_lsb"] == 0
    # the front end timed apart from the model (imu: about 0.21 M instructions, the model ~15 k)
    assert 50_000 < fe["frontend_instructions_per_inference"] < 1_000_000, fe
    assert 1_000 < fe["model_instructions_per_inference"] < fe["frontend_instructions_per_inference"], fe
    assert "## Front end" in (imu_project.path / "reports" / "verify.md").read_text()


def test_a_front_end_fault_is_a_feature_divergence(imu_project, tmp_path):
    """The project's copy of tg_frontend.c with every log energy one log2 unit high: verify fails naming the
    front end's features (a band energy, the spectral stages), and --layers says so before any model op."""
    from tinygen.common.errors import VerificationFailed

    fault = tmp_path / "faulty"
    shutil.copytree(imu_project.path, fault, ignore=shutil.ignore_patterns(".pio", "reports"))
    c = fault / "lib" / "tinygen_model" / "src" / "tg_frontend.c"
    old = "return ip * (1 << TG_FE_LOG_FRAC_BITS) + cfg->log_lut[top];"
    text = c.read_text()
    assert text.count(old) == 1
    c.write_text(text.replace(old, "return (ip + 1) * (1 << TG_FE_LOG_FRAC_BITS) + cfg->log_lut[top];"))
    import tinygen

    project = tinygen.Project.load(fault)
    project.build_firmware()
    report = project.verify(fresh_vectors=0, timeout=30.0, layers=True)
    fe = report.metrics["frontend"]
    assert not report.passed and not fe["features_exact"]
    d = fe["divergence"]
    assert d["stage"] == "log" and "band" in d["feature"], d
    assert report.layers["frontend_divergence"] == d
    from tinygen.verification.layers import summary_lines

    line = summary_lines(report.layers)[0]
    assert f"features differ from the host's at element {d['element']}" in line and "before any model op" in line
    # the model itself still computes exactly on what the faulty front end gave it
    assert fe["model_exact_on_board_features"] is True
    with pytest.raises(VerificationFailed, match="front end's features differ"):
        report.raise_if_failed()
    # the model path (INFER on the stored features) is untouched by the fault
    assert report.metrics["max_abs_diff_lsb"] == 0


def test_frontend_option_is_checked_against_the_model(imu_project, tmp_path):
    """`--frontend FILE.json` for a user's model: a front end whose features are not the model's input is one
    line (exit 2) before anything is written; a recipe brings its own."""
    from conftest import run_cli
    from tinygen.intake.frontend import KWS_SPEC

    fe_file = tmp_path / "kws.json"
    fe_file.write_text(json.dumps({"frontend": KWS_SPEC.to_json()}))
    out = tmp_path / "p"
    res = run_cli("build", "--model", str(imu_project.path / "model.tflite"), "--frontend", str(fe_file),
                  "--board", "qemu-m4", "--out", str(out))
    assert res.returncode == 2, res.stdout + res.stderr
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "(49, 40, 1)" in errors[0] and "(7, 24)" in errors[0], res.stderr
    assert "Traceback" not in res.stderr and not out.exists()
    res = run_cli("build", "--recipe", "imu", "--frontend", str(fe_file), "--board", "qemu-m4", "--out", str(out))
    assert res.returncode == 2 and "--frontend goes with --model" in res.stderr and not out.exists()
