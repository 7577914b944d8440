"""Raw samples in, end to end through the real CLI (issue 27 items 3-5): both front-end recipes built with
`tinygen build --recipe kws|imu` for qemu-m4 and qemu-rv32 and checked with `tinygen verify` (raw int16
samples over the protocol, the board's front end + model, features compared first, then outputs);
`--layers` naming the front-end stage a fault injected into the generated C broke (FE_TAPS); the front
end's flash, RAM and instructions beside the model's in the build summary, verify, `profile` and
`bench`; the Nano 33 BLE fit counting the front end; and the bad input that must be one line.

Projects are trained once per recipe (1 epoch, the default seed; the second board reuses the session's
build cache) with 3 reference vectors, so the whole file costs about a minute and a half.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import numpy as np
import pytest

from conftest import REPO, require, run_cli
from support.compiled_harness import have_python_deps, have_qemu, have_rv32

pytestmark = pytest.mark.slow

VECTORS = "3"


def _needs(board: str) -> None:
    require(have_python_deps(), "tensorflow and tflite_micro")
    require(shutil.which("pio") is not None, "pio")
    require(have_qemu() if board == "qemu-m4" else have_rv32(), f"the {board} tool chain and QEMU")


@pytest.fixture(scope="session")
def raw_projects(tmp_path_factory):
    """{(recipe, board): (project dir, build stdout)}, built lazily through the CLI."""
    root = tmp_path_factory.mktemp("raw-e2e")
    built: dict = {}

    def get(recipe: str, board: str, *extra: str):
        key = (recipe, board) + extra
        if key not in built:
            _needs(board if board.startswith("qemu") else "qemu-m4")
            out = root / "-".join(key).replace("-", "_")
            res = run_cli("build", "--recipe", recipe, "--board", board, "--epochs", "1", "--vectors", VECTORS,
                          "--out", str(out), *extra)
            assert res.returncode == 0, res.stdout + res.stderr
            built[key] = (out, res.stdout)
        return built[key]
    return get


def _verify(project, *args: str):
    res = run_cli("verify", "--project", str(project), "--vectors", "0", *args)
    data = json.loads((project / "reports" / "verify.json").read_text())
    return res, data


# ---- 1. both recipes, both cores, through the CLI ------------------------------------------------------

@pytest.mark.parametrize("recipe", ["kws", "imu"])
@pytest.mark.parametrize("board", ["qemu-m4", "qemu-rv32"])
def test_recipe_verifies_from_raw_samples(raw_projects, recipe, board):
    project, build_out = raw_projects(recipe, board)
    res, data = _verify(project)
    assert res.returncode == 0, res.stdout + res.stderr
    fe = data["metrics"]["frontend"]
    assert fe["kind"] == ("audio" if recipe == "kws" else "imu")
    assert fe["vectors"] == int(VECTORS) and fe["features_exact"] and fe["differing_features"] == 0, fe
    assert fe["outputs_max_abs_diff_lsb"] == 0 and fe["passed"]
    # measured in the same INFER_RAW runs; the model's share agrees with the plain INFER runs' (same model,
    # other inputs: within 25 %), and the front end costs something
    f, mo = fe["frontend_instructions_per_inference"], fe["model_instructions_per_inference"]
    plain = data["metrics"]["instructions_per_inference"]["median"]
    assert f > 10_000 and 0.75 * plain <= mo <= 1.25 * plain, (f, mo, plain)
    # the console and verify.md show the front end beside the model, with the same figures
    row = re.search(r"front end \+ model \(raw samples in, median\)\s*│\s*([\d,]+) instructions = front end "
                    r"([\d,]+) \(\d+ % of the model's\) \+ model ([\d,]+)", res.stdout)
    assert row, res.stdout
    total, f_row, m_row = (int(g.replace(",", "")) for g in row.groups())
    assert (f_row, m_row) == (round(f), round(mo)) and total == round(f + mo)
    md = (project / "reports" / "verify.md").read_text()
    assert "front end + model (raw samples in, median)" in md and "## Front end" in md


def test_build_summary_and_manifest_carry_the_front_end_budget(raw_projects):
    """The front end's flash and RAM are parts of the build's budget (console, tinygen.json, README); its
    tables are what the compiler puts in .rodata, and its code estimate bounds what the compiler emits."""
    project, out = raw_projects("kws", "qemu-m4")
    man = json.loads((project / "tinygen.json").read_text())
    b = man["budget"]
    fe_parts = [p for p in b["parts"] if p.get("frontend")]
    assert [p["part"] for p in fe_parts] == ["front end tables; scratch + features", "front end code",
                                             "raw-sample receive buffer (INFER_RAW)"]
    assert b["frontend"] == {"flash_bytes": sum(p["flash_bytes"] for p in fe_parts),
                             "ram_bytes": sum(p["ram_bytes"] for p in fe_parts)}
    assert b["flash_bytes"] == sum(p["flash_bytes"] for p in b["parts"])
    assert b["ram_bytes"] == sum(p["ram_bytes"] for p in b["parts"])
    # RAM: 49 x 40 int32 features + the scratch (512 + 257 + 480 words), and 32,000 B of samples beyond the
    # model's 1,960 B input in the validation firmware's receive buffer
    tables, code, rx = fe_parts
    assert tables["ram_bytes"] == 4 * (49 * 40 + 512 + 257 + 480)
    assert rx["ram_bytes"] == 2 * 16000 - 49 * 40
    row = next(ln for ln in out.splitlines() if "│ front end " in ln)
    assert f"flash {b['frontend']['flash_bytes']:,} B, RAM {b['frontend']['ram_bytes']:,} B" in row, row
    assert "of which the front end" in (project / "README.md").read_text()
    # independent: the compiler's view of the same C
    src = project / "lib" / "tinygen_model" / "src"
    gcc = shutil.which("arm-none-eabi-gcc")
    if gcc is None:
        pytest.skip("arm-none-eabi-gcc")
    sizes = {}
    for name in ("tg_frontend_config.c", "tg_frontend.c"):
        obj = project / f"{name}.o"
        subprocess.run([gcc, "-mcpu=cortex-m4", "-mthumb", "-Os", "-c", str(src / name), "-I", str(src), "-o",
                        str(obj)], check=True, capture_output=True)
        text = subprocess.run([gcc.replace("gcc", "size"), "-A", str(obj)], check=True, capture_output=True,
                              text=True).stdout
        sizes[name] = {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\.\S+)\s+(\d+)", text, re.M)}
    rodata = sum(v for k, v in sizes["tg_frontend_config.c"].items() if k.startswith(".rodata"))
    assert rodata <= tables["flash_bytes"] <= rodata + 96, (rodata, tables)
    assert sizes["tg_frontend.c"][".text"] <= code["flash_bytes"], sizes["tg_frontend.c"]


# ---- 2. --layers names the front-end stage ---------------------------------------------------------------

def _patch_table(config_c, table: str, index: int, value: int) -> int:
    """Set element ``index`` of ``static const ... tg_fe_<table>[N] = {...}`` in the generated C; the old value."""
    text = config_c.read_text()
    m = re.search(rf"(static const \w+ tg_fe_{table}\[\d+\] = \{{)([^}}]*)(\}};)", text)
    vals = [int(v) for v in re.findall(r"-?\d+", m.group(2))]
    old, vals[index] = vals[index], value
    body = "\n    " + ",\n    ".join(", ".join(str(v) for v in vals[i:i + 16]) for i in range(0, len(vals), 16)) + "\n"
    config_c.write_text(text[:m.start(2)] + body + text[m.end(2):])
    return old


def _faulty_copy(project, tmp_path, table: str, index: int, value: int):
    fault = tmp_path / "faulty"
    shutil.copytree(project, fault, ignore=shutil.ignore_patterns("reports"))  # .pio kept: an incremental build
    old = _patch_table(fault / "lib" / "tinygen_model" / "src" / "tg_frontend_config.c", table, index, value)
    assert old != value
    return fault, old


def test_layers_names_the_window_on_qemu_m4(raw_projects, tmp_path):
    """One Q15 window constant changed in the imu project's generated tables: the board's features differ,
    and --layers names the window (the 26th coefficient), with nothing before it, before any model op."""
    project, _ = raw_projects("imu", "qemu-m4")
    fault, old = _faulty_copy(project, tmp_path, "window", 25, 16000)
    res, data = _verify(fault, "--layers")
    assert res.returncode == 5, res.stdout + res.stderr
    d = data["metrics"]["frontend"]["divergence"]
    assert d["stage"] == "window" and d["stages"]["matched"] == [], d
    fd = d["stages"]["first_difference"]
    assert fd["index"] == 25 and fd["differing"] == 1, fd
    # independent of the twin: the board windowed that sample with the patched coefficient, the host with
    # the original one: (x * w + 2^14) >> 15 for both, from the same x
    assert fd["host"] != fd["board"] and (fd["host"] == 0 or np.sign(fd["host"]) == np.sign(fd["board"]))
    assert abs(fd["board"] * old - fd["host"] * 16000) <= old + 16000  # both are x*w/2^15, rounded
    assert data["layers"]["frontend_divergence"] == d and data["layers"]["ops_compared"] == 0
    err = [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]
    assert len(err) == 1 and "the window, the first stage that differs" in err[0] and \
        "before any model op" in err[0], res.stderr


def test_layers_names_the_filter_bank_on_qemu_rv32(raw_projects, tmp_path):
    """One mel weight (Q12) of the kws project's filter bank zeroed: window, shift and FFT match on the board
    (RV32), the filter bank is named, at the band that weight belongs to."""
    project, _ = raw_projects("kws", "qemu-rv32")
    fault, old = _faulty_copy(project, tmp_path, "weights", 1, 0)
    res, data = _verify(fault, "--layers")
    assert res.returncode == 5, res.stdout + res.stderr
    d = data["metrics"]["frontend"]["divergence"]
    assert d["stage"] == "filterbank" and d["stages"]["matched"] == ["window", "shift", "fft"], d
    assert d["stages"]["first_difference"]["index"] == 0  # weights[1] is band 0's (band_offset 0, length 3)
    assert "the filter bank, the first stage that differs" in res.stderr


# ---- 3. profile and bench show the front end -----------------------------------------------------------

def test_profile_shows_the_front_end_beside_the_ops(raw_projects):
    project, _ = raw_projects("imu", "qemu-m4")
    res = run_cli("profile", "--project", str(project))
    assert res.returncode == 0, res.stdout + res.stderr
    prof = json.loads((project / "reports" / "verify.json").read_text())["profile"]
    assert prof["frontend"] > 10_000 and prof["frontend_plus_model"] > prof["frontend"]
    # the model's share measured with INFER_RAW is about the per-op total of the PROFILE run (other inputs)
    model = prof["frontend_plus_model"] - prof["frontend"]
    assert 0.75 * prof["total"] <= model <= 1.25 * prof["total"], prof
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith(("front end", "total"))]
    assert [ln.split()[0] for ln in lines] == ["total", "front", "front"], res.stdout
    assert lines[1].split()[-1] == f"{prof['frontend']:,.0f}"
    assert lines[2].split()[-1] == f"{prof['frontend_plus_model']:,.0f}"


def test_bench_shows_the_front_end(raw_projects, tmp_path):
    """`tinygen bench MODEL --frontend FILE.json`: the front end timed beside the model on the same runs."""
    project, _ = raw_projects("imu", "qemu-m4")
    fe_file = tmp_path / "imu.json"
    fe_file.write_text(json.dumps({"frontend": json.loads((project / "tinygen.json").read_text())["frontend"]}))
    res = run_cli("bench", str(project / "model.tflite"), "--frontend", str(fe_file), "--boards", "qemu-m4",
                  "--vectors", "1", "--out", str(tmp_path / "b"))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "front end (raw samples in), per inference" in res.stdout
    fe = json.loads((tmp_path / "b" / "qemu-m4-compiled" / "reports" / "verify.json").read_text())["metrics"][
        "frontend"]
    assert fe["features_exact"] and fe["frontend_instructions_per_inference"] > 10_000
    line = next(ln for ln in res.stdout.splitlines() if ln.startswith("│ qemu-m4") and "compiled" in ln
                and ln.count("│") == 8)
    cells = [c.strip() for c in line.strip("│").split("│")]
    f, mo, total = (int(c.replace(",", "")) for c in cells[2:5])
    assert f == round(fe["frontend_instructions_per_inference"]) and total == f + mo and cells[5] != "0"


# ---- 4. the Nano 33 BLE fit counts the front end ---------------------------------------------------------

def test_nano33ble_kws_fit_counts_the_front_end(raw_projects):
    """`build --board nano33ble --recipe kws`: the fit check's budget is the model's plus the front end's, and a
    board with RAM between the two refuses what the model alone would have fitted."""
    import dataclasses

    from tinygen.codegen.compiled import compile_model
    from tinygen.codegen.plan import budget, check_fits
    from tinygen.common.boards import get_board
    from tinygen.common.errors import DoesNotFit
    from tinygen.intake.frontend import for_model
    from tinygen.tflite.model import parse_model

    project, out = raw_projects("kws", "nano33ble", "--runtime", "compiled")
    man = json.loads((project / "tinygen.json").read_text())
    b = man["budget"]
    assert b["fits"] and "│ front end " in out
    m = parse_model((project / "model.tflite").read_bytes())
    c, t = compile_model(m), m.input_tensor()
    fe = for_model(man["frontend"], t.shape, t.scale[0], t.zero_point[0])
    board = get_board("nano33ble")
    full = budget(board, "compiled", m, None, c.peak_bytes, c.constant_bytes, fe)
    bare = budget(board, "compiled", m, None, c.peak_bytes, c.constant_bytes)
    assert (full["flash_bytes"], full["ram_bytes"]) == (b["flash_bytes"], b["ram_bytes"])  # what the build checked
    assert full["ram_bytes"] - bare["ram_bytes"] == b["frontend"]["ram_bytes"] > 30_000  # the 32,000 B of samples
    assert full["flash_bytes"] - bare["flash_bytes"] == b["frontend"]["flash_bytes"] > 3_000
    small = dataclasses.replace(board, ram_bytes=(full["ram_bytes"] + bare["ram_bytes"]) // 2)
    assert budget(small, "compiled", m, None, c.peak_bytes, c.constant_bytes)["fits"]
    tight = budget(small, "compiled", m, None, c.peak_bytes, c.constant_bytes, fe)
    with pytest.raises(DoesNotFit, match=r"RAM [\d,]+ B > [\d,]+ B"):
        check_fits(tight, small, "compiled")


def test_nano33ble_kws_fits_with_the_tflm_runtime_too(raw_projects):
    """`build --board nano33ble --recipe kws --runtime tflm` (the board's default runtime): the project carries
    the front end beside the TFLM glue, and its fit check's budget is the TFLM model's (flatbuffer, the arena
    tflite_micro measures, the library's kernels) plus the front end's; no board compile (mbed-os)."""
    from tinygen.analysis.reference import measure_arena
    from tinygen.codegen.plan import budget
    from tinygen.common.boards import get_board
    from tinygen.intake.frontend import for_model
    from tinygen.tflite.model import parse_model

    project, out = raw_projects("kws", "nano33ble", "--runtime", "tflm")
    man = json.loads((project / "tinygen.json").read_text())
    b = man["budget"]
    assert man["runtime"] == "tflm" and b["fits"] and "│ front end " in out
    src = project / "lib" / "tinygen_model" / "src"
    for name in ("tg_frontend.c", "tg_frontend.h", "tg_frontend_config.c", "tg_frontend_config.h"):
        assert (src / name).is_file(), name
    header = next(p for p in project.rglob("tinygen_model.h"))
    assert "tinygen_model_predict_raw(const int16_t *samples" in header.read_text()
    ini = (project / "platformio.ini").read_text()
    assert "board = nano33ble" in ini and "TF_LITE_STRIP_ERROR_STRINGS" in ini  # the TFLM release build
    raw = (project / "model.tflite").read_bytes()
    m = parse_model(raw)
    t = m.input_tensor()
    fe = for_model(man["frontend"], t.shape, t.scale[0], t.zero_point[0])
    board = get_board("nano33ble")
    arena = measure_arena(raw, m, "kws")  # tflite_micro's own need, as the build measured it
    full = budget(board, "tflm", m, arena, None, None, fe)
    bare = budget(board, "tflm", m, arena, None, None)
    assert (full["flash_bytes"], full["ram_bytes"]) == (b["flash_bytes"], b["ram_bytes"])  # what the build checked
    parts = {p["part"]: p for p in b["parts"]}
    assert parts["model flatbuffer"]["flash_bytes"] == len(raw)
    # the front end's RAM from its definition alone: 49 x 40 int32 features + 512 + 257 + 480 words of
    # scratch, and 2 x 16,000 B of samples beyond the model's 1,960 B input
    fe_ram = 4 * (49 * 40 + 512 + 257 + 480) + 2 * 16000 - 49 * 40
    assert full["ram_bytes"] - bare["ram_bytes"] == b["frontend"]["ram_bytes"] == fe_ram
    assert full["flash_bytes"] - bare["flash_bytes"] == b["frontend"]["flash_bytes"] > 3_000
    assert b["ram_bytes"] <= board.ram_bytes and b["flash_bytes"] <= board.flash_bytes


# ---- 5. bad input: one line, exit 2, nothing written -------------------------------------------------------

def _one_line_refusal(res, out, *words):
    assert res.returncode == 2, res.stdout + res.stderr
    errors = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(errors) == 1 and errors[0].startswith("error:") and "Traceback" not in res.stderr, res.stderr
    for w in words:
        assert w in errors[0], errors[0]
    assert not out.exists()


@pytest.mark.parametrize("change, words", [
    ({"sample_rate": 5}, ("sample_rate 5 Hz is outside",)),          # a rate the imu stage cannot handle
    ({"frame_length": 100}, ("frame_length 100 must be from 2 to fft_size",)),  # a frame over the FFT
])
def test_a_front_end_it_cannot_run_is_refused(raw_projects, tmp_path, change, words):
    project, _ = raw_projects("imu", "qemu-m4")
    spec = {**json.loads((project / "tinygen.json").read_text())["frontend"], **change}
    fe_file = tmp_path / "fe.json"
    fe_file.write_text(json.dumps({"frontend": spec}))
    out = tmp_path / "p"
    res = run_cli("build", "--model", str(project / "model.tflite"), "--frontend", str(fe_file), "--board",
                  "qemu-m4", "--out", str(out))
    _one_line_refusal(res, out, *words)


@pytest.fixture
def imu_user_model(raw_projects, tmp_path):
    """The imu project's int8 model as a user's, with its front end as --frontend and its features as x."""
    project, _ = raw_projects("imu", "qemu-m4")
    fe_file = tmp_path / "imu.json"
    fe_file.write_text(json.dumps({"frontend": json.loads((project / "tinygen.json").read_text())["frontend"]}))
    with np.load(project / "vectors" / "reference.npz") as z:
        raw = z["raw_inputs"]
    return project / "model.tflite", fe_file, raw


@pytest.mark.parametrize("bad, words", [
    ("short", ("'raw': each row must hold 600 samples", "not 599")),
    ("nan", ("'raw' holds NaN or Inf samples",)),
])
def test_raw_data_of_the_wrong_length_or_not_finite_is_refused(imu_user_model, tmp_path, bad, words):
    model, fe_file, raw = imu_user_model
    x = raw.astype(np.float32)
    x = {"short": x[:, :-1], "nan": np.where(np.arange(x.shape[1]) == 7, np.nan, x)}[bad]
    data = tmp_path / "d.npz"
    np.savez(data, x=np.zeros((2, 7, 24), np.float32), raw=x)
    out = tmp_path / "p"
    res = run_cli("build", "--model", str(model), "--frontend", str(fe_file), "--data", str(data), "--board",
                  "qemu-m4", "--out", str(out))
    _one_line_refusal(res, out, *words)


def test_raw_data_becomes_the_raw_verification_vectors(imu_user_model, tmp_path):
    """Good raw samples in --data are what the project verifies the board's front end with (INFER_RAW)."""
    from tinygen.intake.frontend import compute_int, requant_params, requantize, spec_from_json

    model, fe_file, raw = imu_user_model
    mine = np.roll(raw, 5, axis=1)[:2]
    data = tmp_path / "d.npz"
    np.savez(data, x=np.zeros((2, 7, 24), np.float32), raw=mine)
    out = tmp_path / "p"
    res = run_cli("build", "--model", str(model), "--frontend", str(fe_file), "--data", str(data), "--board",
                  "qemu-m4", "--out", str(out), "--vectors", "2")
    assert res.returncode == 0, res.stdout + res.stderr
    man = json.loads((out / "tinygen.json").read_text())
    with np.load(out / "vectors" / "reference.npz") as z:
        assert np.array_equal(z["raw_inputs"], mine)
        spec = spec_from_json(man["frontend"])
        rq = requant_params(man["input"]["scale"], man["input"]["zero_point"])
        assert np.array_equal(z["raw_features"].reshape(2, -1), requantize(compute_int(mine, spec), rq).reshape(2, -1))
