"""Boards are data: one JSON file per board in boards/, validated on load.

Required keys are listed in REQUIRED; nested ones use dotted paths.  A board
with ``emulator`` set runs under QEMU instead of on hardware.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass, field, fields
from functools import lru_cache
from types import MappingProxyType
from typing import Mapping

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


# ------------------------------------------------------------------ the typed board

@dataclass(frozen=True)
class Platformio:
    """platformio: the PlatformIO environment a project for this board gets."""
    platform: str
    board: str
    framework: str | None
    monitor_speed: int
    build_flags: tuple[str, ...] = ()
    tflm_release_flags: tuple[str, ...] = ()  # real boards' TFLM release build (issue 28)
    packages: tuple[str, ...] = ()  # the platform's packages an offline build needs installed


@dataclass(frozen=True)
class NativeUsb:
    """serial.native_usb: the chip's own USB port, a second way to reach Serial."""
    hwid: tuple[str, ...]
    build_flags: tuple[str, ...]
    connector: str


@dataclass(frozen=True)
class Serial:
    baud: int
    hwids: tuple[tuple[str, ...], ...]  # (VID, PID) hex strings, the application's port first
    open_delay_s: float = 0.0
    native_usb: NativeUsb | None = None


@dataclass(frozen=True)
class Tflm:
    """tflm: how the board gets TensorFlow Lite Micro (every field has its "no TFLM" default)."""
    lib_deps: tuple[str, ...] = ()
    needs_tree: bool = False  # built from a --tflm-dir / TINYGEN_TFLM_DIR source tree
    per_channel_fully_connected: bool = False
    library: str | None = None
    version: str | None = None
    header: str | None = None
    api: str | None = None
    reason: str = ""
    kernels_note: str | None = None


@dataclass(frozen=True)
class Emulator:
    kind: str
    machine: str
    args: tuple[str, ...] = ()
    instructions_per_tick: float | None = None
    binary: str = "qemu-system-arm"


@dataclass(frozen=True)
class Estimates:
    """estimates: the flash and RAM the parts outside the model take; a figure named in
    measured.keys was measured (tests/codegen/test_board_truth.py), the rest are estimates."""
    compiled_flash: int
    compiled_ram: int
    tflm_flash: int | None = None
    tflm_ram: int | None = None
    tflm_op_flash: Mapping[str, int] = field(default_factory=dict)
    framework_name: str = "framework"
    framework_flash: int | None = None
    framework_ram: int | None = None
    core_name: str = "framework core"
    core_flash: int | None = None
    core_ram: int | None = None
    os_name: str = "OS"
    os_flash: int | None = None
    os_ram: int | None = None
    measured: frozenset[str] = frozenset()

    def kind(self, key: str) -> str:
        """'measured' or 'estimate': how the figure ``key`` was obtained."""
        return "measured" if key in self.measured else "estimate"


@dataclass(frozen=True)
class Twin:
    """emulated_twin: the emulated board a real board's firmware is tried on first."""
    board: str
    match: str  # a key of TWIN_MATCHES
    core: str
    reason: str

    @property
    def label(self) -> str:
        """One line, e.g. "qemu-m4 (same core, Cortex-M4F)"."""
        return f"{self.board} ({TWIN_MATCHES[self.match]}, {self.core})"


@dataclass(frozen=True)
class Board:
    """One validated board file (boards/<id>.json); :func:`get_board` returns it."""
    id: str
    name: str
    mcu: str
    cpu: str
    flash_bytes: int
    ram_bytes: int
    hal: str
    runtimes: tuple[str, ...]
    default_runtime: str
    platformio: Platformio
    serial: Serial
    estimates: Estimates
    tflm: Tflm = Tflm()
    emulator: Emulator | None = None  # set: the board runs under QEMU
    emulated_twin: Twin | None = None  # real boards only
    clock_hz: int | None = None
    source: Mapping = field(default_factory=dict, compare=False, repr=False)  # the validated JSON

    @property
    def emulated(self) -> bool:
        return self.emulator is not None

    def as_json(self) -> dict:
        """The board file as validated (lib_deps derived), without its ``_note`` keys."""
        return {k: copy.deepcopy(v) for k, v in self.source.items() if not k.startswith("_")}


# Each section's keys and their JSON types (a key starting with "_" is a note, never read).
_INT, _STR, _NUM, _BOOL, _LIST, _OBJ = (int,), (str,), (int, float), (bool,), (list,), (dict,)
_SECTIONS = {
    "": {"id": _STR, "name": _STR, "mcu": _STR, "cpu": _STR, "clock_hz": _INT, "flash_bytes": _INT,
         "ram_bytes": _INT, "hal": _STR, "runtimes": _LIST, "default_runtime": _STR, "platformio": _OBJ,
         "serial": _OBJ, "tflm": _OBJ, "emulator": _OBJ, "estimates": _OBJ, "emulated_twin": _OBJ},
    "platformio": {"platform": _STR, "board": _STR, "framework": _STR + (type(None),), "monitor_speed": _INT,
                   "build_flags": _LIST, "tflm_release_flags": _LIST, "packages": _LIST},
    "serial": {"baud": _INT, "hwids": _LIST, "open_delay_s": _NUM, "native_usb": _OBJ},
    "tflm": {"lib_deps": _LIST, "needs_tree": _BOOL, "per_channel_fully_connected": _BOOL, "library": _STR,
             "version": _STR, "header": _STR, "api": _STR, "reason": _STR, "kernels_note": _STR},
    "emulator": {"kind": _STR, "machine": _STR, "args": _LIST, "instructions_per_tick": _NUM, "binary": _STR},
    "estimates": {"compiled_flash": _INT, "compiled_ram": _INT, "tflm_flash": _INT, "tflm_ram": _INT,
                  "tflm_op_flash": _OBJ, "framework_name": _STR, "framework_flash": _INT, "framework_ram": _INT,
                  "core_name": _STR, "core_flash": _INT, "core_ram": _INT, "os_name": _STR, "os_flash": _INT,
                  "os_ram": _INT, "measured": _OBJ},
}


