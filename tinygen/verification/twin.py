"""The emulated twin of a real-board project: its exact model bytes and runtime on the closest emulated core.

``tinygen verify --project P --emulate`` (:func:`tinygen.api.verify_twin`).  What is verified on QEMU
must be what is flashed, so the twin is not a new build of the user's model: it is built from the
project's own ``model.tflite`` (whose sha256 tinygen.json records and the board's HELLO reports), for
the board its board file names (``emulated_twin`` in boards/*.json), with the project's runtime, into
``P/.tinygen/twin-<board>/`` (inside the project, through the normal project writer).  Then, before
anything runs, it checks that

* the twin's model bytes are the project's (sha256; for TFLM also the C array the board's firmware
  carries, read back from ``lib/tinygen_model/src/model_data.cc``), and
* the model library's sources (the C array, the compiled runtime's C, the TFLM glue and op resolver)
  are the project's, line for line, comments and the TFLM library's umbrella include aside;

the twin gets the project's own reference vectors, and the report says it ran on the twin, how close
that twin is (same core, same ISA, or another ISA) and which runtime it ran.

Nothing here prints; building the twin is the caller's (``build``, :func:`tinygen.api.build`), since
the verification stage comes before the API.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from tinygen.common.boards import Board
from tinygen.common.errors import TinygenError
from tinygen.common.escape import terminal

TWIN_DIR = ".tinygen"  # inside the project; kept by `tinygen build --force` like reports/ and .pio/
MODEL_LIBRARY = "lib/tinygen_model/src"
_MAX_SOURCE_BYTES = 512 << 20  # a model_data.cc is ~6 characters per model byte
_C_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_HEX = re.compile(rb"0x([0-9a-fA-F]{2})")
_RUNTIMES = ("tflm", "compiled")
# The model library's C API files: the same code but for a recipe's class labels (not in the model
# bytes); once compared without them, the twin compiles the project's own copies.
LABEL_FILES = ("tinygen_model.c", "tinygen_model.h")


@dataclass
class TwinPlan:
    """What :func:`plan_twin` decided: the real project, its twin's board, runtime and directory."""

    project: Path
    manifest: dict
    board: Board
    twin_board: Board
    runtime: str
    tflm_dir: str | None
    out: Path
    info: dict  # what the report carries as "twin"


def _shown(p: Path) -> str:
    return terminal(str(p))


def plan_twin(project: Path, *, runtime: str | None = None, tflm_dir: str | None = None) -> TwinPlan:
    """Check that ``project`` is a real-board project with an emulated twin that can run its runtime
    here; one-line TinygenError (exit 2) otherwise, before anything is written."""
    from tinygen.codegen.project import load_manifest
    from tinygen.common.boards import get_board, is_emulated

    project = Path(project)
    man = load_manifest(project)
    board = get_board(man["board"])
    bid = board.id
    if is_emulated(board):
        raise TinygenError(f"{_shown(project)} is a {bid} project, already emulated: verify it without --emulate")
    twin = board.emulated_twin
    if twin is None:
        raise TinygenError(f"board {bid} names no emulated twin (emulated_twin in boards/{bid}.json)")
    tb = get_board(twin.board)
    board_rt = man["runtime"]
    if board_rt not in _RUNTIMES:
        raise TinygenError(f"{_shown(project)}/tinygen.json: runtime '{terminal(board_rt)[:40]}' is not one of "
                           f"{', '.join(_RUNTIMES)}; rebuild the project with 'tinygen build --force'")
    rt = runtime or board_rt
    if rt not in _RUNTIMES:
        raise TinygenError(f"unknown runtime '{terminal(str(rt))[:40]}'; choose one of: {', '.join(_RUNTIMES)}")
    if rt not in tb.runtimes:
        raise TinygenError(f"{tb.id}, the emulated twin of {bid}, has no {rt} runtime (TFLM is built for the "
                           "emulated Arm cores only): --emulate-runtime compiled checks the same model bytes there "
                           "with the compiled runtime, a different runtime than the board's")
    if rt == "tflm" and tb.tflm.needs_tree and not tflm_dir:
        raise TinygenError(f"the twin of this {bid} TFLM project runs TFLM on {tb.id}, which builds TFLM from a "
                           "source tree: pass --tflm-dir DIR (or set TINYGEN_TFLM_DIR), or --emulate-runtime "
                           "compiled to check the same model bytes with the compiled runtime (a different runtime)")
    info = {
        "of_project": str(project), "of_board": bid, "board": tb.id, "match": twin.match,
        "label": twin.label, "reason": twin.reason, "board_runtime": board_rt, "runtime": rt,
        "runtime_note": _runtime_note(board, board_rt, rt, tflm_dir if rt == "tflm" else None),
    }
    if rt != board_rt:  # the match's words promise the board's runtime; this twin runs another
        info["label"] = info["label"].replace("same model bytes and runtime", "same model bytes")
    return TwinPlan(project, man, board, tb, rt, tflm_dir if rt == "tflm" else None,
                    project / TWIN_DIR / f"twin-{tb.id}", info)


