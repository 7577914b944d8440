"""Device commands: doctor, flash, verify, run.

``flash`` builds with PlatformIO and uploads (real boards) or boots QEMU on the fresh ELF
with UART0 on a pseudo-terminal (emulated boards).  ``verify`` talks to the board over a
real serial port with tinygen's framed protocol.  ``run`` chains build -> compile -> flash
-> verify, the main job on a machine without hardware.
"""

from __future__ import annotations

import math
import shutil
import signal
import threading
import time
from pathlib import Path

import click
import numpy as np
from rich.table import Table
from rich.text import Text

from tinygen.common.errors import TinygenError, ToolFailure
from tinygen.common.escape import terminal


def _out():
    from tinygen.cli.main import out

    return out


def _err():
    from tinygen.cli.main import err

    return err


# ----------------------------------------------------------------- helpers

def project_board(project: Path) -> tuple[dict, dict]:
    from tinygen.common.boards import get_board
    from tinygen.codegen.project import load_manifest

    man = load_manifest(project)
    return man, get_board(man["board"])


def firmware_elf(project: Path, env: str) -> Path:
    return project / ".pio" / "build" / env / "firmware.elf"


def pio_build(project: Path, board: dict, target: str | None = None, upload_port: str | None = None) -> None:
    from tinygen.device import pio
    from tinygen.common.boards import is_emulated

    # Emulated boards build with tinygen's own offline PlatformIO home; real boards with the user's
    # PlatformIO exactly as installed (it fetches their platform and library from the registry).
    pio.pio_run(project, target=target, environment=board["id"], upload_port=upload_port,
                offline=is_emulated(board))


def resolve_port(port: str, board: dict) -> str:
    """'auto' -> the first serial port whose USB VID/PID is in the board file."""
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


def start_emulator(project: Path, board: dict):
    from tinygen.device.emulator import QemuBoard

    elf = firmware_elf(project, board["id"])
    if not elf.exists():
        raise TinygenError(f"{elf} does not exist; build first (tinygen flash builds it)")
    emu = board["emulator"]
    return QemuBoard(elf, {"machine": emu["machine"], "icount_shift": 0})


def do_verify(project: Path, port: str, *, n_fresh: int, tolerance: int, report_dir: Path | None,
              timeout: float, retries: int, seed: int, trace: bool = False, quiet: bool = False) -> dict:
    from tinygen.analysis.reference import run_reference
    from tinygen.device.serial_link import DeviceLink
    from tinygen.verification.verify import check_hello, load_project, metrics, run_vectors, write_reports

    man, raw, vectors = load_project(project)
    from tinygen.common.boards import get_board

    board = get_board(man["board"])
    inputs = vectors["inputs"]
    expected = vectors["outputs"]
    if n_fresh:
        rng = np.random.default_rng(seed)
        fresh = rng.integers(-128, 128, size=(n_fresh,) + tuple(man["input"]["shape"]), dtype=np.int16)
        fresh = fresh.astype(np.int8)
        fresh[0].fill(-128)  # the extremes always go in
        if n_fresh > 1:
            fresh[1].fill(127)
        inputs = np.concatenate([inputs, fresh])
        expected = np.concatenate([expected, run_reference(raw, fresh, man["name"],
                                                           arena_bytes=man["arena"]["recommended_bytes"])])
    tracer = (lambda line: _err().print(line, markup=False)) if trace else None
    with DeviceLink(port, man["serial"]["baud"], timeout=timeout, retries=retries, trace=tracer,
                    open_delay=float(board["serial"].get("open_delay_s", 0.0))) as link:
        hello = link.hello()
        check_hello(hello, man, port)

        def progress(i, n):
            if not quiet and (i == n or i % 50 == 0):
                _err().print(f"… {i}/{n} vectors", markup=False)

        board_out, ticks, seconds = run_vectors(link, inputs, progress)
        link_stats = getattr(link, "stats", None)
    instr = board.get("emulator", {}).get("instructions_per_tick") if board.get("emulator") else None
    labels = vectors.get("labels")
    m = metrics(board_out, expected, man, float_out=vectors.get("float_outputs"), labels=labels,
                ticks=ticks, tick_hz=hello.tick_hz, instr_per_tick=instr, tolerance=tolerance, seconds=seconds,
                clock_hz=board.get("clock_hz"))
    result = {"project": str(project), "board": man["board"], "port": port, "runtime": hello.runtime,
              "model_sha256": man["model_sha256"], "reference_vectors": int(len(vectors["inputs"])),
              "fresh_vectors": int(n_fresh), "metrics": m}
    if link_stats is not None:
        result["link"] = {k: v for k, v in vars(link_stats).items() if not k.startswith("_")} \
            if hasattr(link_stats, "__dict__") else str(link_stats)
    rdir = report_dir or (project / "reports")
    try:
        result["reports"] = write_reports(rdir, result, board_out, expected, vectors, man)
    except Exception as exc:  # noqa: BLE001 - a report problem must never hide the verification result
        result["reports"] = {}
        reason = getattr(exc, "strerror", None) or f"{type(exc).__name__}: {exc}"
        result["report_error"] = f"could not write the reports to {rdir}: {reason}"
        _err().print(f"warning: {terminal(result['report_error'])}; the result below stands", markup=False)
    return result


