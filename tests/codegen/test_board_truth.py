"""Board truth: what a real-board user builds, checked against the real pinned parts.

Always (no trees needed): the registry pins are exact, the glue includes the header of the pinned library
version, the board-file validator refuses ranges and mismatched headers, `tinygen flash` on a real board
without the platform packages and without the registry fails in seconds with one line, and the build's
"Next:" hint works from where the user stands.

With the trees (plain skip without them):
    TINYGEN_ARDUINO_MBED_DIR  arduino/ArduinoCore-mbed at the tag the pinned nordicnrf52 brings (4.5.x)
    TINYGEN_ARDUINO_API_DIR   arduino/ArduinoCore-API (its api/ goes to cores/arduino/api, as in the
                              release package), unless the core dir already has cores/arduino/api
    TINYGEN_TFLM_LIB_DIR      spaziochirale/Chirale_TensorFlowLite at the pinned version
every source file of generated nano33ble projects (tflm and compiled; sine, digits and a user Keras
model) is compiled with the core's own flags composed as PlatformIO's builder does (tests/support/board_kit.py),
tinygen's files with -Wall -Wextra -Werror; the whole firmware is linked except mbed-os (not in the
core's source repository) and measured, and the measured budget figures in boards/nano33ble.json must
agree with the measurement. Set TINYGEN_BOARD_TRUTH_REPORT=FILE to get the figures as JSON (all TFLM
ops with TINYGEN_BOARD_TRUTH_ALL_OPS=1), TINYGEN_BOARD_TRUTH_CACHE=DIR to keep the compiled core and
library between runs (they take minutes to compile: the core's include list has ~300 directories).
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

import support.board_kit as kit
from conftest import REPO, build_ok, require_tool, run_cli

from tinygen.common.boards import TFLM_LIBRARY_HEADERS, all_boards, parse, validate
from tinygen.common.errors import TinygenError

REAL_BOARDS = [b for b in all_boards().values() if not b.emulated]


# ------------------------------------------------------------------ pins (always)

@pytest.mark.parametrize("board", REAL_BOARDS, ids=lambda b: b.id)
def test_registry_pins_are_exact(board):
    name, _, version = board.platformio.platform.partition("@")
    assert name and kit_exact(version), board.platformio.platform
    tflm = board.tflm
    assert kit_exact(tflm.version)
    assert tflm.lib_deps == (f"{tflm.library}@{tflm.version}",)
    assert all(kit_exact(dep.rpartition("@")[2]) for dep in tflm.lib_deps)


def kit_exact(version: str) -> bool:
    parts = version.split(".")
    return len(parts) == 3 and all(p.isdigit() for p in parts)


@pytest.mark.parametrize("board", REAL_BOARDS, ids=lambda b: b.id)
def test_pinned_header_is_the_one_that_version_ships(board):
    tflm = board.tflm
    assert tflm.header == TFLM_LIBRARY_HEADERS[tflm.library][tflm.version]
    tree = os.environ.get("TINYGEN_TFLM_LIB_DIR")
    if tree:  # the real library: its version and its header
        props = dict(ln.split("=", 1) for ln in (Path(tree) / "library.properties").read_text().splitlines()
                     if "=" in ln)
        assert props["name"] == tflm.library.split("/", 1)[1]
        if props["version"] == tflm.version:
            assert (Path(tree) / "src" / tflm.header).is_file()
        assert (Path(tree) / "src" / TFLM_LIBRARY_HEADERS[tflm.library][props["version"]]).is_file()


def test_the_glue_includes_the_pinned_header(sine_project):
    """The shipping esp32 project: platformio.ini pins exactly, the glue includes that version's header."""
    from platformio.project.config import ProjectConfig

    board = all_boards()["esp32"]
    cfg = ProjectConfig(str(sine_project / "platformio.ini"), parse_extra=False)
    assert cfg.get("env:esp32", "platform") == board.platformio.platform
    assert cfg.get("env:esp32", "lib_deps") == [f"{board.tflm.library}@{board.tflm.version}"]
    glue = (sine_project / "lib/tinygen_model/src" / "tg_runtime_tflm.cc").read_text()
    header = TFLM_LIBRARY_HEADERS[board.tflm.library][board.tflm.version]
    assert f"#include <{header}>" in glue