def _runtime_note(board: Board, board_rt: str, rt: str, tflm_dir: str | None) -> str:
    if rt != board_rt:
        return f"the {rt} runtime, NOT the board's {board_rt}: the same model bytes on a different runtime"
    if rt == "compiled":
        return "the compiled runtime: the same generated C as the project's (checked)"
    lib = board.tflm.library
    theirs = f"{lib.rpartition('/')[2]} {board.tflm.version or ''}".strip() if lib else "its TFLM library"
    tree = _tree_library(Path(tflm_dir)) if tflm_dir else None
    if lib and tree == (lib.rpartition("/")[2].lower(), str(board.tflm.version or "")):
        return f"TFLM from {tflm_dir}, the same library and version as the board's ({theirs}); same glue (checked)"
    return f"TFLM from {tflm_dir}; the board runs {theirs}: kernels may differ between the two; same glue (checked)"


def _tree_library(tree: Path) -> tuple[str, str] | None:
    """(name lowercased, version) from a TFLM tree's Arduino library.properties, if it has one."""
    from tinygen.common.userfiles import read_user_file

    try:
        text = read_user_file(tree / "library.properties", "library.properties", 1 << 16).decode("utf-8", "replace")
    except TinygenError:
        return None
    props = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    return props.get("name", "").strip().lower(), props.get("version", "").strip()


def model_bytes(plan: TwinPlan) -> bytes:
    """The project's model.tflite, checked against tinygen.json's sha256 and, for TFLM, against the C
    array in its model library (what the board's firmware carries)."""
    from tinygen.verification.verify import load_project

    _, raw, _ = load_project(plan.project)  # sha256 against tinygen.json, vectors readable
    if plan.manifest["runtime"] == "tflm":
        carried = c_array_bytes(plan.project / MODEL_LIBRARY / "model_data.cc")
        if carried != raw:
            raise TinygenError(f"{_shown(plan.project)}/{MODEL_LIBRARY}/model_data.cc does not hold the bytes of its "
                               "model.tflite: the firmware would not run the model tinygen.json names; rebuild the "
                               "project with 'tinygen build --force'")
    plan.info["model_sha256"] = hashlib.sha256(raw).hexdigest()
    return raw


def c_array_bytes(path: Path) -> bytes:
    """The bytes of the one ``unsigned char`` array a generated model_data.cc defines."""
    from tinygen.common.userfiles import read_user_file

    text = read_user_file(path, "model C array", _MAX_SOURCE_BYTES)
    start = text.find(b"[] = {")
    end = text.find(b"};", start)
    if start < 0 or end < 0:
        raise TinygenError(f"{_shown(path)} holds no model array; rebuild the project with 'tinygen build --force'")
    return bytes(int(h, 16) for h in _HEX.findall(text[start:end]))


