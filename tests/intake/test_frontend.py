"""The feature front end (issue 27): its definition, its fixed-point twin in Python and its C.

The C (firmware/frontend/tg_frontend.c with a generated configuration) is compiled for this host
under ASan/UBSan, for Cortex-M4 (QEMU mps2-an386) and for RV32 (QEMU virt), and must equal the
Python twin bit for bit, stage by stage; the twin's FFT is checked against numpy's float FFT and
its features against the float reference within stated bounds (independent references).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

import support.frontend_harness as fh
from support.compiled_harness import have_gcc, have_qemu, have_rv32, require
from tinygen.codegen.frontend_c import emit_config
from tinygen.intake import frontend as fe

SPECS = {"kws": fe.KWS_SPEC, "imu": fe.IMU_SPEC}
RQ = fe.requant_params(0.05, -20)


def edge_inputs(spec: fe.FrontendSpec, n_random: int, seed: int) -> np.ndarray:
    """Silence, full-scale square wave, a loud chirp, a quiet chirp, a single click, then random int16."""
    rng = np.random.default_rng(seed)
    n = spec.n_samples
    t = np.arange(n) / (spec.sample_rate * spec.channels)
    chirp = np.sin(2 * np.pi * (spec.sample_rate / 200 * t + spec.sample_rate / 5 * t * t))
    rows = [np.zeros(n), np.where((np.arange(n) // 7) % 2, 32767, -32768), np.round(32000 * chirp),
            np.round(40 * chirp), np.eye(1, n, n // 3)[0] * -32768]
    rand = rng.integers(-32768, 32768, size=(n_random, n))
    return np.concatenate([np.array(rows), rand]).astype(np.int16)


@pytest.fixture(scope="module", params=sorted(SPECS))
def host(request, tmp_path_factory):
    require(have_gcc(), "gcc")
    spec = SPECS[request.param]
    return fh.HostFrontend(spec, RQ, tmp_path_factory.mktemp(f"fe-host-{request.param}"))


# ---- the definition -------------------------------------------------------------------------

def test_spec_json_round_trip_and_manifest_shape():
    for spec in SPECS.values():
        text = json.dumps({"frontend": spec.to_json()})
        assert fe.spec_from_json(json.loads(text)) == spec
    assert fe.KWS_SPEC.feature_shape == (49, 40, 1)
    assert fe.IMU_SPEC.feature_shape == (7, 24)


@pytest.mark.parametrize("change, words", [
    ({"sample_rate": 1000}, "sample_rate 1000 Hz is outside"),
    ({"fft_size": 500}, "fft_size 500 must be a power of two"),
    ({"frame_length": 600}, "frame_length 600 must be from 2 to fft_size"),
    ({"bands": 200}, "mel band"),
    ({"upper_hz": 9000.0}, "mel range"),
    ({"kind": "video"}, "kind 'video'"),
    ({"window_samples": 100}, "window_samples 100"),
    ({"frame_step": "320"}, "'frame_step' must be an integer"),
    ({"lower_hz": float("nan")}, "'lower_hz' must be a finite number"),
    ({"colour": 1}, "unknown field 'colour'"),
])
def test_bad_definition_is_one_line(change, words):
    data = {**fe.KWS_SPEC.to_json(), **change}
    with pytest.raises(fe.FrontendError) as info:
        fe.spec_from_json(data, "--frontend 'x.json'")
    msg = str(info.value)
    assert words in msg and "\n" not in msg and msg.startswith("--frontend 'x.json'"), msg
    assert info.value.exit_code == 2


def test_bad_frontend_file_is_one_line(tmp_path):
    p = tmp_path / "fe.json"
    p.write_text("{not json")
    with pytest.raises(fe.FrontendError, match="is not valid JSON"):
        fe.load_spec(p)
    p.write_text(json.dumps({"frontend": fe.IMU_SPEC.to_json()}))
    assert fe.load_spec(p) == fe.IMU_SPEC


def test_bad_raw_samples_are_one_line():
    spec = fe.KWS_SPEC
    cases = [(np.zeros(15999), "each row must hold 16000 samples"),
             (np.full(16000, np.nan), "NaN or Inf"),
             (np.full(16000, np.inf), "NaN or Inf"),
             (np.full(16000, 0.5), "whole int16 values"),
             (np.full(16000, 40000), "-32768..32767")]
    for x, words in cases:
        with pytest.raises(fe.FrontendError, match=words) as info:
            fe.check_samples(x, spec)
        assert "\n" not in str(info.value)
    assert fe.check_samples(np.zeros((2, 16000)), spec).dtype == np.int16


def test_model_input_shape_must_match():
    fe.check_model_input(fe.KWS_SPEC, (1, 49, 40, 1))
    fe.check_model_input(fe.IMU_SPEC, (1, 7, 24))
    with pytest.raises(fe.FrontendError, match=r"features of shape \(49, 40, 1\).*\(49, 10, 1\)"):
        fe.check_model_input(fe.KWS_SPEC, (1, 49, 10, 1))


def test_emitted_config_is_deterministic():
    a = emit_config(fe.KWS_SPEC, RQ)
    assert a == emit_config(fe.KWS_SPEC, RQ)
    assert "#error" in a["tg_frontend_config.h"]


# ---- independent references for the twin ------------------------------------------------------

def test_fft_stage_matches_numpy_within_bound():
    """The fixed-point real FFT is numpy's rfft / N of the same (autoscaled) frame within 4 LSB."""
    spec = fe.KWS_SPEC
    x = edge_inputs(spec, 3, seed=5)
    taps: dict = {}
    fe.compute_int(x, spec, taps)
    scaled, _ = fe.autoscale(taps["window"])
    want = np.fft.rfft(scaled, n=spec.fft_size) / spec.fft_size
    err = np.maximum(np.abs(taps["fft"][..., 0] - want.real), np.abs(taps["fft"][..., 1] - want.imag))
    assert err.max() <= 4.0, err.max()


