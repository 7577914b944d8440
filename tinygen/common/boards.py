"""Boards are data: one JSON file per board in boards/, validated on load.

Required keys are listed in REQUIRED; nested ones use dotted paths.  A board
with ``emulator`` set runs under QEMU instead of on hardware.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache

from tinygen.common.errors import TinygenError
from tinygen.common.paths import boards_dir

REQUIRED = (
    "id", "name", "mcu", "cpu", "flash_bytes", "ram_bytes", "hal", "runtimes", "default_runtime",
    "platformio.platform", "platformio.board", "platformio.monitor_speed",
    "serial.baud", "serial.hwids",
    "estimates.compiled_flash", "estimates.compiled_ram",
)
# The framework is either one figure or a measured core plus an estimated OS (mbed-os, ESP-IDF).
FRAMEWORK_KEYS = (("estimates.framework_flash", "estimates.framework_ram"),
                  ("estimates.core_flash", "estimates.core_ram", "estimates.os_flash", "estimates.os_ram"))


def _get(d: dict, dotted: str):
    cur = d
    for part in dotted.split("."):
        if not isinstance(cur, dict) or part not in cur:
            raise KeyError(dotted)
        cur = cur[part]
    return cur


# The registry TFLM libraries tinygen knows, version -> the umbrella header that version ships
# (read from the tags: v1.0.1..v1.1.1 TensorFlowLite.h, renamed 2024-07-05 for v2.0.0). A board
# file pins one version; its header must be the one listed here, or the glue would not compile.
TFLM_LIBRARY_HEADERS = {
    "spaziochirale/Chirale_TensorFLowLite": {
        "1.0.1": "TensorFlowLite.h", "1.1.0": "TensorFlowLite.h", "1.1.1": "TensorFlowLite.h",
        "2.0.0": "Chirale_TensorFlowLite.h",
    },
}
EXACT_VERSION = re.compile(r"^\d+\.\d+\.\d+$")


def _has(d: dict, dotted: str) -> bool:
    try:
        _get(d, dotted)
    except KeyError:
        return False
    return True


def _check_pins(board: dict, source: str) -> None:
    """Registry pins must be exact versions: a range resolves to whatever the registry has that day,
    which is how a header rename once broke every real-board project."""
    platform = str(board["platformio"]["platform"])
    if "@" in platform or not board.get("emulator"):  # emulated boards use tinygen's own local platform
        if not EXACT_VERSION.match(platform.partition("@")[2].strip()):
            raise TinygenError(f"board file {source}: platformio.platform '{platform}' is not pinned to an exact "
                               "version (write name@X.Y.Z)")
    tflm = board.get("tflm", {})
    for dep in tflm.get("lib_deps", []):
        if not EXACT_VERSION.match(str(dep).rpartition("@")[2].strip()):
            raise TinygenError(f"board file {source}: tflm.lib_deps entry '{dep}' is not pinned to an exact "
                               "version (write owner/name@X.Y.Z)")
    if "library" not in tflm:
        return
    lib, version, header = tflm.get("library"), str(tflm.get("version", "")), tflm.get("header")
    if not EXACT_VERSION.match(version):
        raise TinygenError(f"board file {source}: tflm.version '{version}' is not an exact X.Y.Z version")
    known = TFLM_LIBRARY_HEADERS.get(lib, {})
    if version not in known:
        raise TinygenError(f"board file {source}: {lib} {version} is not a verified TFLM library version "
                           f"(known: {', '.join(sorted(known)) or 'none'}); add it to tinygen/common/boards.py after "
                           "checking its header and API")
    if header != known[version]:
        raise TinygenError(f"board file {source}: {lib} {version} ships {known[version]}, not {header}")
    tflm["lib_deps"] = [lib_dep(board)]


# What a board file may add to build_flags: plain -D macros (NAME or NAME=value), nothing PlatformIO
# would read as a shell command, an option or a path.
_DEFINE = re.compile(r"^-D[A-Za-z_][A-Za-z0-9_]*(=[A-Za-z0-9_]+)?$")


def _check_flags(board: dict, source: str) -> None:
    """tflm_release_flags and native_usb.build_flags: lists of -D macros; native_usb's hwid one of the board's."""
    native = board.get("serial", {}).get("native_usb")
    lists = [("platformio.tflm_release_flags", board.get("platformio", {}).get("tflm_release_flags", []))]
    if native is not None:
        if not isinstance(native, dict) or "hwid" not in native or "connector" not in native:
            raise TinygenError(f"board file {source}: serial.native_usb needs hwid, build_flags and connector")
        if list(native["hwid"]) not in [list(h) for h in board["serial"]["hwids"]]:
            raise TinygenError(f"board file {source}: serial.native_usb.hwid {native['hwid']} is not in serial.hwids")
        lists.append(("serial.native_usb.build_flags", native.get("build_flags")))
    for key, flags in lists:
        if not isinstance(flags, list) or not all(isinstance(f, str) and _DEFINE.match(f) for f in flags):
            raise TinygenError(f"board file {source}: {key} must be a list of -DNAME[=value] macros")


def lib_dep(board: dict) -> str:
    """The PlatformIO lib_deps entry for the board's TFLM library: name@exact-version."""
    return f"{board['tflm']['library']}@{board['tflm']['version']}"


