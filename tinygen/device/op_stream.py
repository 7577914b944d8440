"""Host side of the per-op requests LAYERS and PROFILE (:mod:`tinygen.common.protocol`).

One request, many replies: the board answers with FLAG_MORE frames while the inference runs, then
one final frame (STREAM_END + output + ticks).  The final frame counts the FLAG_MORE frames sent, so
a frame lost or corrupted on the line is noticed; then the whole request is sent again (requests
are idempotent), up to the link's retries.

    with DeviceLink(port) as link:
        layers = run_layers(link, x)      # LayerDump: {op: bytes} in execution order, output, ticks
        prof = run_profile(link, x)       # ProfileRun: [(op, ticks)], output, ticks
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tinygen.common.errors import TinygenError
from tinygen.common.protocol import (FLAG_MORE, INFER_TICKS_BYTES, LAYER_CHUNK, PROFILE_RECORD, STREAM_END,
                                     DeviceStatusError, Opcode, ProtocolError, Status, describe_status)


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


def _exchange(link, opcode: Opcode, payload: bytes) -> tuple[list[bytes], bytes]:
    """(FLAG_MORE payloads, final payload) of one complete stream, retrying the whole request."""
    info = link.info
    problems = []
    for _attempt in range(link.retries + 1):
        first = link.request(opcode, payload, reply_bytes=STREAM_END.size + info.output_bytes + INFER_TICKS_BYTES)
        if first.status != Status.OK:
            hint = {Status.NO_OP_HOOK: " (this firmware's runtime has no per-op hook; rebuild the project "
                                       "with this tinygen)",
                    Status.UNKNOWN_OPCODE: " (the firmware predates per-op requests; rebuild the project with "
                                           "this tinygen and flash it again)"}.get(first.status, "")
            raise DeviceStatusError(f"the board on {link.port} refused {opcode.name}: "
                                    f"{describe_status(first.status)}{hint}", first.status, first.payload)
        try:
            return _collect(link, first)
        except _Lost as e:
            problems.append(str(e))
    raise ProtocolError(f"{opcode.name} from the board on {link.port} lost frames on every try "
                        f"(last: {problems[-1]}); check the cable and the baud rate")


def _collect(link, frame) -> tuple[list[bytes], bytes]:
    parts: list[bytes] = []
    while frame.flags & FLAG_MORE:
        parts.append(frame.payload)
        while True:
            nxt = link.read_frame(link.timeout)
            if nxt is None:
                raise _Lost(f"no frame for {link.timeout:g} s after {len(parts)} stream frames")
            if nxt.is_reply and nxt.seq == frame.seq and nxt.opcode == frame.opcode:
                break
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


def run_layers(link, x: np.ndarray) -> LayerDump:
    """Run one inference with LAYERS: every op's output tensor, reassembled from its chunks."""
    parts, end = _exchange(link, Opcode.LAYERS, _payload(link, x))
    dump = LayerDump()
    buffers: dict[int, bytearray] = {}
    filled: dict[int, int] = {}
    for p in parts:
        if len(p) < LAYER_CHUNK.size:
            raise ProtocolError(f"a LAYERS chunk of {len(p)} bytes is shorter than its header")
        op, total, off = LAYER_CHUNK.unpack_from(p)
        data = p[LAYER_CHUNK.size:]
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


def run_profile(link, x: np.ndarray) -> ProfileRun:
    """Run one inference with PROFILE: (op, ticks) per op, in execution order."""
    parts, end = _exchange(link, Opcode.PROFILE, _payload(link, x))
    run = ProfileRun()
    for p in parts:
        if len(p) % PROFILE_RECORD.size:
            raise ProtocolError(f"a PROFILE frame of {len(p)} bytes is not whole records")
        run.records += [tuple(r) for r in PROFILE_RECORD.iter_unpack(p)]
    run.output, run.ticks = _final(link, end)
    return run


__all__ = ["LayerDump", "ProfileRun", "run_layers", "run_profile"]