@pytest.mark.parametrize("edit,message", [
    (lambda b: b["platformio"].update(platform="nordicnrf52@^10.11.0"), "exact version"),
    (lambda b: b["platformio"].update(platform="nordicnrf52"), "exact version"),
    (lambda b: b["tflm"].update(version="~2.0.0"), "exact"),
    (lambda b: b["tflm"].update(version="1.1.1"), "ships TensorFlowLite.h"),
    (lambda b: b["tflm"].update(header="TensorFlowLite.h"), "ships Chirale_TensorFlowLite.h"),
    (lambda b: b["tflm"].update(version="9.9.9"), "not a verified"),
])
def test_board_validation_refuses_ranges_and_wrong_headers(edit, message):
    board = all_boards()["nano33ble"].as_json()
    board["tflm"].pop("lib_deps")
    edit(board)
    with pytest.raises(TinygenError, match=message):
        validate(board, "nano33ble.json")


@pytest.mark.parametrize("edit,message", [
    (lambda b: b["serial"].update(foo=1), "unknown key 'serial.foo' (known: baud, hwids, open_delay_s, native_usb; "),
    (lambda b: b.update(flash_size=1), "unknown key 'flash_size' (known: id, name, "),
    (lambda b: b["serial"].update(baud="115200"), "serial.baud must be an integer"),
    (lambda b: b.update(clock_hz=True), "clock_hz must be an integer"),  # JSON true is no number
    (lambda b: b["tflm"].update(needs_tree="no"), "tflm.needs_tree must be true or false"),
    (lambda b: b["platformio"].update(framework=3), "platformio.framework must be a string or null"),
    (lambda b: b["serial"].update(open_delay_s=[1]), "serial.open_delay_s must be a number"),
])
def test_board_file_refuses_unknown_keys_and_wrong_json_types_in_one_line(edit, message):
    """A misspelt key would be silently ignored and a wrong type fail later somewhere else: the board
    file is refused when read, in one line naming the file and the key."""
    board = all_boards()["nano33ble"].as_json()
    parse(board, "nano33ble.json")  # the file as shipped parses: the edit alone is refused below
    edit(board)
    with pytest.raises(TinygenError) as exc:
        parse(board, "nano33ble.json")
    text = str(exc.value)
    assert text.startswith("board file nano33ble.json: ") and message in text and "\n" not in text, text


# ------------------------------------------------------------------ flash offline, Next hint (always)

@pytest.fixture(scope="module")
def nano_compiled(sine_project, tmp_path_factory):
    """A nano33ble project (compiled runtime, no training: the sine fixture's .tflite), built from a
    working directory with a relative --out that has a space in it."""
    cwd = tmp_path_factory.mktemp("where-the-user-is")
    res = build_ok("--board", "nano33ble", "--runtime", "compiled", "--model", str(sine_project / "model.tflite"),
                   "--out", "my boards/sine nano", cwd=cwd)
    return cwd, cwd / "my boards" / "sine nano", res.stdout


def test_next_hint_works_from_where_the_user_stands(nano_compiled):
    cwd, project, stdout = nano_compiled
    hint = stdout[stdout.index("Next: ") + len("Next: "):].strip()
    steps = [shlex.split(s) for s in hint.split("&&")]
    assert steps[0][0] == "cd" and steps[1][:3] == ["pio", "run", "-t"]
    here = (cwd / steps[0][1]).resolve()
    assert here == project.resolve()
    verify = steps[2]
    assert verify[:2] == ["tinygen", "verify"]
    assert (here / verify[verify.index("--project") + 1] / "tinygen.json").is_file()


