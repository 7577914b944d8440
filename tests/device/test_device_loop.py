"""The whole loop on the emulated Cortex-M4: real PlatformIO build, real QEMU, a real pty opened by
pyserial, tinygen's protocol, outputs compared with the tflite_micro interpreter.

Fault injection sits between host and emulator as a forwarding proxy over two real ptys that
corrupts or truncates chosen frames; the firmware and the host must detect, retry and never
accept a damaged frame."""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import build_ok, require_tool, run_cli


def _tools():
    require_tool("arm-none-eabi-gcc")
    require_tool("qemu-system-arm")


@pytest.fixture(scope="module")
def pio_core(tmp_path_factory):
    """An isolated PlatformIO core dir, set up offline once for this module."""
    from tinygen.device import pio_offline
    _tools()
    core = tmp_path_factory.mktemp("pio-core")
    pio_offline.ensure_offline_core(core)
    return core


def _pio_build(project: Path, core: Path) -> Path:
    from tinygen.device import pio_build
    pio_build.pio_run(project, core_dir=core, environment="qemu-m4")
    elf = project / ".pio" / "build" / "qemu-m4" / "firmware.elf"
    assert elf.exists()
    return elf


@pytest.fixture(scope="module")
def qemu_sine(session_dir, pio_core):
    out = session_dir / "sine-qemu"
    if not out.exists():
        build_ok("--board", "qemu-m4", "--out", str(out))
    _pio_build(out, pio_core)
    return out


@pytest.fixture(scope="module")
def qemu_digits(session_dir, pio_core):
    out = session_dir / "digits-qemu"
    build_ok("--board", "qemu-m4", "--recipe", "digits", "--vectors", "100", "--out", str(out))
    _pio_build(out, pio_core)
    return out


def _qemu(project: Path):
    from tinygen.device.emulator import QemuBoard

    return QemuBoard(project / ".pio" / "build" / "qemu-m4" / "firmware.elf", {"machine": "mps2-an386"})


def _verify(project: Path, port: str, *extra: str):
    return run_cli("verify", "--project", str(project), "--port", port, "--json", *extra, timeout=600)


def _check_pass(res, n_expected: int):
    assert res.returncode == 0, res.stderr
    result = json.loads(res.stdout)
    m = result["metrics"]
    assert m["passed"] and m["max_abs_diff_lsb"] == 0 and m["exact_match_pct"] == 100.0
    assert m["vectors"] == n_expected
    assert m["cosine_similarity"] == pytest.approx(1.0)
    assert m["instructions_per_inference"]["min"] > 0
    for path in result["reports"].values():
        assert Path(path).stat().st_size > 0
    return result


def test_sine_bit_exact_on_emulated_m4(qemu_sine):
    with _qemu(qemu_sine) as qb:
        res = _verify(qemu_sine, qb.port, "--vectors", "64")
    result = _check_pass(res, 32 + 64)
    assert result["runtime"] == "compiled"
    # -icount makes instruction counts deterministic: every sine inference runs the same code
    ins = result["metrics"]["instructions_per_inference"]
    assert ins["max"] - ins["min"] <= 40 * 2


def test_digits_bit_exact_with_accuracy(qemu_digits):
    with _qemu(qemu_digits) as qb:
        res = _verify(qemu_digits, qb.port, "--vectors", "8")
    result = _check_pass(res, 100 + 8)
    m = result["metrics"]
    assert m["top1_agreement_pct"] == 100.0
    assert m["board_accuracy_pct"] == m["reference_accuracy_pct"] >= 80.0


