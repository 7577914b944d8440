"""tinygen's build cache (issue 29): what a build reuses never changes what it writes.

The proof is byte-identity: every generated file of a build that reused the cache hashes the same as
the files of a build that computed everything (``--no-cache``), and the same holds when the cache
holds a damaged entry, cannot be written, or is written by two builds at once.  Each test gets its
own cache directory (TINYGEN_CACHE_DIR) beside the session's TINYGEN_HOME, so emulated projects name
the same PlatformIO home and compare byte for byte.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import run_cli

ALL_FOUR = "reused: trained recipe model, int8 conversion, arena measurement, reference outputs"


def tree_hash(project: Path) -> dict[str, str]:
    """sha256 of every generated file, by relative path."""
    return {p.relative_to(project).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(project.rglob("*")) if p.is_file() and ".pio" not in p.parts}


def build(cache: Path, board: str, out: Path, *extra: str):
    res = run_cli("build", "--board", board, "--out", str(out), *extra, env={"TINYGEN_CACHE_DIR": str(cache)})
    assert res.returncode == 0, f"{res.stdout}\n{res.stderr}"
    return res


def cache_lines(res) -> list[str]:
    return [ln for ln in res.stderr.splitlines() if "cache" in ln.lower()]


def entries(cache: Path) -> dict[str, int]:
    return {k: len(list((cache / k).glob("*/*.entry"))) for k in ("recipe", "convert", "arena", "reference")}


@pytest.fixture(scope="module")
def warm(tmp_path_factory):
    """One cold build of the sine recipe for qemu-m4 into a fresh cache: the project and the cache."""
    d = tmp_path_factory.mktemp("cache")
    cache = d / "cache"
    res = build(cache, "qemu-m4", d / "cold")
    assert "reused" not in res.stdout and not cache_lines(res)
    assert entries(cache) == {"recipe": 1, "convert": 1, "arena": 1, "reference": 1}
    return {"dir": d, "cache": cache, "cold": tree_hash(d / "cold")}


def test_second_board_reuses_everything_and_writes_what_no_cache_writes(warm, tmp_path):
    cache = warm["cache"]
    hit = build(cache, "qemu-rv32", tmp_path / "hit")
    assert ALL_FOUR in hit.stdout
    assert not cache_lines(hit)
    before = entries(cache)
    fresh = build(cache, "qemu-rv32", tmp_path / "fresh", "--no-cache")
    assert "reused" not in fresh.stdout
    assert entries(cache) == before  # --no-cache neither reads nor writes
    assert tree_hash(tmp_path / "hit") == tree_hash(tmp_path / "fresh")
    # The reused int8 model is the cold build's, byte for byte, on another board.
    assert tree_hash(tmp_path / "hit")["model.tflite"] == warm["cold"]["model.tflite"]


def test_damaged_entry_is_said_once_recomputed_and_changes_nothing(warm, tmp_path):
    cache = tmp_path / "cache"
    shutil.copytree(warm["cache"], cache)
    (entry,) = (cache / "convert").glob("*/*.entry")
    blob = bytearray(entry.read_bytes())
    blob[-10] ^= 0x01  # one bit of the .tflite part
    entry.write_bytes(bytes(blob))
    res = build(cache, "qemu-m4", tmp_path / "out")
    lines = cache_lines(res)
    assert len(lines) == 1 and "damaged int8 conversion" in lines[0], res.stderr
    assert "reused: trained recipe model, arena measurement, reference outputs" in res.stdout
    assert tree_hash(tmp_path / "out") == warm["cold"]
    assert entry.read_bytes() != bytes(blob)  # rewritten whole
    again = build(cache, "qemu-m4", tmp_path / "again")
    assert ALL_FOUR in again.stdout and not cache_lines(again)


def test_truncated_entry_is_not_trusted(warm, tmp_path):
    cache = tmp_path / "cache"
    shutil.copytree(warm["cache"], cache)
    (entry,) = (cache / "reference").glob("*/*.entry")
    entry.write_bytes(entry.read_bytes()[:-7])
    res = build(cache, "qemu-m4", tmp_path / "out")
    assert len(cache_lines(res)) == 1 and "damaged reference outputs" in cache_lines(res)[0]
    assert tree_hash(tmp_path / "out") == warm["cold"]


def test_unwritable_cache_is_bypassed_with_one_warning(warm, tmp_path):
    # Root ignores permissions: a kind's directory that is a regular file cannot be written either way.
    cache = tmp_path / "cache"
    shutil.copytree(warm["cache"], cache, ignore=shutil.ignore_patterns("arena", "reference"))
    (cache / "arena").write_text("not a directory")
    (cache / "reference").write_text("not a directory")
    res = build(cache, "qemu-m4", tmp_path / "out")
    lines = cache_lines(res)
    assert len(lines) == 1 and "cannot be written" in lines[0], res.stderr
    assert tree_hash(tmp_path / "out") == warm["cold"]


def test_two_builds_at_once_into_one_cache(warm, tmp_path):
    """Both compute the arena and the reference and write the same entries at the same time."""
    cache = tmp_path / "cache"
    shutil.copytree(warm["cache"], cache, ignore=shutil.ignore_patterns("arena", "reference"))
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", TINYGEN_CACHE_DIR=str(cache))
    procs = [subprocess.Popen([sys.executable, "-m", "tinygen", "build", "--board", "qemu-m4", "--out",
                               str(tmp_path / f"out{i}")], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=env) for i in range(2)]
    for p in procs:
        stdout, stderr = p.communicate(timeout=600)
        assert p.returncode == 0, stderr
        assert "cache" not in stderr.lower()
    assert tree_hash(tmp_path / "out0") == tree_hash(tmp_path / "out1") == warm["cold"]
    assert entries(cache) == {"recipe": 1, "convert": 1, "arena": 1, "reference": 1}
    assert not [p for p in cache.rglob("*") if p.name.endswith(".tmp")]
    res = build(cache, "qemu-m4", tmp_path / "again")
    assert ALL_FOUR in res.stdout and not cache_lines(res)


def test_cache_info_and_clear(warm, tmp_path):
    cache = tmp_path / "cache"
    shutil.copytree(warm["cache"], cache)
    env = {"TINYGEN_CACHE_DIR": str(cache)}
    res = run_cli("cache", "info", "--json", env=env)
    assert res.returncode == 0, res.stderr
    info = json.loads(res.stdout)
    assert Path(info["path"]) == cache
    assert {k: v["entries"] for k, v in info["kinds"].items()} == {"arena": 1, "convert": 1, "recipe": 1,
                                                                  "reference": 1}
    assert info["bytes"] == sum(p.stat().st_size for p in cache.rglob("*.entry"))
    res = run_cli("cache", "clear", env=env)
    assert res.returncode == 0 and "removed 4 entries" in res.stdout, res.stdout + res.stderr
    assert not list(cache.rglob("*.entry"))
    assert json.loads(run_cli("cache", "info", "--json", env=env).stdout)["entries"] == 0


def test_store_round_trip_and_every_damage_is_refused(tmp_path, monkeypatch):
    """The store itself, in process: a whole entry comes back, any cut or flipped byte does not."""
    from tinygen.common import cache

    monkeypatch.setenv("TINYGEN_CACHE_DIR", str(tmp_path))
    parts = {"a.bin": bytes(range(256)) * 3, "b.json": b'{"x": 1}'}
    k = cache.key("arena", {"model": cache.digest(b"m")})
    with cache.session() as s:
        assert cache.get("arena", k) is None
        cache.put("arena", k, parts)
        assert cache.get("arena", k) == parts and s.hits == ["arena"]
    (path,) = tmp_path.glob("arena/*/*.entry")
    good = path.read_bytes()
    for bad in (good[:-1], good[:20], good + b"x", good.replace(b'"key": "', b'"key": "0', 1),
                good[:-5] + bytes([good[-5] ^ 0x80]) + good[-4:], b""):
        path.write_bytes(bad)
        with cache.session() as s:
            assert cache.get("arena", k) is None
            assert len(s.warnings) == 1 and not s.hits
        assert not path.exists()
    with cache.session(enabled=False):
        cache.put("arena", k, parts)
    assert not path.exists()
    # A cache path that is a regular file: nothing is read, the first write says so once, no more.
    monkeypatch.setenv("TINYGEN_CACHE_DIR", str(tmp_path / "file"))
    (tmp_path / "file").write_text("x")
    with cache.session() as s:
        assert cache.get("arena", k) is None
        cache.put("arena", k, parts)
        cache.put("reference", k, parts)
        assert len(s.warnings) == 1 and "cannot be written" in s.warnings[0]
    assert (tmp_path / "file").read_text() == "x"
    # Another key for other inputs, versions or code.
    assert k != cache.key("arena", {"model": cache.digest(b"n")}) != cache.key("reference", {"model": cache.digest(b"m")})
