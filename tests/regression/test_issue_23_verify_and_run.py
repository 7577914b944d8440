"""Issue 23 item 8: the device commands' loose ends.

* `tinygen verify --project P` on an emulated project needed the pty of a `tinygen flash` running in
  another terminal; now it builds the firmware and boots QEMU itself, as `run --project` does.
  Fails before the fix: a usage error asking for --port or --place.
* `tinygen run` a second time on the same board asked for --force and nothing else; the refusal
  now names `tinygen run --project DIR`.  Fails before the fix: the hint is missing.
* `tinygen run` lacked build's options (--prune, --qat, --fit, ...): declared once now, for both
  commands.  Fails before the fix: click refuses --prune as an unknown option.
"""

from __future__ import annotations

import json
import shlex

import pytest

import tinygen
from conftest import assert_one_line_error, require_tool, run_cli


@pytest.fixture(scope="module")
def sine(tmp_path_factory):
    out = tmp_path_factory.mktemp("issue23-run") / "sine"
    tinygen.build(recipe="sine", board="qemu-m4", out=out, epochs=2, seed=7, vectors=4)
    return out


def test_verify_boots_qemu_itself_on_an_emulated_project(sine):
    require_tool("arm-none-eabi-gcc")
    require_tool("qemu-system-arm")
    res = run_cli("verify", "--project", str(sine), "--vectors", "2", "--json", timeout=600)
    assert res.returncode == 0, res.stderr
    m = json.loads(res.stdout)["metrics"]
    assert m["passed"] and m["max_abs_diff_lsb"] == 0 and m["vectors"] == 4 + 2


def test_verify_wants_a_port_or_a_place_for_a_real_board(sine, tmp_path):
    man = json.loads((sine / "tinygen.json").read_text())
    man["board"] = "nano33ble"
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "tinygen.json").write_text(json.dumps(man))
    res = run_cli("verify", "--project", str(tmp_path / "real"))
    assert_one_line_error(res, "nano33ble is a real board: give --port", "--place", code=2)


def test_run_again_names_run_project_and_takes_builds_options(sine):
    res = run_cli("run", "--recipe", "sine", "--out", str(sine))
    line = assert_one_line_error(res, "already exists", "--force", code=2)
    assert f"tinygen run --project {shlex.quote(str(sine))}" in line
    res = run_cli("run", "--project", str(sine), "--prune", "0.5")
    assert_one_line_error(res, "--prune is a build option", code=2)
    # the same declarations: every build option is a run option, with the same help
    from tinygen.cli.device import run_cmd
    from tinygen.cli.main import build_cmd

    run_opts = {p.name: p.help for p in run_cmd.params}
    shared = {p.name: p.help for p in build_cmd.params if p.name not in ("board", "n_vectors", "seed", "as_json")}
    assert {"prune", "qat", "distill", "fit", "fit_board", "fit_widths", "task", "epochs"} <= set(shared)
    assert {k: run_opts.get(k) for k in shared} == shared
