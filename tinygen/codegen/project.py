"""The only writer of generated projects: render into a temp dir beside the target, then rename.

A failure at any point (an OSError, an exception, Ctrl-C) leaves the target as it was (absent, or
the old project when ``--force`` replaces one only after the new one is complete) and nothing
beside it.  ``--force`` replaces only a directory that is provably a tinygen project: a valid
manifest and nothing in it that tinygen did not write.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from pathlib import Path

from tinygen.common.errors import TinygenError
from tinygen.common.escape import pio_path, terminal

MANIFEST_VERSION = 1  # what render.manifest() writes
MANIFEST_VERSIONS = (MANIFEST_VERSION,)  # what tinygen reads
# Keys every manifest has, with their types: what load_manifest's users index without checking.
_MANIFEST_KEYS = {"manifest_version": int, "board": str, "runtime": str, "name": str, "model_sha256": str,
                  "model_file": str, "input": dict, "output": dict, "arena": dict, "vectors": dict, "serial": dict}
_NESTED_KEYS = {"input.shape": list, "output.shape": list, "output.scale": (int, float),
                "output.zero_point": int, "arena.recommended_bytes": int, "vectors.file": str, "serial.baud": int}
# Written later by `tinygen flash` (PlatformIO's build dir) and `tinygen verify` (default report dir).
_TOOL_DIRS = (".pio", "reports")
# Longest file name tinygen adds to a name given by the user (".<name>.tmp-XXXXXXXX").
_NAME_MAX = 255


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _known_src_files() -> set[str]:
    """Every src/ file any board or runtime of this tinygen writes."""
    from tinygen.common.paths import firmware_dir

    fw = firmware_dir()
    names = {"tg_protocol.h", "tg_model_info.h", "tg_hal.h", "main.cpp", "model_data.h", "model_data.cc",
             "tg_runtime_tflm.cc", "tg_model.c", "tg_model.h"}
    for sub in ("app", "runtime", "tflm", *(f"hal/{p.name}" for p in (fw / "hal").iterdir() if p.is_dir())):
        base = fw / sub
        if base.is_dir():
            names |= {p.relative_to(base).as_posix() for p in base.rglob("*") if p.is_file()}
    return names


def _known_files_under(top: str, wanted: set[str]) -> set[str]:
    """lib/ and examples/ files any board or runtime of this tinygen writes (relative to ``top``):
    the library's and the example's own names, the src/ names it may also hold, and ``wanted``'s."""
    from tinygen.codegen.model_library import EXAMPLE, LIB

    if top == "lib":
        names = _known_src_files() | {"tinygen_model.h", "tinygen_model.c", "tinygen_model_runtime.h",
                                      "tinygen_model_compiled.c"}
        known = {f"{LIB[4:]}/src/{n}" for n in names} | {f"{LIB[4:]}/library.json", f"{LIB[4:]}/library.properties"}
    else:
        known = {f"{EXAMPLE[9:]}/{n}" for n in ("predict.c", "tinygen_example.h", "main.c", "main.cpp",
                                                 "tinygen_example_vectors.h")}
    return known | {p[len(top) + 1:] for p in wanted if p.startswith(top + "/")}


