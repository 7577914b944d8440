"""`tinygen inspect MODEL --frontend FILE.json` (issue 27 item 4): the front end's flash and RAM beside the
model's, and in every board's fit, as a build counts them (tinygen.codegen.frontend_budget).

A hand-written int8 model on the kws features (no training).  Independent reference: the front end's RAM from
its definition alone (docs/frontend.md: 49 x 40 int32 features + 512 + 257 + 480 words of scratch, and
2 x 16,000 B of samples beyond the model's 1,960 B input), and the same model inspected without it.
"""

from __future__ import annotations

import json

import pytest

import tinygen
from conftest import assert_one_line_error, run_cli
from support.frontend_models import relu_on_features
from tinygen.intake.frontend import IMU_SPEC, KWS_SPEC

KWS_FRONTEND_RAM = 4 * (49 * 40 + 512 + 257 + 480) + (2 * 16000 - 49 * 40)


@pytest.fixture(scope="module")
def kws_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("inspect-fe")
    (root / "kws.tflite").write_bytes(relu_on_features((49, 40, 1)))
    # a project's manifest names its front end under "frontend" beside everything else
    (root / "tinygen.json").write_text(json.dumps({"name": "kws", "frontend": KWS_SPEC.to_json()}))
    (root / "imu.json").write_text(json.dumps(IMU_SPEC.to_json()))
    return root


def _inspect_json(*args: str) -> dict:
    res = run_cli("inspect", *args, "--json")
    assert res.returncode == 0, res.stdout + res.stderr
    return json.loads(res.stdout)


def test_inspect_counts_the_front_end_in_every_boards_fit(kws_files):
    model = str(kws_files / "kws.tflite")
    bare = _inspect_json(model)
    full = _inspect_json(model, "--frontend", str(kws_files / "tinygen.json"))
    assert "frontend" not in bare
    fe = full["frontend"]
    assert fe["definition"] == KWS_SPEC.to_json()
    assert fe["ram_bytes"] == KWS_FRONTEND_RAM
    assert fe["flash_bytes"] == sum(p["flash_bytes"] for p in fe["parts"]) > 3072
    assert [p["part"] for p in fe["parts"]] == ["front end tables; scratch + features", "front end code",
                                                "raw-sample receive buffer (INFER_RAW)"]
    assert full["fits"].keys() == bare["fits"].keys()
    for bid, per in full["fits"].items():
        assert per.keys() == bare["fits"][bid].keys(), bid
        for rt, b in per.items():
            was = bare["fits"][bid][rt]
            assert b["flash_bytes"] - was["flash_bytes"] == fe["flash_bytes"], (bid, rt)
            assert b["ram_bytes"] - was["ram_bytes"] == KWS_FRONTEND_RAM, (bid, rt)
            assert b["fits"] == (b["flash_bytes"] <= b["flash_budget"] and b["ram_bytes"] <= b["ram_budget"])
    # the Nano 33 BLE takes model + front end under both runtimes; the Cortex-M0's 16 KiB takes the model alone
    assert all(b["fits"] for b in full["fits"]["nano33ble"].values())
    assert bare["fits"]["qemu-m0"]["compiled"]["fits"] and not full["fits"]["qemu-m0"]["compiled"]["fits"]


def test_inspect_prints_the_front_end_and_the_api_returns_it(kws_files):
    model = kws_files / "kws.tflite"
    res = run_cli("inspect", str(model), "--frontend", str(kws_files / "tinygen.json"))
    assert res.returncode == 0, res.stdout + res.stderr
    text = " ".join(res.stdout.split())
    info = tinygen.inspect(model, frontend=KWS_SPEC.to_json())
    fe = info.frontend_budget
    assert fe["ram_bytes"] == KWS_FRONTEND_RAM
    assert (f"front end (audio, raw samples in): flash {fe['flash_bytes']:,} B, RAM {fe['ram_bytes']:,} B"
            in text), text
    assert "model + front end" in text
    nano = info.fits["nano33ble"]["compiled"]
    assert nano["frontend"] == fe
    row = next(ln for ln in res.stdout.splitlines() if "nano33ble" in ln and "compiled" in ln)
    assert f"{nano['ram_bytes']:,} / 262,144" in row, row


def test_a_front_end_that_does_not_feed_the_model_is_one_line(kws_files, tmp_path):
    res = run_cli("inspect", str(kws_files / "kws.tflite"), "--frontend", str(kws_files / "imu.json"))
    assert_one_line_error(res, "gives features of shape (7, 24), but the model's input is (49, 40, 1)", code=2)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**KWS_SPEC.to_json(), "fft_size": 500}))
    res = run_cli("inspect", str(kws_files / "kws.tflite"), "--frontend", str(bad))
    assert_one_line_error(res, "fft_size", code=2)
