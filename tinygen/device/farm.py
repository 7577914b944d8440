"""A board in a labgrid farm: acquire a place, use its network serial port, release it.

    with place_port("m4-bench-3", "coordinator.lab:20408") as url:   # rfc2217://host:port
        ...DeviceLink(url)...

A labgrid *place* is the unit a lab reserves and locks; its serial line is a
NetworkSerialPort that an exporter publishes (ser2net serving the board's UART as RFC 2217).
tinygen takes a place name rather than a host:port because the port is the exporter's
detail (it changes when ser2net restarts) while the place is what people share: acquiring it
stops a colleague's run from interleaving frames with ours on the same UART.  A place this
user has already acquired (``labgrid-client -p NAME acquire``, e.g. under a reservation) is
used and left acquired; otherwise it is acquired for the run and released afterwards.
labgrid is an optional dependency (``pip install 'tinygen[farm]'``), imported only here.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
from contextlib import contextmanager
from typing import Iterator

from tinygen.common.errors import TinygenError, ToolFailure
from tinygen.common.escape import terminal
from tinygen.device.ports import check_port

DEFAULT_COORDINATOR = "127.0.0.1:20408"  # labgrid's own default
_PLACE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_ADDRESS_RE = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?|\[[0-9A-Fa-f:.]{2,45}\])"
                         r"(?::[0-9]{1,5})?")
_FIX = "pip install 'tinygen[farm]' (labgrid)"


def check_place(place: str) -> str:
    if not isinstance(place, str) or not _PLACE_RE.fullmatch(place):
        raise TinygenError(f"place name {terminal(str(place)[:80])!r} is not a labgrid place name "
                           "(letters, digits, '_', '.', '-'; at most 64)")
    return place


def coordinator_address(coordinator: str | None) -> str:
    """``coordinator``, else $LG_COORDINATOR (labgrid's variable), else labgrid's default; checked."""
    addr = coordinator or os.environ.get("LG_COORDINATOR") or DEFAULT_COORDINATOR
    port = addr.rsplit(":", 1)[1] if ":" in addr and not addr.endswith("]") else "20408"
    if not _ADDRESS_RE.fullmatch(addr) or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise TinygenError(f"labgrid coordinator {terminal(addr[:120])!r} is not HOST[:PORT]")
    return addr


def _labgrid():
    try:
        from labgrid.remote.client import ensure_event_loop, start_session
        from labgrid.remote.generated import labgrid_coordinator_pb2
    except ImportError as e:
        raise ToolFailure(f"--place needs labgrid, which is not installed here ({e.name}); {_FIX}") from None
    return start_session, ensure_event_loop, labgrid_coordinator_pb2


def _serial_url(session, place) -> str:
    ports = [(name, r) for (name, cls), r in sorted(session.get_target_resources(place).items(),
                                                    key=lambda kv: kv[0]) if cls == "NetworkSerialPort"]
    if not ports:
        raise TinygenError(f"labgrid place {place.name} has no NetworkSerialPort; add the exporter's serial "
                           f"port to it: labgrid-client -p {place.name} add-match EXPORTER/GROUP/NetworkSerialPort")
    name, res = ports[0]
    if not res.avail:
        raise ToolFailure(f"the serial port {terminal(name)} of labgrid place {place.name} is not available "
                          "(its exporter is offline or the device is unplugged); start the exporter")
    params = res.params
    scheme = "socket" if params.get("protocol") == "raw" else "rfc2217"
    host = str(params.get("host", ""))
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return check_port(f"{scheme}://{host}:{params.get('port')}")


@contextmanager
def place_port(place: str, coordinator: str | None = None) -> Iterator[str]:
    """The serial URL of labgrid place ``place``, held acquired for the duration of the block."""
    import grpc

    check_place(place)
    address = coordinator_address(coordinator)
    start_session, ensure_event_loop, pb = _labgrid()
    # labgrid keeps one event loop per thread (and asserts it is the one in use); grpc.aio binds
    # the channel to the *current* loop: so use labgrid's loop, current, and leave it open.
    loop = ensure_event_loop()
    asyncio.set_event_loop(loop)
    try:
        with _quiet():
            session = start_session(address, loop=loop)
    except Exception as e:  # noqa: BLE001 - labgrid raises its own and grpc's errors here
        raise ToolFailure(f"cannot reach the labgrid coordinator at {address} ({terminal(e)}); start it "
                          "(labgrid-coordinator) or pass --coordinator / set LG_COORDINATOR") from None
    try:
        yield from _held(session, loop, pb, grpc, place, address)
    finally:
        with _quiet():
            loop.run_until_complete(session.stop())
            loop.run_until_complete(session.close())


@contextmanager
def _quiet() -> Iterator[None]:
    """labgrid logs connection trouble with tracebacks on the root logger, which Python's last-resort
    handler would print; the one-line error we raise says it instead."""
    root = logging.getLogger()
    handler = logging.NullHandler()
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)


def _held(session, loop, pb, grpc, name: str, address: str) -> Iterator[str]:
    place = session.places.get(name)
    if place is None:
        known = ", ".join(sorted(session.places)) or "none"
        raise TinygenError(f"the labgrid coordinator at {address} has no place {name} (places: "
                           f"{terminal(known)[:300]}); create it: labgrid-client -p {name} create")
    me = f"{session.gethostname()}/{session.getuser()}"
    already = place.acquired == me
    if place.acquired and not already:
        raise ToolFailure(f"labgrid place {name} is acquired by {terminal(place.acquired)}; wait for it, or "
                          f"queue for it: labgrid-client reserve --wait name={name}")

    def call(what: str, rpc, request):
        try:
            loop.run_until_complete(rpc(request))
            loop.run_until_complete(session.sync_with_coordinator())
        except grpc.aio.AioRpcError as e:
            raise ToolFailure(f"labgrid refused to {what} place {name}: "
                              f"{terminal(e.details())}") from None

    if not already:
        with _quiet():
            call("acquire", session.stub.AcquirePlace, pb.AcquirePlaceRequest(placename=name))
    try:
        yield _serial_url(session, session.places[name])
    finally:
        if not already:
            with _quiet():
                call("release", session.stub.ReleasePlace, pb.ReleasePlaceRequest(placename=name))
