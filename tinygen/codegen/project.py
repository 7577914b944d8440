"""The only writer of generated projects: render into a temp dir, then rename.

A new project is written into a temp dir beside the target, then renamed onto it.  ``--force``
replaces only a directory that is provably a tinygen project: a valid manifest, and nothing in it
that tinygen did not write except ``reports/`` and ``.pio/``, which it keeps.  It replaces exactly
the files the previous manifest lists (its ``files``; a manifest from a tinygen that did not list
them: the names any tinygen writes) and keeps the directory itself: the new tree is written into a
temp dir inside the project, then each top-level entry tinygen owns is swapped by rename (so
``--out .`` works from inside the project).  A failure at any point (an OSError, an exception,
Ctrl-C) leaves the target as it was (absent, or the old project: swapped entries are swapped back)
and no temp dir.  Every file goes through tinygen.common.safe_write.
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
from tinygen.common.safe_write import write_file

MANIFEST_VERSION = 1  # what render.manifest() writes
MANIFEST_VERSIONS = (MANIFEST_VERSION,)  # what tinygen reads
# Keys every manifest has, with their types: what load_manifest's users index without checking.
_MANIFEST_KEYS = {"manifest_version": int, "board": str, "runtime": str, "name": str, "model_sha256": str,
                  "model_file": str, "input": dict, "output": dict, "arena": dict, "vectors": dict, "serial": dict}
_NESTED_KEYS = {"input.shape": list, "output.shape": list, "output.scale": (int, float),
                "output.zero_point": int, "arena.recommended_bytes": int, "vectors.file": str, "serial.baud": int}
# Written later by `tinygen flash` (PlatformIO's build dir) and `tinygen verify` (default report dir).
# --force keeps both whole, never lists them in the manifest nor deletes anything in them: reports/
# may hold the user's notes beside tinygen's reports (which the next verify replaces file by file),
# and .pio/ is PlatformIO's build cache of this project, which rebuilds what the new sources change
# (it compares sources and platformio.ini), so keeping it is correct and deleting it would only cost
# a full rebuild, and whatever else the user keeps there.  .tinygen/ holds what `tinygen verify --emulate`
# builds inside the project (its emulated twin, tinygen.verification.twin), rebuilt by each such verify.
_TOOL_DIRS = (".pio", "reports", ".tinygen")
# The temp dirs --force makes inside the project while it swaps entries (removed before it returns).
_SWAP_PREFIXES = (".tinygen-new-", ".tinygen-old-")
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
    names = {"tg_protocol.h", "tg_model_info.h", "tg_hal.h", "model_data.h", "model_data.cc",
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
    from tinygen.common.userfiles import MANIFEST_LIMIT, UserFileError, read_user_file

    try:  # bounded: a project directory is user input too (a 6 GB tinygen.json was read whole)
        data = json.loads(read_user_file(path, "tinygen.json", MANIFEST_LIMIT).decode("utf-8"))
    except UserFileError as exc:
        return None, exc.reason
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
    listed = data.get("files")  # absent in manifests of a tinygen before 0.x: then the names any tinygen writes
    if listed is not None:
        if not isinstance(listed, list) or not all(isinstance(p, str) and _own_path(p) for p in listed):
            return "'files' must list paths inside the project, outside reports/ and .pio/"
    return None


def _own_path(rel: str) -> bool:
    """A path a manifest may list as tinygen's: relative, plain, not in a kept tool dir."""
    parts = rel.split("/")
    return (bool(rel) and "\\" not in rel and "\0" not in rel and all(p not in ("", ".", "..") for p in parts)
            and parts[0] not in _TOOL_DIRS and not parts[0].startswith(_SWAP_PREFIXES))


def foreign_entry(out: Path, files: dict[str, bytes] | None = None) -> str | None:
    """Why ``out`` is not a tinygen project that --force may replace (None: it is one)."""
    man, problem = _read_manifest(out / "tinygen.json")
    if problem:
        return f"its tinygen.json is not a tinygen manifest ({problem})"
    if man.get("files") is not None:
        return _unlisted_entry(out, set(man["files"]) | {"tinygen.json"})
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


