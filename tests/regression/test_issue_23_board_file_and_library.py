"""Issue 23 item 10 (each failed before the fix):

* boards/nano33ble.json lacked the bootloader PID 0x015A that ArduinoCore-mbed's boards.txt lists
  (nano33ble.pid.2), so `--port auto` missed a Nano sitting in its bootloader;
* the model library's library.json declared no TFLM dependency, so lib/tinygen_model copied into
  another PlatformIO project did not build (nothing brought the TFLM library).
Smallest input: the board file, and the sine session fixture (esp32, TFLM runtime). Both checks fail
on the commit before the fix (run there with this file copied in).
"""

from __future__ import annotations

import json

from tinygen.common.boards import all_boards


def test_nano33ble_bootloader_pid_is_listed():
    hwids = {(v.upper(), p.upper()) for v, p in all_boards()["nano33ble"].serial.hwids}
    assert ("0X2341", "0X015A") in hwids


def test_tflm_library_json_declares_the_tflm_library(sine_project):
    meta = json.loads((sine_project / "lib/tinygen_model/library.json").read_text())
    board = all_boards()["esp32"]
    owner, name = board.tflm.library.split("/")
    assert meta["dependencies"] == [{"owner": owner, "name": name, "version": board.tflm.version}]
