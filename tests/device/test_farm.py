"""A board farm on labgrid, on loopback: the emulated Cortex-M4's pty served as RFC 2217 by ser2net
(bound to 127.0.0.1), published by a labgrid exporter to a coordinator as place's NetworkSerialPort;
`tinygen verify --place` and the pytest plugin acquire the place and verify through it.  Everything
is real (QEMU, ser2net, labgrid-coordinator, labgrid-exporter, gRPC) and torn down after the module."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import assert_one_line_error, require, require_tool, run_cli
from support.plugin_kit import emulated_project, plugin_args

pytest_plugins = ["pytester"]

PLACE = "tg-m4"
EXPORTER = "tg-exporter"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_listening(port: int, proc: subprocess.Popen, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{what} exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    pytest.fail(f"{what} did not listen on 127.0.0.1:{port} within {timeout} s")


def _tool(name: str) -> str:
    """labgrid's commands sit beside this interpreter in a venv that need not be on PATH."""
    here = Path(sys.executable).parent / name
    return str(here) if here.exists() else require_tool(name)


class _Coordinator:
    """Talks to the coordinator as a labgrid client would, one short session per question: the
    coordinator refuses a second stream from one TCP peer, and grpc shares one connection between
    the channels of a process, so no session may stay open while tinygen's client runs here."""

    def __init__(self, address: str):
        self.address = address

    def _session(self, work):
        from labgrid.remote.client import ensure_event_loop, start_session
        from labgrid.remote.generated import labgrid_coordinator_pb2 as pb

        loop = ensure_event_loop()  # labgrid's loop of this thread, which tinygen's client shares
        asyncio.set_event_loop(loop)
        session = start_session(self.address, loop=loop)
        try:
            return work(session, pb, loop)
        finally:
            loop.run_until_complete(session.stop())
            loop.run_until_complete(session.close())

    def add_place(self) -> None:
        def work(session, pb, loop):
            for rpc, req in ((session.stub.AddPlace, pb.AddPlaceRequest(name=PLACE)),
                             (session.stub.AddPlaceMatch, pb.AddPlaceMatchRequest(
                                 placename=PLACE, pattern=f"{EXPORTER}/qemu-m4/NetworkSerialPort"))):
                loop.run_until_complete(rpc(req))
                loop.run_until_complete(session.sync_with_coordinator())
        self._session(work)

    def resource_ready(self) -> bool:
        return self._session(lambda session, pb, loop: any(
            r.avail for r in session.resources.get(EXPORTER, {}).get("qemu-m4", {}).values()))

    def acquired(self) -> str:
        return self._session(lambda session, pb, loop: session.places[PLACE].acquired)


@pytest.fixture(scope="module")
def farm(session_dir, tmp_path_factory):
    require(importlib.util.find_spec("labgrid") is not None, "labgrid (pip install '.[farm]')")
    ser2net = require_tool("ser2net")
    project = emulated_project(session_dir)
    from tinygen import api
    from tinygen.device.emulator import qemu_for_project

    work = tmp_path_factory.mktemp("farm")
    coord_port, serial_port = _free_port(), _free_port()
    address = f"127.0.0.1:{coord_port}"
    procs: list[subprocess.Popen] = []
    qemu = qemu_for_project(project, api.Project.load(project).board).start()
    try:
        def spawn(name: str, *args: str) -> subprocess.Popen:
            log = open(work / f"{name}.log", "wb")
            procs.append(subprocess.Popen(list(args), cwd=work, stdout=log, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL, start_new_session=True))
            log.close()
            return procs[-1]

        # ser2net 4 on loopback only; 'local' ignores modem lines a pty does not have.
        s2n = spawn("ser2net", ser2net, "-d", "-n", "-Y",
                    f"connection: &tg#  accepter: telnet(rfc2217,mode=server),tcp,127.0.0.1,{serial_port}",
                    "-Y", f"  connector: serialdev(nouucplock=true),{qemu.port},115200n81,local")
        coord = spawn("coordinator", _tool("labgrid-coordinator"), "--listen", address)
        _wait_listening(serial_port, s2n, "ser2net")
        _wait_listening(coord_port, coord, "labgrid-coordinator")
        (work / "exporter.yaml").write_text(
            f"qemu-m4:\n  NetworkSerialPort:\n    host: 127.0.0.1\n    port: {serial_port}\n    speed: 115200\n")
        exporter = spawn("exporter", _tool("labgrid-exporter"), "--coordinator", address, "--name", EXPORTER,
                         "--hostname", "127.0.0.1", "exporter.yaml")
        coordinator = _Coordinator(address)
        deadline = time.monotonic() + 60
        while not coordinator.resource_ready():
            if exporter.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the exporter did not publish the serial port: {(work / 'exporter.log').read_text()}")
            time.sleep(0.2)
        coordinator.add_place()
        yield {"project": project, "address": address, "coordinator": coordinator, "url":
               f"rfc2217://127.0.0.1:{serial_port}"}
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.terminate()
        for p in reversed(procs):
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=5)
        qemu.stop()


