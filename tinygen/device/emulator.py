"""Boot firmware in QEMU with its UART0 on a pseudo-terminal.

    with QemuBoard("firmware.elf", {"machine": "mps2-an386"}) as board:
        with serial.Serial(board.port, 115200, timeout=2) as port:
            ...

QEMU runs ``qemu-system-arm -M <machine> -display none -monitor none
-add-fd fd=N,set=1 -serial /dev/fdset/1 -icount shift=0 -kernel <elf>``: tinygen opens the
pseudo-terminal itself, hands QEMU its master side (file descriptor N, a "tty" character device
there) and keeps the other side's name, /dev/pts/M, as ``.port``, which pyserial opens as before.
With ``-icount shift=0`` every guest instruction takes exactly 1 ns of virtual time, so the
guest's timers count instructions, deterministically. On the mps2 boards tg_hal_ticks() runs at
25 MHz: instructions = ticks * 40. qemu-rv32 runs qemu-system-riscv32 -M virt instead (binary and
extra arguments from the board file's emulator section); there ticks are minstret, i.e. instructions.

Why not QEMU's own ``-serial pty``: QEMU notices a client opening that pty only by polling, once a
second, and reads nothing the client sends until then, so every run waited about a second for its
first answer (and again after each reopen).  Here QEMU reads the terminal from its start, and the
board holds the terminal's other side open while QEMU runs, so it never hangs up between clients
(the line is raw; a client's open discards what the guest sent before it, as pyserial does).
"""

from __future__ import annotations

import atexit
import os
import select
import shutil
import subprocess
import threading
import tty
from pathlib import Path

from tinygen.common.boards import Board
from tinygen.common.errors import TinygenError, ToolFailure

QEMU_BINARY = "qemu-system-arm"
_FDSET = 1  # the -add-fd set QEMU's UART0 chardev opens (/dev/fdset/1)
# Started boards, stopped when the interpreter exits: QEMU runs in its own session, and a board's output
# reader thread keeps it referenced, so without this a script that drops a running board (the
# documented `tinygen.Project.load(p).flash()`) would leave QEMU running after it exits.
_RUNNING: set = set()
atexit.register(lambda: [board.stop() for board in list(_RUNNING)])


def qemu_available(binary: str = QEMU_BINARY) -> str | None:
    """Path of a QEMU system emulator (default qemu-system-arm), or None when it is not installed."""
    return shutil.which(binary)


def board_machine(board: Board) -> str:
    """The QEMU machine of a board dict: ``board["machine"]`` (or the same key
    under ``"tinygen"``, as in the tinygen-mps2 board manifests)."""
    machine = board.get("machine") or (board.get("tinygen") or {}).get("machine")
    if not machine:
        raise ToolFailure("the board has no QEMU machine (key 'machine', e.g. 'mps2-an386')")
    return str(machine)


