"""The only writer of generated projects: render into a temp dir beside the target, then rename.

A failure at any point leaves the target as it was (absent, or the old project
when ``--force`` replaces one only after the new one is complete).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from tinygen.errors import TinygenError


def write_project(files: dict[str, bytes], out: Path, force: bool = False) -> Path:
    out = Path(out)
    if out.exists() and not force:
        raise TinygenError(f"output directory {out} already exists; pass --force to replace it "
                           "or choose another --out")
    if out.exists() and not out.is_dir():
        raise TinygenError(f"{out} exists and is not a directory; choose another --out")
    if out.exists() and any(out.iterdir()) and not (out / "tinygen.json").exists():
        # --force replaces tinygen projects, never an unrelated directory.
        raise TinygenError(f"{out} exists and is not a tinygen project; refusing to replace it even with "
                           "--force; choose another --out")
    parent = out.resolve().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TinygenError(f"cannot create {parent}: {exc.strerror}") from None
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=parent))
    try:
        for rel, data in sorted(files.items()):
            p = tmp / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(data)
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=parent))
            os.replace(out, old / "p")
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise TinygenError(f"could not write {out}: {exc.strerror or exc}") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def load_manifest(project: Path) -> dict:
    p = Path(project) / "tinygen.json"
    if not p.exists():
        raise TinygenError(f"{project} is not a tinygen project (no tinygen.json); "
                           "create one with 'tinygen build'")
    try:
        return json.loads(p.read_text())
    except json.JSONDecodeError as exc:
        raise TinygenError(f"{p} is corrupt ({exc}); rebuild the project with 'tinygen build --force'") from None