def validate(board: dict, source: str) -> dict:
    missing = []
    for key in REQUIRED:
        try:
            _get(board, key)
        except KeyError:
            missing.append(key)
    framework = [[k for k in keys if not _has(board, k)] for keys in FRAMEWORK_KEYS]
    if all(framework):
        missing += min(framework, key=len)
    if "tflm" in board.get("runtimes", []):
        tflm_keys = ["tflm.per_channel_fully_connected", "estimates.tflm_flash", "estimates.tflm_ram"]
        tflm_keys += ["tflm.library", "tflm.version", "tflm.header"] if not board.get("tflm", {}).get(
            "needs_tree") else ["tflm.lib_deps"]
        for key in tflm_keys:
            try:
                _get(board, key)
            except KeyError:
                missing.append(key)
    if missing:
        raise TinygenError(f"board file {source} lacks required keys: {', '.join(missing)}")
    if board.get("default_runtime") not in board.get("runtimes", []):
        raise TinygenError(f"board file {source}: default_runtime is not one of its runtimes")
    _check_pins(board, source)
    _check_flags(board, source)
    _check_twin_shape(board, source)
    return board


# How close a real board's emulated twin is (boards/*.json "emulated_twin.match"): the words the build
# summary and the verify report use, so a twin on another ISA is never shown as the board itself.
TWIN_MATCHES = {
    "same-core": "same core",
    "same-isa": "same ISA, another core",
    "other-isa": "not the same ISA: same model bytes and runtime, another core",
}
_TWIN_KEYS = {"board", "match", "core", "reason"}


def _check_twin_shape(board: dict, source: str) -> None:
    """emulated_twin (real boards only): {board, match, core, reason}; that the twin board exists and is
    emulated is checked once every board is loaded (:func:`_check_twins`)."""
    twin = board.get("emulated_twin")
    if twin is None:
        return
    if board.get("emulator"):
        raise TinygenError(f"board file {source}: emulated_twin is for real boards; this one is emulated")
    if not isinstance(twin, dict) or not _TWIN_KEYS <= set(twin) or \
            not all(isinstance(twin[k], str) and twin[k].isprintable() and twin[k] for k in _TWIN_KEYS):
        raise TinygenError(f"board file {source}: emulated_twin needs the strings {', '.join(sorted(_TWIN_KEYS))}")
    if twin["match"] not in TWIN_MATCHES:
        raise TinygenError(f"board file {source}: emulated_twin.match '{twin['match']}' is not one of "
                           f"{', '.join(TWIN_MATCHES)}")


def _check_twins(boards: dict[str, dict]) -> None:
    """Each twin is an emulated board, and its match agrees with the two cpu fields: a same-core or
    same-ISA twin has the board's cpu, an other-ISA one another cpu."""
    for bid, b in boards.items():
        twin = b.get("emulated_twin")
        if twin is None:
            continue
        tb = boards.get(twin["board"], {})
        if not is_emulated(tb):
            raise TinygenError(f"board file {bid}.json: emulated_twin.board '{twin['board']}' is not an emulated board")
        if (tb["cpu"] == b["cpu"]) != (twin["match"] != "other-isa"):
            raise TinygenError(f"board file {bid}.json: emulated_twin.match '{twin['match']}' but the twin's cpu is "
                               f"{tb['cpu']} and the board's {b['cpu']}")


def emulated_twin(board: dict) -> dict | None:
    """A real board's emulated twin: {"board", "match", "core", "reason", "label"} (None: none, or an
    emulated board).  ``label`` is the one-line description, e.g. "qemu-m4 (same core, Cortex-M4F)"."""
    twin = board.get("emulated_twin")
    if twin is None or board.get("emulator"):
        return None
    return {**twin, "label": f"{twin['board']} ({TWIN_MATCHES[twin['match']]}, {twin['core']})"}


@lru_cache(maxsize=None)
def _all() -> dict[str, dict]:
    boards = {}
    for path in sorted(boards_dir().glob("*.json")):
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise TinygenError(f"board file {path} is not valid JSON: {exc}") from None
        validate(data, str(path))
        if data["id"] != path.stem:
            raise TinygenError(f"board file {path} has id '{data['id']}'; it must match the file name")
        boards[data["id"]] = data
    _check_twins(boards)
    return boards


def all_boards() -> dict[str, dict]:
    return dict(_all())


def get_board(board_id: str) -> dict:
    boards = _all()
    if board_id not in boards:
        raise TinygenError(f"unknown board '{board_id}'; known boards: {', '.join(sorted(boards))} "
                           "(see 'tinygen boards')")
    return boards[board_id]


def is_emulated(board: dict) -> bool:
    return bool(board.get("emulator"))
