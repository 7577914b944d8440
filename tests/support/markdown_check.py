"""Markdown as a reader sees it: every .md tinygen writes is parsed with a real CommonMark parser
(markdown-it-py, which rich depends on, with GitHub's table extension) instead of looked at as text.

* :func:`check_tables`: every table row keeps the columns of its header.  markdown-it, like GitHub,
  silently drops the cells beyond the header's count (``| max |Δ| | 0 LSB |`` under a two-column
  header shows "max" and "Δ": the figure is gone), so each row's source line is split on its
  unescaped pipes, as GFM splits it, and must give exactly the header's count.
* :func:`code_lines`: the lines inside fenced or indented code blocks; :func:`prose_lines`: the
  text of every paragraph, heading and table cell, where a command would be shown as prose.
"""

from __future__ import annotations

import re

from markdown_it import MarkdownIt

_PIPE = re.compile(r"(?<!\\)\|")


def parse(text: str):
    return MarkdownIt("commonmark").enable("table").parse(text)


def _cells_in_source(line: str) -> int:
    body = line.strip()
    if body.startswith("|"):
        body = body[1:]
    if body.endswith("|") and not body.endswith("\\|"):
        body = body[:-1]
    return len(_PIPE.split(body))


def _text(inline) -> str:
    """What a reader sees of an inline token: its text and code spans, escapes resolved."""
    out = []
    for child in inline.children or ():
        if child.type in ("text", "code_inline", "text_special"):
            out.append(child.content)
        elif child.type in ("softbreak", "hardbreak"):
            out.append(" ")
    return "".join(out)


def tables(text: str) -> list[list[list[str]]]:
    """Every table as rows of cell texts as a reader sees them (the header row first)."""
    found, rows, row = [], None, None
    for tok in parse(text):
        if tok.type == "table_open":
            rows = []
        elif tok.type == "tr_open":
            row = []
        elif tok.type == "inline" and row is not None:
            row.append(_text(tok))
        elif tok.type == "tr_close":
            rows.append(row)
            row = None
        elif tok.type == "table_close":
            found.append(rows)
            rows = None
    return found


def check_tables(text: str, where: str) -> int:
    """Assert that every table row's source line has the header's number of cells; return how many
    tables there are."""
    lines = text.splitlines()
    n_tables, width = 0, None
    for tok in parse(text):
        if tok.type == "table_open":
            n_tables += 1
            width = None
        elif tok.type == "tr_open" and tok.map:
            line = lines[tok.map[0]]
            cells = _cells_in_source(line)
            if width is None:
                width = cells
            assert cells == width, (f"{where}, line {tok.map[0] + 1}: {cells} cells in a table of {width} "
                                    f"columns (an unescaped '|'?): {line!r}")
    return n_tables


def code_lines(text: str) -> list[str]:
    """The lines of every fenced or indented code block, in order."""
    return [ln for tok in parse(text) if tok.type in ("fence", "code_block") for ln in tok.content.splitlines()]


def code_blocks(text: str) -> list[tuple[str, str]]:
    """(info string, content) of every fenced or indented code block ("" info for an indented one)."""
    return [(tok.info.strip() if tok.type == "fence" else "", tok.content)
            for tok in parse(text) if tok.type in ("fence", "code_block")]


def prose_lines(text: str) -> list[str]:
    """The source lines of paragraphs, headings and table cells (what is not code)."""
    return [ln for tok in parse(text) if tok.type == "inline" for ln in tok.content.splitlines()]
