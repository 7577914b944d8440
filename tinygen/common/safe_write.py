"""The one way tinygen writes a file: atomically, never through a symbolic link, inside a root.

Every file tinygen leaves for the user (project files, reports, charts, JSON) goes through
:func:`write_file`.  The bytes go into a new temp file in the target's own directory (created with
O_EXCL | O_NOFOLLOW, so no existing file or link is ever opened), are fsynced, and the temp file is
renamed onto the target's name.  A reader sees the old file or the new one, never half of one; a
failure leaves the old file and no temp file.

``root`` is the directory the file must stay inside (the project, or a report directory the user
named).  The root itself is the user's choice and may be reached through links; below it, tinygen
follows a symbolic link to a directory only when it leads to a place inside the root, and refuses
(one line) one that leads outside.  The directories are then opened one by one from the root with
O_NOFOLLOW along the resolved path, so a link swapped in after the check is refused too, not
followed.

A symbolic link *at the target's name* is replaced by the new regular file: the rename swaps the
directory entry and never opens what the link points to, so the link's target is untouched.
Refusing instead would lose a report over a name that is tinygen's own (reports/verify.md).
"""

from __future__ import annotations

import errno
import os
import secrets
import stat
from pathlib import Path

from tinygen.common.errors import TinygenError
from tinygen.common.escape import terminal

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def _shown(path) -> str:
    return terminal(str(path))


def _outside(root: Path, parent: Path) -> TinygenError:
    """The refusal for a parent directory that leads outside ``root``, naming the link on the way."""
    probe = root
    try:
        rel_parts = Path(os.path.abspath(parent)).relative_to(os.path.abspath(root)).parts
    except ValueError:
        rel_parts = ()
    for part in rel_parts:
        probe = probe / part
        if probe.is_symlink():
            return TinygenError(f"refusing to write into {_shown(probe)}: it is a symbolic link leading outside "
                                f"{_shown(root)}; remove the link or choose another directory")
    return TinygenError(f"refusing to write into {_shown(parent)}: it is outside {_shown(root)}; "
                        "choose a directory inside it")


def _is_link(name: str, dir_fd: int) -> bool:
    try:
        return stat.S_ISLNK(os.lstat(name, dir_fd=dir_fd).st_mode)
    except OSError:
        return False


def _open_dir_chain(real_root: str, parts: tuple[str, ...], root: Path, parent: Path) -> int:
    """A file descriptor of ``real_root/parts...``, each level opened without following a link
    (missing levels are created, mode 0777 less the umask)."""
    fd = os.open(real_root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in parts:
            try:
                try:
                    nxt = os.open(part, _DIR_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    try:
                        os.mkdir(part, 0o777, dir_fd=fd)
                    except FileExistsError:
                        pass  # made meanwhile, or a dangling link: the open below refuses it
                    nxt = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                # A link swapped in after the check (Linux says ENOTDIR for O_DIRECTORY | O_NOFOLLOW on
                # a link, others ELOOP): refused, never followed.  A plain file in the way stays ENOTDIR.
                if exc.errno == errno.ELOOP or (exc.errno == errno.ENOTDIR and _is_link(part, fd)):
                    raise _outside(root, parent) from None
                raise
            os.close(fd)
            fd = nxt
    except BaseException:
        os.close(fd)
        raise
    return fd


def write_file(path: str | Path, data: bytes, *, root: str | Path | None = None) -> Path:
    """Write ``data`` to ``path`` atomically, inside ``root`` (default: the file's own directory).

    Raises TinygenError (one line) when the file's directory leads outside ``root`` through a
    symbolic link, and OSError when the file system says no (the caller words that)."""
    path = Path(path)
    name = path.name
    if name in ("", ".", ".."):
        raise ValueError(f"not a file name: {path!r}")
    root = Path(root) if root is not None else path.parent
    os.makedirs(root, exist_ok=True)  # the root is the user's choice: links to it are followed
    real_root = os.path.realpath(root)
    real_parent = os.path.realpath(path.parent)
    if real_parent != real_root and not real_parent.startswith(real_root.rstrip(os.sep) + os.sep):
        raise _outside(root, path.parent)
    parts = Path(real_parent).relative_to(real_root).parts
    dfd = _open_dir_chain(real_root, parts, root, path.parent)
    try:
        tmp = None
        for _ in range(100):
            candidate = f".{name[:40]}.tmp-{secrets.token_hex(4)}"
            try:
                fd = os.open(candidate, _NEW_FILE_FLAGS, 0o666, dir_fd=dfd)
            except FileExistsError:
                continue
            tmp = candidate
            break
        if tmp is None:
            raise FileExistsError(errno.EEXIST, "no free temporary name", str(path.parent))
        try:
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            finally:
                os.close(fd)
            # Renames the entry: a link at `name` is replaced, never followed (see the module doc).
            os.replace(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
            tmp = None
        finally:
            if tmp is not None:
                try:
                    os.unlink(tmp, dir_fd=dfd)
                except OSError:
                    pass
        try:
            os.fsync(dfd)  # the rename itself survives a crash
        except OSError:
            pass  # some file systems cannot fsync a directory; the rename is still atomic
    finally:
        os.close(dfd)
    return path


def write_text(path: str | Path, text: str, *, root: str | Path | None = None) -> Path:
    """:func:`write_file` of ``text`` as UTF-8."""
    return write_file(path, text.encode("utf-8"), root=root)
