"""Which serial port a board is on: 'auto' looks for the USB VID/PID its board file lists.

A port is user text that reaches :func:`serial.serial_for_url`, which treats anything with
``://`` as a URL and would happily open ``hwgrep://`` (a regex over every port) or
``spy://`` (a logging wrapper); so only two network forms pass, host and port and nothing else:
``rfc2217://HOST:PORT`` (what ser2net and a labgrid place serve) and ``socket://HOST:PORT``
(ser2net's raw TCP mode).
"""

from __future__ import annotations

import re

from tinygen.common.boards import Board
from tinygen.common.errors import TinygenError
from tinygen.common.escape import terminal

NETWORK_SCHEMES = ("rfc2217", "socket")
_HOST = r"(?P<host>[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?|\[[0-9A-Fa-f:.]{2,45}\])"
_URL_RE = re.compile(rf"(?P<scheme>{'|'.join(NETWORK_SCHEMES)})://{_HOST}:(?P<port>[0-9]{{1,5}})")
_URL_FORM = "rfc2217://HOST:PORT (or socket://HOST:PORT)"


def check_port(port: str) -> str:
    """``port`` unchanged when it is 'auto', a device path or a strict network URL; else TinygenError."""
    if not isinstance(port, str) or not port.strip():
        raise TinygenError("the serial port is empty; pass a device (e.g. /dev/ttyACM0), 'auto' or "
                           f"{_URL_FORM}")
    if len(port) > 1024 or any(ord(c) < 0x20 or ord(c) == 0x7F for c in port):
        raise TinygenError(f"serial port {terminal(port[:80])} holds control characters or is too long; "
                           "pass a device path or " + _URL_FORM)
    if "://" not in port:
        return port
    m = _URL_RE.fullmatch(port)
    if m is None or ".." in m.group("host") or not 1 <= int(m.group("port")) <= 65535:
        raise TinygenError(f"serial port URL {terminal(port[:120])} is not {_URL_FORM} with a TCP port in "
                           "1..65535 (no user, path or options)")
    return port


def resolve_port(port: str, board: Board) -> str:
    """'auto' -> the first serial port whose USB VID/PID is in the board file; any other port as given."""
    if check_port(port) != "auto":
        return port
    from serial.tools import list_ports

    ids = {(int(v, 16), int(p, 16)) for v, p in board.serial.hwids}
    if not ids:
        raise TinygenError(f"--port auto cannot find an emulated {board.id}; pass the pty that "
                           "'tinygen flash' printed")
    found = [p for p in list_ports.comports() if p.vid is not None and (p.vid, p.pid) in ids]
    if not found:
        seen = ", ".join(f"{p.device} ({p.vid:04X}:{p.pid:04X})" if p.vid else p.device
                         for p in list_ports.comports()) or "none"
        raise TinygenError(f"no {board.name} found by USB id (looked for "
                           f"{', '.join(f'{v:04X}:{p:04X}' for v, p in sorted(ids))}; ports: {seen}); "
                           "plug it in or pass --port")
    return found[0].device