def test_user_keras_model_with_data_full_loop(tmp_path, pio_core):
    """`tinygen run` on a user .keras model with --data: build, pio, QEMU, verify, in one command."""
    import tensorflow as tf

    _tools()
    rng = np.random.default_rng(3)
    x = rng.normal(size=(200, 6, 6, 2)).astype(np.float32)
    y = (x[..., 0].mean(axis=(1, 2)) > 0).astype(np.int64) + 2 * (x[..., 1].mean(axis=(1, 2)) > 0)
    tf.keras.utils.set_random_seed(3)
    inp = tf.keras.Input(shape=(6, 6, 2))
    a = tf.keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inp)
    b = tf.keras.layers.Conv2D(4, 1, activation="relu")(inp)
    h = tf.keras.layers.Add()([a, b])
    h = tf.keras.layers.GlobalAveragePooling2D()(h)
    out = tf.keras.layers.Dense(4, activation="softmax")(h)
    model = tf.keras.Model(inp, out)
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=5, verbose=0)
    model.save(tmp_path / "user.keras")
    np.savez(tmp_path / "data.npz", x=x, y=y)
    res = run_cli("run", "--board", "qemu-m4", "--model", str(tmp_path / "user.keras"), "--data",
                  str(tmp_path / "data.npz"), "--out", str(tmp_path / "proj"), "--json", "--vectors", "4",
                  env={"PLATFORMIO_CORE_DIR": str(pio_core)}, timeout=900)
    result = _check_pass(res, 32 + 4)
    assert result["board"] == "qemu-m4"


def test_firmware_with_another_model_is_refused(qemu_sine, qemu_digits):
    with _qemu(qemu_digits) as qb:
        res = _verify(qemu_sine, qb.port)
    assert res.returncode == 5
    assert "different model" in res.stderr and "Traceback" not in res.stderr


