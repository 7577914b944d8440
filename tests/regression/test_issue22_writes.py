"""Issue 22, items 3 and 4 and part of 8: how tinygen writes files.

3. Reports followed symbolic links: ``ln -s ~/victim p/reports/verify.md; tinygen run --project p``
   overwrote the victim, and a ``reports`` directory linked outside the project received the reports.
   Every file tinygen writes now goes through tinygen.common.safe_write (temp file with
   O_EXCL | O_NOFOLLOW in the target's directory, fsync, rename; directories opened with O_NOFOLLOW
   from the project down; a link leading outside refused in one line).
4. ``--force`` deleted the user's files in reports/ and .pio/ (exit 0).  It now replaces exactly the
   files the previous manifest lists (tinygen.json "files") and keeps reports/ and .pio/.
8. ``build --out . --force`` inside the project failed with "Device or resource busy" (it renamed
   the current directory away).  --force now swaps the entries inside the project instead.

Each case failed before the fix (checked by running this file against the tinygen of the commit
before it, from ``git archive``, with PYTHONPATH pointing at that copy): the victims were
overwritten, the outside directory received verify.json/.md/.png, notes.txt and .pio/ were gone,
and ``--out .`` exited 1 with "Device or resource busy".
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from conftest import require_tool, run_cli


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A real qemu-m4 project of a hand-written five-op model (no training), compiled runtime."""
    from support.flat_model import build_base

    d = tmp_path_factory.mktemp("issue22")
    (d / "m.tflite").write_bytes(build_base())
    res = run_cli("build", "--board", "qemu-m4", "--runtime", "compiled", "--model", str(d / "m.tflite"),
                  "--vectors", "2", "--out", str(d / "p"))
    assert res.returncode == 0, res.stderr
    return d / "p"


def _generated(project: Path) -> dict[str, bytes]:
    """What tinygen build wrote: every file outside reports/ and .pio/ (a verify and a flash ran in it)."""
    return {p.relative_to(project).as_posix(): p.read_bytes() for p in project.rglob("*")
            if p.is_file() and p.relative_to(project).parts[0] not in ("reports", ".pio")}


def _copy(project: Path, dest: Path) -> Path:
    shutil.copytree(project, dest, ignore=shutil.ignore_patterns(".pio", "reports"), symlinks=True)
    return dest


# ------------------------------------------------------------------ item 3: no link followed

def _need_qemu():
    require_tool("qemu-system-arm")
    require_tool("arm-none-eabi-gcc")


