"""Bug: the host said the board refused a request that was never sent (fixed in 53f01d2).

After HELLO has given the board's largest frame (``max_frame``), DeviceLink refuses a longer
request on the host, before sending it.  Its message said "the board on PORT refused a PING
request of 77 bytes as too long (TOO_LONG)", blaming a board that never saw the request.

Smallest input: a board whose HELLO says ``max_frame`` 76 (64 payload bytes), and one PING of
65 payload bytes.  The board is a thread on the far side of a real pty that answers HELLO and
PING with the protocol's own encoder and records every other frame it receives.

Checked to fail without the fix: with the imports renamed to the flat modules of the time
(tinygen.protocol, tinygen.serial_link), this test fails on 53f01d2^ (the message says the
board refused) and passes on 53f01d2; on today's tree, changing ``sent=False`` to
``sent=True`` in DeviceLink.request fails it the same way.
"""

from __future__ import annotations

import os
import select
import threading

import pytest

from tinygen.common import protocol as P
from tinygen.device import framing as F
from tinygen.device.serial_link import DeviceLink

MAX_FRAME = P.FRAME_OVERHEAD + 64
HELLO = F.HelloInfo(protocol_version=P.PROTOCOL_VERSION, init_status=P.Status.OK, runtime_name="compiled",
                    model_hash=bytes(8), input_shape=(1, 4), output_shape=(1, 2), input_bytes=4, output_bytes=2,
                    max_frame=MAX_FRAME)


class HelloBoard:
    """Answers HELLO and PING (echo); every frame but HELLO is also kept in ``received``."""

    def __init__(self):
        self.master, slave = os.openpty()
        self.port = os.ttyname(slave)
        os.close(slave)  # the link opens the pty by name
        self.received: list[F.Frame] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        buf = b""
        while not self._stop.is_set():
            if not select.select([self.master], [], [], 0.05)[0]:
                continue
            try:
                buf += os.read(self.master, 4096)
            except OSError:  # the link closed its end
                continue
            *chunks, buf = buf.split(b"\x00")
            for chunk in filter(None, chunks):
                frame = F.decode_frame(chunk)
                if frame.opcode != P.Opcode.HELLO:
                    self.received.append(frame)
                payload = F.pack_hello(HELLO) if frame.opcode == P.Opcode.HELLO else frame.payload
                if frame.opcode in (P.Opcode.HELLO, P.Opcode.PING):
                    reply = F.Frame(opcode=frame.opcode, seq=frame.seq, payload=payload, is_reply=True)
                    os.write(self.master, F.encode_frame(reply))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        os.close(self.master)


@pytest.fixture
def board():
    b = HelloBoard()
    yield b
    b.close()


def test_request_refused_before_sending_does_not_blame_the_board(board):
    with DeviceLink(board.port, timeout=2.0, retries=0) as link:
        assert link.hello().max_frame == MAX_FRAME
        with pytest.raises(P.ProtocolError) as ei:
            link.ping(bytes(65))
        msg = str(ei.value)
        assert not isinstance(ei.value, P.DeviceStatusError)  # no status came from the board
        assert "not sent" in msg and "refused" not in msg and "TOO_LONG" not in msg, msg
        assert "PING request of 77 bytes" in msg and f"at most {MAX_FRAME} bytes" in msg, msg
        assert link.ping(b"\x01" * 64) == b"\x01" * 64  # the largest PING that fits goes out and comes back
    # The board saw that PING and nothing before it: the 65-byte request never left the host.
    assert [(f.opcode, len(f.payload)) for f in board.received] == [(P.Opcode.PING, 64)]