def print_verify(result: dict) -> None:
    m = result["metrics"]
    t = Table(title=Text(terminal(f"tinygen verify: {result['board']} ({result['runtime']}) on {result['port']} — "
                                  f"{'PASS' if m['passed'] else 'FAIL'}")), show_header=False)
    t.add_column("metric")
    t.add_column("value")
    t.add_row("vectors", f"{m['vectors']} ({result['reference_vectors']} reference + {result['fresh_vectors']} fresh)")
    t.add_row("exact match", f"{m['exact_match_pct']:.2f} % of {m['elements']} outputs")
    t.add_row("max |Δ|", f"{m['max_abs_diff_lsb']} LSB (tolerance {m['tolerance_lsb']})")
    t.add_row("MAE / RMSE", f"{m['mae_lsb']:.4f} / {m['rmse_lsb']:.4f} LSB")
    t.add_row("cosine similarity", f"{m['cosine_similarity']:.6f}")
    if "top1_agreement_pct" in m:
        t.add_row("top-1 agreement", f"{m['top1_agreement_pct']:.2f} %")
    if "board_accuracy_pct" in m:
        t.add_row("accuracy vs labels", f"board {m['board_accuracy_pct']:.2f} %, reference "
                                        f"{m['reference_accuracy_pct']:.2f} %")
    from tinygen.verification.verify import latency_rows

    for label, text in latency_rows(m):
        t.add_row(label, text)
    t.add_row("link", f"{m['vectors_per_second']:.1f} vectors/s")
    t.add_row("reports", Text(terminal(", ".join(result["reports"].values()) or "not written (see the warning)")))
    _out().print(t)


def finish(result: dict, tolerance: int, as_json: bool) -> None:
    """Print a verification result; raise VerificationFailed (exit 5) unless it passed."""
    from tinygen.common.errors import VerificationFailed

    if as_json:
        from tinygen.cli.main import _emit_json

        _emit_json(result)
    else:
        print_verify(result)
    m = result["metrics"]
    if not m["passed"]:
        see = f"; see {result['reports']['markdown']}" if result["reports"].get("markdown") else ""
        raise VerificationFailed(f"board outputs differ from the reference: max |Δ| {m['max_abs_diff_lsb']} LSB > "
                                 f"tolerance {tolerance} LSB ({m['exact_match_pct']:.2f} % exact){see}")


# ----------------------------------------------------------------- commands

def register(cli: click.Group) -> None:
    cli.add_command(doctor_cmd)
    cli.add_command(flash_cmd)
    cli.add_command(verify_cmd)
    cli.add_command(run_cmd)


