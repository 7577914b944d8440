"""A lying board: a thread that speaks tinygen's real protocol on a real pty, for testing how the host
treats a board that does not do what it says (issue 22).

Nothing here is a stand-in for a real part under test: the host opens the pty's slave by name through
its normal path (``tinygen verify --port /dev/pts/N``, pyserial underneath), and every frame is made
with tinygen's own codecs (:mod:`tinygen.device.framing`), so only the board's *content* is fake.
Honest by default, it answers from the project itself: HELLO from tinygen.json (what the firmware
generated for that project reports), INFER with the stored reference output of the vector sent
(vectors/reference.npz), LAYERS and PROFILE with every op's output tensor (zeros of the model's sizes,
chunked as tg_app.c does) and one record per op.  ``lie`` picks one misbehaviour:

    output_int32     HELLO says INT32 outputs; INFER sends reference + 1792 as int32 (wraps to the
                     reference when cast to int8: the "100 % exact" lie of issue 22 item 5)
    output_uint8     HELLO says UINT8 outputs; INFER sends the reference bytes
    input_int16      HELLO says INT16 inputs (and twice the input bytes)
    output_shape     HELLO's output shape has one more element (bytes to match)
    output_scale     HELLO's output scale doubled
    output_zero_point   HELLO's output zero point + 3
    endless_more     LAYERS / PROFILE: FLAG_MORE frames until the host goes away
    huge_layers      LAYERS: op 0's first chunk claims a tensor of 0xFFFFFFFF bytes (4 GiB)
    profile_op_ffffffff  PROFILE: a record for op 0xFFFFFFFF among the real ones
    tick_hz_0        HELLO's tick_hz is 0
    stale_flood      every request answered only with replies carrying old sequence numbers

Use as a context manager; ``port`` is the pty path to pass to the host.
"""

from __future__ import annotations

import json
import os
import select
import struct
import threading
import tty
from pathlib import Path

import numpy as np

from tinygen.common import protocol as P
from tinygen.device import framing as F
from tinygen.tflite.model import parse_model

LIES = ("output_int32", "output_uint8", "input_int16", "output_shape", "output_scale", "output_zero_point",
        "endless_more", "huge_layers", "profile_op_ffffffff", "tick_hz_0", "stale_flood")
_ITEMSIZE = {"int8": 1, "uint8": 1, "int16": 2, "int32": 4, "float32": 4, "bool": 1, "int64": 8}


def honest_hello(project: Path) -> F.HelloInfo:
    """The HELLO the firmware generated for ``project`` sends, from its tinygen.json (not from tinygen's
    own HELLO check): the manifest's tensors and arena, max_frame as tg_app.c sizes its receive buffer."""
    man = json.loads((project / "tinygen.json").read_text())
    ins, outs = man["input"], man["output"]
    in_bytes, out_bytes = int(np.prod(ins["shape"])), int(np.prod(outs["shape"]))  # int8: one byte each
    arena = man["compiled_arena_bytes"] if man["runtime"] == "compiled" else man["arena"]["recommended_bytes"] - 512
    return F.HelloInfo(
        protocol_version=P.PROTOCOL_VERSION, init_status=P.Status.OK, runtime_name=man["runtime"],
        model_hash=bytes.fromhex(man["model_sha256"][:16]), input_shape=tuple(ins["shape"]),
        output_shape=tuple(outs["shape"]), input_dtype=P.DType.INT8, output_dtype=P.DType.INT8,
        input_scale=ins["scale"], input_zero_point=ins["zero_point"], output_scale=outs["scale"],
        output_zero_point=outs["zero_point"], input_bytes=in_bytes, output_bytes=out_bytes, arena_bytes=arena,
        tick_hz=1_000_000, max_frame=12 + max(in_bytes, 64))


