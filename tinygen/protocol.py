"""The host <-> firmware serial protocol: the single source of truth.

Everything both sides must agree on lives here: version, opcodes, status
codes, the frame layout, the HELLO / INFER payload layouts.  The C side gets
the same numbers from ``tg_protocol.h``, which :func:`render_c_header` emits
(``python -m tinygen.protocol -o tg_protocol.h``); never edit that file.

Frame on the wire::

    COBS( header(8) | payload(len) | crc32(4, little-endian) ) 0x00

    header, little-endian, packed:
      0  u8   version       PROTOCOL_VERSION
      1  u8   opcode        Opcode; | REPLY_FLAG (0x80) in replies
      2  u16  seq           chosen by the host, echoed in the reply
      4  u8   status        Status; 0 in requests
      5  u8   flags         FLAG_SEQ_UNTRUSTED in replies to frames that could
                            not be validated (seq was read from a bad frame)
      6  u16  length        payload bytes

    crc32: IEEE 802.3 / zlib (reflected poly 0xEDB88320, init and xor-out
    0xFFFFFFFF) over header + payload.

COBS is the canonical (Wikipedia) form: a 0xFF block is not followed by an
implicit zero, and a frame whose data ends exactly after a 0xFF block gets no
trailing 0x01.  The decoder also accepts that trailing 0x01.

Between frames the firmware may print human-readable text lines: ASCII ending
in ``"\\n"``, then a 0x00 delimiter (e.g. "tinygen: runtime init failed ...").
"""

from __future__ import annotations

import argparse
import enum
import hashlib
import math
import struct
import sys
from dataclasses import dataclass, field

from tinygen import __version__
from tinygen.errors import TinygenError

# --------------------------------------------------------------------------
# Constants
# --------------------------------------------------------------------------

PROTOCOL_VERSION = 1
DELIMITER = 0x00
REPLY_FLAG = 0x80
FLAG_SEQ_UNTRUSTED = 0x01

HEADER = struct.Struct("<BBHBBH")
HEADER_BYTES = HEADER.size  # 8
CRC_BYTES = 4
FRAME_OVERHEAD = HEADER_BYTES + CRC_BYTES  # 12
MAX_PAYLOAD = 0xFFFF  # the length field is a u16

CRC32_POLY = 0xEDB88320  # reflected form of 0x04C11DB7
CRC32_INIT = 0xFFFFFFFF
CRC32_XOROUT = 0xFFFFFFFF

MAX_RANK = 5
RUNTIME_NAME_BYTES = 16  # NUL-padded in HELLO
MODEL_HASH_BYTES = 8  # first 8 bytes of the model's sha256
INFER_TICKS_BYTES = 4
# The firmware accepts request payloads of at least this many bytes (PING),
# even when the model's input tensor is smaller.
MIN_RX_PAYLOAD = 64


class Opcode(enum.IntEnum):
    HELLO = 0x01  # -> HelloInfo payload
    INFER = 0x02  # input tensor bytes -> output tensor bytes + u32 ticks
    PING = 0x03  # any payload -> the same payload
    GET_STATS = 0x04  # -> u32 counters, see STATS
    RESET_STATS = 0x05  # -> empty; zeroes the counters


class Status(enum.IntEnum):
    OK = 0
    BAD_CRC = 1  # frame CRC mismatch (host retries)
    BAD_FRAME = 2  # COBS error, frame shorter than header+crc, length field wrong, reply flag set
    TOO_LONG = 3  # frame longer than the receive buffer; discarded up to the delimiter
    BAD_LENGTH = 4  # payload length wrong for the opcode (e.g. INFER != input bytes)
    UNKNOWN_OPCODE = 5
    BAD_VERSION = 6  # payload: u8 protocol version the firmware speaks
    RUNTIME_INIT_FAILED = 7  # tg_runtime_init failed (generic)
    ALLOC_FAILED = 8  # tensor arena too small / allocation failed
    INVOKE_FAILED = 9  # tg_runtime_invoke failed; payload: i32 runtime return code
    UNSUPPORTED_OP = 10  # the runtime lacks an operator the model needs
    MODEL_MISMATCH = 11  # model data / schema / io description inconsistent
    INTERNAL = 12  # a bug; should not happen