def test_verify_passes_through_a_labgrid_place(farm, tmp_path):
    res = run_cli("verify", "--project", str(farm["project"]), "--place", PLACE, "--coordinator", farm["address"],
                  "--vectors", "4", "--report-dir", str(tmp_path), "--json", timeout=300)
    assert res.returncode == 0, res.stderr
    result = json.loads(res.stdout)
    assert result["port"] == farm["url"]
    m = result["metrics"]
    assert m["passed"] and m["max_abs_diff_lsb"] == 0 and m["vectors"] > 4
    assert not farm["coordinator"].acquired(), "tinygen must release the place it acquired"


def test_the_pytest_plugin_verifies_through_the_place(farm, pytester):
    pytester.makepyfile(test_farm_user='''
from tinygen.testing import assert_bit_exact

def test_vectors(tinygen_board, tinygen_reference):
    assert tinygen_board.port.startswith("rfc2217://127.0.0.1:")
    assert_bit_exact(tinygen_board.infer_batch(tinygen_reference.inputs), tinygen_reference.outputs)
''')
    res = pytester.runpytest(*plugin_args(), "--tinygen-project", str(farm["project"]), "--tinygen-place", PLACE,
                             "--tinygen-coordinator", farm["address"], "-p", "no:cacheprovider")
    res.assert_outcomes(passed=1)
    res.stdout.fnmatch_lines([f"tinygen: project *, labgrid place {PLACE}"])
    assert not farm["coordinator"].acquired()


def test_a_place_someone_else_holds_is_refused(farm, monkeypatch):
    from tinygen import api
    from tinygen.common.errors import TinygenError

    def as_colleague(work) -> None:
        with monkeypatch.context() as m:  # labgrid names a client by these, read at session start
            m.setenv("LG_USERNAME", "colleague")
            m.setenv("LG_HOSTNAME", "bench-pc")
            farm["coordinator"]._session(work)

    def rpc(name: str):
        def work(session, pb, loop):
            req = getattr(pb, f"{name}PlaceRequest")(placename=PLACE)
            loop.run_until_complete(getattr(session.stub, f"{name}Place")(req))
            loop.run_until_complete(session.sync_with_coordinator())
        return work

    as_colleague(rpc("Acquire"))
    try:
        with pytest.raises(TinygenError) as err:
            api.verify(farm["project"], place=PLACE, coordinator=farm["address"])
        assert err.value.exit_code == 4
        assert str(err.value) == (f"labgrid place {PLACE} is acquired by bench-pc/colleague; wait for it, or queue "
                                  f"for it: labgrid-client reserve --wait name={PLACE}")
    finally:
        as_colleague(rpc("Release"))
    assert not farm["coordinator"].acquired()


def test_unknown_place_bad_names_and_no_coordinator_say_what_to_do(farm):
    from tinygen import api
    from tinygen.common.errors import TinygenError

    with pytest.raises(TinygenError, match=f"has no place no-such-place \\(places: {PLACE}\\); create it"):
        api.verify(farm["project"], place="no-such-place", coordinator=farm["address"])
    with pytest.raises(TinygenError, match="is not a labgrid place name"):
        api.verify(farm["project"], place="../x", coordinator=farm["address"])
    with pytest.raises(TinygenError, match="either a port or a labgrid place"):
        api.verify(farm["project"], port="/dev/ttyACM0", place=PLACE, coordinator=farm["address"])
    nobody = f"127.0.0.1:{_free_port()}"
    with pytest.raises(TinygenError, match=f"cannot reach the labgrid coordinator at {nobody} .*; start it"):
        api.verify(farm["project"], place=PLACE, coordinator=nobody)
    with pytest.raises(TinygenError, match="is not HOST\\[:PORT\\]"):
        api.verify(farm["project"], place=PLACE, coordinator="coord.lab:99999")


def test_the_cli_wants_a_port_or_a_place():
    # not both (a real board's project needs one of them: tests/regression/test_issue_23_verify_and_run.py)
    res = run_cli("verify", "--project", "any", "--port", "/dev/ttyACM0", "--place", PLACE)
    assert_one_line_error(res, "give either --port or --place", code=2)


@pytest.mark.parametrize("port, ok", [
    ("/dev/ttyACM0", True), ("rfc2217://127.0.0.1:4001", True), ("rfc2217://lab-host.example:20000", True),
    ("rfc2217://[::1]:4001", True), ("socket://10.0.0.7:3001", True),
    ("rfc2217://127.0.0.1:0", False), ("rfc2217://127.0.0.1:65536", False), ("rfc2217://host", False),
    ("rfc2217://host:4001?logging=debug", False), ("rfc2217://user@host:4001", False),
    ("rfc2217://host:4001/x", False), ("hwgrep://.*", False), ("spy:///dev/ttyACM0", False),
    ("loop://", False), ("rfc2217://-host:1", False), ("rfc2217://a..b:1", False), ("/dev/tty\x1b[2J", False),
    ("", False),
])
def test_ports_are_checked_strictly(port, ok):
    from tinygen.common.errors import TinygenError
    from tinygen.device.ports import check_port

    if ok:
        assert check_port(port) == port
    else:
        with pytest.raises(TinygenError, match="serial port"):
            check_port(port)