@click.command("doctor")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def doctor_cmd(as_json: bool) -> None:
    """Which toolchains and boards are usable here, and how to fix what is missing."""
    from tinygen.device import pio
    from tinygen.common.boards import all_boards, is_emulated
    from tinygen.device.emulator import qemu_available

    fix_apt = "run scripts/setup.sh (or apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi " \
              "libstdc++-arm-none-eabi-newlib qemu-system-arm)"
    checks = []

    def check(name, ok, detail, fix):
        checks.append({"tool": name, "ok": bool(ok), "detail": detail, "fix": "" if ok else fix})

    for mod, fix in (("tensorflow", "pip install tensorflow-cpu"), ("tflite_micro", "pip install tflite-micro")):
        import importlib.util

        check(mod, importlib.util.find_spec(mod) is not None, "python package", fix)
    pio_cmd = pio.pio_command()
    check("platformio", pio_cmd is not None, " ".join(pio_cmd) if pio_cmd else "not found", "pip install platformio")
    scons_ok = False
    if pio_cmd is not None:
        try:
            pio.ensure_offline_core()
            scons_ok = True
            detail = f"tool-scons from PyPI SCons and platform {pio.PLATFORM_NAME} installed in " \
                     f"tinygen's own PlatformIO home {pio.tinygen_core_dir()} (your ~/.platformio is not touched)"
        except TinygenError as exc:
            detail = str(exc)
        check("platformio offline core", scons_ok, detail, "pip install scons; then rerun tinygen doctor")
    gcc = shutil.which("arm-none-eabi-gcc")
    check("arm-none-eabi-gcc", gcc, gcc or "not found", fix_apt)
    gxx = shutil.which("arm-none-eabi-g++")
    check("arm-none-eabi-g++ (+libstdc++)", gxx, gxx or "not found", fix_apt)
    q = qemu_available()
    check("qemu-system-arm", q, q or "not found", fix_apt)
    host = shutil.which("gcc")
    check("host gcc", host, host or "not found", "apt-get install gcc g++")
    ok = {c["tool"]: c["ok"] for c in checks}
    boards = []
    for b in all_boards().values():
        if is_emulated(b):
            usable = all(ok.get(k) for k in ("platformio offline core", "arm-none-eabi-gcc", "qemu-system-arm"))
            what = "build, flash (QEMU) and verify here" if usable else "needs PlatformIO, arm gcc and QEMU"
        else:
            usable = ok.get("platformio", False)
            what = ("generate here; build/flash need the PlatformIO registry (platform "
                    f"{b['platformio']['platform']}, {', '.join(b.get('tflm', {}).get('lib_deps', []))}) "
                    "and a board on USB")
        boards.append({"board": b["id"], "usable": usable, "what": what})
    if as_json:
        from tinygen.cli.main import _emit_json

        _emit_json({"tools": checks, "boards": boards})
        return
    t = Table(title="tinygen doctor: tools")
    for col in ("tool", "status", "detail / fix"):
        t.add_column(col)
    for c in checks:
        t.add_row(c["tool"], "ok" if c["ok"] else "MISSING", c["detail"] if c["ok"] else c["fix"])
    _out().print(t)
    bt = Table(title="boards")
    for col in ("board", "usable here", "what"):
        bt.add_column(col)
    for b in boards:
        bt.add_row(b["board"], "yes" if b["usable"] else "no", b["what"])
    _out().print(bt)


@click.command("flash")
@click.option("--project", "project", required=True, type=click.Path(path_type=Path), help="Generated project.")
@click.option("--port", default=None, help="Upload port for real boards (default: PlatformIO's choice).")
@click.option("--no-build", is_flag=True, help="Skip `pio run` (use the existing ELF).")
def flash_cmd(project: Path, port: str | None, no_build: bool) -> None:
    """Build and flash a project: `pio run -t upload`, or QEMU on a pty for emulated boards.

    For an emulated board this keeps running and prints `port: /dev/pts/N`; stop it with Ctrl-C
    (or SIGTERM), which shuts the emulator down cleanly.
    """
    from tinygen.common.boards import is_emulated

    man, board = project_board(project)
    if not is_emulated(board):
        from tinygen.device.realboard import check_first_build

        check_first_build(project, board, man["runtime"])
        _err().print(f"… pio run -t upload in {terminal(project)}", markup=False)
        pio_build(project, board, target="upload", upload_port=None if port in (None, "auto") else port)
        _out().print(f"flashed {terminal(project)} to {board['id']}", markup=False)
        return
    if not no_build:
        _err().print(f"… pio run in {terminal(project)}", markup=False)
        pio_build(project, board)
    qb = start_emulator(project, board).start()
    stop = threading.Event()

    def _stop(*_):
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    print(f"port: {qb.port}", flush=True)
    _err().print(f"QEMU {board['emulator']['machine']} running {terminal(firmware_elf(project, board['id']))}; "
                 "Ctrl-C stops it", markup=False)
    try:
        while not stop.is_set() and qb.running:
            stop.wait(0.2)
    finally:
        died = not qb.running
        qb.stop()
    if died and not stop.is_set():
        raise ToolFailure(f"QEMU exited unexpectedly: {qb.log.strip().splitlines()[-1:] or ['(no output)']}")
    print("stopped", flush=True)


def _check_timeout(ctx, param, value: float) -> float:
    # nan compares false with everything: a plain range check would let it through (and hang).
    if not (math.isfinite(value) and 0 < value <= 3600):
        raise click.BadParameter(f"{value} is not a number of seconds in (0, 3600]")
    return value