def test_features_match_float_reference_within_40_db():
    """Bands within 40 dB of their frame's loudest band are the float pipeline's within 1/2 log2 unit
    (1.5 dB; the amplitude-40 chirp's rounding sets that bound), within 20 dB within 1/16."""
    spec = fe.KWS_SPEC
    x = edge_inputs(spec, 2, seed=6)[1:]  # silence has no loudest band
    got = fe.compute_int(x, spec)[..., 0]
    want = fe.compute_float(x, spec)[..., 0]
    loudest = want.max(axis=-1, keepdims=True)
    for db, bound in ((40, 128), (20, 16)):
        near = (want > loudest - db / 3.0103 * 256) & (loudest > 0)  # frames with sound in them
        assert near.sum() > 1000
        assert np.abs(got - want)[near].max() <= bound, (db, np.abs(got - want)[near].max() / 256)


def test_requantize_matches_float_rounding():
    v = np.arange(-40000, 40000, 7, dtype=np.int32)
    for scale, zp in ((0.05, -20), (0.013, 5), (1.7, 0)):
        rq = fe.requant_params(scale, zp)
        want = np.clip(np.round(v / 256 / scale) + zp, -128, 127)
        assert np.abs(fe.requantize(v, rq).astype(int) - want).max() <= 1  # ties may round either way


# ---- the C: host (ASan/UBSan), Cortex-M4, RV32 ---------------------------------------------------

def test_host_c_is_the_twin_bit_for_bit(host):
    x = edge_inputs(host.spec, 12, seed=7)
    feat, q = host.features(x)
    want = fe.compute_int(x, host.spec)
    np.testing.assert_array_equal(feat, want)
    np.testing.assert_array_equal(q, fe.requantize(want, RQ))


def test_host_c_stages_are_the_twins(host):
    rng = np.random.default_rng(8)
    L = host.spec.frame_length
    lim = 32768 if host.spec.kind == "audio" else 65535  # imu frames are mean-removed: up to 2^16
    frames = np.concatenate([np.zeros((1, L)), np.full((1, L), lim - 1), np.full((1, L), -lim + 1),
                             rng.integers(-lim + 1, lim, size=(20, L)), rng.integers(-3, 4, size=(5, L))])
    got = host.taps(frames)
    want: dict = {}
    fe._spectrum_log(frames.astype(np.int64), host.spec, want)
    assert fe.first_divergent_stage(got, want) is None
    for name in fe.STAGES:
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)