def test_flash_without_registry_says_so_in_seconds(nano_compiled, tmp_path):
    from tinygen.device.realboard import registry_reachable

    if registry_reachable():
        pytest.skip("the PlatformIO registry is reachable here, so the first build would download")
    _, project, _ = nano_compiled
    core = tmp_path / "empty-pio-core"
    core.mkdir()
    t0 = time.monotonic()
    res = run_cli("flash", "--project", str(project), env={"PLATFORMIO_CORE_DIR": str(core)}, timeout=60)
    took = time.monotonic() - t0
    assert res.returncode != 0
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, res.stderr
    assert "PlatformIO registry" in lines[0] and "nordicnrf52@10.11.0" in lines[0]
    assert "pio pkg install -d" in lines[0] and "Traceback" not in res.stderr
    assert took < 20, f"took {took:.1f} s"
    assert not any(core.iterdir()), "the check must not write into the PlatformIO core dir"


# ------------------------------------------------------------------ the kit (trees)

@pytest.fixture(scope="module")
def trees():
    try:
        mbed = kit.env_tree("TINYGEN_ARDUINO_MBED_DIR", "variants/ARDUINO_NANO33BLE/cxxflags.txt")
        api = kit.env_tree("TINYGEN_ARDUINO_API_DIR", "api/ArduinoAPI.h")
        lib = kit.env_tree("TINYGEN_TFLM_LIB_DIR", "library.properties")
    except AssertionError as exc:
        pytest.fail(str(exc))
    if mbed is None or lib is None:
        pytest.skip("board-truth kit: set TINYGEN_ARDUINO_MBED_DIR (ArduinoCore-mbed), TINYGEN_ARDUINO_API_DIR "
                    "(ArduinoCore-API) and TINYGEN_TFLM_LIB_DIR (the pinned Chirale_TensorFlowLite) to run it")
    if api is None and not (mbed / "cores" / "arduino" / "api").is_dir():
        pytest.skip("board-truth kit: the core has no cores/arduino/api; set TINYGEN_ARDUINO_API_DIR")
    for tool in ("arm-none-eabi-gcc", "arm-none-eabi-g++", "arm-none-eabi-ar", "arm-none-eabi-size",
                 "arm-none-eabi-objdump"):
        require_tool(tool)
    board = all_boards()["nano33ble"]
    props = (lib / "library.properties").read_text()
    if f"version={board.tflm.version}" not in props:
        pytest.fail(f"TINYGEN_TFLM_LIB_DIR={lib} is not {board.tflm.library} {board.tflm.version}, "
                    "the version boards/nano33ble.json pins")
    return mbed, api, lib


@pytest.fixture(scope="module")
def mbed_kit(trees, tmp_path_factory):
    """Flags, and the compiled Arduino core (+ variant) and library as archives (cached by tree and flags)."""
    mbed, api, lib = trees
    work = tmp_path_factory.mktemp("kit")
    fw = kit.compose_framework(mbed, api, work)
    # The TFLM projects' release flags (boards/nano33ble.json, platformio.ini build_flags) reach the core and
    # the library too. The compiled projects do not have them; none of tinygen's C reads NDEBUG, so
    # only the core's own asserts (MBED_ASSERT in inline headers) differ for them, a few bytes.
    flags = kit.mbed_flags(fw, all_boards()["nano33ble"].platformio.tflm_release_flags)
    cache = Path(os.environ.get("TINYGEN_BOARD_TRUTH_CACHE") or work) / f"nano33ble-{kit.cache_key(flags, mbed, api, lib)}"
    core_src = fw / "cores" / "arduino"
    # PlatformIO builds every source under cores/arduino (ArduinoCore-API's api/*.cpp included) and the variant
    core_files = kit.sources_under(mbed / "cores" / "arduino") + kit.sources_under(mbed / "variants" / kit.VARIANT)
    fw_libs = [mbed / "libraries" / name for name in kit.FRAMEWORK_LIBRARIES]
    for d in fw_libs:
        core_files += kit.sources_under(d)
    core = kit.compile_all(flags, core_files, cache / "core", [core_src, *fw_libs], ours=False, root=mbed)
    api_root = (core_src / "api").resolve()
    api = kit.compile_all(flags, kit.sources_under(api_root), cache / "core-api", [core_src], ours=False,
                          root=api_root.parent)
    core.objects += api.objects
    core.failures += api.failures
    assert not core.failures, "the Arduino core does not compile with its own flags:\n" + "\n".join(core.failures[:3])
    lib_src = lib / "src"
    libres = kit.compile_all(flags, kit.sources_under(lib_src), cache / "lib", [lib_src, *fw_libs], ours=False,
                             root=lib_src)
    assert not libres.failures, ("the pinned library does not compile with the core's flags:\n"
                                 + "\n".join(libres.failures[:3]))
    return {"flags": flags, "lib_src": lib_src, "work": work, "mbed": mbed, "lib": lib, "fw_libs": fw_libs,
            "core_a": kit.archive(core.objects, work / "libcore.a"),
            "lib_a": kit.archive(libres.objects, work / "libtflm.a")}