def test_run_replaces_a_report_link_and_never_writes_its_victim(project, tmp_path):
    _need_qemu()
    reports = project / "reports"
    reports.mkdir(exist_ok=True)
    victims = {}
    for name in ("verify.md", "verify.json", "verify.png"):
        victim = tmp_path / f"victim-{name}"
        victim.write_text("the user's own file\n")
        (reports / name).unlink(missing_ok=True)
        (reports / name).symlink_to(victim)
        victims[victim] = victim.read_text()
    res = run_cli("run", "--project", str(project), timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    for victim, text in victims.items():
        assert victim.read_text() == text
    for name in ("verify.md", "verify.json", "verify.png"):
        assert not (reports / name).is_symlink() and (reports / name).is_file()
    assert json.loads((reports / "verify.json").read_text())["metrics"]["passed"] is True
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(v.name for v in victims)  # no temp file there
    assert not [p for p in reports.iterdir() if ".tmp-" in p.name]


def test_run_refuses_a_reports_directory_linked_outside(project, tmp_path):
    _need_qemu()
    outside = tmp_path / "outside"
    outside.mkdir()
    reports = project / "reports"
    if reports.is_symlink() or reports.is_file():
        reports.unlink()
    elif reports.exists():
        shutil.rmtree(reports)
    reports.symlink_to(outside, target_is_directory=True)
    try:
        res = run_cli("run", "--project", str(project), timeout=300)
    finally:
        reports.unlink()
    assert list(outside.iterdir()) == []
    out = res.stdout + res.stderr
    assert "Traceback" not in out
    assert "symbolic link" in out and "reports" in out, out


def test_a_link_to_a_directory_inside_the_project_is_followed(tmp_path):
    from tinygen.common.safe_write import write_file

    root = tmp_path / "p"
    (root / "kept").mkdir(parents=True)
    (root / "reports").symlink_to("kept", target_is_directory=True)
    write_file(root / "reports" / "r.md", b"inside", root=root)
    assert (root / "kept" / "r.md").read_bytes() == b"inside"


def test_a_link_swapped_in_is_not_followed_even_when_the_check_passed(tmp_path, monkeypatch):
    """The directories are opened with O_NOFOLLOW along the path that was checked: a link put in its
    place after the check (a race) is refused, not followed."""
    from tinygen.common import safe_write
    from tinygen.common.errors import TinygenError

    root, outside = tmp_path / "p", tmp_path / "outside"
    (root / "reports").mkdir(parents=True)
    outside.mkdir()
    real = os.path.realpath

    def realpath_then_swap(p, *a, **kw):
        r = real(p, *a, **kw)
        if Path(p) == root / "reports" and not (root / "reports").is_symlink():
            (root / "reports").rmdir()
            (root / "reports").symlink_to(outside, target_is_directory=True)
        return r

    monkeypatch.setattr(safe_write.os.path, "realpath", realpath_then_swap)
    with pytest.raises(TinygenError, match="symbolic link"):
        safe_write.write_file(root / "reports" / "verify.md", b"x", root=root)
    assert list(outside.iterdir()) == []


# ------------------------------------------------------------------ item 4: --force keeps user files

def test_force_keeps_user_files_in_reports_and_pio(project, tmp_path):
    from tinygen.codegen.project import write_project

    target = _copy(project, tmp_path / "p")
    (target / "reports").mkdir()
    (target / "reports" / "notes.txt").write_text("my notes\n")
    (target / ".pio" / "build" / "qemu-m4").mkdir(parents=True)
    (target / ".pio" / "build" / "qemu-m4" / "firmware.elf").write_bytes(b"\x7fELF kept")
    (target / "README.md").write_text("old")
    files = _generated(project)
    write_project(files, target, force=True)
    assert (target / "reports" / "notes.txt").read_text() == "my notes\n"
    assert (target / ".pio" / "build" / "qemu-m4" / "firmware.elf").read_bytes() == b"\x7fELF kept"
    assert (target / "README.md").read_bytes() == files["README.md"]
    assert sorted(p.name for p in target.iterdir()) == sorted({p.split("/")[0] for p in files} | {"reports", ".pio"})


def test_force_removes_exactly_what_the_previous_manifest_lists(project, tmp_path):
    from tinygen.codegen.project import write_project

    target = _copy(project, tmp_path / "p")
    man = json.loads((target / "tinygen.json").read_text())
    man.setdefault("files", sorted(_generated(project))).append("src/tg_obsolete.c")  # by an older tinygen
    (target / "tinygen.json").write_text(json.dumps(man))
    (target / "src" / "tg_obsolete.c").write_text("/* old */\n")
    files = _generated(project)
    write_project(files, target, force=True)
    assert not (target / "src" / "tg_obsolete.c").exists()
    assert {p.relative_to(target).as_posix(): p.read_bytes() for p in target.rglob("*") if p.is_file()} == files


# ------------------------------------------------------------------ item 8: --out . from inside

def test_build_out_dot_force_inside_the_project(project, tmp_path):
    target = _copy(project, tmp_path / "p")
    (target / "reports").mkdir()
    (target / "reports" / "notes.txt").write_text("my notes\n")
    (target / "README.md").write_text("old")
    res = run_cli("build", "--board", "qemu-m4", "--runtime", "compiled", "--model", "model.tflite",
                  "--vectors", "2", "--out", ".", "--force", cwd=target)
    assert res.returncode == 0, res.stderr
    assert (target / "README.md").read_text() != "old"
    new, old = (json.loads((d / "tinygen.json").read_text()) for d in (target, project))
    assert (new["files"], new["model_sha256"]) == (old["files"], old["model_sha256"])
    assert (target / "reports" / "notes.txt").read_text() == "my notes\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p"]
    assert not [p for p in target.iterdir() if p.name.startswith(".tinygen-")]
