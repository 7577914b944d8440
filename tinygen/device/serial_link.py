"""Host side of the serial protocol: talk to the validation firmware.

    with DeviceLink("/dev/ttyACM0", 115200) as link:
        info = link.hello()
        output, ticks = link.infer(x_int8)

Frames, opcodes and status codes are defined in :mod:`tinygen.common.protocol`.
Requests are retried (new sequence number each time) on timeouts, corrupt
replies and BAD_CRC / BAD_FRAME answers; a TOO_LONG answer is retried only when
HELLO said the frame fits (then it was a delimiter lost on the line), else it
fails at once, as does a request longer than HELLO's max_frame; every request is preceded
by a 0x00 so the board's receiver drops any half-received garbage.  Replies
with a sequence number from an earlier request are dropped; a reply to any
attempt of the current request is accepted (requests are idempotent); a board that
only ever answers with old sequence numbers is told as such (BoardFault), not as silence.
Text lines the board prints between frames ("...\\n" 0x00) end up in
``link.log_lines``.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import serial

from tinygen.common.errors import TinygenError, ToolFailure
from tinygen.common.protocol import (
    DTYPE_NUMPY,
    FRAME_OVERHEAD,
    PROTOCOL_VERSION,
    RETRYABLE_STATUSES,
    DeviceStatusError,
    DType,
    FrameError,
    LinkTimeout,
    Opcode,
    ProtocolError,
    Status,
    describe_status,
    status_name,
)
from tinygen.device.framing import (BoardFault, Frame, HelloInfo, decode_frame, encode_frame, max_encoded_size,
                                    parse_hello, parse_infer_reply, parse_stats)

__all__ = ["DeviceLink", "HelloInfo", "LinkStats", "hexdump"]

TraceFn = Callable[[str], None]

_READ_SLICE = 0.05  # seconds one serial read may block
_MAX_PENDING = 1 << 20  # bytes kept without seeing a delimiter
_PRINTABLE = frozenset(range(0x20, 0x7F)) | {0x09, 0x0A, 0x0D}


def hexdump(data: bytes, prefix: str = "") -> list[str]:
    """``prefix 0000  00 01 ...  |..|`` lines, 16 bytes each."""
    lines = []
    for off in range(0, len(data), 16):
        row = data[off:off + 16]
        hexes = " ".join(f"{b:02x}" for b in row)
        text = "".join(chr(b) if 0x20 <= b < 0x7F else "." for b in row)
        lines.append(f"{prefix}{off:04x}  {hexes:<47}  |{text}|")
    return lines


@dataclass
class LinkStats:
    requests: int = 0
    attempts: int = 0
    retries: int = 0
    timeouts: int = 0
    bad_replies: int = 0  # host saw a corrupt frame (CRC/COBS/length)
    error_replies: int = 0  # board answered BAD_CRC / BAD_FRAME / TOO_LONG
    stale_replies: int = 0  # replies to earlier requests, dropped
    text_lines: int = 0
    garbage_bytes: int = 0


def _is_text(chunk: bytes) -> bool:
    return chunk.endswith(b"\n") and all(b in _PRINTABLE for b in chunk)


class DeviceLink:
    """One serial connection to a board running the tinygen validation firmware.

    ``port``: anything :func:`serial.serial_for_url` accepts (``/dev/ttyACM0``,
    a pty path, ``loop://``, ``socket://host:port``).  ``timeout``: seconds to
    wait for each reply (plus the transfer time at ``baudrate``);
    ``retries``: extra attempts per request; ``trace``: called with one line of
    text per traced event (hex dumps of all traffic, decoded frames);
    ``open_delay``: seconds to wait after opening (boards that reset on open).
    """

    def __init__(self, port: str, baudrate: int = 115200, *, timeout: float = 2.0, retries: int = 3,
                 trace: TraceFn | None = None, open_delay: float = 0.0, serial_port=None):
        if retries < 0:
            raise ValueError("retries must be >= 0")
        # nan compares false with everything (a deadline of now + nan never passes), inf never ends
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not math.isfinite(timeout) \
                or timeout <= 0:
            raise TinygenError(f"timeout {timeout!r} is not a finite number of seconds > 0")
        self.port = port
        self.baudrate = baudrate
        self.timeout = float(timeout)
        self.retries = int(retries)
        self.trace = trace
        self.log_lines: list[str] = []
        self.stats = LinkStats()
        self.info: HelloInfo | None = None
        self._rx = bytearray()
        self._synced = False  # seen a delimiter since opening the port
        self._seq = random.randrange(0x10000)
        if serial_port is not None:
            self._ser = serial_port
        else:
            try:
                url, wt = port, {"write_timeout": max(10.0, 4 * self.timeout)}
                if port.startswith("rfc2217://"):
                    # pyserial's RFC 2217 client refuses a write timeout, and would wait for an answer to
                    # setting DTR/RTS that ser2net on a pty never sends (labgrid opens it the same way).
                    url, wt = (port if "?" in port else port + "?ign_set_control"), {}
                self._ser = serial.serial_for_url(url, baudrate=baudrate, timeout=min(_READ_SLICE, self.timeout),
                                                  **wt)
            except (serial.SerialException, OSError, ValueError) as e:
                raise ToolFailure(f"cannot open serial port {port}: {e}") from e
        if open_delay > 0:
            time.sleep(open_delay)

    # -- lifetime ---------------------------------------------------------------

    def close(self) -> None:
        if self._ser is not None:
            try:
                self._ser.close()
            finally:
                self._ser = None

    def __enter__(self) -> "DeviceLink":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- requests -----------------------------------------------------------------

    def hello(self) -> HelloInfo:
        """Ask the board what it runs. Does not raise on a failed runtime init
        (see ``HelloInfo.init_status``)."""
        frame = self.request(Opcode.HELLO)
        self._check_ok(frame, "HELLO")
        info = parse_hello(frame.payload)
        if info.protocol_version != PROTOCOL_VERSION:
            raise ProtocolError(f"the board on {self.port} speaks protocol version {info.protocol_version}, "
                                f"this tinygen speaks {PROTOCOL_VERSION}; regenerate and reflash the firmware")
        self.info = info
        return info

    def infer(self, input: np.ndarray) -> tuple[np.ndarray, int]:
        """Run the model on the board once: (output shaped as the board's
        output tensor, elapsed ticks of tg_runtime_invoke)."""
        info = self.info or self.hello()
        arr = np.asarray(input)
        in_dtype = _np_dtype(info.input_dtype)
        if arr.dtype != in_dtype:
            raise TinygenError(f"input tensor must be {in_dtype}, got {arr.dtype}")
        if not _shape_matches(arr.shape, info.input_shape):
            raise TinygenError(f"input tensor has shape {arr.shape}, the model on the board takes {info.input_shape}")
        payload = np.ascontiguousarray(arr).astype(in_dtype.newbyteorder("<"), copy=False).tobytes()
        if len(payload) != info.input_bytes:
            raise TinygenError(f"input tensor has {len(payload)} bytes, the board expects {info.input_bytes}")
        frame = self.request(Opcode.INFER, payload, reply_bytes=info.output_bytes + 4)
        self._check_ok(frame, "INFER")
        out, ticks = parse_infer_reply(frame.payload, info.output_bytes)
        out_dtype = _np_dtype(info.output_dtype).newbyteorder("<")
        return np.frombuffer(out, dtype=out_dtype).reshape(info.output_shape).copy(), ticks

    def ping(self, payload: bytes = b"") -> bytes:
        frame = self.request(Opcode.PING, bytes(payload), reply_bytes=len(payload))
        self._check_ok(frame, "PING")
        return frame.payload

    def get_stats(self) -> dict[str, int]:
        frame = self.request(Opcode.GET_STATS)
        self._check_ok(frame, "GET_STATS")
        return parse_stats(frame.payload)

    def reset_stats(self) -> None:
        self._check_ok(self.request(Opcode.RESET_STATS), "RESET_STATS")

    # -- the engine ---------------------------------------------------------------------

    def request(self, opcode: int, payload: bytes = b"", *, timeout: float | None = None,
                retries: int | None = None, reply_bytes: int = 128) -> Frame:
        """Send one request, retrying as needed; return the reply frame
        (any status but BAD_CRC / BAD_FRAME and a TOO_LONG that can only be noise, which are retried)."""
        if self._ser is None:
            raise ProtocolError(f"the link to {self.port} is closed")
        fits = self._fits(len(payload))
        if fits is False:
            raise ProtocolError(self._too_long(opcode, len(payload), sent=False))
        retries = self.retries if retries is None else retries
        timeout = self.timeout if timeout is None else timeout
        # time to move the bytes at the line rate (10 bits a byte), both ways
        wire = (max_encoded_size(len(payload) + FRAME_OVERHEAD) + max_encoded_size(reply_bytes + FRAME_OVERHEAD)
                + 2) * 10.0 / max(self.baudrate, 1)
        name = _op_name(opcode)
        self.stats.requests += 1
        seqs: set[int] = set()
        problems: list[str] = []
        stale_total = 0  # replies to earlier requests seen while waiting for this one
        log_mark = len(self.log_lines)
        for attempt in range(retries + 1):
            if attempt:
                self.stats.retries += 1
            self.stats.attempts += 1
            seq = self._next_seq()
            seqs.add(seq)
            wire_bytes = b"\x00" + encode_frame(Frame(opcode=opcode, seq=seq, payload=payload))
            self._trace_event(f"TX {name} seq={seq} len={len(payload)}" + (f" (retry {attempt})" if attempt else ""))
            self._write(wire_bytes)
            deadline = time.monotonic() + timeout + wire
            stale = 0
            while True:
                # checked here too: a board that floods stale replies keeps _next_event busy
                ev = self._next_event(deadline) if time.monotonic() < deadline else None
                if ev is None:
                    self.stats.timeouts += 1
                    problems.append("stale" if stale else "timeout")
                    stale_total += stale
                    break
                if isinstance(ev, FrameError):
                    self.stats.bad_replies += 1
                    problems.append(f"corrupt reply ({ev})")
                    break
                frame = ev
                if not frame.is_reply:  # our own request echoed (loop://, a port wired back): no board
                    self.stats.stale_replies += 1
                    continue
                if frame.status in RETRYABLE_STATUSES and (frame.seq in seqs or frame.seq_untrusted):
                    self.stats.error_replies += 1
                    if frame.status == Status.TOO_LONG and not fits:
                        # the same bytes would be refused again: not line noise
                        raise DeviceStatusError(self._too_long(opcode, len(payload), sent=True), frame.status,
                                                frame.payload)
                    problems.append(f"the board reported {status_name(frame.status)}")
                    break
                if frame.seq not in seqs or frame.opcode != (opcode & 0x7F):
                    self.stats.stale_replies += 1
                    stale += 1
                    continue
                if frame.status == Status.BAD_VERSION:
                    theirs = frame.payload[0] if frame.payload else "?"
                    raise ProtocolError(f"the board on {self.port} speaks protocol version {theirs}, this tinygen "
                                        f"speaks {PROTOCOL_VERSION}; regenerate and reflash the firmware")
                return frame
        tries = retries + 1
        said = self.log_lines[log_mark:]
        pending = bytes(self._rx)
        hint = ""
        if said:
            hint = f"; the board said: {said[-1]!r}"
        elif pending and all(b in _PRINTABLE for b in pending[-200:]):
            hint = f"; the board printed: {pending[-80:].decode('ascii', 'replace').strip()!r}"
        if all(p == "stale" for p in problems):  # every try: only replies to earlier requests
            raise BoardFault(f"the board on {self.port} keeps answering with old sequence numbers: "
                             f"{stale_total} replies to earlier requests and none to this {name} after {tries} "
                             f"tries (a board fault, not your input: its firmware replays old replies, or "
                             f"another program talks on the same port); reset the board and run again{hint}")
        if all(p == "timeout" for p in problems):
            raise LinkTimeout(f"no reply from the board on {self.port} after {tries} tries; is the firmware flashed "
                              f"and the baud rate {self.baudrate}?{hint}")
        last = next(p for p in reversed(problems) if p not in ("timeout", "stale"))
        raise ProtocolError(f"no valid reply to {name} from the board on {self.port} after {tries} tries "
                            f"(last problem: {last}); check the cable and the baud rate {self.baudrate}{hint}")

    def send_raw(self, data: bytes) -> None:
        """Put bytes on the wire as they are (diagnostics, tests)."""
        self._write(bytes(data))

    def read_frame(self, timeout: float) -> Frame | None:
        """The next valid frame within ``timeout`` seconds (corrupt chunks are
        skipped, text lines collected); None on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            ev = self._next_event(deadline)
            if ev is None or isinstance(ev, Frame):
                return ev

    # -- internals ---------------------------------------------------------------------

    def _check_ok(self, frame: Frame, what: str) -> None:
        if frame.status == Status.OK:
            return
        detail = ""
        if frame.status == Status.INVOKE_FAILED and len(frame.payload) >= 4:
            detail = f" (runtime returned {int.from_bytes(frame.payload[:4], 'little', signed=True)})"
        raise DeviceStatusError(f"the board on {self.port} refused {what}: {describe_status(frame.status)}{detail}",
                                frame.status, frame.payload)

    def _fits(self, payload_len: int) -> bool | None:
        """Whether a request frame fits the board's receive buffer (None: no HELLO yet)."""
        if self.info is None or not self.info.max_frame:
            return None
        return payload_len + FRAME_OVERHEAD <= self.info.max_frame

    def _too_long(self, opcode: int, payload_len: int, sent: bool) -> str:
        frame = payload_len + FRAME_OVERHEAD
        if self.info is not None and self.info.max_frame:
            limit = (f"it accepts frames of at most {self.info.max_frame} bytes "
                     f"({self.info.max_frame - FRAME_OVERHEAD} payload bytes)")
        else:
            limit = "HELLO reports the largest frame it accepts (max_frame)"
        what = f"a {_op_name(opcode)} request of {frame} bytes"
        said = (f"the board on {self.port} refused {what} as too long (TOO_LONG)" if sent
                else f"{what} is longer than the board on {self.port} accepts (not sent)")
        return f"{said}: {limit}; send less, or regenerate and reflash the firmware for this model"

    def _next_seq(self) -> int:
        self._seq = (self._seq + 1) & 0xFFFF
        return self._seq

    def _write(self, data: bytes) -> None:
        for line in self._hex("TX", data):
            self.trace(line)
        try:
            self._ser.write(data)
        except (serial.SerialException, OSError) as e:
            raise ProtocolError(f"lost the serial connection to the board on {self.port} while writing ({e}); "
                                "the board was unplugged or the emulator stopped: reconnect it and run again") from None

    def _hex(self, tag: str, data: bytes) -> list[str]:
        if self.trace is None:
            return []
        return [f"{tag} {len(data)} bytes"] + hexdump(data, prefix="   ")

    def _trace_event(self, text: str) -> None:
        if self.trace is not None:
            self.trace(text)

    def _read_some(self, deadline: float) -> None:
        if time.monotonic() >= deadline:
            return
        try:
            waiting = self._ser.in_waiting
            data = self._ser.read(waiting if waiting > 0 else 1)
        except (serial.SerialException, OSError) as e:
            raise ProtocolError(f"lost the serial connection to the board on {self.port} ({e}); "
                                "the board was unplugged or the emulator stopped: reconnect it and run again") from None
        if data:
            for line in self._hex("RX", data):
                self.trace(line)
            self._rx += data
            if len(self._rx) > _MAX_PENDING and 0 not in self._rx:
                self.stats.garbage_bytes += len(self._rx)
                self._rx.clear()

    def _next_event(self, deadline: float) -> Frame | FrameError | None:
        """Next frame or corrupt chunk; text lines are collected on the way.
        None when the deadline passes."""
        while True:
            idx = self._rx.find(0)
            if idx < 0:
                if time.monotonic() >= deadline:
                    return None
                self._read_some(deadline)
                continue
            chunk = bytes(self._rx[:idx])
            del self._rx[:idx + 1]
            first, self._synced = not self._synced, True
            if not chunk:
                continue
            ev = self._classify(chunk)
            if isinstance(ev, FrameError) and first:
                # resync: what came before the first delimiter after opening
                # the port is the tail of something we did not see begin
                self._trace_event(f"RX resync: dropped {len(chunk)} bytes before the first delimiter")
                continue
            if ev is not None:
                return ev

    def _classify(self, chunk: bytes) -> Frame | FrameError | None:
        try:
            frame = decode_frame(chunk)
        except FrameError as e:
            error = e
        else:
            self._trace_frame(frame)
            return frame
        if _is_text(chunk):
            self._add_text(chunk)
            return None
        # text the board printed without a delimiter, then a frame
        pos = chunk.find(b"\n")
        while pos >= 0:
            head, tail = chunk[:pos + 1], chunk[pos + 1:]
            if not all(b in _PRINTABLE for b in head):
                break
            try:
                frame = decode_frame(tail)
            except FrameError:
                pos = chunk.find(b"\n", pos + 1)
                continue
            self._add_text(head)
            self._trace_frame(frame)
            return frame
        self.stats.garbage_bytes += len(chunk)
        self._trace_event(f"RX bad frame ({len(chunk)} bytes): {error}")
        return error

    def _add_text(self, chunk: bytes) -> None:
        for line in chunk.decode("ascii", "replace").split("\n"):
            line = line.rstrip("\r")
            if line:
                self.log_lines.append(line)
                self.stats.text_lines += 1
                self._trace_event(f"RX text: {line}")

    def _trace_frame(self, frame: Frame) -> None:
        if self.trace is not None:
            kind = "reply" if frame.is_reply else "request"
            self.trace(f"RX {kind} {_op_name(frame.opcode)} seq={frame.seq} status={status_name(frame.status)}"
                       f"{' (seq untrusted)' if frame.seq_untrusted else ''} len={len(frame.payload)}")


def _op_name(opcode: int) -> str:
    try:
        return Opcode(opcode & 0x7F).name
    except ValueError:
        return f"opcode 0x{opcode & 0x7F:02x}"


def _np_dtype(code: int) -> np.dtype:
    try:
        return np.dtype(DTYPE_NUMPY[DType(code)])
    except ValueError:
        raise ProtocolError(f"the board reports an unknown tensor type code {code}") from None


def _shape_matches(shape: tuple[int, ...], want: tuple[int, ...]) -> bool:
    def strip(s):
        s = tuple(int(d) for d in s)
        while len(s) > 1 and s[0] == 1:
            s = s[1:]
        return s

    return tuple(shape) == tuple(want) or strip(shape) == strip(want)
