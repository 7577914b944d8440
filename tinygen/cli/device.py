"""Device commands: doctor, flash, verify, run.

``flash`` builds with PlatformIO and uploads (real boards) or boots QEMU on the fresh ELF
with UART0 on a pseudo-terminal (emulated boards).  ``verify`` talks to the board over a
real serial port with tinygen's framed protocol.  ``run`` chains build -> compile -> flash
-> verify, the main job on a machine without hardware.  The work is :mod:`tinygen.api`'s;
these commands parse, call it and print.
"""

from __future__ import annotations

import math
import signal
import threading
from pathlib import Path

import click
from rich.table import Table

from tinygen import api
from tinygen.cli.options import NAMES as BUILD_OPTION_NAMES
from tinygen.cli.options import build_arguments, build_options, print_compression, print_notes
from tinygen.cli.output import StatusLine, err, out, print_build_summary, print_json, print_verification, step, \
    trace_line
from tinygen.common.errors import TinygenError, ToolFailure
from tinygen.common.escape import terminal


def register(cli: click.Group) -> None:
    cli.add_command(doctor_cmd)
    cli.add_command(flash_cmd)
    cli.add_command(verify_cmd)
    cli.add_command(run_cmd)
    cli.add_command(profile_cmd)


@click.command("doctor")
@click.option("--board", "boards", multiple=True, metavar="ID",
              help="A board that must be usable here (repeatable; 'all': every board). Default: qemu-m4.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def doctor_cmd(boards: tuple[str, ...], as_json: bool) -> None:
    """Which toolchains and boards are usable here, and how to fix what is missing.

    Exits 4 when a board it checks (--board; default qemu-m4, the board of `tinygen run`) lacks a
    tool, so a CI job can gate on it; the other boards' tools are reported, not required.
    """
    found = api.doctor(boards or ("qemu-m4",))
    _print_doctor(found, as_json)
    missing = found["required"]["missing"]
    if missing:
        by_tool: dict[str, list[str]] = {}
        for m in missing:
            by_tool.setdefault(m["tool"], []).append(m["board"])
        tools = ", ".join(f"{tool} (for {', '.join(bs)})" for tool, bs in by_tool.items())
        fixes = "; ".join(dict.fromkeys(m["fix"] for m in missing))
        raise ToolFailure(f"missing here: {tools}; {fixes}")


def _print_doctor(found: dict, as_json: bool) -> None:
    if as_json:
        print_json(found)
        return
    t = Table(title="tinygen doctor: tools")
    for col in ("tool", "status", "detail / fix"):
        t.add_column(col)
    for c in found["tools"]:
        t.add_row(c["tool"], "ok" if c["ok"] else "MISSING", c["detail"] if c["ok"] else c["fix"])
    out.print(t)
    bt = Table(title="boards")
    for col in ("board", "usable here", "what"):
        bt.add_column(col)
    for b in found["boards"]:
        bt.add_row(b["board"], "yes" if b["usable"] else "no", b["what"])
    out.print(bt)


@click.command("flash")
@click.option("--project", "project", required=True, type=click.Path(path_type=Path), help="Generated project.")
@click.option("--port", default=None, help="Upload port for real boards (default: PlatformIO's choice).")
@click.option("--no-build", is_flag=True, help="Skip `pio run` (use the existing ELF).")
def flash_cmd(project: Path, port: str | None, no_build: bool) -> None:
    """Build and flash a project: `pio run -t upload`, or QEMU on a pty for emulated boards.

    For an emulated board this keeps running and prints `port: /dev/pts/N`; stop it with Ctrl-C
    (or SIGTERM), which shuts the emulator down cleanly.
    """
    proj = api.Project.load(project)
    if not proj.emulated:
        api.flash(proj, port, progress=step)
        out.print(f"flashed {terminal(proj.path)} to {proj.board.id}", markup=False)
        return
    qb = api.flash(proj, build=not no_build, progress=step)
    stop = threading.Event()

    def _stop(*_):
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    print(f"port: {qb.port}", flush=True)
    err.print(f"QEMU {proj.board.emulator.machine} running {terminal(qb.elf)}; Ctrl-C stops it", markup=False)
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
    f = click.option("--layers", is_flag=True,
                     help="Also stream every op's output for one vector and name the first op that differs.")(f)
    f = click.option("--profile", is_flag=True, help="Also time every op (instructions on emulated boards).")(f)
    return f


def _print_per_op(report, as_json: bool) -> None:
    if as_json:
        return
    from tinygen.verification.layers import summary_lines
    from tinygen.verification.profile import table_lines

    if report.layers is not None:
        for line in summary_lines(report.layers):
            out.print(line, markup=False, highlight=False)
    if report.profile is not None:
        out.print(f"per-op profile ({terminal(report.profile['runtime'])}, slowest first):", markup=False)
        for line in table_lines([report.profile]):
            out.print(line, markup=False, highlight=False)


@click.command("verify")
@click.option("--project", "project", required=True, type=click.Path(path_type=Path), help="Generated project.")
@click.option("--port", default=None,
              help="Serial port, 'auto' (USB VID/PID) or rfc2217://HOST:PORT; emulated boards need none (QEMU is "
                   "booted on the project's firmware), or take the pty `tinygen flash` printed.")
@click.option("--place", default=None, help="A labgrid place instead of --port: acquired, its serial port used.")
@click.option("--coordinator", default=None, metavar="HOST[:PORT]",
              help="labgrid coordinator for --place (default: $LG_COORDINATOR, else 127.0.0.1:20408).")
@click.option("--emulate", is_flag=True,
              help="Real-board project: run its exact model bytes and runtime on its emulated twin (qemu-m4 for "
                   "nano33ble, esp32 and esp32s3; qemu-rv32 for esp32c3), built into PROJECT/.tinygen/, before "
                   "flashing.")
@click.option("--emulate-runtime", type=click.Choice(["compiled"]), default=None,
              help="With --emulate: run the compiled runtime on the twin instead of the project's (a different "
                   "runtime, labelled so), e.g. where the twin has no TFLM.")
@click.option("--tflm-dir", envvar="TINYGEN_TFLM_DIR", metavar="DIR", default=None,
              help="With --emulate: the TFLM source tree (Arduino-library layout) a TFLM twin is built from "
                   "(default: $TINYGEN_TFLM_DIR).")
@_verify_options
def verify_cmd(project, port, place, coordinator, emulate, emulate_runtime, tflm_dir, n_fresh, tolerance, report_dir,
               timeout, retries, seed, trace, as_json, layers, profile) -> None:
    """Send the project's vectors over the serial port and compare with the reference.

    An emulated board needs no --port: its firmware is built (`pio run`) and QEMU booted on it for
    the run.  --emulate runs a real-board project's model bytes and runtime on its emulated twin
    instead.  Exits 0 only when every output is within --tolerance LSB (default 0: bit-exact).
    """
    if port is not None and place is not None:
        raise click.UsageError("give either --port or --place (a labgrid place), not both")
    if emulate:
        _verify_twin(project, port, place, emulate_runtime, tflm_dir, as_json,
                     dict(fresh_vectors=n_fresh, tolerance=tolerance, report_dir=report_dir, timeout=timeout,
                          retries=retries, seed=seed, trace=trace_line if trace else None, layers=layers,
                          profile=profile))
        return
    if emulate_runtime is not None:
        raise click.UsageError("--emulate-runtime goes with --emulate")
    proj = api.Project.load(project)
    if port is None and place is None:
        if not proj.emulated:
            raise click.UsageError(f"board {proj.board.id} is a real board: give --port (a serial port or "
                                   "'auto') or --place (a labgrid place)")
        proj.build_firmware(progress=None if as_json else step)  # as `run --project` does; QEMU boots in verify
    report = api.verify(proj, port=port, fresh_vectors=n_fresh, tolerance=tolerance, report_dir=report_dir,
                        timeout=timeout, retries=retries, seed=seed, trace=trace_line if trace else None,
                        progress=None if as_json else step, place=place, coordinator=coordinator,
                        layers=layers, profile=profile)
    print_verification(report, as_json)
    _print_per_op(report, as_json)
    report.raise_if_failed()


def _verify_twin(project, port, place, runtime, tflm_dir, as_json: bool, options: dict) -> None:
    """verify --emulate: the project's twin on QEMU (:func:`tinygen.api.verify_twin`), labelled as such."""
    if port is not None or place is not None:
        raise click.UsageError("--emulate runs the project on its emulated twin here: drop --port/--place")
    report = api.verify_twin(project, runtime=runtime, tflm_dir=tflm_dir or None,
                             progress=None if as_json else step, **options)
    print_verification(report, as_json)
    if not as_json:
        t = report.twin
        out.print(terminal(f"ran on the emulated twin {t['label']} of the {t['of_board']} project, not on the board; "
                           f"{t['runtime_note']}; model sha256 {t['model_sha256'][:16]}… (the project's)"),
                  markup=False, soft_wrap=True)
    _print_per_op(report, as_json)
    report.raise_if_failed()


@click.command("run")
@click.option("--board", default="qemu-m4", show_default=True, help="Board id (emulated boards run here).")
@click.option("--project", "project", type=click.Path(path_type=Path), default=None,
              help="Use this generated project instead of building one.")
@build_options
@click.option("--port", default=None, help="Real boards: serial port or 'auto' (default: auto).")
@_verify_options
def run_cmd(board, project, port, n_fresh, tolerance, report_dir, timeout, retries, seed, trace, as_json, layers,
            profile, **options) -> None:
    """Build -> compile -> flash -> verify in one go (the whole loop; emulated boards need no hardware).

    Takes `tinygen build`'s options (--model, --data, --prune, --qat, --fit, ...); --vectors and --seed
    are the fresh verify vectors here, the build keeps its defaults."""
    from tinygen.common import child
    from tinygen.verification.verify import warm_plotting

    show_step = None if as_json else step
    kwargs = build_arguments(options)
    child.when_idle(warm_plotting)  # verify's chart, imported while the worker trains and converts
    if project is None:
        _refuse_existing_project(board, kwargs)
        with StatusLine(not as_json) as progress:
            proj = api.build(kwargs.pop("model"), board=board, progress=progress, **kwargs)
        if not as_json:
            print_build_summary(proj.plan, proj.cache, proj.path)
            if proj.compression is not None:
                print_compression(proj.compression)
            print_notes(proj, as_json)
    else:
        ctx = click.get_current_context()
        given = [prm.opts[0] for prm in ctx.command.params if prm.name in BUILD_OPTION_NAMES
                 and ctx.get_parameter_source(prm.name) == click.core.ParameterSource.COMMANDLINE]
        if given:
            raise click.UsageError(f"--project verifies an existing project as it was built; {given[0]} is a build "
                                   "option: drop it, or build again without --project")
        proj = api.Project.load(project)
    if proj.emulated:
        proj.build_firmware(progress=show_step)
        port = None  # the emulator's pty, once QEMU is up
    else:
        api.flash(proj, port)
        port = port or "auto"
    report = api.verify(proj, port=port, fresh_vectors=n_fresh, tolerance=tolerance, report_dir=report_dir,
                        timeout=timeout, retries=retries, seed=seed, trace=trace_line if trace else None,
                        progress=show_step, layers=layers, profile=profile)
    print_verification(report, as_json)
    _print_per_op(report, as_json)
    report.raise_if_failed()


def _refuse_existing_project(board: str, kwargs: dict) -> None:
    """A second `run` of the same model on the same board finds the first one's project: say how to
    verify that one again, beside --force (build's own refusal names only --force and --out)."""
    import shlex

    target = Path(kwargs["out"]) if kwargs["out"] else api.default_out_dir(board, api.name_hint(kwargs["model"],
                                                                                              kwargs["recipe"]))
    if kwargs["force"] or not (target / "tinygen.json").is_file() or target.is_symlink():
        return
    raise TinygenError(f"output directory {terminal(str(target))} already exists; pass --force to replace it, "
                       f"choose another --out, or `tinygen run --project {terminal(shlex.quote(str(target)))}` "
                       "to verify it again")


@click.command("profile")
@click.option("--project", "projects", required=True, multiple=True, type=click.Path(path_type=Path),
              help="Generated project (built); repeat it to put runtimes side by side (e.g. compiled and tflm).")
@click.option("--port", default=None, help="Serial port of a real board (one project); emulated boards need none.")
@click.option("--report-dir", type=click.Path(path_type=Path), default=None,
              help="Where profile.json/.md/.png go (default: the first PROJECT/reports).")
@click.option("--timeout", type=float, default=10.0, show_default=True, callback=_check_timeout,
              help="Seconds per request (0 < T <= 3600).")
@click.option("--json", "as_json", is_flag=True, help="Print the profiles as JSON.")
def profile_cmd(projects, port, report_dir, timeout, as_json) -> None:
    """Time every op of one inference on the board, per project, side by side (slowest first).

    Emulated boards (QEMU -icount) count instructions, and their firmware is built first (`pio run`);
    real boards (flashed) cycles or µs. Projects of one model on one board line up op by op.
    """
    from tinygen.common.errors import TinygenError
    from tinygen.verification.profile import table_lines, write_side_by_side

    if port is not None and len(projects) > 1:
        raise TinygenError("--port goes with one --project (emulated boards start their own QEMU)")
    loaded = [api.Project.load(p) for p in projects]
    profiles = []
    for proj in loaded:
        if proj.emulated:
            proj.build_firmware(progress=None if as_json else step)
        report = api.verify(proj, port=port, fresh_vectors=0, timeout=timeout, profile=True,
                            progress=None if as_json else step)
        if not report.passed:
            # a wrong answer still takes the time it takes: say so, and profile it anyway
            err.print(f"warning: {terminal(str(proj.path))}: outputs differ from the reference "
                      f"(max |Δ| {report.metrics['max_abs_diff_lsb']} LSB); try verify --layers", markup=False)
        profiles.append(report.profile)
    first = loaded[0]
    title = f"{first.manifest['name']} on {first.board.id}: instructions per op" if first.emulated else \
        f"{first.manifest['name']} on {first.board.id}: time per op"
    paths = write_side_by_side(Path(report_dir) if report_dir else first.path / "reports", profiles, title,
                               root=Path(report_dir) if report_dir else first.path)
    if as_json:
        print_json({"profiles": profiles, "reports": paths})
        return
    for line in table_lines(profiles):
        out.print(line, markup=False, highlight=False)
    out.print(f"reports: {terminal(', '.join(paths.values()))}", markup=False)
