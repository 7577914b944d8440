"""The emulated Cortex-M boards, end to end: real PlatformIO (offline, in a
private core dir), the tinygen-mps2 dev platform, the mps2 HAL, real QEMU
(mps2-an386 / mps2-an500) and a real pty through pyserial.

The firmware under test is tests/fixtures/mps2_echo (a small echo app) plus
firmware/hal/tg_hal.h and firmware/hal/mps2/*, copied into its src/ the way
tinygen's renderer lays out generated projects.
"""

from __future__ import annotations

import json
import shutil
import struct
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from conftest import REPO, require_tool
from tinygen.device.emulator import QemuBoard, board_machine, qemu_available
from tinygen.common.errors import ToolFailure
from tinygen.device.pio_build import pio_run
from tinygen.device.pio_offline import PLATFORM_NAME, ensure_offline_core, platform_dir

pytestmark = pytest.mark.slow

FIXTURE = REPO / "tests" / "fixtures" / "mps2_echo"
HAL = REPO / "firmware" / "hal"
BOARDS = platform_dir() / "boards"

FIXED_LOOP = 100_000  # echo_app.c TG_ECHO_FIXED_LOOP
INSTRUCTIONS_PER_ITERATION = 2  # subs + bne


def board_manifest(board_id: str) -> dict:
    return json.loads((BOARDS / f"{board_id}.json").read_text())


@pytest.fixture(scope="session")
def tools() -> None:
    require_tool("qemu-system-arm")
    require_tool("arm-none-eabi-gcc")


@pytest.fixture(scope="session")
def pio_core(tools, tmp_path_factory) -> Path:
    """A private PlatformIO core dir, set up for offline builds once per session."""
    core = tmp_path_factory.mktemp("pio-core")
    ensure_offline_core(core)
    return core


def make_project(dest: Path, board_id: str = "qemu-m4") -> Path:
    shutil.copytree(FIXTURE, dest)
    src = dest / "src"
    shutil.copy2(HAL / "tg_hal.h", src)
    shutil.copy2(HAL.parent / "app" / "tg_app.h", src)  # the real entry points main.c calls
    for item in (HAL / "mps2").iterdir():
        shutil.copy2(item, src)
    if board_id != "qemu-m4":
        ini = dest / "platformio.ini"
        ini.write_text(ini.read_text().replace("qemu-m4", board_id))
    return dest


def build(project: Path, pio_core: Path, board_id: str) -> tuple[Path, str]:
    """pio run; returns the ELF and pio's output."""
    output = pio_run(project, core_dir=pio_core).stdout
    elf = project / ".pio" / "build" / board_id / "firmware.elf"
    assert elf.is_file(), output
    return elf, output


@pytest.fixture(scope="session")
def m4_build(pio_core, tmp_path_factory) -> tuple[Path, str]:
    project = make_project(tmp_path_factory.mktemp("mps2-echo") / "echo", "qemu-m4")
    return build(project, pio_core, "qemu-m4")


@pytest.fixture(scope="session")
def m4_elf(m4_build) -> Path:
    return m4_build[0]


@contextmanager
def booted(elf: Path, board_id: str = "qemu-m4"):
    """QEMU running elf, and a pyserial port on its UART0 that has answered once."""
    import serial

    with QemuBoard(elf, board_manifest(board_id)) as board:
        with serial.Serial(board.port, 115200, timeout=0.05) as port:
            # QEMU may notice the pty being opened only by polling: retry a
            # harmless echo request (a new value each time, so that late
            # answers to earlier tries don't count) until it is answered.
            deadline = time.monotonic() + 15
            answered = False
            probe = 0
            while time.monotonic() < deadline and not answered:
                port.write(bytes([ord("E"), probe]))
                got = b""
                wait_until = time.monotonic() + 0.3
                while time.monotonic() < wait_until and not answered:
                    got += port.read(max(1, port.in_waiting))
                    answered = bytes([probe + 1]) in got
                probe += 1
            assert answered, f"board did not answer on {board.port}; QEMU said: {board.log}"
            time.sleep(0.05)
            port.reset_input_buffer()
            port.timeout = 20
            yield board, port


