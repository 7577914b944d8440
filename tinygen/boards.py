"""Boards are data: one JSON file per board in boards/, validated on load.

Required keys are listed in REQUIRED; nested ones use dotted paths.  A board
with ``emulator`` set runs under QEMU instead of on hardware.
"""

from __future__ import annotations

import json
from functools import lru_cache

from tinygen.errors import TinygenError
from tinygen.paths import boards_dir

REQUIRED = (
    "id", "name", "mcu", "cpu", "flash_bytes", "ram_bytes", "hal", "runtimes", "default_runtime",
    "platformio.platform", "platformio.board", "platformio.monitor_speed",
    "serial.baud", "serial.hwids",
    "estimates.framework_flash", "estimates.framework_ram",
    "estimates.compiled_flash", "estimates.compiled_ram",
)


def _get(d: dict, dotted: str):
    cur = d
    for part in dotted.split("."):
        if not isinstance(cur, dict) or part not in cur:
            raise KeyError(dotted)
        cur = cur[part]
    return cur


def validate(board: dict, source: str) -> dict:
    missing = []
    for key in REQUIRED:
        try:
            _get(board, key)
        except KeyError:
            missing.append(key)
    if "tflm" in board.get("runtimes", []):
        for key in ("tflm.lib_deps", "tflm.per_channel_fully_connected", "estimates.tflm_flash",
                    "estimates.tflm_ram"):
            try:
                _get(board, key)
            except KeyError:
                missing.append(key)
    if missing:
        raise TinygenError(f"board file {source} lacks required keys: {', '.join(missing)}")
    if board.get("default_runtime") not in board.get("runtimes", []):
        raise TinygenError(f"board file {source}: default_runtime is not one of its runtimes")
    return board


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
