"""The serial protocol: Python framing, the C validation firmware on a real pty,
and DeviceLink's retries through a corrupting pty proxy.

C parts need host gcc (ASan/UBSan) and skip without it (fail under
TINYGEN_REQUIRE_TOOLS=1); the Cortex-M4 compile needs arm-none-eabi-gcc.
"""

from __future__ import annotations

import binascii
import hashlib
import os
import re
import select
import signal
import struct
import subprocess
import threading
import time
import tty
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinygen
from conftest import require_tool
from tinygen.codegen import protocol_header as H
from tinygen.common import protocol as P
from tinygen.device import framing as F
from tinygen.common.errors import TinygenError
from tinygen.device.serial_link import DeviceLink

REPO = Path(__file__).resolve().parents[2]
FW = REPO / "firmware"
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "protocol"

# The fixture model: int8 3x4 in, 12 out, out = saturate(2*in - 1) (test_runtime.c)
MODEL = dict(
    model_sha256=hashlib.sha256(b"tinygen protocol test model").hexdigest(),
    input_shape=(3, 4), output_shape=(12,),
    input_scale=0.0078125, input_zero_point=-3,
    output_scale=1 / 60, output_zero_point=5,
)
HASH8 = bytes.fromhex(MODEL["model_sha256"])[:8]
SAN_FLAGS = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-Wpedantic", "-Wshadow", "-g", "-O1",
             "-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer"]
M4_FLAGS = ["-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16", "-Os",
            "-Wall", "-Wextra", "-Werror", "-c"]


def expected(x: np.ndarray) -> np.ndarray:
    return np.clip(2 * x.astype(np.int32) - 1, -128, 127).astype(np.int8).reshape(12)


# ---------------------------------------------------------------------------
# CRC
# ---------------------------------------------------------------------------


def test_crc32_known_vectors():
    assert F.crc32(b"123456789") == 0xCBF43926  # CRC-32/ISO-HDLC check value
    assert F.crc32(b"") == 0
    assert F.crc32(b"The quick brown fox jumps over the lazy dog") == 0x414FA339
    for data in (b"\x00", b"\xff" * 4, bytes(range(256)), b"tinygen" * 100):
        assert F.crc32(data) == zlib.crc32(data) == binascii.crc32(data)
    assert F.crc32(b"6789", F.crc32(b"12345")) == 0xCBF43926


@given(st.binary(max_size=600))
def test_crc32_matches_zlib(data):
    assert F.crc32(data) == zlib.crc32(data)


# ---------------------------------------------------------------------------
# COBS
# ---------------------------------------------------------------------------

R = bytes(range(1, 256))  # 01..FF
COBS_VECTORS = [  # canonical COBS examples (Cheshire & Baker / Wikipedia)
    (b"\x00", b"\x01\x01"),
    (b"\x00\x00", b"\x01\x01\x01"),
    (b"\x00\x11\x00", b"\x01\x02\x11\x01"),
    (b"\x11\x22\x00\x33", b"\x03\x11\x22\x02\x33"),
    (b"\x11\x22\x33\x44", b"\x05\x11\x22\x33\x44"),
    (b"\x11\x00\x00\x00", b"\x02\x11\x01\x01\x01"),
    (R[:254], b"\xff" + R[:254]),
    (b"\x00" + R[:254], b"\x01\xff" + R[:254]),
    (R, b"\xff" + R[:254] + b"\x02\xff"),
    (R[1:] + b"\x00", b"\xff" + R[1:] + b"\x01\x01"),
    (R[2:] + b"\x00\x01", b"\xfe" + R[2:] + b"\x02\x01"),
]


@pytest.mark.parametrize("raw,enc", COBS_VECTORS, ids=range(len(COBS_VECTORS)))
def test_cobs_vectors(raw, enc):
    assert F.cobs_encode(raw) == enc
    assert F.cobs_decode(enc) == raw


@pytest.mark.parametrize("n", [0, 1, 253, 254, 255, 256, 507, 508, 509, 1000])
@pytest.mark.parametrize("fill", [b"\x01", b"\xff", b"\x00"])
def test_cobs_runs(n, fill):
    raw = fill * n
    enc = F.cobs_encode(raw)
    assert 0 not in enc
    assert len(enc) <= F.max_encoded_size(n)
    assert F.cobs_decode(enc) == raw
    for extra in (b"\x00", b"\x05"):  # runs with a zero / a byte after them
        assert F.cobs_decode(F.cobs_encode(raw + extra)) == raw + extra


def test_cobs_accepts_trailing_empty_block_after_ff():
    assert F.cobs_decode(b"\xff" + R[:254] + b"\x01") == R[:254]


@pytest.mark.parametrize("bad", [b"\x05\x11\x22", b"\x03\x11\x00", b"\x00", b"\x02\x11\x09\x01"])
def test_cobs_rejects_malformed(bad):
    with pytest.raises(P.FrameError):
        F.cobs_decode(bad)


@given(st.binary(max_size=2000))
def test_cobs_roundtrip(data):
    enc = F.cobs_encode(data)
    assert 0 not in enc
    assert len(enc) <= F.max_encoded_size(len(data))
    assert F.cobs_decode(enc) == data


# ---------------------------------------------------------------------------
# Frames
# ---------------------------------------------------------------------------


@given(opcode=st.integers(0, 0x7F), seq=st.integers(0, 0xFFFF), status=st.integers(0, 255),
       flags=st.integers(0, 255), reply=st.booleans(), payload=st.binary(max_size=700))
def test_frame_roundtrip(opcode, seq, status, flags, reply, payload):
    f = F.Frame(opcode=opcode, seq=seq, payload=payload, is_reply=reply, status=status, flags=flags)
    wire = F.encode_frame(f)
    assert wire.endswith(b"\x00") and 0 not in wire[:-1]
    assert F.decode_frame(wire) == f
    assert F.decode_frame(wire[:-1]) == f
    raw = F.pack_raw(f)
    assert raw[:8] == struct.pack("<BBHBBH", 1, opcode | (0x80 if reply else 0), seq, status, flags, len(payload))
    assert struct.unpack("<I", raw[-4:])[0] == zlib.crc32(raw[:-4])