def source_model(plan: TwinPlan, raw: bytes) -> Path:
    """The project's model bytes under the project's model name (the C symbols derive from the file
    name), written inside the project: P/.tinygen/source/<name>.tflite."""
    from tinygen.common.safe_write import write_file

    name = plan.manifest["name"]
    name = name if _C_IDENT.match(name) else "model"
    return write_file(plan.project / TWIN_DIR / "source" / f"{name}.tflite", raw, root=plan.project)


def build_twin(plan: TwinPlan, build: Callable, progress: Callable[[str], None]) -> Path:
    """Write the twin project with ``build`` (:func:`tinygen.api.build`), then check it carries the
    project's model bytes and model library and give it the project's reference vectors."""
    from tinygen.common.safe_write import write_file
    from tinygen.common.userfiles import read_user_file

    twin_dir = plan.project / TWIN_DIR
    if twin_dir.is_symlink() or (twin_dir.exists() and not twin_dir.is_dir()):
        raise TinygenError(f"{_shown(twin_dir)} is not a directory tinygen made; remove it and try again")
    raw = model_bytes(plan)
    src = source_model(plan, raw)
    count = int(plan.manifest["vectors"].get("count") or 1)
    task = plan.manifest.get("task") if plan.manifest.get("task") in ("classification", "binary", "regression") \
        else None
    # A raw-signal project's front end (tinygen.json "frontend", docs/frontend.md) goes into the twin too.
    fe = plan.manifest.get("frontend")
    extra = {"frontend": fe} if isinstance(fe, dict) else {}
    progress(f"building the emulated twin {plan.info['label']} in {plan.out}")
    build(src, board=plan.twin_board.id, runtime=plan.runtime, out=plan.out, force=True,
          vectors=max(1, min(count, 10000)), tflm_dir=plan.tflm_dir, task=task, progress=progress, **extra)
    twin_raw = (plan.out / "model.tflite").read_bytes()
    if twin_raw != raw:
        raise TinygenError(f"the twin's model ({hashlib.sha256(twin_raw).hexdigest()[:16]}…) is not the project's "
                           f"({plan.info['model_sha256'][:16]}…): {plan.twin_board.id} would run other bytes "
                           "than the board; verify on the board itself")
    if plan.runtime == plan.manifest["runtime"]:
        differs = library_differences(plan.project, plan.out, plan.board)
        if differs:
            raise TinygenError(f"{_shown(plan.project)}/{MODEL_LIBRARY}/{terminal(differs[0])} is not what this "
                               "tinygen generates from its model.tflite (edited, or from another tinygen version): "
                               "the twin would not run what you flash; rebuild the project with 'tinygen build "
                               "--force'")
        for name in LABEL_FILES:  # the project's own, class labels and all (compared above)
            if (plan.project / MODEL_LIBRARY / name).is_file():
                write_file(plan.out / MODEL_LIBRARY / name, read_user_file(
                    plan.project / MODEL_LIBRARY / name, "model library source", _MAX_SOURCE_BYTES), root=plan.out)
        plan.info["model_library"] = "same sources as the project's (comments aside)"
    vectors = read_user_file(plan.project / plan.manifest["vectors"]["file"], "reference vectors", _MAX_SOURCE_BYTES)
    write_file(plan.out / "vectors" / "reference.npz", vectors, root=plan.out)
    plan.info["project"] = str(plan.out)
    return plan.out


def _normalized(text: bytes, drop_include: bytes | None) -> list[bytes]:
    """A generated source's lines without comments and blank lines (and without the TFLM library's
    umbrella include, the one line the registry library and a source tree need differently)."""
    lines = []
    for line in text.splitlines():
        s = line.strip()
        # (a // comment ending in a backslash swallows the next line: kept, so it is compared)
        if not s or (s.startswith(b"//") and not s.endswith(b"\\")) or \
                (drop_include is not None and s == drop_include):
            continue
        lines.append(line.rstrip())
    return lines