def read_exact(port, n: int) -> bytes:
    data = port.read(n)
    assert len(data) == n, f"expected {n} bytes, got {data!r}"
    return data


def ask_u32(port, request: bytes) -> int:
    port.write(request)
    return struct.unpack("<I", read_exact(port, 4))[0]


def loop_ticks(port, n: int) -> int:
    return ask_u32(port, b"L" + struct.pack("<I", n))


# ---------------------------------------------------------------------------
# offline PlatformIO


def test_offline_core_is_installed_and_idempotent(pio_core):
    from platformio.dependencies import get_core_dependencies
    import semantic_version

    ensure_offline_core(pio_core)  # second time: nothing to do
    pkg = pio_core / "packages" / "tool-scons"
    meta = json.loads((pkg / ".piopm").read_text())
    requirement = get_core_dependencies()["tool-scons"]
    assert meta["spec"]["owner"] == "platformio"
    assert semantic_version.Version(meta["version"]) in semantic_version.SimpleSpec(requirement)
    assert (pkg / "scons.py").is_file()
    link = json.loads((pio_core / "platforms" / f"{PLATFORM_NAME}.pio-link").read_text())
    assert Path(link["spec"]["uri"][len("symlink://"):]).resolve() == platform_dir().resolve()
    state = json.loads((pio_core / "appstate.json").read_text())
    assert state["settings"]["enable_telemetry"] is False


def test_build_outputs(m4_build):
    m4_elf, output = m4_build
    assert "[SUCCESS]" in output
    assert "RAM:" in output and "Flash:" in output  # the size report
    bin_path = m4_elf.with_suffix(".bin")
    assert bin_path.is_file()
    image = bin_path.read_bytes()
    initial_sp, reset = struct.unpack_from("<II", image, 0)
    assert initial_sp == 0x20400000  # top of ZBT SSRAM2&3
    assert reset & 1 and reset < len(image)  # Thumb address inside the image
    assert (m4_elf.parent / "firmware.map").is_file()


def test_build_failure_is_one_clear_line(pio_core, tmp_path):
    project = make_project(tmp_path / "broken")
    (project / "src" / "broken.c").write_text("int tg_broken(void) { return tg_nowhere; }\n")
    with pytest.raises(ToolFailure) as info:
        pio_run(project, core_dir=pio_core)
    message = str(info.value)
    assert "\n" not in message
    assert "error:" in message and "broken.c" in message


# ---------------------------------------------------------------------------
# the board


def test_qemu_board_errors(tools, tmp_path):
    assert qemu_available()
    with pytest.raises(ToolFailure, match="not found"):
        QemuBoard(tmp_path / "missing.elf", {"machine": "mps2-an386"}).start()
    with pytest.raises(ToolFailure, match="machine"):
        QemuBoard(tmp_path / "missing.elf", {})
    assert board_machine(board_manifest("qemu-m4")) == "mps2-an386"


def test_echo_all_byte_values(m4_elf):
    with booted(m4_elf) as (board, port):
        assert board.port.startswith("/dev/")
        request = b"".join(bytes([ord("E"), b]) for b in range(256))
        port.write(request)
        assert read_exact(port, 256) == bytes((b + 1) % 256 for b in range(256))
        # bytes that are not requests echo too
        port.write(b"\x00\xffz")
        assert read_exact(port, 3) == b"\x01\x00{"


def test_ticks_rate_and_fpu(m4_elf):
    manifest = board_manifest("qemu-m4")
    with booted(m4_elf) as (_board, port):
        assert ask_u32(port, b"H") == manifest["tinygen"]["ticks_hz"] == 25_000_000
        assert ask_u32(port, b"F") == 4750  # (1.5 * 3 + 0.25) * 1000 on the FPU