@pytest.fixture(scope="module")
def user_keras(tmp_path_factory):
    """A tiny untrained Keras CNN (seeded) and data: a user's own model, not a recipe."""
    import tensorflow as tf

    d = tmp_path_factory.mktemp("user-cnn")
    tf.keras.utils.set_random_seed(3)
    model = tf.keras.Sequential([tf.keras.Input(shape=(8, 8, 1)), tf.keras.layers.Conv2D(4, 3, activation="relu"),
                                 tf.keras.layers.AveragePooling2D(2), tf.keras.layers.Flatten(),
                                 tf.keras.layers.Dense(3), tf.keras.layers.Softmax()])
    model.save(d / "cnn.keras")
    rng = np.random.default_rng(3)
    np.savez(d / "data.npz", x=rng.normal(size=(80, 8, 8, 1)).astype(np.float32), y=rng.integers(0, 3, 80))
    return d


MODELS = ("sine", "digits", "user")
RUNTIMES = ("tflm", "compiled")


@pytest.fixture(scope="module")
def nano_projects(trees, sine_project, digits_project, user_keras, tmp_path_factory):
    root = tmp_path_factory.mktemp("nano-projects")
    src = {"sine": ["--model", str(sine_project / "model.tflite")],
           "digits": ["--model", str(digits_project / "model.tflite")],
           "user": ["--model", str(user_keras / "cnn.keras"), "--data", str(user_keras / "data.npz")]}
    out = {}
    for model in MODELS:
        for runtime in RUNTIMES:
            p = root / f"{model}-{runtime}"
            build_ok("--board", "nano33ble", "--runtime", runtime, *src[model], "--vectors", "4", "--out", str(p))
            out[(model, runtime)] = p
    return out


def _classify(kit_paths: dict, project: Path):
    lib_a, core_a = str(kit_paths["lib_a"]), str(kit_paths["core_a"])

    def classify(origin: str) -> str:
        if origin.startswith(lib_a):
            return "library"
        if origin.startswith(core_a):
            return "core"
        if origin.startswith(str(project)) or "/ours/" in origin:
            return "model_data" if "model_data" in origin else "tinygen"
        return "toolchain"
    return classify


def _build_project(mbed_kit, project: Path) -> dict:
    flags = mbed_kit["flags"]
    src, model_lib = project / "src", project / "lib/tinygen_model/src"  # validation app, model library
    objdir = project / "ours"
    res = kit.compile_all(flags, kit.sources_under(src) + kit.sources_under(model_lib), objdir,
                          [src, model_lib, mbed_kit["lib_src"], *mbed_kit["fw_libs"]], ours=True, root=project)
    assert not res.failures, "\n\n".join(res.failures)
    elf = project / "kit.elf"
    map_text = kit.link(flags, res.objects, [mbed_kit["lib_a"], mbed_kit["core_a"]], elf)
    return {"size": kit.size(elf), "parts": kit.attribute(map_text, _classify(mbed_kit, project)),
            "objects": res.objects, "elf": elf}


