"""The host side of the wire format: CRC-32, COBS, frames and payload codecs.

The numbers (header layout, opcodes, statuses, payload layouts) come from
:mod:`tinygen.common.protocol`; this module only encodes and decodes them.
:mod:`tinygen.device.serial_link` drives a port with it.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field

from tinygen.common.protocol import (CRC_BYTES, FLAG_SEQ_UNTRUSTED, FRAME_OVERHEAD, HEADER, HEADER_BYTES, HELLO,
                                     HELLO_BYTES, INFER_TICKS_BYTES, MAX_PAYLOAD, MAX_RANK, PROTOCOL_VERSION,
                                     REPLY_FLAG, RUNTIME_NAME_BYTES, STATS, CrcError, DType, FrameError,
                                     ProtocolError, Status, status_name)


class BoardFault(ProtocolError):
    """The board broke the protocol in a way no line noise explains: more stream frames than the model
    has ops for, a tensor larger than the model's, a record for an op the model lacks, replies that only
    ever carry old sequence numbers.  Not retried; exit 4 (talking to the board failed) with the
    message saying that the board, not the user's input, is at fault."""


def crc32(data: bytes, crc: int = 0) -> int:
    """CRC-32/ISO-HDLC, zlib's; ``crc`` continues a previous value.  The firmware's own
    table-driven copy (tg_app.c) is checked against this in tests/device/test_protocol.py."""
    return zlib.crc32(data, crc) & 0xFFFFFFFF


# --------------------------------------------------------------------------
# COBS
# --------------------------------------------------------------------------


def cobs_encode(data: bytes) -> bytes:
    """Canonical COBS; the result contains no 0x00 (delimiter not appended)."""
    out = bytearray()
    n = len(data)
    i = 0
    while True:
        j = i
        while j < n and j - i < 254 and data[j] != 0:
            j += 1
        run = j - i
        out.append(run + 1)
        out += data[i:j]
        i = j
        if run == 254:
            if i >= n:
                break
            continue
        if i >= n:
            break
        i += 1  # skip the zero this block stands for
    return bytes(out)


def cobs_decode(data: bytes) -> bytes:
    """Inverse of :func:`cobs_encode`; raises FrameError on malformed input."""
    out = bytearray()
    n = len(data)
    i = 0
    prev_code = None
    while i < n:
        code = data[i]
        if code == 0:
            raise FrameError("COBS: unexpected 0x00 inside a frame")
        if prev_code is not None and prev_code != 0xFF:
            out.append(0)
        end = i + code
        if end > n:
            raise FrameError(f"COBS: block of {code - 1} bytes runs past the end of the frame")
        block = data[i + 1:end]
        if 0 in block:
            raise FrameError("COBS: unexpected 0x00 inside a frame")
        out += block
        prev_code = code
        i = end
    return bytes(out)


def max_encoded_size(raw_len: int) -> int:
    """Worst-case COBS size of ``raw_len`` bytes, delimiter not included."""
    return raw_len + raw_len // 254 + 1


# --------------------------------------------------------------------------
# Frames
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Frame:
    opcode: int  # without REPLY_FLAG
    seq: int
    payload: bytes = b""
    is_reply: bool = False
    status: int = Status.OK
    flags: int = 0
    version: int = PROTOCOL_VERSION

    @property
    def seq_untrusted(self) -> bool:
        return bool(self.flags & FLAG_SEQ_UNTRUSTED)

    @property
    def status_name(self) -> str:
        return status_name(self.status)


def pack_raw(frame: Frame) -> bytes:
    """header + payload + crc (before COBS)."""
    if len(frame.payload) > MAX_PAYLOAD:
        raise FrameError(f"payload of {len(frame.payload)} bytes exceeds {MAX_PAYLOAD}")
    op = (frame.opcode & 0x7F) | (REPLY_FLAG if frame.is_reply else 0)
    body = HEADER.pack(frame.version & 0xFF, op, frame.seq & 0xFFFF, frame.status & 0xFF,
                       frame.flags & 0xFF, len(frame.payload)) + bytes(frame.payload)
    return body + struct.pack("<I", crc32(body))


def unpack_raw(raw: bytes) -> Frame:
    """Parse header + payload + crc; checks size, CRC and the length field.

    The version is *not* checked here (callers decide what to do with a
    foreign version).
    """
    if len(raw) < FRAME_OVERHEAD:
        raise FrameError(f"frame of {len(raw)} bytes is shorter than header+crc ({FRAME_OVERHEAD})")
    body, (crc,) = raw[:-CRC_BYTES], struct.unpack("<I", raw[-CRC_BYTES:])
    if crc32(body) != crc:
        raise CrcError(f"frame CRC mismatch (got {crc:#010x}, computed {crc32(body):#010x})")
    version, op, seq, status, flags, length = HEADER.unpack_from(body)
    if length != len(body) - HEADER_BYTES:
        raise FrameError(f"length field says {length} payload bytes, frame has {len(body) - HEADER_BYTES}")
    return Frame(opcode=op & 0x7F, seq=seq, payload=bytes(body[HEADER_BYTES:]), is_reply=bool(op & REPLY_FLAG),
                 status=status, flags=flags, version=version)