def _unlisted_entry(out: Path, listed: set[str]) -> str | None:
    """The first entry of ``out`` that is neither listed by its manifest nor in a kept tool dir."""
    dirs = {"/".join(p.split("/")[:i]) for p in listed for i in range(1, p.count("/") + 1)}
    for entry in sorted(out.iterdir()):
        name = entry.name
        if entry.is_symlink():
            return f"it holds {name}, a symbolic link tinygen does not write"
        if name in _TOOL_DIRS and entry.is_dir():
            continue
        todo = [entry]
        while todo:
            p = todo.pop()
            rel = p.relative_to(out).as_posix()
            if not p.is_symlink() and p.is_file() and rel in listed:
                continue
            if not p.is_symlink() and p.is_dir() and rel in dirs:
                todo.extend(sorted(p.iterdir(), reverse=True))
                continue
            return f"it holds {rel}, which its tinygen.json does not list"
    return None


def _owned_top_entries(out: Path, files: dict[str, bytes]) -> set[str]:
    """Top-level names of ``out`` that --force replaces: those its manifest's files live under (a
    manifest without ``files``: every name any tinygen writes), and those of the new files."""
    man, _ = _read_manifest(out / "tinygen.json")
    if man is not None and man.get("files") is not None:
        old = {p.split("/")[0] for p in man["files"]} | {"tinygen.json"}
    else:
        old = {"tinygen.json", "platformio.ini", "README.md", "model.tflite", "src", "vectors", "lib", "examples"}
    new = {p.split("/")[0] for p in files}
    if any(n in _TOOL_DIRS or n.startswith(_SWAP_PREFIXES) for n in new):
        raise ValueError("generated files must not go into reports/, .pio/ or a swap dir")
    return (old | new) - set(_TOOL_DIRS)


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
    if out.is_dir():  # --force over a tinygen project (check_out_dir proved it one)
        return _replace_project(files, out)
    parent = out.absolute().parent
    shown = terminal(str(out))
    made: list[Path] = []  # parents created here, removed again on failure
    tmp = None
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
            write_file(tmp / rel, data, root=tmp)
        os.replace(tmp, out)
        tmp = None
        done = True
    except OSError as exc:
        raise TinygenError(f"could not write {shown}: {exc.strerror or exc}") from None
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        if not done:
            for d in made:
                try:
                    d.rmdir()
                except OSError:
                    break
    return out


def _replace_project(files: dict[str, bytes], out: Path) -> Path:
    """--force: the new tree into a temp dir inside ``out``, then each owned top-level entry swapped
    by rename; ``out`` itself is never renamed (it may be the current directory: renaming '.' is
    EBUSY, and a shell left in a renamed-away directory would see no project)."""
    shown = terminal(str(out))
    owned = sorted(_owned_top_entries(out, files))
    tmp = trash = None
    moves: list[tuple[Path, Path]] = []  # renames done, undone in reverse if the swap fails
    done = False
    try:
        tmp = Path(tempfile.mkdtemp(prefix=_SWAP_PREFIXES[0], dir=out))
        for rel, data in sorted(files.items()):
            write_file(tmp / rel, data, root=tmp)
        trash = Path(tempfile.mkdtemp(prefix=_SWAP_PREFIXES[1], dir=out))
        for name in owned:
            if os.path.lexists(out / name):
                os.rename(out / name, trash / name)
                moves.append((out / name, trash / name))
            if os.path.lexists(tmp / name):
                os.rename(tmp / name, out / name)
                moves.append((tmp / name, out / name))
        done = True
    except OSError as exc:
        raise TinygenError(f"could not write {shown}: {exc.strerror or exc}") from None
    finally:
        restored = True
        if not done:
            for src, dst in reversed(moves):
                try:
                    os.rename(dst, src)
                except OSError:
                    restored = False
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        if trash is not None and restored:  # never delete the old files unless they are back or replaced
            shutil.rmtree(trash, ignore_errors=True)
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
