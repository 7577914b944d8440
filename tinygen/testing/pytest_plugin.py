"""tinygen's pytest plugin (entry point ``pytest11: tinygen``): serial-port validation tests in a user's repo.

    pytest tests/ --tinygen-project tinygen-qemu-m4-sine                  # QEMU boots the firmware
    pytest tests/ --tinygen-project fw/ --tinygen-port /dev/ttyACM0       # a real board
    pytest tests/ --tinygen-project fw/ --tinygen-place m4-bench-3        # a labgrid place

Fixtures (session scope: one board connection, one QEMU, per run): ``tinygen_project`` (the
:class:`~tinygen.api.Project`), ``tinygen_board`` (a connected :class:`~tinygen.testing.TinygenBoard`),
``tinygen_reference`` (:class:`~tinygen.testing.Reference`: stored vectors and tflite_micro on demand).

Options are all ``--tinygen-*``, so the plugin loads beside Espressif's pytest-embedded
(``--port``, ``--target``, fixture ``dut``) and labgrid's (``--lg-*``, fixtures ``env``/``target``)
without a clash; when ``--tinygen-port`` is not given, pytest-embedded's ``--port`` is used.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import pytest

_PORT_HELP = ("auto (USB VID/PID) | emulated (boot QEMU for an emulated board) | a device path | "
              "rfc2217://HOST:PORT (default: emulated for an emulated board, else auto; else pytest-embedded's "
              "--port when given)")


def pytest_addoption(parser) -> None:
    group = parser.getgroup("tinygen", "tinygen serial-port validation")
    group.addoption("--tinygen-project", metavar="DIR", default=None,
                    help="The generated tinygen project the board runs (ini: tinygen_project).")
    group.addoption("--tinygen-port", metavar="PORT", default=None, help=_PORT_HELP)
    group.addoption("--tinygen-place", metavar="NAME", default=None,
                    help="A labgrid place instead of a port: acquired for the session, its serial port used.")
    group.addoption("--tinygen-coordinator", metavar="HOST[:PORT]", default=None,
                    help="labgrid coordinator for --tinygen-place (default: $LG_COORDINATOR).")
    group.addoption("--tinygen-timeout", metavar="S", type=_seconds, default=10.0,
                    help="Seconds to wait for each reply, in (0, 3600] (default 10).")
    parser.addini("tinygen_project", "The generated tinygen project (relative to the ini file).", default=None)


def _seconds(text: str) -> float:
    """--tinygen-timeout's type: a finite number of seconds in (0, 3600], as `tinygen verify --timeout`.
    float() takes 'nan' (a deadline that never passes: the session hangs) and 'inf' (a traceback deep in
    the serial port); refused here, pytest prints its usage line and this message and exits 4."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not (math.isfinite(value) and 0 < value <= 3600):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds in (0, 3600]")
    return value


def _fail(exc: Exception):
    # tinygen's errors are one line saying what to do: no traceback into tinygen's internals.
    pytest.fail(f"tinygen: {exc}", pytrace=False)


def _project_dir(config) -> Path | None:
    opt = config.getoption("tinygen_project")
    if opt:
        return Path(opt)
    ini = config.getini("tinygen_project")
    if ini:
        return Path(config.inipath).parent / ini if config.inipath else Path(ini)
    return None


def _port(config) -> str | None:
    port = config.getoption("tinygen_port")
    if port is None:
        try:  # pytest-embedded's option, when that plugin is loaded too
            port = config.getoption("port")
        except ValueError:
            port = None
    return port or None


def pytest_report_header(config) -> str | None:
    where = _project_dir(config)
    if where is None:
        return None
    place = config.getoption("tinygen_place")
    return f"tinygen: project {where}, " + (f"labgrid place {place}" if place else f"port {_port(config) or 'default'}")


@pytest.fixture(scope="session")
def tinygen_project(pytestconfig):
    """The generated project under test (--tinygen-project or ini tinygen_project)."""
    from tinygen import api
    from tinygen.common.errors import TinygenError

    where = _project_dir(pytestconfig)
    if where is None:
        pytest.fail("tinygen: which project? pass --tinygen-project DIR (a directory 'tinygen build' wrote) "
                    "or set tinygen_project in the ini file", pytrace=False)
    try:
        return api.Project.load(where)
    except TinygenError as e:
        _fail(e)


@pytest.fixture(scope="session")
def tinygen_board(pytestconfig, tinygen_project):
    """The board running the project, connected for the whole session (QEMU started for 'emulated')."""
    from tinygen.common.errors import TinygenError
    from tinygen.testing.board import TinygenBoard

    try:
        board = TinygenBoard.connect(tinygen_project, _port(pytestconfig),
                                     place=pytestconfig.getoption("tinygen_place"),
                                     coordinator=pytestconfig.getoption("tinygen_coordinator"),
                                     timeout=pytestconfig.getoption("tinygen_timeout"))
    except TinygenError as e:
        _fail(e)
    with board:
        yield board


@pytest.fixture(scope="session")
def tinygen_reference(tinygen_project):
    """The tflite_micro reference of the project's model: ``.inputs``/``.outputs`` (stored vectors),
    ``.labels``, and ``reference(inputs)`` for new inputs."""
    from tinygen.common.errors import TinygenError
    from tinygen.testing.board import Reference

    try:
        return Reference(tinygen_project)
    except TinygenError as e:
        _fail(e)
