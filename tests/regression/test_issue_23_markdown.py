"""Issue 23 item 4: Markdown that rendered wrong, now read by a real Markdown parser.

verify.md's row ``| max |Δ| | 0 LSB |`` had four cells under a two-column header, so the key figure
vanished; every generated real-board README ran its build/flash/verify commands into one paragraph
(``{%- else -%}`` in templates/README.md.j2 stripped the indent that made them a code block).  Both
fail before the fix (commit d5c715b, where the fix landed).  verify.md (with its --layers and --profile sections), profile.md
and a generated README are parsed with markdown-it-py (CommonMark + GitHub tables,
tests/support/markdown_check.py): every table row keeps its header's columns, every command is in a code
block.  The emulated board's README and a real verify.md are checked on a real project in
tests/test_readme_commands.py.
"""

from __future__ import annotations

import numpy as np

from support.markdown_check import check_tables, code_blocks, code_lines, prose_lines, tables

# A hostile name in every place user or board text reaches a Markdown file.
HOSTILE = "m|x *y* `z` [l](u) <b>"
COMMAND_STARTS = ("pio ", "tinygen ", "qemu-system-", "cd ")


def _cells(text: str) -> dict[str, str]:
    """{first cell: second cell} over every table row with at least two cells."""
    return {row[0]: row[1] for table in tables(text) for row in table if len(row) >= 2}


def _profile(runtime: str, types: list[str]) -> dict:
    ops = [{"op": i, "type": t, "ticks": 10 * (i + 1), "value": 400.0 * (i + 1), "share_pct": 0.0}
           for i, t in enumerate(types)]
    return {"runtime": runtime, "unit": "instructions (emulated)", "tick_hz": 25_000_000,
            "total": sum(o["value"] for o in ops), "ops": ops}


def test_verify_md_keeps_every_cell_and_the_key_figure(tmp_path):
    """The row `| max |Δ| | 1 LSB |` had four cells under a two-column header, so the figure vanished."""
    from tinygen.verification.layers import markdown_section as layers_md
    from tinygen.verification.profile import markdown_section as profile_md
    from tinygen.verification.verify import metrics, write_reports

    man = {"name": HOSTILE, "model_sha256": "ab" * 32, "output": {"scale": 0.05, "zero_point": 3},
           "task": "regression"}
    ref = np.array([[10], [20], [30], [40]], dtype=np.int8)
    board = ref.copy()
    board[2, 0] = 31  # one output off by 1 LSB: the figure the table must show
    m = metrics(board, ref, man, float_out=None, labels=None, ticks=[50, 52, 51, 50], tick_hz=25_000_000,
                instr_per_tick=40, tolerance=0, seconds=0.25)
    result = {"metrics": m, "board": "qemu-m4", "runtime": "compiled", "port": "/dev/pts/9|x"}
    layers = {"vector": 2, "ops_compared": 2, "ops_reported": 2, "ops_in_model": 2, "divergence": {
        "op": 1, "type": "FULLY|CONNECTED", "tensor": 5, "tensor_name": HOSTILE, "shape": [1, 1], "dtype": "int8",
        "output_quantization": {"scale": 0.05, "zero_point": 3}, "fused_activation": "NONE",
        "max_abs_diff_lsb": 1, "differing_elements": 1, "elements": 1,
        "first_difference": {"element": 0, "board": 31, "reference": 30}, "diagnosis": "off by one"}}
    extra = layers_md(layers) + profile_md([_profile("compiled", ["FULLY_CONNECTED", "SOFT|MAX"])], "profile.png")
    paths = write_reports(tmp_path / "reports", result, board, ref, {"inputs": np.zeros((4, 1), np.int8)}, man,
                          extra_md=extra)
    text = (tmp_path / "reports" / "verify.md").read_text()

    assert check_tables(text, "verify.md") == 2  # the metrics and the per-op profile
    cells = _cells(text)
    assert cells["max |Δ|"] == "1 LSB"
    assert cells["port"] == "/dev/pts/9|x"
    assert cells["exact match"] == "75.00 %"
    profile_rows = [row for table in tables(text) for row in table if row[0].startswith("#")]
    assert [row[1] for row in profile_rows] == ["SOFT|MAX", "FULLY_CONNECTED"]  # slowest first, type intact
    assert all(len(row) == 4 for row in profile_rows)  # op, type, value, share
    assert paths["markdown"].endswith("verify.md")
    # user text stays text: no emphasis, link, code span or HTML made from the model's name
    heading = text.splitlines()[0]
    assert HOSTILE in "".join(prose_lines(heading)).replace("\\", "")


def test_profile_md_side_by_side_keeps_its_columns(tmp_path):
    from tinygen.verification.profile import write_side_by_side

    profiles = [_profile("compiled", ["CONV_2D", "A|B"]), _profile("tflm|x", ["CONV_2D", "A|B"])]
    paths = write_side_by_side(tmp_path, profiles, f"{HOSTILE} on qemu-m4")
    text = open(paths["markdown"], encoding="utf-8").read()
    assert check_tables(text, "profile.md") == 1
    (table,) = tables(text)
    assert table[0] == ["op", "type", "compiled (instructions (emulated))", "tflm|x (instructions (emulated))"]
    assert [row[1] for row in table[1:-1]] == ["A|B", "CONV_2D"]


def test_real_board_readme_shows_its_commands_in_code_blocks(sine_project):
    """The esp32 README's build/flash/verify commands rendered as one paragraph: `{%- else -%}` in
    templates/README.md.j2 stripped the indent that made them a code block."""
    text = (sine_project / "README.md").read_text(encoding="utf-8")
    check_tables(text, "README.md")
    code = code_lines(text)
    for command in ("pio run", "pio run -t upload", "tinygen verify --project . --port auto",
                    "pio run -e esp32_example -t upload && pio device monitor -b 115200"):
        assert any(line.split("#")[0].strip() == command for line in code), (command, code)
    prose = [ln.strip() for ln in prose_lines(text)]
    assert not [ln for ln in prose if ln.startswith(COMMAND_STARTS)], "a command outside a code block"
    assert all(info in ("sh", "c") for info, _ in code_blocks(text))  # every block says its language
    assert {"ops", "parameters", "model bytes"} <= set(_cells(text))