def encode_frame(frame: Frame) -> bytes:
    """The bytes to put on the wire: COBS(raw) + 0x00."""
    return cobs_encode(pack_raw(frame)) + b"\x00"


def decode_frame(data: bytes) -> Frame:
    """Inverse of :func:`encode_frame`; a trailing 0x00 delimiter is optional."""
    if data.endswith(b"\x00"):
        data = data[:-1]
    if not data:
        raise FrameError("empty frame")
    return unpack_raw(cobs_decode(data))


def request(opcode: int, seq: int, payload: bytes = b"") -> bytes:
    """Encoded request frame."""
    return encode_frame(Frame(opcode=opcode, seq=seq, payload=payload))


# --------------------------------------------------------------------------
# Payloads
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class HelloInfo:
    protocol_version: int
    init_status: int
    runtime_name: str
    model_hash: bytes  # 8 bytes
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    input_dtype: int = DType.INT8
    output_dtype: int = DType.INT8
    input_scale: float = 1.0
    input_zero_point: int = 0
    output_scale: float = 1.0
    output_zero_point: int = 0
    input_bytes: int = 0
    output_bytes: int = 0
    arena_bytes: int = 0
    tick_hz: int = 1
    max_frame: int = 0
    extra: dict = field(default_factory=dict, compare=False)  # future fields

    @property
    def model_hash_hex(self) -> str:
        return self.model_hash.hex()

    @property
    def init_ok(self) -> bool:
        return self.init_status == Status.OK

    @property
    def init_status_name(self) -> str:
        return status_name(self.init_status)


def pack_hello(info: HelloInfo) -> bytes:
    for shape in (info.input_shape, info.output_shape):
        if not 1 <= len(shape) <= MAX_RANK:
            raise ProtocolError(f"tensor rank {len(shape)} is outside 1..{MAX_RANK}")
    name = info.runtime_name.encode("ascii")[:RUNTIME_NAME_BYTES]

    def dims(shape):
        return list(shape) + [0] * (MAX_RANK - len(shape))

    return HELLO.pack(info.protocol_version, info.init_status, info.input_dtype, info.output_dtype,
                      len(info.input_shape), len(info.output_shape), 0, name, bytes(info.model_hash),
                      *dims(info.input_shape), *dims(info.output_shape),
                      info.input_scale, info.input_zero_point, info.output_scale, info.output_zero_point,
                      info.input_bytes, info.output_bytes, info.arena_bytes, info.tick_hz, info.max_frame)


def parse_hello(payload: bytes) -> HelloInfo:
    if len(payload) < HELLO_BYTES:
        raise ProtocolError(f"HELLO reply of {len(payload)} bytes is shorter than {HELLO_BYTES}; "
                            "firmware and host tinygen versions differ")
    v = HELLO.unpack_from(payload)
    (pver, init_status, in_dt, out_dt, in_rank, out_rank, _reserved, name, mhash) = v[:9]
    in_dims, out_dims = v[9:9 + MAX_RANK], v[9 + MAX_RANK:9 + 2 * MAX_RANK]
    (in_scale, in_zp, out_scale, out_zp, in_bytes, out_bytes, arena, tick_hz, max_frame) = v[9 + 2 * MAX_RANK:]
    if not (1 <= in_rank <= MAX_RANK and 1 <= out_rank <= MAX_RANK):
        raise ProtocolError(f"HELLO reply has tensor ranks {in_rank}/{out_rank}, outside 1..{MAX_RANK}")
    return HelloInfo(
        protocol_version=pver, init_status=init_status,
        runtime_name=name.split(b"\x00", 1)[0].decode("ascii", "replace"),
        model_hash=bytes(mhash), input_shape=tuple(in_dims[:in_rank]), output_shape=tuple(out_dims[:out_rank]),
        input_dtype=in_dt, output_dtype=out_dt, input_scale=in_scale, input_zero_point=in_zp,
        output_scale=out_scale, output_zero_point=out_zp, input_bytes=in_bytes, output_bytes=out_bytes,
        arena_bytes=arena, tick_hz=tick_hz, max_frame=max_frame,
        extra={"trailing": bytes(payload[HELLO_BYTES:])} if len(payload) > HELLO_BYTES else {})


def pack_infer_reply(output: bytes, ticks: int) -> bytes:
    return bytes(output) + struct.pack("<I", ticks & 0xFFFFFFFF)


def parse_infer_reply(payload: bytes, output_bytes: int) -> tuple[bytes, int]:
    if len(payload) != output_bytes + INFER_TICKS_BYTES:
        raise ProtocolError(f"INFER reply has {len(payload)} bytes, expected {output_bytes} output bytes "
                            f"+ {INFER_TICKS_BYTES} tick bytes")
    (ticks,) = struct.unpack_from("<I", payload, output_bytes)
    return bytes(payload[:output_bytes]), ticks


def parse_stats(payload: bytes) -> dict[str, int]:
    if len(payload) < 4 * len(STATS):
        raise ProtocolError(f"GET_STATS reply of {len(payload)} bytes, expected {4 * len(STATS)}")
    return dict(zip(STATS, struct.unpack_from(f"<{len(STATS)}I", payload)))
