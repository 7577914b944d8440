"""Commands without a shell, for tinygen's PlatformIO dev platforms (tinygen-mps2, tinygen-riscv).

Both builders (``<platform>/builder/main.py``) call :func:`use_argv` on their SCons environment
before they add a flag.

Why: SCons on POSIX runs every command as ``sh -c "<the words joined by spaces>"`` and quotes a
word only when it holds whitespace, in double quotes (which leave `` ` `` and ``$`` to the shell).
A path with ``;``, a backtick, a quote, ``&``, ``|``, ``<``, ``>`` or ``(`` therefore ran shell code
or broke the command (issue 22: ``--out 'n/r;touch PWNED;x'`` ran ``touch``).

What: SCons still builds each command as a list of words (its substitution decides where a word
ends), and :func:`use_argv` makes it start the program with exactly those words as its argv, with
no shell in between. SCons has already put double quotes around every word holding whitespace
(``quote_spaces`` for plain words; ``ESCAPE``, set here to the same rule, for nodes and
literal words) by the time the spawn function sees it; since that rule adds quotes only to words
holding whitespace and whitespace is never added, the spawn function removes exactly those
quotes again and gets back the word SCons substituted, byte for byte.

What SCons still does before that, and how the builders keep a path one word:
  * SCons expands ``$`` in every string it substitutes (``${...}`` evaluates Python), in the
    paths PlatformIO itself hands it too: a path with ``$`` is refused by tinygen before
    PlatformIO runs (tinygen/common/escape.py ``pio_path``).
  * SCons splits a string it substitutes at whitespace, and also starts a new word after ``<``,
    ``>`` or ``|`` when whitespace follows (its guess at a shell redirection): so
    ``"-Wl,-Map,$BUILD_DIR/x.map"`` or ``"-I" + path`` fall apart. A builder puts a path into a
    command as :func:`word` (one word, as is: never split, never expanded, and still a string to
    PlatformIO's own checks of the flag lists), or as a node; the ``-I``/``-L``/``-l`` words SCons
    makes from CPPPATH, LIBPATH and LIBS are made words here.
  * ``-Wl,`` splits its argument at commas: paths go to the linker through ``-Xlinker``.
  * Commands longer than PlatformIO's limit go through a response file (``@file``); its words
    are quoted here for GCC's reader (libiberty ``buildargv``), which ``quote_spaces`` is not.
"""

import os
import re
import subprocess
import sys

from SCons.Subst import CmdStringHolder  # pylint: disable=import-error

_WHITESPACE = (" ", "\t")
# Everything libiberty's buildargv treats specially in a response file, plus other whitespace.
_RESPONSE_FILE_SPECIAL = re.compile(r"""([\s'"\\])""")


def quote_word(word):
    """SCons's quote_spaces: the word inside double quotes when it holds a space or a tab."""
    word = str(word)
    return '"%s"' % word if any(c in word for c in _WHITESPACE) else word


def unquote_word(word):
    """The inverse of :func:`quote_word` (every word the spawn function gets went through it)."""
    word = str(word)
    if any(c in word for c in _WHITESPACE) and len(word) >= 2 and word[0] == word[-1] == '"':
        return word[1:-1]
    return word


def response_file_word(word):
    """A word for a GCC/binutils response file: every special character backslash-escaped."""
    return _RESPONSE_FILE_SPECIAL.sub(r"\\\1", str(word))


def _run(argv, env, stdout=None, stderr=None):
    try:
        proc = subprocess.Popen(argv, env=env, close_fds=True, stdout=stdout, stderr=stderr)
    except OSError as exc:
        sys.stderr.write("%s: %s\n" % (argv[0] if argv else "(empty command)", exc.strerror or exc))
        # what sh answers: 127 not found, 126 found but not executable
        return 127 if isinstance(exc, FileNotFoundError) else 126
    return proc.wait()


def spawn(sh, escape, cmd, args, env):  # pylint: disable=unused-argument
    """SCons SPAWN: run ``args`` (SCons's quoted words) as an argv, without a shell."""
    return _run([unquote_word(a) for a in args], env)


def pspawn(sh, escape, cmd, args, env, stdout, stderr):  # pylint: disable=unused-argument,too-many-arguments
    """SCons PSPAWN (output to the given files), without a shell."""
    return _run([unquote_word(a) for a in args], env, stdout, stderr)


def word(text):
    """``text`` as one command word, as is: SCons neither splits it (at whitespace, or after
    ``<``, ``>``, ``|``) nor expands ``$`` in it. It is what SCons itself makes of an
    ``env.Literal`` while substituting (a CmdStringHolder marked literal), and unlike a Literal it
    is still a string to PlatformIO, which runs string checks over LINKFLAGS and the like."""
    return CmdStringHolder(str(text), True)


def _final_words(concat):
    """SCons's ``_concat`` (it makes the ``-I``/``-L``/``-l`` words from CPPPATH, LIBPATH, LIBS),
    its words handed on as :func:`word`s: they are substituted already."""

    def _concat(*args, **kwargs):
        words = concat(*args, **kwargs)
        if not isinstance(words, list):
            return words
        return [word(w) if isinstance(w, str) and w not in ("$(", "$)") else w for w in words]

    return _concat


def use_argv(env):
    """Make ``env`` (and every environment cloned from it later) run commands without a shell."""
    env.Replace(
        _concat=_final_words(env["_concat"]),
        SPAWN=spawn,
        PSPAWN=pspawn,
        ESCAPE=quote_word,
        # SCons doubles backslashes in a response file's name for a SHELL named 'sh'; no shell here.
        SHELL="/bin/sh",
        TEMPFILEARGESCFUNC=response_file_word,
    )


def command_path(path):
    """``path`` as a builder writes it into a command: relative to the working directory (the
    project: PlatformIO runs SCons there) when it lies inside it, so that the names of the
    directories above the project never reach a tool; absolute otherwise."""
    path = str(path)
    rel = os.path.relpath(path)
    return path if rel == os.pardir or rel.startswith(os.pardir + os.sep) else rel


def linker_map_flags(env, name="${PROGNAME}.map"):
    """LINKFLAGS that make ld write its map to ``$BUILD_DIR/<name>``: ``-Xlinker``, ``-Map=<path>``
    (``-Wl,`` would split the path at commas). ld replaces a ``%`` in the map file's name with the
    output file's name and has no escape for it, so the path is relative to the project (where
    the user's directory names do not appear); a build_dir outside the project whose path holds
    ``%`` gets no map file (said once) rather than a map written somewhere else."""
    path = command_path(env.subst(os.path.join("$BUILD_DIR", name)))
    if "%" in path:
        sys.stdout.write("Note: no linker map (ld cannot name a map file whose path holds '%%'): %s\n" % path)
        return []
    return ["-Xlinker", word("-Map=" + path)]


def use_linker_script(env, path):
    """Link with the linker script at ``path``: ``-T <path>`` as two words, the path relative to the
    project when inside it. PlatformIO's own ``-T`` (from LDSCRIPT_PATH) is a string SCons would
    split, so LDSCRIPT_PATH is emptied once the script is found."""
    env.Replace(LDSCRIPT_PATH="")
    env.Prepend(LINKFLAGS=["-T", word(command_path(path))])
