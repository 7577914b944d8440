"""Host side of the per-op requests LAYERS and PROFILE (:mod:`tinygen.common.protocol`).

One request, many replies: the board answers with FLAG_MORE frames while the inference runs, then
one final frame (STREAM_END + output + ticks).  The final frame counts the FLAG_MORE frames sent, so
a frame lost or corrupted on the line is noticed; then the whole request is sent again (requests
are idempotent), up to the link's retries.

    limits = StreamLimits.for_model(parse_model(raw))
    with DeviceLink(port) as link:
        layers = run_layers(link, x, limits)   # LayerDump: {op: bytes} in execution order, output, ticks
        prof = run_profile(link, x, limits)    # ProfileRun: [(op, ticks)], output, ticks

Everything the board sends is bounded by the model and the protocol (:class:`StreamLimits`): at most
as many FLAG_MORE frames as the model's ops need (one chunk per STREAM_CHUNK_BYTES of each op's
output, PROFILE_RECORDs 30 a frame) plus a little slack, each frame no longer than the protocol's
chunk, a LAYERS tensor exactly as large as the model's (checked before anything is allocated) and
only op indices the model has.  A board beyond those is at fault (:class:`BoardFault`), never retried.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tinygen.common.errors import TinygenError
from tinygen.common.escape import terminal
from tinygen.common.protocol import (FLAG_MORE, INFER_TICKS_BYTES, LAYER_CHUNK, PROFILE_RECORD, STREAM_CHUNK_BYTES,
                                     STREAM_END, DeviceStatusError, Opcode, ProtocolError, Status, describe_status)
from tinygen.device.framing import BoardFault

# Frames beyond the exact count the model needs before the stream is called endless (the firmware sends
# exactly that count; the slack is only so a bound off by one can never refuse a correct board).
STREAM_SLACK_FRAMES = 2
_RECORDS_PER_FRAME = STREAM_CHUNK_BYTES // PROFILE_RECORD.size  # 30
_FAULT = "a board fault, not your input: its firmware does not follow the protocol; reflash the project"


@dataclass(frozen=True)
class StreamLimits:
    """What the model lets a LAYERS / PROFILE stream hold: ``op_output_bytes[i]`` is op i's first output
    tensor's size in bytes (what the op hook streams; 0 is also accepted, for an op the runtime has no
    output buffer for)."""
    op_output_bytes: tuple[int, ...]

    @classmethod
    def for_model(cls, model) -> "StreamLimits":
        """From a :class:`tinygen.tflite.model.TfliteModel` (the project's model.tflite)."""
        return cls(tuple(int(model.tensors[op.outputs[0]].nbytes) if op.outputs and op.outputs[0] >= 0 else 0
                         for op in model.operators))

    @property
    def ops(self) -> int:
        return len(self.op_output_bytes)

    def max_frames(self, opcode: Opcode) -> int:
        """The most FLAG_MORE frames a correct board sends for one request, plus STREAM_SLACK_FRAMES."""
        if opcode == Opcode.LAYERS:
            need = sum(max(1, -(-n // STREAM_CHUNK_BYTES)) for n in self.op_output_bytes)
        else:
            need = -(-self.ops // _RECORDS_PER_FRAME)
        return need + STREAM_SLACK_FRAMES

    @staticmethod
    def max_payload(opcode: Opcode) -> int:
        """The longest FLAG_MORE payload the protocol allows."""
        return LAYER_CHUNK.size + STREAM_CHUNK_BYTES if opcode == Opcode.LAYERS else STREAM_CHUNK_BYTES


@dataclass
class LayerDump:
    """LAYERS: every op's output tensor as the board computed it."""
    order: list[int] = field(default_factory=list)  # op indices in the order the board ran them
    tensors: dict[int, bytes] = field(default_factory=dict)
    output: bytes = b""
    ticks: int = 0


@dataclass
class ProfileRun:
    """PROFILE: ticks per op (from the end of the previous op, or the start of the invoke)."""
    records: list[tuple[int, int]] = field(default_factory=list)
    output: bytes = b""
    ticks: int = 0


class _Lost(Exception):
    """A stream frame went missing: send the request again."""


def _payload(link, x: np.ndarray) -> bytes:
    info = link.info or link.hello()
    arr = np.ascontiguousarray(np.asarray(x))
    if arr.dtype != np.int8 or arr.size != info.input_bytes:
        raise TinygenError(f"per-op requests take the int8 input tensor ({info.input_bytes} bytes), "
                           f"got {arr.dtype} x {arr.size}")
    return arr.tobytes()


def _exchange(link, opcode: Opcode, payload: bytes, limits: StreamLimits) -> tuple[list[bytes], bytes]:
    """(FLAG_MORE payloads, final payload) of one complete stream, retrying the whole request."""
    info = link.info
    problems = []
    for _attempt in range(link.retries + 1):
        first = link.request(opcode, payload, reply_bytes=STREAM_END.size + info.output_bytes + INFER_TICKS_BYTES)
        if first.status != Status.OK:
            hint = {Status.NO_OP_HOOK: " (a TFLM release build, TF_LITE_STRIP_ERROR_STRINGS, calls no profiler: "
                                       "flash the project's <board>_tflm_debug environment, see its README; "
                                       "otherwise rebuild the project with this tinygen)",
                    Status.UNKNOWN_OPCODE: " (the firmware predates per-op requests; rebuild the project with "
                                           "this tinygen and flash it again)"}.get(first.status, "")
            raise DeviceStatusError(f"the board on {link.port} refused {opcode.name}: "
                                    f"{describe_status(first.status)}{hint}", first.status, first.payload)
        try:
            return _collect(link, first, opcode, limits)
        except _Lost as e:
            problems.append(str(e))
    raise ProtocolError(f"{opcode.name} from the board on {link.port} lost frames on every try "
                        f"(last: {problems[-1]}); check the cable and the baud rate")


def _collect(link, frame, opcode: Opcode, limits: StreamLimits) -> tuple[list[bytes], bytes]:
    parts: list[bytes] = []
    max_frames, max_payload = limits.max_frames(opcode), limits.max_payload(opcode)
    port = terminal(str(link.port))
    strays = 0
    while frame.flags & FLAG_MORE:
        if len(frame.payload) > max_payload:
            raise BoardFault(f"the board on {port} sent a {opcode.name} stream frame of {len(frame.payload)} "
                             f"bytes; the protocol allows at most {max_payload} ({_FAULT})")
        parts.append(frame.payload)
        if len(parts) > max_frames:
            raise BoardFault(f"the board on {port} kept sending {opcode.name} stream frames: more than "
                             f"{max_frames} (the model's {limits.ops} ops need {max_frames - STREAM_SLACK_FRAMES}, "
                             f"plus {STREAM_SLACK_FRAMES} of slack) ({_FAULT})")
        while True:
            nxt = link.read_frame(link.timeout)
            if nxt is None:
                raise _Lost(f"no frame for {link.timeout:g} s after {len(parts)} stream frames")
            if nxt.is_reply and nxt.seq == frame.seq and nxt.opcode == frame.opcode:
                break
            strays += 1
            if strays > max_frames:
                raise BoardFault(f"the board on {port} sent more than {max_frames} frames that answer no "
                                 f"request during a {opcode.name} stream ({_FAULT})")
        if nxt.status != Status.OK:
            raise DeviceStatusError(f"the board on {link.port} failed mid-stream: {describe_status(nxt.status)}",
                                    nxt.status, nxt.payload)
        frame = nxt
    end = frame.payload
    want = STREAM_END.size + link.info.output_bytes + INFER_TICKS_BYTES
    if len(end) != want:
        raise ProtocolError(f"the board's final per-op reply has {len(end)} bytes, expected {want}")
    _ops, sent = STREAM_END.unpack_from(end)
    if sent != len(parts):
        raise _Lost(f"the board sent {sent} stream frames, {len(parts)} arrived")
    return parts, end


def _final(link, end: bytes) -> tuple[bytes, int]:
    n = link.info.output_bytes
    body = end[STREAM_END.size:]
    return body[:n], int.from_bytes(body[n:n + INFER_TICKS_BYTES], "little")


def run_layers(link, x: np.ndarray, limits: StreamLimits) -> LayerDump:
    """Run one inference with LAYERS: every op's output tensor, reassembled from its chunks.  Each chunk's
    op index and claimed tensor size are checked against ``limits`` (the model) before anything is
    allocated for it."""
    parts, end = _exchange(link, Opcode.LAYERS, _payload(link, x), limits)
    port = terminal(str(link.port))
    dump = LayerDump()
    buffers: dict[int, bytearray] = {}
    filled: dict[int, int] = {}
    for p in parts:
        if len(p) < LAYER_CHUNK.size:
            raise ProtocolError(f"a LAYERS chunk of {len(p)} bytes is shorter than its header")
        op, total, off = LAYER_CHUNK.unpack_from(p)
        data = p[LAYER_CHUNK.size:]
        if op >= limits.ops:
            raise BoardFault(f"the board on {port} sent a LAYERS chunk for op {op}; the model has "
                             f"{limits.ops} ops (0..{limits.ops - 1}) ({_FAULT})")
        if total not in (0, limits.op_output_bytes[op]):
            raise BoardFault(f"the board on {port} says op {op}'s output tensor has {total} bytes; the model's "
                             f"has {limits.op_output_bytes[op]} ({_FAULT})")
        if op not in buffers:
            dump.order.append(op)
            buffers[op], filled[op] = bytearray(total), 0
        buf = buffers[op]
        if total != len(buf) or off + len(data) > total or off != filled[op]:
            raise ProtocolError(f"LAYERS chunks of op {op} do not fit together (offset {off}, "
                                f"{len(data)} bytes, tensor {total} bytes)")
        buf[off:off + len(data)] = data
        filled[op] += len(data)
    for op, buf in buffers.items():
        if filled[op] != len(buf):
            raise ProtocolError(f"LAYERS: op {op} sent {filled[op]} of its {len(buf)} bytes")
        dump.tensors[op] = bytes(buf)
    dump.output, dump.ticks = _final(link, end)
    return dump


def run_profile(link, x: np.ndarray, limits: StreamLimits) -> ProfileRun:
    """Run one inference with PROFILE: (op, ticks) per op, in execution order; each op of the model at
    most once (the op hook runs once per op)."""
    parts, end = _exchange(link, Opcode.PROFILE, _payload(link, x), limits)
    port = terminal(str(link.port))
    run = ProfileRun()
    seen: set[int] = set()
    for p in parts:
        if len(p) % PROFILE_RECORD.size:
            raise ProtocolError(f"a PROFILE frame of {len(p)} bytes is not whole records")
        for op, ticks in PROFILE_RECORD.iter_unpack(p):
            if op >= limits.ops:
                raise BoardFault(f"the board on {port} sent a PROFILE record for op {op}; the model has "
                                 f"{limits.ops} ops (0..{limits.ops - 1}) ({_FAULT})")
            if op in seen:
                raise BoardFault(f"the board on {port} sent two PROFILE records for op {op}; the op hook runs "
                                 f"once per op ({_FAULT})")
            seen.add(op)
            run.records.append((op, ticks))
    run.output, run.ticks = _final(link, end)
    return run


__all__ = ["BoardFault", "LayerDump", "ProfileRun", "StreamLimits", "run_layers", "run_profile"]