@pytest.fixture(scope="module")
def built(mbed_kit, nano_projects):
    return {k: _build_project(mbed_kit, p) for k, p in nano_projects.items()}


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("runtime", RUNTIMES)
def test_every_source_file_compiles_and_links_for_the_nano(built, nano_projects, model, runtime):
    b = built[(model, runtime)]
    names = {o.name for o in b["objects"]}
    project = nano_projects[(model, runtime)]
    sources = kit.sources_under(project / "src") + kit.sources_under(project / "lib/tinygen_model/src")
    assert len(names) == len(sources)  # every file, none skipped
    nm = subprocess.run(["arm-none-eabi-nm", "-C", str(b["elf"])], capture_output=True, text=True,
                        check=True).stdout
    for symbol in ("setup", "loop", "tg_app_poll", "tg_hal_ticks", "tg_runtime_invoke"):
        assert f" {symbol}" in nm, symbol
    if runtime == "tflm":
        assert "tflite::MicroInterpreter::Invoke" in nm
    assert b["parts"]["tinygen"]["flash"] > 0 and b["parts"]["core"]["flash"] > 0


def test_hal_turns_on_the_dwt_cycle_counter(built):
    """Compiled for the Nano with the core's headers: tg_hal_init writes CoreDebug DEMCR and DWT CTRL, and
    the tick rate is the core clock (SystemCoreClock), not micros()."""
    obj = next(o for o in built[("sine", "compiled")]["objects"] if "tg_hal_arduino" in o.name)
    dis = subprocess.run(["arm-none-eabi-objdump", "-d", "-r", str(obj)], capture_output=True, text=True,
                         check=True).stdout
    # literal-pool addresses: the System Control Space page holding CoreDebug DEMCR (0xE000EDFC; the
    # compiler loads 0xE000ED00 and adds the offset) and the DWT base (CTRL, CYCCNT at +4)
    for address in ("e000ed", "e0001000"):
        assert f".word\t0x{address}" in dis, address
    assert "SystemCoreClock" in dis


def _harness_flash(mbed_kit, op: str | None) -> int:
    """Flash of a minimal interpreter program that registers one op (or none) as the generated glue does
    (its int8-only kernel where the pinned library has one): the op's kernel cost."""
    from tinygen.codegen.tflm_registrations import INT8_VARIANTS, LIBRARY_INT8_VARIANTS
    from tinygen.analysis.ops import TFLM_RESOLVER_METHODS

    board = all_boards()["nano33ble"]
    variants = LIBRARY_INT8_VARIANTS[(board.tflm.library, board.tflm.version)]
    op_method, include = None, []
    if op is not None:
        op_method = TFLM_RESOLVER_METHODS[op]
        if op in variants:
            fn, header, _ = INT8_VARIANTS[op]
            op_method = f"{op_method}(tflite::{fn}())"
            include = ["-include", f"tensorflow/lite/micro/kernels/{header}"]
        else:
            op_method += "()"
    flags, work = mbed_kit["flags"], mbed_kit["work"] / "harness"
    work.mkdir(exist_ok=True)
    src = work / "harness.cc"
    if not src.is_file() or src.read_text() != HARNESS:
        src.write_text(HARNESS)
    tag = op or "base"
    obj, elf = work / f"{tag}.o", work / f"{tag}.elf"
    cflags = [f for f in flags.common if not f.startswith(("-iprefix", "@"))]
    define = [f"-DKIT_OP={op_method}"] if op_method else []
    subprocess.run(["arm-none-eabi-g++", *flags.cxx_only, *cflags, *flags.defines, *define,
                    f"-I{mbed_kit['lib_src']}", *include, str(src), "-o", str(obj)], check=True, capture_output=True)
    kit.link(flags, [obj], [mbed_kit["lib_a"]], elf)
    return kit.size(elf)["flash"]