def _verify_options(f):
    f = click.option("--vectors", "n_fresh", type=click.IntRange(0, 100000), default=16, show_default=True,
                     help="Fresh random vectors (through the reference interpreter) on top of the project's.")(f)
    f = click.option("--tolerance", type=click.IntRange(0, 255), default=0, show_default=True,
                     help="Allowed |board - reference| in LSB.")(f)
    f = click.option("--report-dir", type=click.Path(path_type=Path), default=None,
                     help="Where verify.json/.md/.png go (default: PROJECT/reports).")(f)
    f = click.option("--timeout", type=float, default=10.0, show_default=True, callback=_check_timeout,
                     help="Seconds per request (0 < T <= 3600).")(f)
    f = click.option("--retries", type=click.IntRange(0, 100), default=3, show_default=True,
                     help="Resends after a corrupted or lost frame.")(f)
    f = click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=0, show_default=True,
                     help="Seed of the fresh vectors.")(f)
    f = click.option("--trace", is_flag=True, help="Hex-dump serial traffic to stderr.")(f)
    f = click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")(f)
    return f


@click.command("verify")
@click.option("--project", "project", required=True, type=click.Path(path_type=Path), help="Generated project.")
@click.option("--port", required=True, help="Serial port (a pty for emulated boards), or 'auto' (USB VID/PID).")
@_verify_options
def verify_cmd(project, port, n_fresh, tolerance, report_dir, timeout, retries, seed, trace, as_json) -> None:
    """Send the project's vectors over the serial port and compare with the reference.

    Exits 0 only when every output is within --tolerance LSB (default 0: bit-exact).
    """
    man, board = project_board(project)
    port = resolve_port(port, board)
    result = do_verify(project, port, n_fresh=n_fresh, tolerance=tolerance, report_dir=report_dir,
                       timeout=timeout, retries=retries, seed=seed, trace=trace, quiet=as_json)
    finish(result, tolerance, as_json)


@click.command("run")
@click.option("--board", default="qemu-m4", show_default=True, help="Board id (emulated boards run here).")
@click.option("--project", "project", type=click.Path(path_type=Path), default=None,
              help="Use this generated project instead of building one.")
@click.option("--model", "model_path", metavar="FILE", help="As for `tinygen build`.")
@click.option("--recipe", metavar="NAME", help="As for `tinygen build` (default: sine).")
@click.option("--data", "data_path", metavar="FILE", help="As for `tinygen build`.")
@click.option("--runtime", type=click.Choice(["tflm", "compiled"]), default=None, help="As for `tinygen build`.")
@click.option("--out", "out_dir", metavar="DIR", help="Project directory (default: tinygen-<board>-<model>).")
@click.option("--force", is_flag=True, help="Replace an existing project in --out.")
@click.option("--port", default=None, help="Real boards: serial port or 'auto' (default: auto).")
@click.option("--tflm-dir", envvar="TINYGEN_TFLM_DIR", metavar="DIR",
              help="TFLM source tree (Arduino-library layout) for --runtime tflm on emulated boards.")
@_verify_options
@click.pass_context
def run_cmd(ctx, board, project, model_path, recipe, data_path, runtime, out_dir, force, port, tflm_dir, n_fresh,
            tolerance, report_dir, timeout, retries, seed, trace, as_json) -> None:
    """Build -> compile -> flash -> verify in one go (the whole loop; emulated boards need no hardware)."""
    from tinygen.common.boards import get_board, is_emulated

    if project is None:
        b = get_board(board)
        recipe_name = recipe or ("sine" if not model_path else None)
        name_hint = Path(model_path).stem if model_path else recipe_name
        from tinygen.cli.main import _summary_tables, build_project, default_out_dir

        project = Path(out_dir) if out_dir else default_out_dir(board, name_hint)

        plan, project, _ = build_project(board, model_path, recipe, data_path, str(project), force, runtime,
                                         seed=1234, tflm_dir=tflm_dir or None, show_progress=not as_json)
        if not as_json:
            _summary_tables(plan)
    man, b = project_board(project)
    if not is_emulated(b):
        from tinygen.device.realboard import check_first_build

        check_first_build(project, b, man["runtime"])
        pio_build(project, b, target="upload", upload_port=None if port in (None, "auto") else port)
        time.sleep(2.0)  # the board reboots after upload
        port = resolve_port(port or "auto", b)
        result = do_verify(project, port, n_fresh=n_fresh, tolerance=tolerance, report_dir=report_dir,
                           timeout=timeout, retries=retries, seed=seed, trace=trace, quiet=as_json)
    else:
        if not as_json:
            _err().print(f"… pio run in {terminal(project)}", markup=False)
        pio_build(project, b)
        with start_emulator(project, b) as qb:
            if not as_json:
                _err().print(f"… QEMU {b['emulator']['machine']} up, UART0 on {qb.port}", markup=False)
            result = do_verify(project, qb.port, n_fresh=n_fresh, tolerance=tolerance, report_dir=report_dir,
                               timeout=timeout, retries=retries, seed=seed, trace=trace, quiet=as_json)
    finish(result, tolerance, as_json)