def _read_manifest(path: Path) -> tuple[dict | None, str | None]:
    """(manifest, None), or (None, what is wrong with it)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        return None, f"unreadable ({type(exc).__name__})"
    problem = _manifest_problem(data)
    return (None, problem) if problem else (data, None)


def _manifest_problem(data) -> str | None:
    if not isinstance(data, dict):
        return "not a JSON object"
    if data.get("manifest_version") not in MANIFEST_VERSIONS:
        return f"manifest_version is {terminal(repr(data.get('manifest_version')))[:40]}, expected one of " \
               f"{list(MANIFEST_VERSIONS)}"
    for key, typ in _MANIFEST_KEYS.items():
        if not isinstance(data.get(key), typ) or isinstance(data.get(key), bool):
            return f"'{key}' is missing or not a {typ.__name__}"
    for key, typ in _NESTED_KEYS.items():
        outer, inner = key.split(".")
        value = data[outer].get(inner)
        if not isinstance(value, typ) or isinstance(value, bool):
            return f"'{key}' is missing or not a {getattr(typ, '__name__', 'number')}"
    if not (0 < data["serial"]["baud"] <= 10_000_000 and 0 < data["arena"]["recommended_bytes"] < 1 << 31
            and 0 < data["output"]["scale"] < float("inf") and -128 <= data["output"]["zero_point"] <= 127):
        return "'serial.baud', 'arena.recommended_bytes', 'output.scale' or 'output.zero_point' is out of range"
    if not all(isinstance(n, int) and not isinstance(n, bool) and 0 < n < 1 << 24
               for k in ("input", "output") for n in data[k]["shape"]):
        return "'input.shape'/'output.shape' must be lists of positive integers"
    for key in ("model_file", "vectors.file"):
        rel = data["model_file"] if key == "model_file" else data["vectors"]["file"]
        if rel.startswith("/") or ".." in rel.split("/") or "\\" in rel or not rel:
            return f"'{key}' must be a path inside the project"
    return None


def foreign_entry(out: Path, files: dict[str, bytes] | None = None) -> str | None:
    """Why ``out`` is not a tinygen project that --force may replace (None: it is one)."""
    _, problem = _read_manifest(out / "tinygen.json")
    if problem:
        return f"its tinygen.json is not a tinygen manifest ({problem})"
    wanted = set(files or {})
    top_files = {"tinygen.json", "platformio.ini", "README.md", "model.tflite"} | {p for p in wanted if "/" not in p}
    src_files = _known_src_files() | {p[4:] for p in wanted if p.startswith("src/")}
    vec_files = {"reference.npz"} | {p[8:] for p in wanted if p.startswith("vectors/")}
    for entry in sorted(out.iterdir()):
        name = entry.name
        if entry.is_symlink():
            return f"it holds {name}, a symbolic link tinygen does not write"
        if name in _TOOL_DIRS and entry.is_dir():
            continue
        if name in top_files and entry.is_file():
            continue
        if name in ("src", "vectors", "lib", "examples") and entry.is_dir():
            known = {"src": src_files, "vectors": vec_files}.get(name) or _known_files_under(name, wanted)
            for p in sorted(entry.rglob("*")):
                rel = p.relative_to(entry).as_posix()
                if p.is_symlink() or (p.is_file() and rel not in known) or \
                        (p.is_dir() and not any(k.startswith(rel + "/") for k in known)) or \
                        not (p.is_file() or p.is_dir()):
                    return f"it holds {name}/{rel}, which tinygen does not write"
            continue
        return f"it holds {name}, which tinygen does not write"
    return None


def check_out_dir(out: Path, force: bool, files: dict[str, bytes] | None = None) -> Path:
    """Refuse (exit 2, one line) an --out that cannot or must not be written; call before long work."""
    out = Path(out)
    shown = terminal(str(out))
    try:
        full = out.absolute()
        pio_path(full, "--out")
        if any(len(os.fsencode(part)) > _NAME_MAX - 20 for part in full.parts):
            raise OSError(errno.ENAMETOOLONG, "a file name in it is too long")
        if len(os.fsencode(str(full))) > 3000:
            raise OSError(errno.ENAMETOOLONG, "the path is too long")
        if out.exists() or out.is_symlink():
            if not force:
                raise TinygenError(f"output directory {shown} already exists; pass --force to replace it "
                                   "or choose another --out")
            if out.is_symlink() or not out.is_dir():
                raise TinygenError(f"{shown} exists and is not a directory; choose another --out")
            why = foreign_entry(out, files)
            if why:
                raise TinygenError(f"{shown} is not a tinygen project that --force may replace: {why}; "
                                   "move your files away or choose another --out")
        ancestor = full.parent
        while not ancestor.exists():
            ancestor = ancestor.parent
        if not ancestor.is_dir():
            raise OSError(errno.ENOTDIR, f"{terminal(str(ancestor))} is not a directory")
        # A real probe (os.access says yes to root, and knows nothing of read-only file systems).
        os.rmdir(tempfile.mkdtemp(prefix=".tinygen-probe-", dir=ancestor))
    except OSError as exc:
        raise TinygenError(f"cannot write --out {shown}: {exc.strerror or exc}; choose another --out") from None
    return out


def write_project(files: dict[str, bytes], out: Path, force: bool = False) -> Path:
    out = Path(out)
    check_out_dir(out, force, files)
    parent = out.absolute().parent
    shown = terminal(str(out))
    made: list[Path] = []  # parents created here, removed again on failure
    tmp = old = None
    moved_away = False
    done = False
    try:
        missing = parent
        while not missing.exists():
            made.append(missing)
            missing = missing.parent
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name[:40]}.tmp-", dir=parent))
        tmp.chmod(0o777 & ~_umask())  # mkdtemp makes 0700; a project dir follows the umask
        for rel, data in sorted(files.items()):
            p = tmp / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(data)
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name[:40]}.old-", dir=parent))
            os.replace(out, old / "p")
            moved_away = True
        os.replace(tmp, out)
        tmp = None
        done = True
    except OSError as exc:
        raise TinygenError(f"could not write {shown}: {exc.strerror or exc}") from None
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        if old is not None:
            if moved_away and not done:
                try:
                    os.replace(old / "p", out)  # put the user's old project back
                except OSError:
                    pass
            if not (old / "p").exists() or done:
                shutil.rmtree(old, ignore_errors=True)
        if not done:
            for d in made:
                try:
                    d.rmdir()
                except OSError:
                    break
    return out


def load_manifest(project: Path) -> dict:
    p = Path(project) / "tinygen.json"
    shown = terminal(str(project))
    if not p.is_file():
        raise TinygenError(f"{shown} is not a tinygen project (no tinygen.json); create one with 'tinygen build'")
    data, problem = _read_manifest(p)
    if problem:
        raise TinygenError(f"{shown}/tinygen.json is not a valid tinygen manifest ({problem}); rebuild the project "
                           "with 'tinygen build --force'")
    return data