def _without_class_labels(lines: list[bytes]) -> list[bytes]:
    """tinygen_model.c without its class-label table and tinygen_model_class_label's body: a recipe's
    labels are not in the model bytes, so a twin built from those bytes has none; inference never
    reads them."""
    out, skip = [], None
    for line in lines:
        s = line.strip()
        if skip == "table":
            skip = None if s == b"};" else skip
            continue
        if skip == "body":
            if line == b"}":
                skip = None
                out.append(line)
            continue
        if s.startswith(b"#define TINYGEN_MODEL_NUM_CLASSES "):  # tinygen_model.h: the labels' count
            continue
        if s.startswith(b"static const char *const k_labels["):
            skip = "table"
            continue
        if s.startswith(b"const char *tinygen_model_class_label("):
            skip = "body"
        out.append(line)
    return out


def library_differences(project: Path, twin: Path, board: Board) -> list[str]:
    """The model library files (relative to lib/tinygen_model/src) whose code differs between the
    project and its twin, or that only one of them has."""
    from tinygen.common.userfiles import read_user_file

    header = board.tflm.header
    drop = f"#include <{header}>".encode() if header else None
    a, b = project / MODEL_LIBRARY, twin / MODEL_LIBRARY
    names_a = {p.relative_to(a).as_posix() for p in a.rglob("*") if p.is_file()} if a.is_dir() else set()
    names_b = {p.relative_to(b).as_posix() for p in b.rglob("*") if p.is_file()}
    differs = sorted(names_a ^ names_b)
    for name in sorted(names_a & names_b):
        mine = _normalized(read_user_file(a / name, "model library source", _MAX_SOURCE_BYTES), drop)
        theirs = _normalized((b / name).read_bytes(), drop)
        if name in LABEL_FILES:
            mine, theirs = _without_class_labels(mine), _without_class_labels(theirs)
        if (a / name).is_symlink() or mine != theirs:
            differs.append(name)
    return differs


def markdown_lines(info: dict) -> list[str]:
    """The verify report's section saying where it ran."""
    from tinygen.common.escape import markdown

    return ["", "## Emulated twin", "",
            f"Ran on the emulated twin **{markdown(info['label'])}** of the {markdown(info['of_board'])} project "
            f"{markdown(info['of_project'])}, not on the board itself.", "",
            f"- runtime: {markdown(info['runtime_note'])}",
            f"- model sha256: `{info.get('model_sha256', '')}` (the project's model.tflite"
            + (" and its C array" if info["board_runtime"] == "tflm" else "") + ")",
            f"- why this twin: {markdown(info['reason'], 1000)}"]


def run_twin(plan: TwinPlan, progress: Callable[[str], None], **options):
    """``pio run`` in the built twin, QEMU booted on it, and
    :func:`tinygen.verification.workflow.verify_project` with ``options``; the Report says it ran on
    the twin (``report.twin``)."""
    from tinygen.device.emulator import qemu_for_project
    from tinygen.device.pio_build import build_firmware
    from tinygen.verification.workflow import verify_project

    tb = plan.twin_board
    progress(f"pio run in {plan.out}")
    build_firmware(plan.out, tb)
    with qemu_for_project(plan.out, tb) as qb:
        progress(f"QEMU {tb.emulator.machine} up (the emulated twin), UART0 on {qb.port}")
        return verify_project(plan.out, qb.port, tb, twin=plan.info, twin_md=markdown_lines(plan.info),
                              progress=progress, **options)


def summary_line(board: Board, runtime: str, project: Path | None) -> str | None:
    """The build summary's "emulated twin" row of a real-board project: which twin verifies it, and
    the command (None for an emulated board, or one without a twin)."""
    import shlex

    from tinygen.common.boards import get_board

    twin = board.emulated_twin
    if twin is None:
        return None
    cmd = f"tinygen verify --project {shlex.quote(str(project)) if project is not None else 'PROJECT'} --emulate"
    tb = get_board(twin.board)
    if runtime == "tflm" and "tflm" not in tb.runtimes:
        cmd += f" --emulate-runtime compiled ({tb.id} has no TFLM: the compiled runtime, a different runtime)"
    elif runtime == "tflm" and tb.tflm.needs_tree:
        cmd += " --tflm-dir DIR (a TFLM source tree; or TINYGEN_TFLM_DIR)"
    return f"{twin.label}: {cmd}"