def _sample_frames():
    return [F.encode_frame(F.Frame(opcode=P.Opcode.INFER, seq=0x1234, payload=bytes([0, 1, 0x80, 0xFF] * 3))),
            F.encode_frame(F.Frame(opcode=P.Opcode.HELLO, seq=7, is_reply=True, payload=bytes(300)))]


@pytest.mark.parametrize("wire", _sample_frames(), ids=["infer", "zeros300"])
def test_truncated_and_corrupted_frames_rejected(wire):
    body = wire[:-1]
    for n in range(len(body)):
        with pytest.raises(P.FrameError):
            F.decode_frame(body[:n])
    for i in range(len(body)):
        for bit in range(8):
            bad = bytearray(body)
            bad[i] ^= 1 << bit
            with pytest.raises(P.FrameError):
                F.decode_frame(bytes(bad))
    with pytest.raises(P.FrameError):
        F.decode_frame(body + b"\x01\x01")


def test_crc_error_is_typed():
    raw = bytearray(F.pack_raw(F.Frame(opcode=1, seq=1, payload=b"abc")))
    raw[9] ^= 0x10
    with pytest.raises(P.CrcError):
        F.unpack_raw(bytes(raw))
    assert issubclass(P.CrcError, P.ProtocolError) and issubclass(P.ProtocolError, TinygenError)


def test_length_field_checked():
    body = struct.pack("<BBHBBH", 1, 2, 3, 0, 0, 5) + b"abc"
    with pytest.raises(P.FrameError, match="length field"):
        F.unpack_raw(body + struct.pack("<I", zlib.crc32(body)))


def test_hello_roundtrip():
    info = F.HelloInfo(protocol_version=1, init_status=8, runtime_name="compiled", model_hash=HASH8,
                       input_shape=(1, 49, 40, 1), output_shape=(1, 4), input_scale=0.5, input_zero_point=-128,
                       output_scale=0.00390625, output_zero_point=-128, input_bytes=1960, output_bytes=4,
                       arena_bytes=12345, tick_hz=16_000_000, max_frame=1972)
    data = F.pack_hello(info)
    assert len(data) == P.HELLO_BYTES == 108
    assert F.parse_hello(data) == info
    assert F.parse_hello(data).init_status_name == "ALLOC_FAILED"
    with pytest.raises(P.ProtocolError):
        F.parse_hello(data[:-1])


def test_infer_reply_and_stats_payloads():
    out, ticks = F.parse_infer_reply(F.pack_infer_reply(b"\x01\x02\xff", 0xDEADBEEF), 3)
    assert (out, ticks) == (b"\x01\x02\xff", 0xDEADBEEF)
    with pytest.raises(P.ProtocolError):
        F.parse_infer_reply(b"\x01\x02", 3)
    assert F.parse_stats(struct.pack("<8I", *range(8))) == dict(zip(P.STATS, range(8)))


def test_status_names():
    assert P.status_name(0) == "OK" and P.status_name(8) == "ALLOC_FAILED" and P.status_name(250) == "UNKNOWN"
    assert "ALLOC_FAILED (status 8)" in P.describe_status(8)
    assert set(P.STATUS_DESCRIPTIONS) == set(P.Status)


# ---------------------------------------------------------------------------
# Generated headers
# ---------------------------------------------------------------------------


def test_c_header_deterministic_with_banner():
    a, b = H.render_c_header(), H.render_c_header()
    assert a == b
    first = a.splitlines()[0]
    assert "tinygen" in first and tinygen.__version__ in first
    assert not re.search(r"\b(19|20)\d\d-\d\d-\d\d\b|\d\d:\d\d:\d\d", a)


def _header_defines(text: str) -> dict[str, str]:
    return dict(re.findall(r"^#define (TG_\w+) (.+?)\s*$", text, flags=re.M))


def test_c_header_constants_parsed():
    d = _header_defines(H.render_c_header())

    def num(name):
        return int(d[name].rstrip("UL"), 0)

    assert num("TG_PROTOCOL_VERSION") == P.PROTOCOL_VERSION
    assert num("TG_CRC32_POLY") == P.CRC32_POLY == 0xEDB88320
    assert num("TG_REPLY_FLAG") == P.REPLY_FLAG
    assert num("TG_HEADER_BYTES") == P.HEADER_BYTES
    assert num("TG_HELLO_BYTES") == P.HELLO_BYTES
    for op in P.Opcode:
        assert num(f"TG_OP_{op.name}") == op
    for s in P.Status:
        assert num(f"TG_STATUS_{s.name}") == s
    for name, off in P.HELLO_OFFSETS.items():
        assert num(f"TG_HELLO_OFF_{name.upper()}") == off
    names = re.findall(r'"(\w+)"', d["TG_STATUS_NAME_TABLE"])
    assert names == [s.name for s in sorted(P.Status)]
    assert list(P.Status) == sorted(P.Status) and [int(s) for s in P.Status] == list(range(len(P.Status)))


def test_model_info_header():
    text = H.render_model_info_header(**MODEL)
    d = _header_defines(text)
    assert d["TG_MODEL_HASH_BYTES"] == "{" + ", ".join(f"0x{b:02x}" for b in HASH8) + "}"
    assert d["TG_INPUT_DIMS"] == "{3, 4}" and d["TG_INPUT_RANK"] == "2" and d["TG_INPUT_BYTES"] == "12"
    assert d["TG_OUTPUT_SCALE"].endswith("f") and d["TG_INPUT_ZERO_POINT"] == "(-3)"
    assert text == H.render_model_info_header(**MODEL)
    assert "TG_INPUT_SCALE 1.0f" in H.render_model_info_header(**{**MODEL, "input_scale": 1})
    with pytest.raises(P.ProtocolError):
        H.render_model_info_header(**{**MODEL, "input_shape": (1, 2, 3, 4, 5, 6)})


# ---------------------------------------------------------------------------
# Building the C firmware
# ---------------------------------------------------------------------------

