"""A generated project and what is done to it on a board: :class:`Project`, :func:`flash`,
:func:`verify`, :func:`doctor`; the names every other API module shares (``Progress``, ``silent``)."""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Union

from tinygen.common.boards import Board
from tinygen.common.errors import TinygenError
from tinygen.verification.workflow import Report

if TYPE_CHECKING:
    from tinygen.codegen.plan import Plan
    from tinygen.device.emulator import QemuBoard


Progress = Callable[[str], None]
RUNTIMES = ("tflm", "compiled")
TASKS = ("classification", "binary", "regression")
# A real board reboots after an upload; its port answers only after that.
REBOOT_AFTER_UPLOAD_S = 2.0


def silent(text: str) -> None:
    pass


@dataclass
class Project:
    """A generated PlatformIO project: its directory, manifest (tinygen.json) and board file.

    ``plan`` and ``files`` (``{relative path: bytes}``) are there when :func:`build` made the
    project in this process; :meth:`load` opens one from disk without them."""

    path: Path
    manifest: dict = field(repr=False)
    board: Board = field(repr=False)
    plan: Plan | None = field(default=None, repr=False)
    files: dict[str, bytes] | None = field(default=None, repr=False)
    compression: dict | None = field(default=None, repr=False)  # build(compress=CompressOptions(...)): candidates
    notes: list[str] = field(default_factory=list)  # what build changed in the user's data, one line each
    cache: list[str] = field(default_factory=list)  # what build reused from tinygen's cache (tinygen.common.cache)

    @classmethod
    def load(cls, path: str | Path) -> Project:
        from tinygen.codegen.project import load_manifest
        from tinygen.common.boards import get_board

        path = Path(path)
        man = load_manifest(path)
        return cls(path, man, get_board(man["board"]))

    @property
    def runtime(self) -> str:
        return self.manifest["runtime"]

    @property
    def emulated(self) -> bool:
        from tinygen.common.boards import is_emulated

        return is_emulated(self.board)

    def build_firmware(self, progress: Progress | None = None) -> Path:
        """``pio run`` (emulated boards: offline, in tinygen's own PlatformIO home); returns the ELF."""
        from tinygen.device.pio_build import build_firmware, firmware_elf

        if not self.emulated:
            from tinygen.device.realboard import check_first_build

            check_first_build(self.path, self.board, self.runtime)
        (progress or silent)(f"pio run in {self.path}")
        build_firmware(self.path, self.board)
        return firmware_elf(self.path, self.board.id)

    def flash(self, port: str | None = None, *, build: bool = True,
              progress: Progress | None = None) -> QemuBoard | None:
        """See :func:`flash`."""
        return flash(self, port, build=build, progress=progress)

    def verify(self, port: str | None = None, **options) -> Report:
        """See :func:`verify` (same keyword options)."""
        return verify(self, port=port, **options)


ProjectLike = Union[Project, str, Path]


def as_project(project: ProjectLike) -> Project:
    return project if isinstance(project, Project) else Project.load(project)


def flash(project: ProjectLike, port: str | None = None, *, build: bool = True,
          progress: Progress | None = None) -> QemuBoard | None:
    """Put the project's firmware on its board.

    A real board: ``pio run -t upload`` (to ``port``, default PlatformIO's choice), then the wait for the
    board's reboot; returns None.  An emulated board: ``pio run`` (unless ``build=False``), then QEMU
    boots the ELF; returns the running :class:`~tinygen.device.emulator.QemuBoard` (its ``.port`` is the
    pty): stop it with ``.stop()`` or use it in a ``with`` block."""
    from tinygen.device.emulator import qemu_for_project
    from tinygen.device.pio_build import build_firmware

    project = as_project(project)
    if not project.emulated:
        from tinygen.device.realboard import check_first_build

        check_first_build(project.path, project.board, project.runtime)
        (progress or silent)(f"pio run -t upload in {project.path}")
        build_firmware(project.path, project.board, target="upload",
                       upload_port=None if port in (None, "auto") else port)
        time.sleep(REBOOT_AFTER_UPLOAD_S)
        return None
    if build:
        project.build_firmware(progress)
    return qemu_for_project(project.path, project.board).start()


