"""A non-editable install must carry templates/, firmware/ and boards/."""

from __future__ import annotations

import subprocess
import sys
import zipfile

from conftest import REPO


def test_wheel_contains_templates_firmware_and_boards(tmp_path):
    res = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                          "-w", str(tmp_path), str(REPO)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    wheel = next(tmp_path.glob("tinygen-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for tracked in subprocess.run(["git", "ls-files", "templates", "firmware", "boards"], cwd=REPO,
                                  capture_output=True, text=True).stdout.split():
        assert f"tinygen/{tracked}" in names, tracked
    assert "tinygen/cli/main.py" in names
    # the pytest plugin ships, and pytest finds it through the wheel's entry point
    assert "tinygen/testing/pytest_plugin.py" in names
    eps = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "[pytest11]\ntinygen = tinygen.testing.pytest_plugin" in zipfile.ZipFile(wheel).read(eps).decode()
    # And the installed package finds them through tinygen.common.paths
    target = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(target)
    code = ("import tinygen.common.paths as p; print(p.templates_dir()); print(p.firmware_dir()); print(p.boards_dir())")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env={"PYTHONPATH": str(target)},
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    for line in out.stdout.split():
        assert line.startswith(str(target)), line