@pytest.fixture
def needs_gcc():
    require_tool("gcc")


def _gen_dir(path: Path, **model) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "tg_protocol.h").write_text(H.render_c_header())
    (path / "tg_model_info.h").write_text(H.render_model_info_header(**model))
    return path


def _includes(gen: Path) -> list[str]:
    return [f"-I{gen}", f"-I{FW / 'hal'}", f"-I{FW / 'app'}"]


def _run(cmd):
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True)
    assert r.returncode == 0, f"{' '.join(map(str, cmd))}\n{r.stdout}\n{r.stderr}"
    return r


def _build_firmware(tmp_path_factory, model: dict) -> Path:
    require_tool("gcc")
    d = tmp_path_factory.mktemp("fw")
    gen = _gen_dir(d / "gen", **model)
    exe = d / "tg_fw"
    _run(["gcc", *SAN_FLAGS, *_includes(gen), FW / "app" / "tg_app.c", FW / "hal" / "host" / "tg_hal_host.c",
          FW / "hal" / "host" / "main.c", FIXTURES / "test_runtime.c", "-o", exe])
    return exe


@pytest.fixture(scope="module")
def firmware_bin(tmp_path_factory) -> Path:
    return _build_firmware(tmp_path_factory, MODEL)


# Same runtime with a 400-byte tensor: frames long enough for 0xFF COBS blocks.
BIG = dict(MODEL, input_shape=(20, 20), output_shape=(400,))


@pytest.fixture(scope="module")
def big_firmware_bin(tmp_path_factory) -> Path:
    return _build_firmware(tmp_path_factory, BIG)