HARNESS = """
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"
extern "C" const unsigned char kit_model[];  // never resolved: only sizes matter
alignas(16) static uint8_t arena[2048];
int main() {
  static tflite::MicroMutableOpResolver<1> resolver;
#ifdef KIT_OP
  resolver.KIT_OP;
#endif
  static tflite::MicroInterpreter interpreter(tflite::GetModel(kit_model), resolver, arena, sizeof arena);
  if (interpreter.AllocateTensors() != kTfLiteOk) return 1;
  return interpreter.Invoke() == kTfLiteOk ? 0 : 2;
}
"""


def figures(built: dict, projects: dict, op_flash: dict) -> dict:
    """The board file's measured figures from kit links. core_*: the Arduino core and the toolchain's
    libraries as every firmware links them (the smallest over the projects); tflm_*: what the TFLM
    projects add on top of that, minus the kernels of their ops (flash) or the arena (RAM), the largest
    over the projects; compiled_*: the same for the compiled runtime, minus weights and arena."""
    from tinygen.codegen.compiled import compile_model
    from tinygen.tflite.model import parse_model

    def total(parts: dict, key: str) -> int:
        return sum(v[key] for k, v in parts.items() if k != "model_data")

    def framework(parts: dict, key: str) -> int:
        return parts["core"][key] + parts.get("toolchain", {key: 0})[key]

    f = {"core_flash": min(framework(b["parts"], "flash") for b in built.values()),
         "core_ram": min(framework(b["parts"], "ram") for b in built.values()),
         "tflm_flash": 0, "tflm_ram": 0, "compiled_flash": 0, "compiled_ram": 0}
    for (model, runtime), b in built.items():
        p = projects[(model, runtime)]
        man = json.loads((p / "tinygen.json").read_text())
        flash = total(b["parts"], "flash") - f["core_flash"]
        ram = total(b["parts"], "ram") - f["core_ram"]
        if runtime == "tflm":
            kernels = sum(op_flash[op] for op in man["ops"])
            f["tflm_flash"] = max(f["tflm_flash"], flash - kernels)
            f["tflm_ram"] = max(f["tflm_ram"], ram - man["arena"]["recommended_bytes"])
        else:
            m = parse_model((p / "model.tflite").read_bytes(), model)
            weights = compile_model(m).constant_bytes  # as budget() counts them
            f["compiled_flash"] = max(f["compiled_flash"], flash - weights)
            f["compiled_ram"] = max(f["compiled_ram"], ram - man["compiled_arena_bytes"])
    return f