def _check_keys(board: dict, source: str) -> None:
    """Every key is one tinygen reads, of its JSON type: a misspelt key would otherwise be ignored."""
    for section, types in _SECTIONS.items():
        d = board if not section else board.get(section, {})
        for key, value in d.items():
            where = f"{section}.{key}" if section else key
            if key.startswith("_"):
                continue
            if key not in types:
                raise TinygenError(f"board file {source}: unknown key '{where}' (known: {', '.join(types)}; "
                                   "a note's key starts with '_')")
            ok = types[key]
            if not isinstance(value, ok) or (isinstance(value, bool) and bool not in ok):
                kind = {_INT: "an integer", _STR: "a string", _NUM: "a number", _BOOL: "true or false",
                        _LIST: "a list", _OBJ: "an object"}.get(ok, "a string or null")
                raise TinygenError(f"board file {source}: {where} must be {kind}")
    op_flash = board.get("estimates", {}).get("tflm_op_flash", {})
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in op_flash.values()):
        raise TinygenError(f"board file {source}: estimates.tflm_op_flash must map op names to integers")
    if not all(isinstance(h, list) and len(h) == 2 and all(isinstance(x, str) for x in h)
               for h in board.get("serial", {}).get("hwids", [])):
        raise TinygenError(f"board file {source}: serial.hwids must be a list of [\"0xVID\", \"0xPID\"] pairs")


def _known(cls, d: dict) -> dict:
    """The keys of ``d`` that are fields of ``cls``, lists as tuples."""
    names = {f.name for f in fields(cls)}
    return {k: tuple(v) if isinstance(v, list) else v for k, v in d.items() if k in names}


def parse(data: dict, source: str) -> Board:
    """A board file's JSON -> :class:`Board`, or one line naming what is wrong (TinygenError)."""
    if not isinstance(data, dict):
        raise TinygenError(f"board file {source}: must be a JSON object")
    _check_keys(data, source)
    data = validate(copy.deepcopy(data), source)
    serial, est = data["serial"], data["estimates"]
    native = serial.get("native_usb")
    twin = data.get("emulated_twin")
    return Board(
        **{k: data[k] for k in ("id", "name", "mcu", "cpu", "flash_bytes", "ram_bytes", "hal", "default_runtime")},
        runtimes=tuple(data["runtimes"]), clock_hz=data.get("clock_hz"),
        platformio=Platformio(**_known(Platformio, data["platformio"])),
        serial=Serial(baud=serial["baud"], hwids=tuple(tuple(h) for h in serial["hwids"]),
                      open_delay_s=float(serial.get("open_delay_s", 0.0)),
                      native_usb=None if native is None else NativeUsb(**_known(NativeUsb, native))),
        estimates=Estimates(**{**_known(Estimates, est), "tflm_op_flash": MappingProxyType(dict(est.get("tflm_op_flash", {}))),
                               "measured": frozenset(est.get("measured", {}).get("keys", []))}),
        tflm=Tflm(**_known(Tflm, data.get("tflm", {}))),
        emulator=Emulator(**_known(Emulator, data["emulator"])) if data.get("emulator") else None,
        emulated_twin=Twin(**{k: twin[k] for k in _TWIN_KEYS}) if twin is not None else None,
        source=MappingProxyType(data),
    )


def _check_twins(boards: dict[str, Board]) -> None:
    """Each twin is an emulated board, and its match agrees with the two cpu fields: a same-core or
    same-ISA twin has the board's cpu, an other-ISA one another cpu."""
    for bid, b in boards.items():
        twin = b.emulated_twin
        if twin is None:
            continue
        tb = boards.get(twin.board)
        if tb is None or not is_emulated(tb):
            raise TinygenError(f"board file {bid}.json: emulated_twin.board '{twin.board}' is not an emulated board")
        if (tb.cpu == b.cpu) != (twin.match != "other-isa"):
            raise TinygenError(f"board file {bid}.json: emulated_twin.match '{twin.match}' but the twin's cpu is "
                               f"{tb.cpu} and the board's {b.cpu}")


@lru_cache(maxsize=None)
def _all() -> dict[str, Board]:
    boards = {}
    for path in sorted(boards_dir().glob("*.json")):
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise TinygenError(f"board file {path} is not valid JSON: {exc}") from None
        board = parse(data, str(path))
        if board.id != path.stem:
            raise TinygenError(f"board file {path} has id '{board.id}'; it must match the file name")
        boards[board.id] = board
    _check_twins(boards)
    return boards


def all_boards() -> dict[str, Board]:
    return dict(_all())


def get_board(board_id: str) -> Board:
    boards = _all()
    if board_id not in boards:
        raise TinygenError(f"unknown board '{board_id}'; known boards: {', '.join(sorted(boards))} "
                           "(see 'tinygen boards')")
    return boards[board_id]


def is_emulated(board: Board) -> bool:
    return board.emulator is not None