class Firmware:
    """The natively compiled firmware (ASan/UBSan) serving on its own pty."""

    def __init__(self, exe: Path, env: dict | None = None):
        full_env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1:abort_on_error=0",
                        UBSAN_OPTIONS="print_stacktrace=1", **(env or {}))
        self.proc = subprocess.Popen([str(exe), "--exit-on-stdin-eof"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=full_env)
        line = self.proc.stdout.readline().decode()
        assert line.startswith("TG_PTY "), line + self.proc.stderr.read().decode()
        self.path = line.split()[1]

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> tuple[int, str]:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.send_signal(signal.SIGTERM)
                self.proc.wait(5)
        err = self.proc.stderr.read().decode(errors="replace")
        self.proc.stdout.close()
        self.proc.stderr.close()
        return self.proc.returncode, err


@pytest.fixture
def start_fw(firmware_bin):
    started = []

    def start(exe: Path = firmware_bin, **env) -> Firmware:
        fw = Firmware(exe, {k: str(v) for k, v in env.items()})
        started.append(fw)
        return fw

    yield start
    for fw in started:
        rc, err = fw.stop()
        assert rc == 0 and "Sanitizer" not in err and "runtime error" not in err, err


@pytest.fixture
def fw(start_fw) -> Firmware:
    return start_fw()


@pytest.fixture
def link(fw):
    with DeviceLink(fw.path, 115200, timeout=1.0, retries=2) as lk:
        yield lk


# ---------------------------------------------------------------------------
# Firmware on a pty: the happy path
# ---------------------------------------------------------------------------


def test_hello_fields(link):
    info = link.hello()
    assert info.protocol_version == P.PROTOCOL_VERSION and info.init_ok
    assert info.runtime_name == "test"
    assert info.model_hash == HASH8 and info.model_hash_hex == MODEL["model_sha256"][:16]
    assert info.input_shape == (3, 4) and info.output_shape == (12,)
    assert info.input_dtype == info.output_dtype == P.DType.INT8
    assert info.input_scale == np.float32(MODEL["input_scale"]) and info.input_zero_point == -3
    assert info.output_scale == np.float32(MODEL["output_scale"]) and info.output_zero_point == 5
    assert (info.input_bytes, info.output_bytes, info.arena_bytes) == (12, 12, 1234)
    assert info.tick_hz == 1_000_000
    assert info.max_frame == P.FRAME_OVERHEAD + max(12, P.MIN_RX_PAYLOAD)
    assert link.log_lines == []


def test_infer_random_and_extremes(link):
    rng = np.random.default_rng(1)
    cases = [np.full((3, 4), -128, np.int8), np.full((3, 4), 127, np.int8), np.zeros((3, 4), np.int8),
             np.array([-128, 127, -1, 0, 1, 63, 64, -64, -65, 100, -100, 127], np.int8).reshape(3, 4)]
    cases += [rng.integers(-128, 128, size=(3, 4), dtype=np.int8) for _ in range(200)]
    for x in cases:
        y, ticks = link.infer(x)
        assert y.dtype == np.int8 and y.shape == (12,)
        np.testing.assert_array_equal(y, expected(x))
        assert 0 <= ticks < 1_000_000
    y, _ = link.infer(cases[0].reshape(1, 3, 4))  # a leading batch of 1 is fine
    np.testing.assert_array_equal(y, expected(cases[0]))
    stats = link.get_stats()
    assert stats["infers"] == len(cases) + 1 and stats["bad_crc"] == 0
    link.reset_stats()
    assert link.get_stats()["frames"] == 1  # the GET_STATS itself
    assert link.stats.retries == 0


def test_infer_rejects_wrong_input_on_host(link):
    with pytest.raises(TinygenError, match="int8"):
        link.infer(np.zeros((3, 4), np.float32))
    with pytest.raises(TinygenError, match="shape"):
        link.infer(np.zeros((4, 3), np.int8))


def test_ping_echo_and_limits(link):
    assert link.ping(b"") == b""
    payload = bytes(range(256))[:P.MIN_RX_PAYLOAD]
    assert link.ping(payload) == payload
    with pytest.raises(P.ProtocolError, match="TOO_LONG"):
        link.ping(payload + b"x")


def test_too_long_request_fails_at_once(fw):
    """TOO_LONG for a request longer than the board's buffer is not line noise:
    one attempt and a clear error, or none once HELLO has given the limit."""
    with DeviceLink(fw.path, timeout=1.0, retries=3) as link:
        with pytest.raises(P.DeviceStatusError) as ei:
            link.ping(bytes(P.MIN_RX_PAYLOAD + 1))
        assert ei.value.status == P.Status.TOO_LONG and ei.value.exit_code == 4
        msg = str(ei.value)
        assert "\n" not in msg and "TOO_LONG" in msg and "PING" in msg and "77 bytes" in msg and "max_frame" in msg
        assert (link.stats.attempts, link.stats.retries) == (1, 0)
        assert link.hello().max_frame == 76
        attempts = link.stats.attempts
        with pytest.raises(P.ProtocolError, match=r"PING request of 77 bytes.*at most 76 bytes \(64 payload bytes\)"):
            link.ping(bytes(P.MIN_RX_PAYLOAD + 1))
        assert link.stats.attempts == attempts  # refused before sending
        assert link.get_stats()["too_long"] == 1


def test_long_cobs_runs_both_ways(start_fw, big_firmware_bin):
    """Runs of 253/254/255 non-zero bytes around the 0xFF-block boundary, in
    requests (INFER, PING) and replies (INFER output 2x-1 is never 0)."""
    fw = start_fw(big_firmware_bin)
    with DeviceLink(fw.path, timeout=1.0, retries=0) as link:
        info = link.hello()
        assert info.input_shape == (20, 20) and info.max_frame == 412
        # header: ... flags (0), length 0x0190 (non-zero bytes): a zero at payload
        # index k ends a run of k + 2 non-zero bytes; sweep it over 251..260
        inputs = [np.full(400, 5, np.int8), np.full(400, -128, np.int8)]
        for k in [*range(249, 259), 399]:
            for second in (None, min(k + 1, 399), min(k + 254, 399), min(k + 255, 399)):
                x = np.full(400, 3, np.int8)
                x[k] = 0
                if second is not None:
                    x[second] = 0
                inputs.append(x)
        rng = np.random.default_rng(3)
        inputs += [np.where(rng.random(400) < 0.004, 0, rng.integers(1, 128, 400)).astype(np.int8)
                   for _ in range(20)]
        for x in inputs:
            y, _ = link.infer(x.reshape(20, 20))
            np.testing.assert_array_equal(y, np.clip(2 * x.astype(int) - 1, -128, 127).astype(np.int8))
            assert link.ping(x.tobytes()) == x.tobytes()
        assert link.stats.retries == 0
        assert link.get_stats()["bad_frame"] == 0


# ---------------------------------------------------------------------------
# Firmware on a pty: bad frames
# ---------------------------------------------------------------------------


def raw_frame(opcode, seq, payload=b"", version=1, length=None, flags=0, status=0) -> bytes:
    """header + payload + crc with any field wrong on purpose."""
    body = struct.pack("<BBHBBH", version, opcode, seq, status, flags,
                       len(payload) if length is None else length) + payload
    return body + struct.pack("<I", zlib.crc32(body))


def wire(raw: bytes) -> bytes:
    return F.cobs_encode(raw) + b"\x00"


def exchange(link: DeviceLink, data: bytes, timeout=2.0) -> F.Frame:
    link.send_raw(data)
    f = link.read_frame(timeout)
    assert f is not None, "no reply"
    assert f.is_reply
    return f


def infer_ok(link: DeviceLink, seq=1):
    x = np.arange(-6, 6, dtype=np.int8)
    f = exchange(link, wire(raw_frame(P.Opcode.INFER, seq, x.tobytes())))
    assert (f.status, f.seq, f.opcode) == (P.Status.OK, seq, P.Opcode.INFER)
    out, _ = F.parse_infer_reply(f.payload, 12)
    assert out == expected(x).tobytes()


def test_bad_frames_get_the_right_status(fw, link):
    good = raw_frame(P.Opcode.INFER, 0x0102, bytes(range(12)))
    flipped = bytearray(good)
    flipped[10] ^= 0x04
    cases = [
        ("bit flip", wire(bytes(flipped)), P.Status.BAD_CRC, 0x0102),
        ("crc flip", wire(good[:-1] + bytes([good[-1] ^ 0x80])), P.Status.BAD_CRC, 0x0102),
        ("raw truncated", wire(good[:-3]), P.Status.BAD_CRC, 0x0102),
        ("cobs truncated", F.cobs_encode(good)[:-3] + b"\x00", P.Status.BAD_FRAME, 0x0102),
        ("short", wire(good[:7]), P.Status.BAD_FRAME, 0x0102),
        ("tiny", b"\x02\x07\x00", P.Status.BAD_FRAME, 0),
        ("garbage", bytes(range(1, 60)) + b"\x00", None, None),
        ("overlong 10KB", wire(raw_frame(P.Opcode.PING, 9, bytes(10_000))), P.Status.TOO_LONG, 9),
        ("overlong garbage", b"\xff" * 10_240 + b"\x00", P.Status.TOO_LONG, 0xFFFF),
        ("infer 11", wire(raw_frame(P.Opcode.INFER, 3, bytes(11))), P.Status.BAD_LENGTH, 3),
        ("infer 13", wire(raw_frame(P.Opcode.INFER, 4, bytes(13))), P.Status.BAD_LENGTH, 4),
        ("infer 0", wire(raw_frame(P.Opcode.INFER, 5)), P.Status.BAD_LENGTH, 5),
        ("hello+payload", wire(raw_frame(P.Opcode.HELLO, 6, b"x")), P.Status.BAD_LENGTH, 6),
        ("unknown opcode", wire(raw_frame(0x42, 7)), P.Status.UNKNOWN_OPCODE, 7),
        ("opcode 0", wire(raw_frame(0, 8)), P.Status.UNKNOWN_OPCODE, 8),
        ("bad version", wire(raw_frame(P.Opcode.HELLO, 10, version=2)), P.Status.BAD_VERSION, 10),
        ("reply flag", wire(raw_frame(P.Opcode.HELLO | 0x80, 11)), P.Status.BAD_FRAME, 11),
        ("length field", wire(raw_frame(P.Opcode.INFER, 12, bytes(12), length=11)), P.Status.BAD_FRAME, 12),
    ]
    for name, data, status, seq in cases:
        f = exchange(link, data)
        if status is None:
            assert f.status in (P.Status.BAD_FRAME, P.Status.BAD_CRC), name
        else:
            assert f.status == status, (name, f.status_name)
        if seq is not None:
            assert f.seq == seq, name
        # seq is flagged untrusted exactly when the board could not check the CRC
        untrusted = status is None or (status in P.RETRYABLE_STATUSES
                                       and name not in ("reply flag", "length field"))
        assert f.seq_untrusted == untrusted, name
        if status == P.Status.BAD_VERSION:
            assert f.payload == bytes([P.PROTOCOL_VERSION])
        assert f.version == P.PROTOCOL_VERSION
        infer_ok(link, seq=0x4000)  # a valid frame right after still works
        assert fw.alive(), name
    st_ = link.get_stats()
    assert st_["bad_crc"] == 3 and st_["too_long"] == 2
    assert st_["infers"] == len(cases)
    assert st_["rejected"] == 7


def test_empty_frames_and_garbage_before_a_frame(fw, link):
    link.send_raw(b"\x00" * 50)
    assert link.read_frame(0.2) is None  # empty frames are resync markers: no reply
    link.send_raw(b"\x13\x37\xfe\x01\x02")  # garbage without delimiter ...
    info = link.hello()  # ... DeviceLink's leading 0x00 flushes it
    assert info.init_ok
    np.testing.assert_array_equal(link.infer(np.ones((3, 4), np.int8))[0], np.ones(12, np.int8))


# Each test below pins one statement of docs/protocol.md "Protocol: what the firmware does".


def test_doc_empty_payload_required(link):
    for op, seq in ((P.Opcode.HELLO, 21), (P.Opcode.GET_STATS, 22), (P.Opcode.RESET_STATS, 23)):
        for payload in (b"\x00", b"x" * 12):
            f = exchange(link, wire(raw_frame(op, seq, payload)))
            assert (f.opcode, f.seq, f.status, f.flags, f.payload) == (op, seq, P.Status.BAD_LENGTH, 0, b"")
    assert link.get_stats()["rejected"] == 6  # RESET_STATS with a payload reset nothing


def test_doc_ping_limit_is_input_bytes_or_64(start_fw, big_firmware_bin):
    for exe, limit in ((None, P.MIN_RX_PAYLOAD), (big_firmware_bin, 400)):
        fw = start_fw(exe) if exe else start_fw()
        with DeviceLink(fw.path, timeout=1.0, retries=0) as link:
            assert link.hello().max_frame == P.FRAME_OVERHEAD + limit
            data = bytes((i % 255) + 1 for i in range(limit))
            assert link.ping(data) == data
            f = exchange(link, wire(raw_frame(P.Opcode.PING, 31, data + b"!")))
            assert (f.status, f.seq, f.seq_untrusted) == (P.Status.TOO_LONG, 31, True)


def test_doc_request_status_and_flags_ignored(link):
    for status, flags in ((0xFF, 0xFF), (P.Status.BAD_CRC, P.FLAG_SEQ_UNTRUSTED), (7, 0x80)):
        f = exchange(link, wire(raw_frame(P.Opcode.PING, 41, b"abc", status=status, flags=flags)))
        assert (f.status, f.flags, f.payload) == (P.Status.OK, 0, b"abc")
        f = exchange(link, wire(raw_frame(P.Opcode.INFER, 42, bytes(12), status=status, flags=flags)))
        assert f.status == P.Status.OK and f.flags == 0


def test_doc_order_of_checks(link):
    """too long > COBS cut short > shorter than 12 > CRC > version > reply flag / length field > opcode > length."""
    long_cut = F.cobs_encode(raw_frame(P.Opcode.PING, 51, bytes(200)))[:-3]
    cases = [
        ("too long beats a cut COBS block", long_cut + b"\x00", P.Status.TOO_LONG, True),
        ("cut beats a bad CRC", F.cobs_encode(raw_frame(P.Opcode.PING, 52, b"abcdef"))[:-2] + b"\xfe\x00",
         P.Status.BAD_FRAME, True),
        ("CRC beats the version", wire(raw_frame(P.Opcode.HELLO, 53, version=9)[:-1] + b"\x00"),
         P.Status.BAD_CRC, True),
        ("version beats the reply flag", wire(raw_frame(P.Opcode.HELLO | 0x80, 54, version=2)),
         P.Status.BAD_VERSION, False),
        ("version beats the length field", wire(raw_frame(P.Opcode.PING, 55, b"ab", version=0, length=9)),
         P.Status.BAD_VERSION, False),
        ("reply flag beats an unknown opcode", wire(raw_frame(0x42 | 0x80, 56)), P.Status.BAD_FRAME, False),
        ("length field beats an unknown opcode", wire(raw_frame(0x42, 57, b"a", length=2)),
         P.Status.BAD_FRAME, False),
        ("unknown opcode with a payload", wire(raw_frame(0x42, 58, b"abc")), P.Status.UNKNOWN_OPCODE, False),
    ]
    for i, (name, data, status, untrusted) in enumerate(cases):
        f = exchange(link, data)
        assert (f.status, f.seq_untrusted, f.seq) == (status, untrusted, 51 + i), (name, f.status_name)


def test_doc_init_failure_beats_infer_length(start_fw):
    fw = start_fw(TG_TEST_INIT_STATUS=8)
    with DeviceLink(fw.path, timeout=1.0, retries=0) as link:
        f = exchange(link, wire(raw_frame(P.Opcode.INFER, 61, bytes(3))))
        assert f.status == P.Status.ALLOC_FAILED


def test_doc_leading_delimiter(link):
    """Bytes left on the line (no 0x00 after them) merge with the next frame
    unless a 0x00 comes first; with it, they get their own error reply."""
    junk = b"\x13\x37\xfe\x01\x02"
    link.send_raw(junk + wire(raw_frame(P.Opcode.PING, 71, b"hi")))
    f = exchange(link, b"")
    assert f.status in (P.Status.BAD_FRAME, P.Status.BAD_CRC, P.Status.TOO_LONG) and f.seq_untrusted
    assert link.read_frame(0.3) is None  # the PING was swallowed
    link.send_raw(junk)
    first = exchange(link, b"\x00" + wire(raw_frame(P.Opcode.PING, 72, b"hi")))
    assert first.seq_untrusted and first.status == P.Status.BAD_FRAME
    second = link.read_frame(2.0)
    assert (second.status, second.seq, second.payload) == (P.Status.OK, 72, b"hi")
    link.send_raw(b"\x00" * 20)
    assert link.read_frame(0.3) is None  # empty frames: no reply, not counted
    assert link.get_stats()["frames"] == 4  # 2 junk chunks, the PING, GET_STATS


def test_fuzz_every_chunk_gets_one_reply(fw, link):
    rng = np.random.default_rng(7)
    base = [raw_frame(P.Opcode.INFER, 1, bytes(range(12))), raw_frame(P.Opcode.HELLO, 2),
            raw_frame(P.Opcode.PING, 3, bytes(64))]
    sent = got = 0
    for i in range(300):
        enc = bytearray(F.cobs_encode(base[i % 3]))
        kind = i % 5
        if kind == 0:  # bit flips
            for _ in range(rng.integers(1, 4)):
                enc[rng.integers(len(enc))] ^= 1 << rng.integers(8)
        elif kind == 1:  # truncate
            enc = enc[:rng.integers(1, len(enc))]
        elif kind == 2:  # insert bytes
            pos = rng.integers(len(enc))
            enc[pos:pos] = rng.integers(1, 256, size=rng.integers(1, 40), dtype=np.uint8).tobytes()
        elif kind == 3:  # random bytes
            enc = bytearray(rng.integers(0, 256, size=rng.integers(1, 120), dtype=np.uint8).tobytes())
        else:  # splice two frames
            enc = enc[:len(enc) // 2] + bytearray(F.cobs_encode(base[(i + 1) % 3]))[len(enc) // 2:]
        chunks = [c for c in bytes(enc).split(b"\x00") if c]
        sent += len(chunks)
        link.send_raw(bytes(enc) + b"\x00")
        if i % 20 == 19:  # collect the replies to this batch
            while got < sent:
                f = link.read_frame(2.0)
                assert f is not None and f.is_reply, f"{sent - got} replies missing after {i + 1} sends"
                got += 1
    assert link.read_frame(0.2) is None  # exactly one reply per non-empty chunk
    assert fw.alive()
    infer_ok(link, seq=99)


# ---------------------------------------------------------------------------
# Runtime failures
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("code,name", [(8, "ALLOC_FAILED"), (10, "UNSUPPORTED_OP"), (200, "UNKNOWN"),
                                       (-5, "RUNTIME_INIT_FAILED")])
def test_runtime_init_failure(start_fw, code, name):
    fw = start_fw(TG_TEST_INIT_STATUS=code)
    want = code if 0 < code < 256 else P.Status.RUNTIME_INIT_FAILED
    with DeviceLink(fw.path, timeout=1.0) as link:
        info = link.hello()
        assert info.init_status == want and not info.init_ok
        assert f"tinygen: runtime init failed (status {want}: {name})" in link.log_lines
        with pytest.raises(P.DeviceStatusError) as ei:
            link.infer(np.zeros((3, 4), np.int8))
        assert ei.value.status == want and ei.value.exit_code == 4
        assert str(ei.value).count("\n") == 0
        assert link.ping(b"still alive") == b"still alive"


def test_invoke_failure(start_fw):
    fw = start_fw(TG_TEST_INVOKE_STATUS=-3)
    with DeviceLink(fw.path, timeout=1.0) as link:
        assert link.hello().init_ok
        with pytest.raises(P.DeviceStatusError, match=r"INVOKE_FAILED.*runtime returned -3") as ei:
            link.infer(np.zeros((3, 4), np.int8))
        assert ei.value.status == P.Status.INVOKE_FAILED
        assert link.get_stats()["invoke_failures"] == 1


# ---------------------------------------------------------------------------
# DeviceLink behaviour
# ---------------------------------------------------------------------------


def test_stale_reply_dropped(link):
    link.hello()
    link.send_raw(F.request(P.Opcode.HELLO, (link._seq + 1000) & 0xFFFF))
    time.sleep(0.05)
    y, _ = link.infer(np.zeros((3, 4), np.int8))
    np.testing.assert_array_equal(y, expected(np.zeros((3, 4), np.int8)))
    assert link.stats.stale_replies == 1 and link.stats.retries == 0


def test_trace_hexdumps_traffic(fw):
    lines = []
    with DeviceLink(fw.path, timeout=1.0, trace=lines.append) as link:
        link.hello()
    text = "\n".join(lines)
    assert "TX HELLO" in text and "RX reply HELLO" in text and "status=OK" in text
    assert re.search(r"^   0000  00 ", text, re.M)  # hex dump of the request (leading delimiter)


def test_timeout_message_loop():
    with DeviceLink("loop://", 9600, timeout=0.05, retries=2) as link:
        t = time.monotonic()
        with pytest.raises(P.LinkTimeout) as ei:
            link.hello()
        assert time.monotonic() - t < 2
    msg = str(ei.value)
    assert msg == ("no reply from the board on loop:// after 3 tries; is the firmware flashed and the baud rate "
                   "9600?")
    assert ei.value.exit_code == 4 and link.stats.stale_replies == 3  # our own echoed requests


def test_open_failure_is_clear():
    with pytest.raises(TinygenError, match="cannot open serial port /dev/does-not-exist"):
        DeviceLink("/dev/does-not-exist")


def test_resync_drops_partial_frame_after_open():
    """Bytes before the first delimiter after opening (the tail of a frame) are
    dropped without costing a retry; later corrupt chunks do cost one."""
    link = DeviceLink("loop://", timeout=0.5, retries=1)
    nxt = (link._seq + 1) & 0xFFFF

    def reply(seq):
        return F.encode_frame(F.Frame(opcode=P.Opcode.PING, seq=seq, payload=b"ok", is_reply=True))

    link.send_raw(reply(nxt)[5:] + reply(nxt))  # a partial frame, then the reply to the coming PING
    assert link.ping(b"ok") == b"ok"
    assert link.stats.retries == 0 and link.stats.bad_replies == 0
    link.send_raw(reply(nxt + 1)[5:] + reply(nxt + 2))  # now the same partial frame is a corrupt reply
    assert link.ping(b"ok") == b"ok"
    assert link.stats.retries == 1 and link.stats.bad_replies == 1
    link.close()


def test_text_before_frame_without_delimiter():
    link = DeviceLink("loop://", timeout=0.2, retries=0)
    good = F.encode_frame(F.Frame(opcode=P.Opcode.PING, seq=5, payload=b"\n\n", is_reply=True))
    link.send_raw(b"boot: hello\r\nmore text\n" + good + b"tinygen: note\n\x00")
    assert link.read_frame(0.5).payload == b"\n\n"
    assert link.read_frame(0.2) is None
    assert link.log_lines == ["boot: hello", "more text", "tinygen: note"]
    link.close()


# ---------------------------------------------------------------------------
# Retries through a corrupting proxy between two real ptys
# ---------------------------------------------------------------------------


class PtyProxy:
    """host <-> [pty pair] <-> proxy thread <-> firmware pty.

    ``h2d`` / ``d2h``: functions (index, chunk_with_delimiter) -> bytes that
    may corrupt, drop (b"") or add to the n-th non-empty frame in each
    direction."""

    def __init__(self, device_path: str, h2d=None, d2h=None):
        self.h2d, self.d2h = h2d or (lambda i, c: c), d2h or (lambda i, c: c)
        self.master, slave = os.openpty()
        self.path = os.ttyname(slave)
        tty.setraw(slave)
        self._slave = slave
        self.dev = os.open(device_path, os.O_RDWR | os.O_NOCTTY)
        tty.setraw(self.dev)
        self.counts = {"h2d": 0, "d2h": 0}
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        bufs = {self.master: bytearray(), self.dev: bytearray()}
        while not self._stop:
            r, _, _ = select.select([self.master, self.dev], [], [], 0.02)
            for fd in r:
                try:
                    data = os.read(fd, 4096)
                except OSError:
                    continue
                buf = bufs[fd]
                buf += data
                while (idx := buf.find(0)) >= 0:
                    chunk = bytes(buf[:idx + 1])
                    del buf[:idx + 1]
                    if fd == self.master:
                        direction, fn, out = "h2d", self.h2d, self.dev
                    else:
                        direction, fn, out = "d2h", self.d2h, self.master
                    if len(chunk) > 1:
                        chunk = fn(self.counts[direction], chunk)
                        self.counts[direction] += 1
                    if chunk:
                        os.write(out, chunk)

    def close(self):
        self._stop = True
        self._thread.join(2)
        for fd in (self.master, self._slave, self.dev):
            os.close(fd)


def flip(target: int):
    def fn(i, chunk):
        if i != target:
            return chunk
        b = bytearray(chunk)
        b[len(b) // 2] ^= 0x01 if b[len(b) // 2] not in (0x01,) else 0x02
        return bytes(b)
    return fn


def drop(targets):
    return lambda i, chunk: b"" if i in targets else chunk


@pytest.mark.parametrize("case", ["h2d_corrupt", "d2h_corrupt", "h2d_drop", "d2h_drop", "d2h_noise", "h2d_overlong"])
def test_retries_through_corrupting_proxy(fw, case):
    h2d = d2h = None
    if case == "h2d_corrupt":
        h2d = flip(1)
    elif case == "d2h_corrupt":
        d2h = flip(1)
    elif case == "h2d_drop":
        h2d = drop({1})
    elif case == "d2h_drop":
        d2h = drop({1})
    elif case == "h2d_overlong":  # empty COBS blocks appended on the line: the board sees an overlong frame
        h2d = lambda i, c: (c[:-1] + b"\x01" * 100 + b"\x00") if i == 1 else c
    else:  # garbage and a text line injected before the 2nd reply, garbage merged into the 3rd
        d2h = lambda i, c: (b"tinygen: noise\n\x00" + c) if i == 1 else (b"\x17\xfe\x42" + c if i == 2 else c)
    proxy = PtyProxy(fw.path, h2d=h2d, d2h=d2h)
    try:
        with DeviceLink(proxy.path, 115200, timeout=1.0, retries=3) as link:
            assert link.hello().init_ok
            x = np.arange(12, dtype=np.int8).reshape(3, 4) * 10
            for _ in range(3):
                y, _ = link.infer(x)
                np.testing.assert_array_equal(y, expected(x))
            s = link.stats
            if case == "h2d_corrupt":  # BAD_CRC, or BAD_FRAME if the flip hit a COBS code byte
                assert s.error_replies == 1 and s.retries == 1
            elif case == "d2h_corrupt":
                assert s.bad_replies == 1 and s.retries == 1
            elif case == "h2d_overlong":  # HELLO said the request fits: TOO_LONG was noise, retried
                assert s.error_replies == 1 and s.retries == 1
            elif case in ("h2d_drop", "d2h_drop"):
                assert s.timeouts == 1 and s.retries == 1
            else:
                assert "tinygen: noise" in link.log_lines
                assert s.bad_replies == 1 and s.retries == 1
            board = link.get_stats()
            assert board["too_long"] == (case == "h2d_overlong")
            assert board["bad_crc"] + board["bad_frame"] == (1 if case == "h2d_corrupt" else 0)
    finally:
        proxy.close()
    assert fw.alive()


def test_gives_up_with_clear_message(fw):
    proxy = PtyProxy(fw.path, h2d=lambda i, c: flip(i)(i, c))  # corrupt every request
    try:
        with DeviceLink(proxy.path, 4800, timeout=1.0, retries=2) as link:
            with pytest.raises(P.ProtocolError) as ei:
                link.hello()
        msg = str(ei.value)
        assert "after 3 tries" in msg and "4800" in msg and "\n" not in msg
        assert "the board reported BAD_CRC" in msg or "the board reported BAD_FRAME" in msg
        assert link.stats.error_replies == 3
    finally:
        proxy.close()


# ---------------------------------------------------------------------------
# C header == protocol.py, and portability builds
# ---------------------------------------------------------------------------


def test_c_header_constants_compiled(tmp_path, needs_gcc):
    gen = _gen_dir(tmp_path, **MODEL)
    names = (["TG_PROTOCOL_VERSION", "TG_CRC32_POLY", "TG_CRC32_INIT", "TG_CRC32_XOROUT", "TG_REPLY_FLAG",
              "TG_FLAG_SEQ_UNTRUSTED", "TG_HEADER_BYTES", "TG_CRC_BYTES", "TG_HELLO_BYTES", "TG_STATUS_COUNT",
              "TG_STATS_COUNT", "TG_MAX_RANK", "TG_FRAME_DELIMITER"]
             + [f"TG_OP_{o.name}" for o in P.Opcode] + [f"TG_STATUS_{s.name}" for s in P.Status]
             + [f"TG_DTYPE_{t.name}" for t in P.DType] + [f"TG_STAT_{n.upper()}" for n in P.STATS]
             + [f"TG_HELLO_OFF_{n.upper()}" for n in P.HELLO_OFFSETS])
    prog = ['#include <stdio.h>', '#include "tg_protocol.h"', "int main(void) {"]
    prog += [f'    printf("{n} %lu\\n", (unsigned long)({n}));' for n in names]
    prog += ['    for (int i = -1; i <= TG_STATUS_COUNT; i++) printf("name %d %s\\n", i, tg_status_name(i));',
             "    return 0;", "}"]
    (tmp_path / "consts.c").write_text("\n".join(prog) + "\n")
    _run(["gcc", "-std=c99", "-Wall", "-Wextra", "-Werror", "-Wpedantic", f"-I{gen}", tmp_path / "consts.c",
          "-o", tmp_path / "consts"])
    out = _run([tmp_path / "consts"]).stdout.splitlines()
    got = {ln.split()[0]: int(ln.split()[1]) for ln in out if not ln.startswith("name")}
    want = {"TG_PROTOCOL_VERSION": P.PROTOCOL_VERSION, "TG_CRC32_POLY": P.CRC32_POLY,
            "TG_CRC32_INIT": P.CRC32_INIT, "TG_CRC32_XOROUT": P.CRC32_XOROUT, "TG_REPLY_FLAG": P.REPLY_FLAG,
            "TG_FLAG_SEQ_UNTRUSTED": P.FLAG_SEQ_UNTRUSTED, "TG_HEADER_BYTES": P.HEADER_BYTES,
            "TG_CRC_BYTES": P.CRC_BYTES, "TG_HELLO_BYTES": P.HELLO_BYTES, "TG_STATUS_COUNT": len(P.Status),
            "TG_STATS_COUNT": len(P.STATS), "TG_MAX_RANK": P.MAX_RANK, "TG_FRAME_DELIMITER": P.DELIMITER}
    want.update({f"TG_OP_{o.name}": int(o) for o in P.Opcode})
    want.update({f"TG_STATUS_{s.name}": int(s) for s in P.Status})
    want.update({f"TG_DTYPE_{t.name}": int(t) for t in P.DType})
    want.update({f"TG_STAT_{n.upper()}": i for i, n in enumerate(P.STATS)})
    want.update({f"TG_HELLO_OFF_{n.upper()}": off for n, off in P.HELLO_OFFSETS.items()})
    assert got == want
    names_out = [ln.split(maxsplit=2)[2] for ln in out if ln.startswith("name")]
    assert names_out == ["UNKNOWN"] + [P.status_name(i) for i in range(len(P.Status))] + ["UNKNOWN"]


ARM_MODELS = {
    "fixture": MODEL,
    "rank5_big": dict(MODEL, input_shape=(1, 49, 40, 1, 1), output_shape=(1, 1, 1, 1, 4), input_scale=1,
                      output_zero_point=-128),
    "tiny": dict(MODEL, input_shape=(1,), output_shape=(1,)),
}


@pytest.mark.parametrize("model", list(ARM_MODELS))
def test_tg_app_compiles_for_cortex_m4(tmp_path, model):
    require_tool("arm-none-eabi-gcc")
    gen = _gen_dir(tmp_path / "gen", **ARM_MODELS[model])
    _run(["arm-none-eabi-gcc", *M4_FLAGS, "-std=c99", "-Wpedantic", *_includes(gen), FW / "app" / "tg_app.c",
          "-o", tmp_path / "tg_app.o"])
    assert (tmp_path / "tg_app.o").stat().st_size > 0


def test_tg_app_compiles_as_cxx_and_rejects_bad_model_info(tmp_path, needs_gcc):
    gen = _gen_dir(tmp_path / "gen", **MODEL)
    require_tool("g++")  # headers are usable from C++ (TFLM glue is C++)
    (tmp_path / "use.cc").write_text('#include "tg_protocol.h"\n#include "tg_app.h"\n#include "tg_runtime.h"\n'
                                     '#include "tg_hal.h"\nint main() { return tg_status_name(0)[0] == \'O\' ? 0 : 1; }\n')
    _run(["g++", "-Wall", "-Wextra", "-Werror", *_includes(gen), tmp_path / "use.cc", "-o", tmp_path / "use"])
    info = (gen / "tg_model_info.h").read_text()
    (gen / "tg_model_info.h").write_text(info.replace("#define TG_INPUT_SCALE", "#define TG_NOT_INPUT_SCALE"))
    r = subprocess.run(["gcc", "-std=c99", "-c", *_includes(gen), str(FW / "app" / "tg_app.c"), "-o",
                        str(tmp_path / "x.o")], capture_output=True, text=True)
    assert r.returncode != 0 and "lacks a required macro" in r.stderr
