"""A content-addressed cache of what does not change between builds of the same model.

What is kept (each by the exact inputs that produce it, see :func:`key`): a recipe's trained model
and its data split, the int8 conversion and the float model's predictions, the tflite_micro
reference outputs, and the bisected arena.  Building the same model for a second board reuses
them instead of training, converting and bisecting again.

Where: ``$TINYGEN_CACHE_DIR``, else ``$TINYGEN_HOME/cache`` (else ``${XDG_DATA_HOME:-~/.local/share}/tinygen/cache``), one file per
entry, ``<kind>/<key[:2]>/<key>.entry``, the key being the sha256 of a canonical JSON of the inputs
(tinygen's version and the digest of the code that computes the entry, the TensorFlow, tflite_micro,
Keras and numpy versions, the model bytes or recipe + seed, the data bytes, the converter options).

An entry is one header line of JSON (the key, each part's name, length and sha256) followed by the
parts' bytes.  It is written to a temp file in its own directory and renamed onto its name, so a
reader sees a whole entry or none, and two writers of the same entry both leave a whole one (the same
bytes).  Read back, every part's sha256 is checked: an entry that is truncated, tampered with or not
a cache entry at all is deleted, recomputed and said in one warning line, never trusted.  A cache
directory that cannot be written (read-only, full, not a directory) is bypassed with one warning
line: the build's result never depends on the cache, only its time.

The cache is used only inside :func:`session` (``tinygen.build``); ``use_cache=False`` (the CLI's
``--no-cache``) neither reads nor writes it.  A session records which kinds it reused
(:attr:`Session.hits`, the build summary's "cache" row) and its warnings (:attr:`Session.warnings`).

May import: nothing else in tinygen but tinygen.common.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from tinygen.common.escape import terminal
from tinygen.common.version import VERSION

FORMAT = 1  # of an entry; a new format is a new key
_MAGIC = b"tinygen-cache 1\n"
_MAX_HEADER = 64 * 1024
# What a kind is called in the build summary, in the order it is listed.
KINDS = {"recipe": "trained recipe model", "convert": "int8 conversion", "arena": "arena measurement",
         "reference": "reference outputs"}
# The code an entry of each kind depends on (beside the versions): a change to it is a new key.
_CODE = {"recipe": ("intake",), "convert": ("intake", "tflite"), "arena": ("analysis/reference.py",),
         "reference": ("analysis/reference.py",)}
_PKG = Path(__file__).resolve().parent.parent


def cache_dir() -> Path:
    """$TINYGEN_CACHE_DIR, else $TINYGEN_HOME/cache, else ${XDG_DATA_HOME:-~/.local/share}/tinygen/cache
    (beside tinygen's PlatformIO home).  TINYGEN_CACHE_DIR lets CI keep the cache apart (or share it)."""
    own = os.environ.get("TINYGEN_CACHE_DIR")
    if own:
        return Path(own).expanduser()
    home = os.environ.get("TINYGEN_HOME")
    if home:
        return Path(home).expanduser() / "cache"
    data = os.environ.get("XDG_DATA_HOME")
    base = Path(data).expanduser() if data and Path(data).is_absolute() else Path.home() / ".local" / "share"
    return base / "tinygen" / "cache"


_versions: dict | None = None
_code: dict[str, str] = {}


def versions() -> dict:
    """The versions of what computes an entry (read from package metadata: nothing is imported)."""
    global _versions
    if _versions is None:
        import importlib.metadata as md

        found = {"tinygen": VERSION, "cache_format": FORMAT}
        for dist in ("tensorflow", "tensorflow-cpu", "tf-keras", "keras", "tflite-micro", "numpy", "onnx2tf"):
            try:
                found[dist] = md.version(dist)
            except md.PackageNotFoundError:
                pass
        _versions = found
    return dict(_versions)


def code_digest(kind: str) -> str:
    """sha256 over the source files that compute ``kind``: a checkout whose code changed gets new keys."""
    if kind not in _code:
        h = hashlib.sha256()
        for part in _CODE.get(kind, ()):
            p = _PKG / part
            files = sorted(p.rglob("*.py")) if p.is_dir() else [p]
            for f in files:
                h.update(f.relative_to(_PKG).as_posix().encode() + b"\0")
                with contextlib.suppress(OSError):
                    h.update(hashlib.sha256(f.read_bytes()).digest())
        _code[kind] = h.hexdigest()
    return _code[kind]


def digest(data) -> str:
    """sha256 of bytes, or of a numpy array's dtype, shape and bytes."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        return hashlib.sha256(data).hexdigest()
    import numpy as np

    arr = np.ascontiguousarray(data)
    h = hashlib.sha256(f"{arr.dtype.str}{arr.shape}".encode())
    h.update(arr.tobytes())
    return h.hexdigest()


def path_digest(path: Path) -> str:
    """sha256 of a file's bytes, or of a directory's files (relative names and bytes, sorted)."""
    path = Path(path)
    if not path.is_dir():
        return digest(path.read_bytes())
    h = hashlib.sha256()
    for f in sorted(q for q in path.rglob("*") if q.is_file()):
        h.update(f.relative_to(path).as_posix().encode() + b"\0" + bytes.fromhex(digest(f.read_bytes())))
    return h.hexdigest()


def key(kind: str, inputs: dict) -> str:
    """The entry name: sha256 of a canonical JSON of the kind, ``inputs``, the versions and the code digest."""
    doc = {"kind": kind, "inputs": inputs, "versions": versions(), "code": code_digest(kind)}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


# ----------------------------------------------------------------- sessions

@dataclass
class Session:
    enabled: bool = True
    root: Path = field(default_factory=cache_dir)
    hits: list[str] = field(default_factory=list)  # kinds reused, in order, once each
    warnings: list[str] = field(default_factory=list)
    writable: bool = True

    def warn(self, text: str) -> None:
        if text not in self.warnings:
            self.warnings.append(text)

    def hit(self, kind: str) -> None:
        if kind not in self.hits:
            self.hits.append(kind)

    def summary(self) -> list[str]:
        """The kinds reused, as the build summary names them, in pipeline order."""
        return [KINDS[k] for k in KINDS if k in self.hits]


_current: list[Session] = []


@contextlib.contextmanager
def session(enabled: bool = True):
    """Make the cache usable (or, ``enabled=False``, unusable) for what runs inside; a nested session
    (a build inside a build) shares the outer one."""
    if _current:
        yield _current[-1]
        return
    s = Session(enabled=enabled)
    _current.append(s)
    try:
        yield s
    finally:
        _current.remove(s)


def current() -> Session | None:
    """The active session when it may use the cache, else None."""
    s = _current[-1] if _current else None
    return s if s is not None and s.enabled else None


def _entry_path(root: Path, kind: str, k: str) -> Path:
    return root / kind / k[:2] / f"{k}.entry"


def exists(kind: str, k: str) -> bool:
    """Whether this session's cache has a file for entry ``k`` (not read: :func:`get` checks it)."""
    s = current()
    try:
        return s is not None and _entry_path(s.root, kind, k).is_file()
    except OSError:  # unreadable: get() says so
        return False


def get(kind: str, k: str) -> dict[str, bytes] | None:
    """The parts of entry ``k``, or None (no session, no entry, or a bad entry: deleted and warned)."""
    s = current()
    if s is None:
        return None
    path = _entry_path(s.root, kind, k)
    try:
        with open(path, "rb") as f:
            blob = f.read()
    except (FileNotFoundError, NotADirectoryError):  # no such entry (or the cache is not a directory: put says so)
        return None
    except OSError as exc:
        s.warn(f"tinygen's cache at {terminal(str(s.root))} cannot be read ({exc.strerror or exc}): "
               "computing what it holds again")
        return None
    parts = _decode(blob, k)
    if parts is None:
        with contextlib.suppress(OSError):
            path.unlink()
        s.warn(f"tinygen's cache held a damaged {KINDS.get(kind, kind)} entry (truncated or altered): "
               "deleted and computed again")
        return None
    s.hit(kind)
    return parts


def _decode(blob: bytes, k: str) -> dict[str, bytes] | None:
    if not blob.startswith(_MAGIC):
        return None
    end = blob.find(b"\n", len(_MAGIC), len(_MAGIC) + _MAX_HEADER)
    if end < 0:
        return None
    try:
        header = json.loads(blob[len(_MAGIC):end])
        if header.get("key") != k:
            return None
        parts, pos = {}, end + 1
        for name, length, sha in header["parts"]:
            data = blob[pos:pos + int(length)]
            if len(data) != int(length) or hashlib.sha256(data).hexdigest() != sha:
                return None
            parts[str(name)] = data
            pos += int(length)
    except (ValueError, TypeError, KeyError):
        return None
    return parts if pos == len(blob) else None


def put(kind: str, k: str, parts: dict[str, bytes]) -> None:
    """Store ``parts`` as entry ``k`` (atomically); a cache that cannot be written is bypassed with one warning."""
    s = current()
    if s is None or not s.writable:
        return
    header = {"key": k, "kind": kind, "parts": [[n, len(b), hashlib.sha256(b).hexdigest()] for n, b in parts.items()]}
    blob = _MAGIC + json.dumps(header, sort_keys=True).encode() + b"\n" + b"".join(parts.values())
    path = _entry_path(s.root, kind, k)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(blob)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink()
    except OSError as exc:
        s.writable = False
        s.warn(f"tinygen's cache at {terminal(str(s.root))} cannot be written ({exc.strerror or exc}): "
               "building without it (set TINYGEN_HOME to a writable directory, or pass --no-cache)")


# ----------------------------------------------------------------- tinygen cache info|clear

def info(root: Path | None = None) -> dict:
    """{"path", "entries", "bytes", "kinds": {kind: {"entries", "bytes"}}} of the cache directory."""
    root = Path(root) if root is not None else cache_dir()
    kinds: dict[str, dict] = {}
    if root.is_dir():
        for f in root.glob("*/*/*.entry"):
            if f.is_symlink() or not f.is_file():
                continue
            kind = f.parent.parent.name
            row = kinds.setdefault(kind, {"entries": 0, "bytes": 0})
            row["entries"] += 1
            row["bytes"] += f.stat().st_size
    return {"path": str(root), "entries": sum(r["entries"] for r in kinds.values()),
            "bytes": sum(r["bytes"] for r in kinds.values()), "kinds": dict(sorted(kinds.items()))}


def clear(root: Path | None = None) -> dict:
    """Remove every entry (only tinygen's own kind directories inside the cache); returns what was removed."""
    root = Path(root) if root is not None else cache_dir()
    before = info(root)
    if root.is_dir() and not root.is_symlink():
        for kind in KINDS:
            d = root / kind
            if d.is_symlink():
                d.unlink()
            elif d.is_dir():
                shutil.rmtree(d)
    return before