class FakeBoard:
    def __init__(self, project: Path, lie: str | None = None):
        if lie is not None and lie not in LIES:
            raise ValueError(f"unknown lie {lie!r}; one of {LIES}")
        self.lie = lie
        project = Path(project)
        man = json.loads((project / "tinygen.json").read_text())
        model = parse_model((project / man["model_file"]).read_bytes())
        self.op_bytes = [int(np.prod(model.tensors[op.outputs[0]].shape)) * _ITEMSIZE[model.tensors[op.outputs[0]].dtype]
                         for op in model.operators]
        with np.load(project / man["vectors"]["file"]) as z:
            self.answers = {x.tobytes(): y.tobytes() for x, y in zip(z["inputs"], z["outputs"])}
        self.out_bytes = int(np.prod(man["output"]["shape"]))
        self.hello = self._hello(honest_hello(project))
        self.requests: list[int] = []  # opcodes received, in order
        self.more_sent = 0
        self.master, slave = os.openpty()
        tty.setraw(slave)
        self.port = os.ttyname(slave)
        os.close(slave)  # the host opens the pty by name
        os.set_blocking(self.master, False)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    # -- what the board says ------------------------------------------------------------------

    def _hello(self, h: F.HelloInfo) -> F.HelloInfo:
        from dataclasses import replace

        lie = self.lie
        if lie == "output_int32":
            return replace(h, output_dtype=P.DType.INT32, output_bytes=4 * h.output_bytes)
        if lie == "output_uint8":
            return replace(h, output_dtype=P.DType.UINT8)
        if lie == "input_int16":
            return replace(h, input_dtype=P.DType.INT16, input_bytes=2 * h.input_bytes,
                           max_frame=12 + max(2 * h.input_bytes, 64))
        if lie == "output_shape":
            shape = h.output_shape[:-1] + (h.output_shape[-1] + 1,)
            return replace(h, output_shape=shape, output_bytes=int(np.prod(shape)))
        if lie == "output_scale":
            return replace(h, output_scale=h.output_scale * 2)
        if lie == "output_zero_point":
            return replace(h, output_zero_point=h.output_zero_point + 3)
        if lie == "tick_hz_0":
            return replace(h, tick_hz=0)
        return h

    def _output(self, x: bytes) -> bytes:
        return self.answers.get(x, bytes(self.out_bytes))

    def _infer_payload(self, x: bytes) -> bytes:
        y = self._output(x)
        if self.lie == "output_int32":
            y = (np.frombuffer(y, np.int8).astype("<i4") + 1792).tobytes()
        return y + struct.pack("<I", 1234)

    def _stream(self, frame: F.Frame) -> None:
        """LAYERS / PROFILE as tg_app.c streams them: FLAG_MORE frames, then STREAM_END + output + ticks."""
        sent = 0

        def more(payload: bytes) -> None:
            nonlocal sent
            self._send(F.Frame(opcode=frame.opcode, seq=frame.seq, payload=payload, is_reply=True,
                               flags=P.FLAG_MORE))
            sent += 1
            self.more_sent += 1

        if self.lie == "endless_more":
            chunk = (P.LAYER_CHUNK.pack(0, self.op_bytes[0], 0) + bytes(min(self.op_bytes[0], 240))
                     if frame.opcode == P.Opcode.LAYERS else P.PROFILE_RECORD.pack(0, 100))
            while not self._stop.is_set():
                more(chunk)
            return
        if frame.opcode == P.Opcode.LAYERS:
            for op, n in enumerate(self.op_bytes):
                off = 0
                while True:
                    k = min(n - off, P.STREAM_CHUNK_BYTES)
                    total = 0xFFFFFFFF if (self.lie == "huge_layers" and op == 0) else n
                    more(P.LAYER_CHUNK.pack(op, total, off) + bytes(k))
                    off += k
                    if k == 0 or off >= n:
                        break
        else:
            records = [(op, 100 + op) for op in range(len(self.op_bytes))]
            if self.lie == "profile_op_ffffffff":
                records.insert(1, (0xFFFFFFFF, 5))
            for i in range(0, len(records), 30):
                more(b"".join(P.PROFILE_RECORD.pack(*r) for r in records[i:i + 30]))
        end = P.STREAM_END.pack(len(self.op_bytes), sent) + self._output(frame.payload) + struct.pack("<I", 999)
        self._send(F.Frame(opcode=frame.opcode, seq=frame.seq, payload=end, is_reply=True))

    def _answer(self, frame: F.Frame) -> None:
        self.requests.append(frame.opcode)
        op = frame.opcode
        if op == P.Opcode.HELLO:
            payload = F.pack_hello(self.hello)
        elif op == P.Opcode.INFER:
            payload = self._infer_payload(frame.payload)
        elif op == P.Opcode.PING:
            payload = frame.payload
        elif op in (P.Opcode.LAYERS, P.Opcode.PROFILE) and self.lie != "stale_flood":
            self._stream(frame)
            return
        else:
            payload = b""
        if self.lie == "stale_flood":
            # replies to requests long gone: the same answer, under sequence numbers the host never sent now
            for k in range(1, 6):
                self._send(F.Frame(opcode=op, seq=(frame.seq - 1000 * k) & 0xFFFF, payload=payload, is_reply=True))
            return
        self._send(F.Frame(opcode=op, seq=frame.seq, payload=payload, is_reply=True))

    # -- the wire -----------------------------------------------------------------------------

    def _send(self, frame: F.Frame) -> None:
        data = F.encode_frame(frame)
        while data and not self._stop.is_set():
            if not select.select([], [self.master], [], 0.05)[1]:
                continue
            try:
                data = data[os.write(self.master, data):]
            except BlockingIOError:
                continue
            except OSError:  # the host closed its end
                return

    def _serve(self) -> None:
        buf = b""
        while not self._stop.is_set():
            if not select.select([self.master], [], [], 0.05)[0]:
                continue
            try:
                buf += os.read(self.master, 4096)
            except (BlockingIOError, OSError):  # nothing yet, or the host has not opened / closed its end
                self._stop.wait(0.01)
                continue
            *chunks, buf = buf.split(b"\x00")
            for chunk in filter(None, chunks):
                try:
                    frame = F.decode_frame(chunk)
                except P.ProtocolError:
                    continue
                self._answer(frame)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        os.close(self.master)

    def __enter__(self) -> "FakeBoard":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def lying_project(session_dir: Path, board: str = "qemu-m4") -> Path:
    """The committed sine int8 .tflite built for ``board`` (no training, no firmware: the fake board
    answers), once per session."""
    from conftest import REPO, build_ok

    out = session_dir / f"fake-board-sine-{board}"
    if not (out / "tinygen.json").exists():
        build_ok("--board", board, "--model", str(REPO / "tests" / "fixtures" / "models" / "sine_int8.tflite"),
                 "--out", str(out))
    return out
