"""The host <-> firmware serial protocol: the single source of truth.

Everything both sides must agree on lives here: version, opcodes, status
codes, the frame layout, the HELLO / INFER payload layouts.  The C side gets
the same numbers from ``tg_protocol.h``, which :mod:`tinygen.codegen.protocol_header` writes;
never edit that file.  :mod:`tinygen.device.framing` is the host's codec for them.

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

import enum
import struct

from tinygen.common.errors import TinygenError

# --------------------------------------------------------------------------
# Constants
# --------------------------------------------------------------------------

PROTOCOL_VERSION = 1
DELIMITER = 0x00
REPLY_FLAG = 0x80
FLAG_SEQ_UNTRUSTED = 0x01
# A streamed reply (LAYERS, PROFILE): more frames with this seq and opcode follow; the last has it clear.
FLAG_MORE = 0x02

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
    # Per-op requests (input tensor bytes, as INFER): one inference whose per-op results are streamed
    # in FLAG_MORE frames, then a final frame: STREAM_END + output bytes + u32 ticks.
    LAYERS = 0x06  # FLAG_MORE frames: LAYER_CHUNK + that many tensor bytes, per op's output tensor
    PROFILE = 0x07  # FLAG_MORE frames: PROFILE_RECORDs, one per op: ticks between the end of two ops
    # Projects with a front end (tinygen.intake.frontend) only; others answer UNKNOWN_OPCODE.
    INFER_RAW = 0x08  # int16 LE raw samples -> INFER_RAW_REPLY: model input + output bytes + ticks
    FE_TAPS = 0x09  # one frame (int32 LE) -> its front-end stages (FE_TAPS_ORDER), for --layers


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
    NO_OP_HOOK = 13  # LAYERS / PROFILE: the runtime on the board cannot report per-op results


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
    Status.NO_OP_HOOK: "the runtime on the board cannot report per-op results",
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

# LAYERS / PROFILE streams (little-endian, packed). A tensor of more than STREAM_CHUNK_BYTES goes in
# several LAYER_CHUNK frames (offset = where the chunk starts), so the board never holds more than one
# chunk beyond its arena; an empty tensor is one chunk of 0 bytes.
LAYER_CHUNK = struct.Struct("<III")  # op index, tensor bytes in all, offset of this chunk
PROFILE_RECORD = struct.Struct("<II")  # op index, ticks since the previous op ended (or the invoke began)
STREAM_END = struct.Struct("<II")  # ops reported, FLAG_MORE frames sent; then output bytes + u32 ticks
STREAM_CHUNK_BYTES = 240  # largest tensor chunk / profile records per FLAG_MORE frame

# INFER_RAW reply (little-endian, packed): the model's int8 input the board's front end computed
# (input tensor bytes), the output tensor bytes, then these two u32: ticks of the model's invoke and
# ticks of the front end (samples -> int8 input).
INFER_RAW_TICKS = struct.Struct("<II")
INFER_RAW_SAMPLE_BYTES = 2  # int16 per raw sample

# FE_TAPS (projects with a front end): the request is one frame of frame_length int32 LE values as
# tg_fe_spectrum_frame takes it (audio: the samples; imu: one axis, mean removed); the reply is that
# frame's stages, packed little-endian in this order: filterbank (bands x u64), log (bands x i32),
# window (frame_length x i32), shift (i32), fft ((fft_size/2 + 1) x (re, im) i32).
FE_TAPS_ORDER = ("filterbank", "log", "window", "shift", "fft")

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
