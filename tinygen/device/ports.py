"""Which serial port a board is on: 'auto' looks for the USB VID/PID its board file lists."""

from __future__ import annotations

from tinygen.common.errors import TinygenError


def resolve_port(port: str, board: dict) -> str:
    """'auto' -> the first serial port whose USB VID/PID is in the board file; any other port as given."""
    if port != "auto":
        return port
    from serial.tools import list_ports

    ids = {(int(v, 16), int(p, 16)) for v, p in board["serial"]["hwids"]}
    if not ids:
        raise TinygenError(f"--port auto cannot find an emulated {board['id']}; pass the pty that "
                           "'tinygen flash' printed")
    found = [p for p in list_ports.comports() if p.vid is not None and (p.vid, p.pid) in ids]
    if not found:
        seen = ", ".join(f"{p.device} ({p.vid:04X}:{p.pid:04X})" if p.vid else p.device
                         for p in list_ports.comports()) or "none"
        raise TinygenError(f"no {board['name']} found by USB id (looked for "
                           f"{', '.join(f'{v:04X}:{p:04X}' for v, p in sorted(ids))}; ports: {seen}); "
                           "plug it in or pass --port")
    return found[0].device
