"""Every place user text (file names, tensor names, paths) lands in output, one function per context.

User text is hostile: a model file name may hold a newline and ``[env:x]``, a tensor name ``*/``,
a path ``${...}``.  Each function here returns text that cannot leave its context (end a comment,
start an ini section, run markup) or raises :class:`UnsafeText` when changing the text would
change its meaning (a path PlatformIO must open as given).  Templates get them as jinja2 filters
(tinygen/codegen/render.py); nothing else formats user text into code or configuration.
"""

from __future__ import annotations

import json
import re
import unicodedata

from tinygen.common.errors import UnsafeText

__all__ = ["UnsafeText", "c_comment", "c_string", "c_identifier", "ini_comment", "ini_value", "pio_path",
           "markdown", "json_text", "terminal", "rich_text"]


_PRINTABLE = re.compile(r"[^\x20-\x7e]")
# Pairs that would start or end a C comment, or form a trigraph (``??/`` is a backslash under -std=c99,
# which splices the next line into a ``//`` comment).
_C_COMMENT_PAIRS = {("*", "/"), ("/", "*"), ("?", "?"), ("/", "/")}


def _ascii_line(text: str, limit: int) -> str:
    """Printable ASCII only (everything else becomes '?'), one line, at most ``limit`` characters."""
    text = _PRINTABLE.sub("?", str(text))
    return text if len(text) <= limit else text[: limit - 3] + "..."


def c_comment(text: str, limit: int = 120) -> str:
    """Text for inside ``/* */`` or after ``//``: it can neither end the comment nor extend it.

    No newline, no backslash (line splice), no ``*/``, ``/*``, ``//`` or ``??`` (trigraphs):
    a space goes between such pairs; backslashes become '/'.
    """
    out: list[str] = []
    for ch in _ascii_line(text, limit).replace("\\", "/"):
        if out and (out[-1], ch) in _C_COMMENT_PAIRS:
            out.append(" ")
        out.append(ch)
    return "".join(out)


def c_string(text: str) -> str:
    """A C string literal (with the quotes) holding ``text`` as UTF-8 bytes, byte for byte."""
    parts = ['"']
    for b in str(text).encode("utf-8", "surrogateescape"):
        ch = chr(b)
        if ch in '"\\?':  # '?': no trigraphs
            parts.append("\\" + ch)
        elif 0x20 <= b < 0x7F:
            parts.append(ch)
        else:
            parts.append(f"\\{b:03o}")  # always 3 octal digits: the next character cannot join it
    parts.append('"')
    return "".join(parts)


def c_identifier(text: str, limit: int = 48) -> str:
    """A C identifier made from ``text``: [a-z0-9_], no leading digit, never empty."""
    ident = re.sub(r"[^0-9a-z_]", "_", str(text).lower())
    ident = re.sub(r"_+", "_", ident).strip("_") or "model"
    if ident[0].isdigit():
        ident = "m_" + ident
    return ident[:limit]


def ini_comment(text: str, limit: int = 160) -> str:
    """Text after ``;`` on a platformio.ini comment line: one line, printable ASCII, no ``$``."""
    return _ascii_line(text, limit).replace("$", "?")


_INI_INLINE_COMMENT = re.compile(r"\s[;#]")


def ini_value(text: str, what: str = "value") -> str:
    """A platformio.ini value, written so that PlatformIO reads back exactly ``text``.

    Refused (UnsafeText) when no spelling can do that safely: line breaks and control characters
    (new keys or sections), ``$`` (PlatformIO and SCons expand ``${...}``; SCons runs Python in it),
    a leading ``!`` (build_flags/build_unflags run it as a shell command), `` ;``/`` #`` (an inline
    comment cuts the value).  ``%`` is doubled for configparser's interpolation.
    """
    text = str(text)
    problem = None
    if terminal(text) != text:
        problem = "a line break or control character"
    elif "$" in text:
        problem = "'$' (PlatformIO and SCons would expand it)"
    elif text.lstrip().startswith("!"):
        problem = "a leading '!' (PlatformIO would run it as a shell command)"
    elif _INI_INLINE_COMMENT.search(text) or text.lstrip()[:1] in (";", "#"):
        problem = "';' or '#' after a space (platformio.ini would cut it off as a comment)"
    elif text != text.strip():
        problem = "leading or trailing spaces"
    if problem:
        raise UnsafeText(f"{what} {terminal(text)!r} contains {problem}; rename it")
    return text.replace("%", "%%")


def pio_path(path, what: str) -> str:
    """A path PlatformIO/SCons will be given (in platformio.ini or on its command line), as is.

    Paths are data: tinygen's dev platforms run every build command without a shell, one argv word
    per path (firmware/platformio/tinygen_argv.py), so spaces, quotes, ``;``, backticks, ``%``,
    ``&``, ``|``, ``<``, ``>``, parentheses and non-ASCII letters are all kept.  Refused, because no
    spelling survives: ``$`` (SCons substitutes ``$NAME``/``${...}``, Python expressions included,
    in every path PlatformIO hands it, and PlatformIO offers no escape) and line breaks or other
    control characters (they split platformio.ini values and build logs).
    """
    text = str(path)
    if "$" in text or terminal(text) != text:
        raise UnsafeText(f"{what} {terminal(text)!r} contains '$' or a control character, which "
                         "PlatformIO/SCons would interpret; use a path without them")
    return text


def markdown(text: str, limit: int = 200) -> str:
    """Inline Markdown text (never at the start of a line) that renders as itself: one line, and every
    character that could start emphasis, a link or image, HTML, an entity, a code span, a table cell,
    a closing heading sequence or (GitHub) math is backslash-escaped."""
    text = terminal(text)[:limit].replace("\n", " ")
    return re.sub(r"([\\`*_\[\]<>|&~#$!])", r"\\\1", text)


def json_text(value) -> str:
    """A JSON literal (ASCII only: safe inside any UTF-8 file)."""
    return json.dumps(value, ensure_ascii=True, sort_keys=True)


_ANSI = re.compile(r"\x1b(\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)?|[@-Z\\-_])")


def terminal(text) -> str:
    """Text safe to print on a terminal: ANSI escape sequences removed, control and format characters
    (C0, C1, bidi overrides, zero-width, line/paragraph separators) shown as '?'.  Not rich markup:
    print it with markup=False, or wrap it with :func:`rich_text`."""
    text = _ANSI.sub("", str(text))
    return "".join("?" if unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp") else ch
                   for ch in text)


def rich_text(text) -> str:
    """:func:`terminal` plus rich's markup escape, for text embedded in a rich markup string."""
    from rich.markup import escape

    return escape(terminal(text))


FILTERS = {
    "c_comment": c_comment,
    "c_string": c_string,
    "c_ident": c_identifier,
    "ini_comment": ini_comment,
    "ini_value": ini_value,
    "markdown": markdown,
    "json_text": json_text,
}
