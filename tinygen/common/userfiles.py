"""Open the user's files without trusting them: regular files only, bounded size.

A path given on the command line can name a FIFO (``open`` blocks forever), a
device or a symlink to ``/dev/zero`` (``read`` never ends), or a file far
larger than anything tinygen can use.  :func:`read_user_file` refuses all of
those in one line (exit 2) before reading, and reads at most ``limit + 1``
bytes, so a file that grows after the check is still caught.

Limits (bytes):

* ``MODEL_LIMIT`` = 64 MiB.  The largest flash of a supported board is 4 MiB
  and int8 weights are a quarter of float32 ones, so a float model over
  16 x that flash cannot become a model any board can hold.
* ``DATA_LIMIT`` = 256 MiB for ``.npz``/``.npy`` arrays (64 M float32 values;
  calibration uses 300 samples and the held-out fifth is run through the
  reference interpreter, so more data only costs time and memory).
* ``CSV_LIMIT`` = 64 MiB: CSV cells are parsed as Python floats, about ten
  times their text size in memory while parsing.
* ``MANIFEST_LIMIT`` = 1 MiB for a project's ``tinygen.json``.  Everything it holds is
  bounded and small: the distinct op names (the TFLite schema has about 200), input and
  output shapes of rank <= 8, a few numbers per quality figure, the generated project's
  file list (about a hundred short paths) and the source's name; tinygen writes a few
  KiB, so a larger file was not written by tinygen (and would be parsed whole into memory).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from tinygen.common.errors import TinygenError

MIB = 1 << 20
MODEL_LIMIT = 64 * MIB
DATA_LIMIT = 256 * MIB
CSV_LIMIT = 64 * MIB
MANIFEST_LIMIT = 1 * MIB


class UserFileError(TinygenError):
    """A file refused before or while reading it; ``reason`` says why in a few words
    (for a caller that puts it in its own sentence)."""

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


def _what(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def _refuse_size(path: Path, kind: str, size: int, limit: int) -> TinygenError:
    return UserFileError(f"{kind} {path} is {size / MIB:.1f} MiB, over tinygen's {limit // MIB} MiB limit for "
                         f"{kind} files; use a smaller file",
                         f"{size / MIB:.1f} MiB, over tinygen's {limit // MIB} MiB limit")


def check_regular(path: str | Path, kind: str, limit: int) -> int:
    """Size of ``path`` (symlinks resolved) if it is a regular file within ``limit``; else TinygenError."""
    p = Path(path)
    try:
        st = os.stat(p)  # follows symlinks: a link to /dev/zero is judged as /dev/zero
    except FileNotFoundError:
        raise UserFileError(f"{kind} {p} does not exist; check the path", "missing") from None
    except OSError as exc:
        raise UserFileError(f"{kind} {p} cannot be read ({exc.strerror}); check the path and its permissions",
                            f"cannot be read: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise UserFileError(f"{kind} {p} is {_what(st.st_mode)}; pass a regular file", _what(st.st_mode))
    if st.st_size > limit:
        raise _refuse_size(p, kind, st.st_size, limit)
    return st.st_size


def read_user_file(path: str | Path, kind: str, limit: int) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes, or a one-line TinygenError (exit 2).

    ``kind`` names the file in messages ("model", "data file").  The file is opened
    non-blocking and checked again on the open descriptor, so a FIFO swapped in after
    :func:`check_regular` cannot block the open.
    """
    p = Path(path)
    check_regular(p, kind, limit)
    try:
        fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise UserFileError(f"{kind} {p} cannot be opened ({exc.strerror}); check the path and its permissions",
                            f"cannot be opened: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UserFileError(f"{kind} {p} is {_what(st.st_mode)}; pass a regular file", _what(st.st_mode))
        chunks, total = [], 0
        while total <= limit:
            chunk = os.read(fd, min(1 * MIB, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        if total > limit:
            raise _refuse_size(p, kind, total, limit)
        return b"".join(chunks)
    except OSError as exc:
        raise UserFileError(f"{kind} {p} cannot be read ({exc.strerror})", f"cannot be read: {exc.strerror}") \
            from None
    finally:
        os.close(fd)


def copy_user_tree(src: str | Path, dest: Path, kind: str, limit: int) -> None:
    """Copy a directory (a SavedModel) of regular files, at most ``limit`` bytes in all, into ``dest``.

    The child that loads it then reads only our private copy: no FIFO, device or link
    out of the tree can reach TensorFlow's readers.
    """
    root = Path(src)
    inside = os.path.realpath(root)
    total = 0
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        here = Path(dirpath)
        for d in dirnames:
            if os.path.islink(here / d):
                raise TinygenError(f"{kind} {root} contains a symlink {here / d}; pass a SavedModel of plain "
                                   "files and directories")
        dirnames.sort()
        out = dest / here.relative_to(root)
        out.mkdir(parents=True, exist_ok=True)
        for name in sorted(filenames):
            # a file link may point within the tree (then it is read as that file), never out of it
            if os.path.islink(here / name) and \
                    os.path.commonpath([inside, os.path.realpath(here / name)]) != inside:
                raise TinygenError(f"{kind} {root} contains a symlink {here / name} to a file outside it; pass a "
                                   "SavedModel of plain files and directories")
            data = read_user_file(here / name, kind, limit)
            total += len(data)
            if total > limit:
                raise TinygenError(f"{kind} {root} holds more than tinygen's {limit // MIB} MiB limit for "
                                   f"{kind} files; use a smaller model")
            (out / name).write_bytes(data)