def measure(elf: Path) -> list[int]:
    with booted(elf) as (_board, port):
        values = [ask_u32(port, b"T") for _ in range(3)]
        values += [loop_ticks(port, n) for n in (1, 1_000, 12_345, 100_003, 250_000)]
    return values


def test_ticks_identical_across_boots(m4_elf):
    first = measure(m4_elf)
    second = measure(m4_elf)
    assert first == second
    assert first[0] == first[1] == first[2]


def test_ticks_count_instructions(m4_elf):
    per_tick = board_manifest("qemu-m4")["tinygen"]["instructions_per_tick"]
    assert per_tick == 40
    with booted(m4_elf) as (_board, port):
        base = loop_ticks(port, 0)
        for n in (1_000, 10_000, 100_000, 1_000_000, 3_000_000):
            ticks = loop_ticks(port, n) - base
            instructions = INSTRUCTIONS_PER_ITERATION * n
            # exact up to the 40-instruction resolution of one tick
            assert abs(ticks * per_tick - instructions) <= per_tick, (n, ticks)
        t1, t2 = loop_ticks(port, 500_000), loop_ticks(port, 1_000_000)
        assert abs(t2 - 2 * t1) <= 1 + base


def test_ticks_across_systick_wrap(m4_elf):
    """SysTick is 24 bits: a wrap comes every 2^24 ticks (671M instructions).
    A loop longer than that must still count linearly."""
    n = 350_000_000  # 700M instructions = 17.5M ticks
    with booted(m4_elf) as (_board, port):
        ticks = loop_ticks(port, n)
    assert ticks > 1 << 24
    assert abs(ticks * 40 - 2 * n) <= 80


def test_cortex_m7_board(pio_core, tmp_path):
    """qemu-m7 (mps2-an500): same HAL and linker script, FPv5 double precision FPU."""
    project = make_project(tmp_path / "echo-m7", "qemu-m7")
    elf, _output = build(project, pio_core, "qemu-m7")
    with booted(elf, "qemu-m7") as (_board, port):
        port.write(b"E\x7f")
        assert read_exact(port, 1) == b"\x80"
        assert ask_u32(port, b"F") == 4750
        assert loop_ticks(port, 100_000) in (5_000, 5_001)


def test_each_client_is_answered_at_once(m4_elf):
    """QEMU reads the board's terminal from its start (tinygen opens the pty and hands QEMU its master
    side).  With QEMU's own ``-serial pty`` it looked for a client once a second and read nothing
    before: the first request of every run, and the first after a client closed the port, waited up
    to a second (issue 29).  After the first answer (QEMU booted), each new client is answered in well
    under the second that polling took; the old way fails this at the second client."""
    import serial

    with booted(m4_elf) as (board, first):
        first.close()
        for probe in range(2, 5):
            time.sleep(0.2)  # the old way noticed the client leave, and looked for the next a second later
            with serial.Serial(board.port, 115200, timeout=0.05) as port:
                start = time.monotonic()
                port.write(bytes([ord("E"), probe]))
                got = b""
                while time.monotonic() - start < 0.6 and bytes([probe + 1]) not in got:
                    got += port.read(1)
                assert bytes([probe + 1]) in got, f"no echo within 0.6 s of opening {board.port}: {got!r}"


def test_qemu_exiting_is_said_in_its_own_words(m4_elf):
    """A QEMU that exits (here: a machine it does not know) ends the block talking to the board with
    QEMU's own line, not the link's "lost the serial connection"."""
    from tinygen.device.serial_link import DeviceLink

    with pytest.raises(ToolFailure, match=r"qemu-system-arm -M no-such-machine exited with code 1: .*machine"):
        with QemuBoard(m4_elf, {"machine": "no-such-machine"}) as board:
            with DeviceLink(board.port, 115200, timeout=5, retries=0) as link:
                link.hello()