STATUS_DESCRIPTIONS: dict[Status, str] = {
    Status.OK: "ok",
    Status.BAD_CRC: "the board received a frame with a bad CRC",
    Status.BAD_FRAME: "the board received a malformed frame",
    Status.TOO_LONG: "the frame is longer than the board's receive buffer",
    Status.BAD_LENGTH: "payload length is wrong for this request",
    Status.UNKNOWN_OPCODE: "the firmware does not know this request",
    Status.BAD_VERSION: "host and firmware speak different protocol versions",
    Status.RUNTIME_INIT_FAILED: "the inference runtime failed to initialise",
    Status.ALLOC_FAILED: "the tensor arena is too small (allocation failed)",
    Status.INVOKE_FAILED: "the inference runtime failed to run the model",
    Status.UNSUPPORTED_OP: "the runtime lacks an operator the model needs",
    Status.MODEL_MISMATCH: "the model data does not match its description",
    Status.INTERNAL: "internal firmware error",
}

# Statuses that can mean "a frame was mangled on the wire", so the host resends. TOO_LONG is one
# only while HELLO says the request fits the board's frame buffer (noise made it longer); for a
# request that really is too long, serial_link fails at once instead of resending the same bytes.
RETRYABLE_STATUSES = frozenset({Status.BAD_CRC, Status.BAD_FRAME, Status.TOO_LONG})


class DType(enum.IntEnum):
    INT8 = 1
    UINT8 = 2
    INT16 = 3
    INT32 = 4
    FLOAT32 = 5


DTYPE_NUMPY = {DType.INT8: "int8", DType.UINT8: "uint8", DType.INT16: "int16",
               DType.INT32: "int32", DType.FLOAT32: "float32"}
DTYPE_ITEMSIZE = {DType.INT8: 1, DType.UINT8: 1, DType.INT16: 2, DType.INT32: 4, DType.FLOAT32: 4}

# GET_STATS reply: one u32 (little-endian) per name, in this order.
STATS = (
    "frames",  # non-empty frames received (valid or not)
    "bad_crc",
    "bad_frame",
    "too_long",
    "rejected",  # valid frames refused: BAD_LENGTH, UNKNOWN_OPCODE, BAD_VERSION, init failure
    "infers",  # successful INFERs
    "invoke_failures",
    "max_ticks",  # longest tg_runtime_invoke seen
)

# HELLO reply payload, little-endian, packed.  (name, struct code)
HELLO_FIELDS = (
    ("protocol_version", "B"),
    ("init_status", "B"),  # tg_runtime_init's result (Status); 0 = ok
    ("input_dtype", "B"),
    ("output_dtype", "B"),
    ("input_rank", "B"),
    ("output_rank", "B"),
    ("reserved", "H"),
    ("runtime_name", f"{RUNTIME_NAME_BYTES}s"),
    ("model_hash", f"{MODEL_HASH_BYTES}s"),
    ("input_dims", f"{MAX_RANK}I"),  # unused dims are 0
    ("output_dims", f"{MAX_RANK}I"),
    ("input_scale", "f"),
    ("input_zero_point", "i"),
    ("output_scale", "f"),
    ("output_zero_point", "i"),
    ("input_bytes", "I"),
    ("output_bytes", "I"),
    ("arena_bytes", "I"),
    ("tick_hz", "I"),
    ("max_frame", "I"),  # largest decoded request frame (header+payload+crc) accepted
)
HELLO = struct.Struct("<" + "".join(code for _, code in HELLO_FIELDS))
HELLO_BYTES = HELLO.size


def _hello_offsets() -> dict[str, int]:
    offsets, pos = {}, 0
    for name, code in HELLO_FIELDS:
        offsets[name] = pos
        pos += struct.calcsize("<" + code)
    assert pos == HELLO_BYTES
    return offsets


HELLO_OFFSETS = _hello_offsets()


# --------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------


class ProtocolError(TinygenError):
    """Talking to the board failed: bad frames, timeouts, error replies."""

    exit_code = 4


class FrameError(ProtocolError):
    """Bytes that are not a well-formed frame (COBS, size, length field)."""


class CrcError(FrameError):
    """A frame whose CRC does not match."""


class LinkTimeout(ProtocolError):
    """No (valid) reply within the timeout after all retries."""


class DeviceStatusError(ProtocolError):
    """The board answered with a non-OK status."""

    def __init__(self, message: str, status: int, payload: bytes = b""):
        super().__init__(message)
        self.status = status
        self.payload = payload

    @property
    def status_name(self) -> str:
        return status_name(self.status)


def status_name(code: int) -> str:
    try:
        return Status(code).name
    except ValueError:
        return "UNKNOWN"