@pytest.mark.parametrize("stage, old, new", [
    ("window", "x = (x32[i] * cfg->window[i] + (1 << 14)) >> 15;", "x = (x32[i] * cfg->window[i] + (1 << 13)) >> 15;"),
    ("fft", "z[i + half] = tg_fe_hsub(a, t);", "z[i + half] = tg_fe_hsub(a, t) ^ 1u;"),
    ("filterbank", "acc += (uint64_t)p[k] * w[k];", "acc += (uint64_t)p[k] * w[k] + (k == 1u);"),
    ("log", "return ip * (1 << TG_FE_LOG_FRAC_BITS) + cfg->log_lut[top];",
     "return ip * (1 << TG_FE_LOG_FRAC_BITS) + (cfg->log_lut[top] | 1);"),
])
def test_a_fault_in_one_c_stage_is_named(tmp_path, stage, old, new):
    """A front-end-only fault injected in the C shows up first in the stage it is in."""
    require(have_gcc(), "gcc")
    spec = fe.KWS_SPEC
    h = fh.HostFrontend(spec, RQ, tmp_path, fault=(old, new))
    frames = np.random.default_rng(9).integers(-32768, 32768, size=(4, spec.frame_length))
    want: dict = {}
    fe._spectrum_log(frames.astype(np.int64), spec, want)
    assert fe.first_divergent_stage(h.taps(frames), want) == stage


@pytest.mark.parametrize("name", sorted(SPECS))
def test_board_c_is_the_twin_on_m4_and_rv32(name, tmp_path):
    """Bit-exact features and int8 input on both emulated cores; the instruction counts printed."""
    spec = SPECS[name]
    x = edge_inputs(spec, 1, seed=10)[[1, 2, 5]] if name == "kws" else edge_inputs(spec, 3, seed=10)
    want = fe.compute_int(x, spec)
    require(have_qemu(), "arm-none-eabi-gcc and qemu-system-arm")
    feat, q, m4_instr, sizes = fh.run_m4(spec, RQ, x, tmp_path / "m4")
    np.testing.assert_array_equal(feat, want)
    np.testing.assert_array_equal(q, fe.requantize(want, RQ))
    require(have_rv32(), "riscv64-unknown-elf-gcc (picolibc) and qemu-system-riscv32")
    feat, q, rv_instr = fh.run_rv32(spec, RQ, x, tmp_path / "rv32")
    np.testing.assert_array_equal(feat, want)
    np.testing.assert_array_equal(q, fe.requantize(want, RQ))
    print(f"{name}: qemu-m4 {m4_instr:,.0f} instructions/inference, qemu-rv32 {rv_instr:,.0f}; "
          f"m4 flash {sizes['text'] + sizes['rodata']} B")
    assert sizes["data"] == 0 and sizes["bss"] == 0  # tables are const; the caller owns the scratch


# ---- the recipes ------------------------------------------------------------------------------------

def test_imu_recipe_builds_through_the_cli(tmp_path):
    """`tinygen build --recipe imu`: trained on the front end's features (7 x 24), int8 accuracy printed."""
    from support.compiled_harness import have_python_deps
    from conftest import run_cli

    require(have_python_deps(), "tensorflow and tflite_micro")
    out = tmp_path / "imu"
    res = run_cli("build", "--recipe", "imu", "--board", "qemu-m4", "--out", str(out))
    assert res.returncode == 0, res.stdout + res.stderr
    manifest = json.loads((out / "tinygen.json").read_text())
    assert "[1, 7, 24]" in res.stdout.replace("\n", " ") or "7, 24" in json.dumps(manifest)
    import re

    acc = re.search(r"int8 accuracy ([0-9.]+)%", res.stdout)
    assert acc and float(acc.group(1)) >= 90.0, res.stdout