class QemuBoard:
    """A QEMU-emulated board running one ELF, UART0 on ``.port``.

    ``board`` keys: ``machine`` (required, e.g. "mps2-an386"), optional
    ``cpu`` (-cpu), ``icount_shift`` (default 0; None turns -icount off),
    ``qemu_args`` (extra arguments, a list) and ``qemu`` (the emulator binary,
    default qemu-system-arm; e.g. qemu-system-riscv32 for qemu-rv32).
    """

    def __init__(self, elf: str | os.PathLike, board: Board):
        self.elf = Path(elf)
        self.board = dict(board)
        self.machine = board_machine(self.board)
        self.binary = str(self.board.get("qemu") or (self.board.get("tinygen") or {}).get("qemu") or QEMU_BINARY)
        self.port: str | None = None
        self._proc: subprocess.Popen | None = None
        self._reader: threading.Thread | None = None
        self._log: list[str] = []
        self._log_lock = threading.Lock()
        self._slave_fd: int | None = None  # the terminal's side .port names, held while QEMU runs

    # -- command line ------------------------------------------------------

    def command(self, master_fd: int, qemu: str | None = None) -> list[str]:
        """QEMU's command line; ``master_fd``: the pseudo-terminal's master side, which QEMU inherits."""
        cmd = [qemu or self.binary, "-M", self.machine]
        if self.board.get("cpu"):
            cmd += ["-cpu", str(self.board["cpu"])]
        # ``monitor_socket``: QEMU's monitor on a unix socket, for reading guest memory afterwards
        # (tinygen/device/guest_memory.py); otherwise no monitor at all.
        mon = self.board.get("monitor_socket")
        # QEMU splits a chardev spec at commas; a comma in the socket's path is written twice.
        mon = str(mon).replace(",", ",,") if mon else None
        cmd += ["-display", "none", "-monitor", f"unix:{mon},server=on,wait=off" if mon else "none",
                # UART0 on the pseudo-terminal start() opened: QEMU's copy of its master side
                "-add-fd", f"fd={int(master_fd)},set={_FDSET}", "-serial", f"/dev/fdset/{_FDSET}"]
        shift = self.board.get("icount_shift", 0)
        if shift is not None:
            cmd += ["-icount", f"shift={int(shift)}"]
        extra = self.board.get("qemu_args") or []
        # board manifests list -icount themselves; don't pass it twice
        if shift is not None and "-icount" in extra:
            i = extra.index("-icount")
            extra = list(extra[:i]) + list(extra[i + 2:])
        cmd += [str(a) for a in extra]
        cmd += ["-kernel", str(self.elf)]
        return cmd

    # -- lifecycle -----------------------------------------------------------

    @property
    def log(self) -> str:
        """Everything QEMU printed so far."""
        with self._log_lock:
            return "".join(self._log)

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> "QemuBoard":
        qemu = qemu_available(self.binary)
        if qemu is None:
            package = "qemu-system-arm" if self.binary == QEMU_BINARY else "qemu-system-misc"
            raise ToolFailure(
                f"{self.binary} not found; install it (Debian: apt-get install {package})"
            )
        if not self.elf.is_file():
            raise ToolFailure(f"firmware ELF not found: {self.elf} (build it with pio run)")
        if self._proc is not None:
            raise ToolFailure("this QemuBoard is already started")

        master, slave = os.openpty()
        try:
            # Raw before QEMU starts: no echo of the guest's bytes back to it, no line editing or
            # newline translation (pyserial sets the same when it opens the port).
            tty.setraw(slave)
            self.port = os.ttyname(slave)
            self._proc = subprocess.Popen(
                self.command(master, qemu),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                pass_fds=(master,),
                start_new_session=True,  # Ctrl-C in a terminal goes to us, not QEMU
            )
        except BaseException:
            os.close(slave)
            self.port = None
            raise
        finally:
            os.close(master)  # QEMU has its own copy
        self._slave_fd = slave
        _RUNNING.add(self)
        self._reader = threading.Thread(target=self._read_output, name="qemu-output", daemon=True)
        self._reader.start()
        self.check()
        return self

    def check(self) -> None:
        """Raise one line (:class:`ToolFailure`) when QEMU has exited by itself, with what it said
        (an unknown machine, a kernel it could not load); nothing while it runs."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            if not self._hung_up():
                return
            try:  # the terminal hung up: QEMU closed it, exiting; its exit status follows at once
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                return
        code = self._proc.returncode
        if self._reader is not None:
            self._reader.join(timeout=2)  # QEMU's last words
        out = " ".join(self.log.split())[:300]
        self.stop()
        raise ToolFailure(f"{self.binary} -M {self.machine} exited with code {code}: {out or 'no output'}")

    def _hung_up(self) -> bool:
        """Whether QEMU's side of the terminal is closed (only QEMU holds it, until it exits)."""
        if self._slave_fd is None:
            return False
        p = select.poll()
        p.register(self._slave_fd, select.POLLHUP)
        return any(ev & select.POLLHUP for _fd, ev in p.poll(0))

    def _read_output(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for raw in iter(self._proc.stdout.readline, b""):
            line = raw.decode("utf-8", "replace")
            with self._log_lock:
                self._log.append(line)

    def stop(self) -> None:
        """Terminate QEMU (SIGTERM, then SIGKILL after 5 s). Idempotent."""
        proc, self._proc = self._proc, None
        _RUNNING.discard(self)
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        if self._reader is not None:
            self._reader.join(timeout=2)
            self._reader = None
        if proc.stdout is not None:
            proc.stdout.close()
        if self._slave_fd is not None:
            os.close(self._slave_fd)
            self._slave_fd = None

    def __enter__(self) -> "QemuBoard":
        return self.start()

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None and isinstance(exc, Exception):
            # QEMU exited by itself while the block talked to it (the link saw the line hang up, or
            # no answer): its own words say why, not the link's
            self.check()
        self.stop()

    def __del__(self):  # last resort; stop() is the real API
        try:
            self.stop()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass


def qemu_for_project(project: Path, board: Board, monitor_socket: str | None = None) -> QemuBoard:
    """A QemuBoard (not started yet) for the firmware ``pio run`` built in a generated project
    (``monitor_socket``: see :meth:`QemuBoard.command`)."""
    from tinygen.device.pio_build import firmware_elf

    elf = firmware_elf(project, board.id)
    if not elf.exists():
        raise TinygenError(f"{elf} does not exist; build first (tinygen flash builds it)")
    emu = board.emulator
    # The binary and any extra arguments (qemu-rv32: -bios none, -cpu) come from the board file.
    spec = {"machine": emu.machine, "icount_shift": 0, "qemu": emu.binary, "qemu_args": list(emu.args)}
    if monitor_socket:
        spec["monitor_socket"] = monitor_socket
    return QemuBoard(elf, spec)