def describe_status(code: int) -> str:
    """``"ALLOC_FAILED (status 8): the tensor arena is too small ..."``."""
    try:
        st = Status(code)
    except ValueError:
        return f"UNKNOWN (status {code})"
    return f"{st.name} (status {int(st)}): {STATUS_DESCRIPTIONS[st]}"


# --------------------------------------------------------------------------
# CRC32 (own table-driven implementation; tests compare it with zlib)
# --------------------------------------------------------------------------


def _crc_table() -> tuple[int, ...]:
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ CRC32_POLY if c & 1 else c >> 1
        table.append(c)
    return tuple(table)


_CRC_TABLE = _crc_table()


def crc32(data: bytes, crc: int = 0) -> int:
    """CRC-32/ISO-HDLC (zlib's crc32); ``crc`` continues a previous value."""
    c = crc ^ CRC32_XOROUT
    table = _CRC_TABLE
    for b in data:
        c = table[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ CRC32_XOROUT


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

    @property
    def runtime(self) -> str:
        """Alias of ``runtime_name``."""
        return self.runtime_name

    @property
    def max_payload(self) -> int:
        return self.max_frame - FRAME_OVERHEAD


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


# --------------------------------------------------------------------------
# C headers
# --------------------------------------------------------------------------


def _banner(what: str) -> str:
    return f"/* {what} -- generated by tinygen {__version__}; do not edit. */"


def _c_string(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_c_header() -> str:
    """The text of ``tg_protocol.h`` (deterministic)."""
    L = [
        _banner("tg_protocol.h: tinygen serial protocol, from tinygen/protocol.py"),
        "#ifndef TG_PROTOCOL_H",
        "#define TG_PROTOCOL_H",
        "",
        "#include <stdint.h>",
        "",
        "#ifdef __cplusplus",
        'extern "C" {',
        "#endif",
        "",
        "/* Frame: COBS(header | payload | crc32 LE) 0x00.",
        " * header (LE, packed): u8 version, u8 opcode (|TG_REPLY_FLAG in replies), u16 seq,",
        " *                      u8 status, u8 flags, u16 payload length.",
        " * crc32: IEEE/zlib, reflected poly, over header + payload. */",
        f"#define TG_PROTOCOL_VERSION {PROTOCOL_VERSION}",
        f"#define TG_FRAME_DELIMITER 0x{DELIMITER:02X}",
        f"#define TG_REPLY_FLAG 0x{REPLY_FLAG:02X}",
        f"#define TG_FLAG_SEQ_UNTRUSTED 0x{FLAG_SEQ_UNTRUSTED:02X}",
        f"#define TG_HEADER_BYTES {HEADER_BYTES}",
        f"#define TG_CRC_BYTES {CRC_BYTES}",
        f"#define TG_FRAME_OVERHEAD {FRAME_OVERHEAD}",
        f"#define TG_MAX_PAYLOAD {MAX_PAYLOAD}UL",
        "#define TG_HDR_OFF_VERSION 0",
        "#define TG_HDR_OFF_OPCODE 1",
        "#define TG_HDR_OFF_SEQ 2",
        "#define TG_HDR_OFF_STATUS 4",
        "#define TG_HDR_OFF_FLAGS 5",
        "#define TG_HDR_OFF_LENGTH 6",
        f"#define TG_CRC32_POLY 0x{CRC32_POLY:08X}UL",
        f"#define TG_CRC32_INIT 0x{CRC32_INIT:08X}UL",
        f"#define TG_CRC32_XOROUT 0x{CRC32_XOROUT:08X}UL",
        f"#define TG_MAX_RANK {MAX_RANK}",
        f"#define TG_RUNTIME_NAME_BYTES {RUNTIME_NAME_BYTES}",
        f"#define TG_MODEL_HASH_LEN {MODEL_HASH_BYTES}",
        f"#define TG_INFER_TICKS_BYTES {INFER_TICKS_BYTES}",
        f"#define TG_MIN_RX_PAYLOAD {MIN_RX_PAYLOAD}",
        "",
        "/* Opcodes */",
    ]
    L += [f"#define TG_OP_{op.name} 0x{int(op):02X}" for op in Opcode]
    L += ["", "/* Status codes (header status byte; tg_runtime_init returns 0 or one of these) */"]
    L += [f"#define TG_STATUS_{st.name} {int(st)}" for st in Status]
    L += [f"#define TG_STATUS_COUNT {len(Status)}", "", "/* Tensor element types */"]
    L += [f"#define TG_DTYPE_{dt.name} {int(dt)}" for dt in DType]
    L += ["", "/* GET_STATS reply: TG_STATS_COUNT x u32 LE, indexed by TG_STAT_* */"]
    L += [f"#define TG_STAT_{name.upper()} {i}" for i, name in enumerate(STATS)]
    L += [f"#define TG_STATS_COUNT {len(STATS)}", "", "/* HELLO reply payload (LE, packed): byte offsets */"]
    L += [f"#define TG_HELLO_OFF_{name.upper()} {off}" for name, off in HELLO_OFFSETS.items()]
    L += [f"#define TG_HELLO_BYTES {HELLO_BYTES}", ""]
    names = ", ".join(_c_string(st.name) for st in Status)
    L += [
        "/* Status names, indexed by status code */",
        f"#define TG_STATUS_NAME_TABLE {{ {names} }}",
        "",
        "static inline const char *tg_status_name(int status)",
        "{",
        "    static const char *const names[TG_STATUS_COUNT] = TG_STATUS_NAME_TABLE;",
        "    if (status < 0 || status >= TG_STATUS_COUNT) {",
        '        return "UNKNOWN";',
        "    }",
        "    return names[status];",
        "}",
        "",
        "#ifdef __cplusplus",
        "}",
        "#endif",
        "",
        "#endif /* TG_PROTOCOL_H */",
        "",
    ]
    return "\n".join(L)


def _c_float(x: float) -> str:
    s = repr(float(struct.unpack("<f", struct.pack("<f", x))[0]))
    if not math.isfinite(float(s)):
        raise ProtocolError(f"quantization scale {x} is not finite")
    if "e" not in s and "." not in s:
        s += ".0"
    return s + "f"


def _dtype(value) -> DType:
    if isinstance(value, DType):
        return value
    if isinstance(value, int):
        return DType(value)
    name = str(getattr(value, "name", value)).upper()
    return DType[name]


def render_model_info_header(*, model_sha256, input_shape, output_shape, input_scale: float,
                             input_zero_point: int, output_scale: float, output_zero_point: int,
                             input_dtype="int8", output_dtype="int8") -> str:
    """The text of ``tg_model_info.h`` (the macros tg_app.c requires).

    ``model_sha256``: the model's sha256 as 32 bytes or 64 hex characters, or
    the model bytes themselves (anything else that is ``bytes``).
    """
    if isinstance(model_sha256, str):
        digest = bytes.fromhex(model_sha256)
    elif len(model_sha256) == 32:
        digest = bytes(model_sha256)
    else:
        digest = hashlib.sha256(bytes(model_sha256)).digest()
    h = ", ".join(f"0x{b:02x}" for b in digest[:MODEL_HASH_BYTES])
    L = [_banner("tg_model_info.h: model description for the validation firmware"),
         "#ifndef TG_MODEL_INFO_H", "#define TG_MODEL_INFO_H", "",
         f"#define TG_MODEL_HASH_BYTES {{{h}}}"]
    for io, shape, dt, scale, zp in (("INPUT", input_shape, input_dtype, input_scale, input_zero_point),
                                     ("OUTPUT", output_shape, output_dtype, output_scale, output_zero_point)):
        shape = tuple(int(d) for d in shape)
        if not 1 <= len(shape) <= MAX_RANK or any(d <= 0 for d in shape):
            raise ProtocolError(f"{io.lower()} shape {shape} is not supported (rank 1..{MAX_RANK}, dims > 0)")
        dtype = _dtype(dt)
        L += ["",
              f"#define TG_{io}_RANK {len(shape)}",
              f"#define TG_{io}_DIMS {{{', '.join(str(d) for d in shape)}}}",
              f"#define TG_{io}_BYTES {math.prod(shape) * DTYPE_ITEMSIZE[dtype]}",
              f"#define TG_{io}_DTYPE {int(dtype)} /* {dtype.name} */",
              f"#define TG_{io}_SCALE {_c_float(scale)}",
              f"#define TG_{io}_ZERO_POINT ({int(zp)})"]
    L += ["", "#endif /* TG_MODEL_INFO_H */", ""]
    return "\n".join(L)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tinygen.protocol",
                                 description="Write tg_protocol.h (the C side of tinygen's serial protocol).")
    ap.add_argument("-o", "--output", help="file to write (default: stdout)")
    args = ap.parse_args(argv)
    text = render_c_header()
    if args.output:
        with open(args.output, "w", encoding="ascii", newline="\n") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