class FrameMangler:
    """Forward bytes between a host-side pty and the emulator's pty, damaging chosen frames.

    `plan` maps a 1-based frame number (counted per direction, frames end at 0x00) to an
    action: "flip" (one bit inside the frame), "truncate" (drop the second half, keep the
    delimiter), "garbage" (random bytes before the frame)."""

    def __init__(self, board_port: str, to_board: dict[int, str], to_host: dict[int, str]):
        import serial

        self.board = serial.Serial(board_port, 115200, timeout=0)
        self.master, slave = os.openpty()
        import tty

        tty.setraw(slave)
        self.port = os.ttyname(slave)
        self._slave = slave
        self.plans = {"to_board": dict(to_board), "to_host": dict(to_host)}
        self.counts = {"to_board": 0, "to_host": 0}
        self.damaged = {"to_board": 0, "to_host": 0}
        self._bufs = {"to_board": bytearray(), "to_host": bytearray()}
        self._rng = np.random.default_rng(11)
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._loop, daemon=True)
        self._t.start()

    def _mangle(self, direction: str, frame: bytes) -> bytes:
        self.counts[direction] += 1
        action = self.plans[direction].get(self.counts[direction])
        if action is None or len(frame) < 4:
            return frame
        self.damaged[direction] += 1
        body = bytearray(frame[:-1])
        if action == "flip":
            i = int(self._rng.integers(1, len(body)))
            body[i] ^= 1 << int(self._rng.integers(0, 8))
            if body[i] == 0:
                body[i] = 0x5A
        elif action == "truncate":
            body = body[: len(body) // 2]
        elif action == "garbage":
            body = bytearray(self._rng.integers(1, 256, size=23, dtype=np.uint8).tobytes()) + body
        return bytes(body) + b"\x00"

    def _pump(self, direction: str, data: bytes, write) -> None:
        buf = self._bufs[direction]
        buf += data
        while b"\x00" in buf:
            i = buf.index(b"\x00")
            frame = bytes(buf[: i + 1])
            del buf[: i + 1]
            write(self._mangle(direction, frame))

    def _loop(self) -> None:
        while not self._stop.is_set():
            r, _, _ = select.select([self.master, self.board.fileno()], [], [], 0.05)
            if self.master in r:
                try:
                    data = os.read(self.master, 4096)
                except OSError:
                    data = b""
                if data:
                    self._pump("to_board", data, self.board.write)
            if self.board.fileno() in r:
                data = self.board.read(4096)
                if data:
                    self._pump("to_host", data, lambda b: os.write(self.master, b))

    def close(self) -> None:
        self._stop.set()
        self._t.join(2)
        self.board.close()
        os.close(self.master)
        os.close(self._slave)


def test_corrupted_and_truncated_frames_are_retried_never_accepted(qemu_sine):
    # Frames 1.. are the leading sync byte + HELLO, then INFERs; damage some in each direction.
    to_board = {3: "flip", 6: "truncate", 9: "garbage", 14: "flip"}
    to_host = {2: "flip", 5: "truncate", 8: "flip", 12: "garbage"}
    with _qemu(qemu_sine) as qb:
        mangler = FrameMangler(qb.port, to_board, to_host)
        try:
            res = _verify(qemu_sine, mangler.port, "--vectors", "16", "--timeout", "2", "--retries", "5")
        finally:
            mangler.close()
    result = _check_pass(res, 32 + 16)
    assert sum(mangler.damaged.values()) >= 6  # the damage really happened
    assert result["link"]["retries"] >= 4


def test_emulator_killed_mid_run_gives_a_clear_timeout_then_rerun_passes(qemu_sine):
    qb = _qemu(qemu_sine).start()
    proc = subprocess.Popen([sys.executable, "-m", "tinygen", "verify", "--project", str(qemu_sine), "--port",
                             qb.port, "--vectors", "4000", "--timeout", "2", "--retries", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = []
    while True:  # wait until vectors are flowing, then kill the emulator mid-run
        line = proc.stderr.readline()
        seen.append(line)
        if not line or "/4032 vectors" in line:
            break
    assert "/4032 vectors" in seen[-1], "".join(seen)
    qb._proc.kill()  # the emulator dies without warning
    stdout, rest = proc.communicate(timeout=120)
    stderr = "".join(seen) + rest
    qb.stop()
    assert proc.returncode != 0
    assert "Traceback" not in stderr
    lines = [ln for ln in stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and ("no reply" in lines[0] or "lost the serial connection" in lines[0]), stderr
    with _qemu(qemu_sine) as qb2:
        _check_pass(_verify(qemu_sine, qb2.port, "--vectors", "2"), 32 + 2)


def test_flash_prints_the_port_and_stops_cleanly(qemu_sine, pio_core):
    env = dict(os.environ, PLATFORMIO_CORE_DIR=str(pio_core))
    proc = subprocess.Popen([sys.executable, "-m", "tinygen", "flash", "--project", str(qemu_sine)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = ""
        deadline = time.time() + 300
        while time.time() < deadline and not line.startswith("port: "):
            line = proc.stdout.readline()
            if not line and proc.poll() is not None:
                break
        assert line.startswith("port: "), proc.stderr.read() if proc.poll() is not None else line
        port = line.split()[1]
        _check_pass(_verify(qemu_sine, port, "--vectors", "2"), 32 + 2)
    finally:
        proc.send_signal(signal.SIGINT)
        rest, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "stopped" in rest
    assert shutil.which("qemu-system-arm")


def test_verify_fails_on_a_one_lsb_difference_unless_tolerated(qemu_sine, tmp_path):
    """The board is right and the expected outputs are nudged by 1 LSB: verify must fail (exit 5)
    at the default tolerance of 0 and pass at --tolerance 1."""
    project = tmp_path / "nudged"
    shutil.copytree(qemu_sine, project)
    path = project / "vectors" / "reference.npz"
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    out = arrays["outputs"].astype(np.int16)
    out[0] += 1 if out[0].flat[0] < 127 else -1
    arrays["outputs"] = out.astype(np.int8)
    np.savez(path, **arrays)
    with _qemu(project) as qb:
        res = _verify(project, qb.port, "--vectors", "0")
        assert res.returncode == 5
        assert "max |Δ| 1 LSB > tolerance 0 LSB" in res.stderr
        res = _verify(project, qb.port, "--vectors", "0", "--tolerance", "1")
    assert res.returncode == 0, res.stderr
    m = json.loads(res.stdout)["metrics"]
    assert m["max_abs_diff_lsb"] == 1 and m["exact_match_pct"] < 100.0