def check_verify_options(fresh_vectors: int, tolerance: int, timeout: float, retries: int) -> None:
    # nan compares false with everything: a plain range check would let it through (and hang).
    if not (isinstance(timeout, (int, float)) and math.isfinite(timeout) and 0 < timeout <= 3600):
        raise TinygenError(f"timeout {timeout} is not a number of seconds in (0, 3600]")
    if not 0 <= fresh_vectors <= 100000:
        raise TinygenError(f"fresh_vectors {fresh_vectors} is not in 0..100000")
    if not 0 <= tolerance <= 255:
        raise TinygenError(f"tolerance {tolerance} is not a number of LSB in 0..255")
    if not 0 <= retries <= 100:
        raise TinygenError(f"retries {retries} is not in 0..100")


def stderr_trace(line: str) -> None:
    print(line, file=sys.stderr)


def verify(project: ProjectLike, *, port: str | None = None, fresh_vectors: int = 16, tolerance: int = 0,
           report_dir: str | Path | None = None, timeout: float = 10.0, retries: int = 3, seed: int = 0,
           trace: Callable[[str], None] | bool | None = None, progress: Progress | None = None,
           place: str | None = None, coordinator: str | None = None,
           layers: bool = False, profile: bool = False) -> Report:
    """Send the project's vectors (plus ``fresh_vectors`` random ones, seeded by ``seed``) to the board and
    compare its outputs with the tflite_micro reference; write verify.json/.md/.png into ``report_dir``
    (default PROJECT/reports).

    ``port``: a serial port, "auto" (the board's USB VID/PID), or None: "auto" for a real board, and for an
    emulated one QEMU booted on the project's built firmware (see :meth:`Project.build_firmware`) for the
    duration of the run.  ``trace`` gets a hex dump of the traffic (True: stderr).  Outputs off by more
    than ``tolerance`` LSB give ``report.passed == False`` (``report.raise_if_failed()`` turns that into
    VerificationFailed); a board running another model raises VerificationFailed at once.

    ``place``: a labgrid place (instead of ``port``) on the coordinator ``coordinator`` (HOST[:PORT],
    default $LG_COORDINATOR): acquired for the run, its NetworkSerialPort used, released afterwards.
    ``layers``: name the first op whose output differs from the reference (``report.layers``);
    ``profile``: ticks per op (``report.profile``, and reports/profile.png)."""
    from tinygen.device.emulator import qemu_for_project
    from tinygen.device.ports import resolve_port
    from tinygen.verification.workflow import verify_project

    check_verify_options(fresh_vectors, tolerance, timeout, retries)
    project = as_project(project)
    progress = progress or silent

    def run_on(p: str) -> Report:
        return verify_project(project.path, p, project.board, fresh=fresh_vectors, tolerance=tolerance,
                              report_dir=Path(report_dir) if report_dir is not None else None, timeout=timeout,
                              retries=retries, seed=seed, trace=stderr_trace if trace is True else (trace or None),
                              progress=progress, layers=layers, profile=profile)

    if place is not None:
        from tinygen.device.farm import place_port

        if port is not None:
            raise TinygenError("give either a port or a labgrid place, not both")
        with place_port(place, coordinator) as url:
            progress(f"labgrid place {place}: {url}")
            return run_on(url)
    if port is None and project.emulated:
        with qemu_for_project(project.path, project.board) as qb:
            progress(f"QEMU {project.board.emulator.machine} up, UART0 on {qb.port}")
            return run_on(qb.port)
    return run_on(resolve_port("auto" if port is None else port, project.board))


def doctor(boards: tuple[str, ...] | list[str] = ("qemu-m4",)) -> dict:
    """{"tools": [{"tool", "ok", "detail", "fix"}], "boards": [{"board", "usable", "what"}], "required":
    {"boards": [...], "missing": [{"board", "tool", "fix"}]}}: which toolchains are installed here and so
    which boards can be built, flashed and verified here.  ``boards`` are the ones that must be usable
    (default qemu-m4, the main job's board; "all": every board); what they lack is in "missing"
    (``tinygen doctor`` exits 4 then).  An unknown board id raises TinygenError before anything is checked."""
    from tinygen.common.boards import all_boards, get_board
    from tinygen.device.toolcheck import board_problems, check_tools, usable_boards

    wanted = [b for name in boards for b in (all_boards().values() if name == "all" else [get_board(name)])]
    tools = check_tools()
    missing = [{"board": b.id, "tool": c["tool"], "fix": c["fix"]} for b in wanted for c in board_problems(b, tools)]
    return {"tools": tools, "boards": usable_boards(tools),
            "required": {"boards": sorted({b.id for b in wanted}), "missing": missing}}