def test_measured_budget_agrees_with_the_board_file(mbed_kit, built, nano_projects):
    from tinygen.analysis.ops import TFLM_RESOLVER_METHODS
    from tinygen.codegen.plan import budget_parts
    from tinygen.analysis.reference import ArenaInfo
    from tinygen.tflite.model import parse_model

    board = parse(json.loads((REPO / "boards" / "nano33ble.json").read_text()), "nano33ble.json")
    est = board.estimates
    ops = sorted({op for (m, r), p in nano_projects.items() if r == "tflm"
                  for op in json.loads((p / "tinygen.json").read_text())["ops"]})
    if os.environ.get("TINYGEN_BOARD_TRUTH_ALL_OPS"):
        ops = sorted(TFLM_RESOLVER_METHODS)
    base = _harness_flash(mbed_kit, None)
    op_flash = {op: _harness_flash(mbed_kit, op) - base for op in ops}
    measured = figures(built, nano_projects, op_flash)
    report = os.environ.get("TINYGEN_BOARD_TRUTH_REPORT")
    if report:
        Path(report).write_text(json.dumps({
            **measured, "tflm_op_flash": op_flash, "harness_base_flash": base,
            "projects": {f"{m}-{r}": {"size": b["size"], "parts": b["parts"]} for (m, r), b in built.items()}},
            indent=2, sort_keys=True) + "\n")

    def close(name, got, want, rel=0.15, slack=512):
        assert abs(got - want) <= max(rel * want, slack), f"{name}: measured {got:,} B, board file says {want:,} B"

    for key, value in measured.items():
        assert key in est.measured
        close(key, value, getattr(est, key))
    for op in ops:
        close(f"tflm_op_flash[{op}]", op_flash[op], est.tflm_op_flash[op])
    # The budget's measured parts bound the firmware the kit links (mbed-os excluded on both sides): each
    # op's kernel cost is measured alone, so code that kernels share counts once per op and the sum for
    # a many-op model is an upper bound, a generous one for digits' seven ops.
    for (model, runtime), b in built.items():
        p = nano_projects[(model, runtime)]
        man = json.loads((p / "tinygen.json").read_text())
        m = parse_model((p / "model.tflite").read_bytes(), model)
        arena = ArenaInfo(*(man["arena"][k] for k in ("host_min_bytes", "scratch_bound_bytes", "recommended_bytes")))
        parts = budget_parts(board, runtime, m, arena, man["compiled_arena_bytes"])
        predicted = sum(x["flash_bytes"] for x in parts if x["part"] != est.os_name)
        actual = b["size"]["flash"]
        # compiled_flash is the largest kernel set measured (digits: conv, depthwise, pool, FC, softmax),
        # so a one-kernel model's budget (sine) is an upper bound up to ~1.8x; per-kernel-file sizes
        # (as tflm_op_flash) would tighten it.
        # TFLM: since the release flags (issue 28) the interpreter base is ~11 KB, so the kernel code the ops
        # share (CMSIS-NN and kernel_util helpers), counted once per op, is a larger share: digits' seven ops
        # are 1.48x the linked firmware.
        # Compiled: issue 25's conv fast paths (1x1 column, first-layer window copy, zero-weight channel
        # constants) added ~2 KB that only conv models link, so compiled_flash (digits) grew 16,529 ->
        # 18,567 B and sine's bound went from ~1.7x to ~1.82x of its linked firmware; issue 25's third round
        # (4-pixel 1x1 and first-layer blocks, the depthwise border twin, tg_conv_dot.h) 18,567 -> 22,467 B
        # and sine's bound to ~2.04x: still an upper bound, by 18 KB of the Nano's 983 KB.
        loose = 1.55 if runtime == "tflm" else 2.1
        assert 0.97 * actual <= predicted <= loose * actual, f"{model}-{runtime}: budget {predicted:,} B, linked {actual:,} B"
        ram = sum(x["ram_bytes"] for x in parts if x["part"] != est.os_name)
        assert 0.9 * b["size"]["ram"] <= ram <= 1.2 * b["size"]["ram"], f"{model}-{runtime} RAM: {ram:,} B vs {b['size']}"


# ------------------------------------------------------------------ timing fields (always)

def test_real_board_reports_cycles_and_microseconds_at_its_clock():
    from tinygen.verification.verify import latency, latency_rows

    clock = all_boards()["nano33ble"].clock_hz
    m = latency([6400, 6464, 12800], clock, None, clock)  # the firmware's ticks are CYCCNT at 64 MHz
    assert m["emulated"] is False
    assert m["cycles_per_inference"]["min"] == 6400 and m["cycles_per_inference"]["clock_hz"] == clock
    assert m["latency_us"]["min"] == pytest.approx(100.0) and m["latency_us"]["max"] == pytest.approx(200.0)
    assert any("cycles" in label for label, _ in latency_rows(m))
    fallback = latency([100, 200], 1_000_000, None, clock)  # micros(): no cycle figure is invented
    assert "cycles_per_inference" not in fallback and fallback["latency_us"]["max"] == pytest.approx(200.0)


def test_emulated_board_reports_instructions_and_no_microseconds():
    from tinygen.verification.verify import latency, latency_rows

    board = all_boards()["qemu-m4"]
    m = latency([100, 101], 25_000_000, board.emulator.instructions_per_tick, board.clock_hz)
    assert m["emulated"] is True and "latency_us" not in m and "cycles_per_inference" not in m
    assert m["instructions_per_inference"]["min"] == 100 * board.emulator.instructions_per_tick
    rows = latency_rows(m)
    assert all("µs" not in text for _, text in rows) and "emulated" in rows[0][0]
