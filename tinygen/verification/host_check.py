"""Run the compiled runtime's C on this host, under AddressSanitizer and UBSan, against the reference.

Input: an int8 model the compiled runtime takes (:class:`TfliteModel`).  Its emitted C and
the kernels are compiled with ``-Wall -Wextra -Werror`` and the sanitizers into a small
program in a private temp dir; the program runs in a child process (int8 vectors on stdin,
outputs on stdout, exactly-sized heap buffers so ASan sees any access past them) and its
outputs are compared with the ``tflite_micro`` interpreter's
(:func:`tinygen.analysis.reference.run_reference`).  Output: a :class:`HostCheckResult`.
Nothing is written outside the temp dir.  No board, no emulator: what this proves is that
the emitted C computes what TFLM computes, and does so without undefined behaviour.

:func:`build_program` links several models into one program (prefixes m0, m1, ...);
the compiled-runtime tests use it to check hundreds of cases with one link.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from tinygen.common.errors import TinygenError, ToolFailure
from tinygen.tflite.model import TfliteModel

HOST_CFLAGS = ("-std=c99", "-O1", "-Wall", "-Wextra", "-Werror",
               "-fsanitize=address,undefined", "-fno-sanitize-recover=all")
COMPILERS = ("gcc", "clang", "cc")
DEFAULT_VECTORS = 32


class NoHostCompiler(ToolFailure):
    """No C compiler on PATH: the host check cannot run."""


class HostBuildFailed(ToolFailure):
    """The compiler refused the emitted C (or could not link the sanitizer runtimes);
    ``output`` holds everything it printed."""

    def __init__(self, message: str, output: str):
        super().__init__(message)
        self.output = output


class HostRunFailed(ToolFailure):
    """The host program stopped early: a sanitizer finding, a crash, or a timeout."""

    def __init__(self, message: str, stderr: str, findings: tuple[str, ...]):
        super().__init__(message)
        self.stderr = stderr
        self.findings = findings


def emitted_sources(model: TfliteModel, prefix: str) -> dict[str, str]:
    """The model's emitted C and the kernels, {file name: text}: the one use of the code generator."""
    from tinygen.codegen.compiled import emit, kernel_sources

    return {**emit(model, prefix=prefix), **kernel_sources()}


def find_compiler() -> str:
    """$CC if it names a program on PATH, else gcc, clang or cc; one clear line if none is there."""
    cc = os.environ.get("CC", "").strip()
    for name in ([cc] if cc else []) + list(COMPILERS):
        path = shutil.which(name)
        if path:
            return path
    raise NoHostCompiler("the host check needs a C compiler with AddressSanitizer/UBSan on PATH (looked for "
                         f"{'$CC, ' if cc else ''}{', '.join(COMPILERS)}); install gcc or clang "
                         "(Debian/Ubuntu: apt install gcc)")


def compiler_version(cc: str) -> str:
    try:
        p = subprocess.run([cc, "--version"], capture_output=True, text=True, errors="replace", timeout=30,
                           stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    lines = p.stdout.strip().splitlines()
    return lines[0] if lines else "unknown"


def input_vectors(shape: tuple[int, ...], n_random: int, rng: np.random.Generator) -> np.ndarray:
    """All -128, all 127, both alternating-extreme patterns, then ``n_random`` random int8 vectors."""
    size = int(np.prod(shape))
    special = np.empty((4, size), dtype=np.int8)
    special[0] = -128
    special[1] = 127
    special[2] = np.where(np.arange(size) % 2 == 0, 127, -128)
    special[3] = np.where(np.arange(size) % 2 == 0, -128, 127)
    rand = rng.integers(-128, 128, size=(n_random, size), dtype=np.int8)
    return np.concatenate([special, rand]).reshape((-1,) + tuple(shape))


# ---- the host program ------------------------------------------------------------------

_MAIN = r"""
#include <stdio.h>
#include <stdlib.h>
%(includes)s

typedef int (*tg_invoke_fn)(const int8_t *, int8_t *);
struct tg_entry { tg_invoke_fn fn; size_t in_bytes; size_t out_bytes; };
static const struct tg_entry entries[] = {
%(entries)s
};

int main(int argc, char **argv)
{
    int which;
    int8_t *in, *out;
    if (argc != 2) return 2;
    which = atoi(argv[1]);
    if (which < 0 || (size_t)which >= sizeof entries / sizeof entries[0]) return 2;
    /* Exactly-sized heap buffers: ASan reports any access past their ends. */
    in = (int8_t *)malloc(entries[which].in_bytes);
    out = (int8_t *)malloc(entries[which].out_bytes);
    if (in == NULL || out == NULL) return 3;
    while (fread(in, 1, entries[which].in_bytes, stdin) == entries[which].in_bytes) {
        if (entries[which].fn(in, out) != 0) return 4;
        if (fwrite(out, 1, entries[which].out_bytes, stdout) != entries[which].out_bytes) return 5;
    }
    free(in);
    free(out);
    return 0;
}
"""

# One line per finding: UBSan's "file:line:col: runtime error: ...", ASan's "ERROR: AddressSanitizer: ...".
_FINDING = re.compile(r"(\S+: runtime error: .*|ERROR: \w+Sanitizer: .*)")


def sanitizer_findings(stderr: str) -> tuple[str, ...]:
    found: list[str] = []
    for line in stderr.splitlines():
        m = _FINDING.search(line)
        if m and m.group(1) not in found:
            found.append(m.group(1))
    return tuple(found[:10])


@dataclass(frozen=True)
class HostProgram:
    binary: Path
    models: tuple[TfliteModel, ...]
    compiler: str
    flags: tuple[str, ...]

    def run(self, i: int, inputs: np.ndarray, timeout: float | None = None) -> np.ndarray:
        """Outputs of model ``i`` for a batch of int8 inputs, from a child process."""
        x = np.ascontiguousarray(inputs, dtype=np.int8)
        out_shape = tuple(self.models[i].output_tensor().shape)
        limit = timeout if timeout is not None else 120 + 0.01 * len(x)
        try:
            p = subprocess.run([str(self.binary), str(i)], input=x.tobytes(), capture_output=True, timeout=limit)
        except subprocess.TimeoutExpired:
            raise HostRunFailed(f"the host program did not finish {len(x)} vectors in {limit:.0f} s", "", ()) \
                from None
        except OSError as exc:  # e.g. a temp dir mounted noexec
            raise ToolFailure(f"cannot run the host check program in {self.binary.parent}: {exc.strerror}; "
                              "point TMPDIR at a directory that allows executables") from None
        if p.returncode != 0:
            err = p.stderr.decode(errors="replace")
            findings = sanitizer_findings(err)
            how = findings[0] if findings else f"exited with status {p.returncode}"
            raise HostRunFailed(f"the host program stopped: {how}", err, findings)
        return np.frombuffer(p.stdout, dtype=np.int8).reshape((len(x),) + out_shape)


def _compile(cmd: list[str], cwd: Path) -> None:
    p = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, errors="replace", stdin=subprocess.DEVNULL)
    if p.returncode != 0:
        text = (p.stdout + p.stderr).strip()
        lines = text.splitlines()
        first = next((ln for ln in lines if re.search(r"error|cannot find", ln, re.I)), lines[0] if lines else "")
        hint = ("; install the compiler's sanitizer runtimes (gcc: libasan, libubsan; clang: libclang-rt-dev)"
                if re.search(r"-l(asan|ubsan)|libclang_rt|sanitizer", text) else "")
        raise HostBuildFailed(f"{Path(cmd[0]).name} could not build the host check program: {first.strip()}{hint}",
                              text)


def write_sources(models, workdir: Path) -> list[str]:
    """Each model's emitted C under its own prefix (m0, m1, ...) and the kernels, into ``workdir``."""
    prefixes = [f"m{i}" for i in range(len(models))]
    for m, p in zip(models, prefixes):
        for name, text in emitted_sources(m, p).items():
            (workdir / name).write_text(text, encoding="utf-8")
    return prefixes


def build_program(models, workdir: Path, *, extra_flags: tuple[str, ...] = (), compiler: str | None = None,
                  jobs: int | None = None) -> HostProgram:
    """Emit every model (prefixes m0, m1, ...), compile with :data:`HOST_CFLAGS` and link one program
    that runs model ``argv[1]`` over the int8 vectors on stdin."""
    cc = compiler or find_compiler()
    models = tuple(models)
    workdir.mkdir(parents=True, exist_ok=True)
    prefixes = write_sources(models, workdir)
    includes = "\n".join(f'#include "{p}_model.h"' for p in prefixes)
    entries = "\n".join(f"    {{{p}_invoke, {p.upper()}_CM_INPUT_BYTES, {p.upper()}_CM_OUTPUT_BYTES}},"
                        for p in prefixes)
    (workdir / "host_main.c").write_text(_MAIN % {"includes": includes, "entries": entries}, encoding="utf-8")
    flags = HOST_CFLAGS + tuple(extra_flags)
    from tinygen.codegen.compiled import kernel_sources

    kernels = [name for name in kernel_sources() if name.endswith(".c")]  # every one, as a project builds
    sources = kernels + ["host_main.c"] + [f"{p}_model.c" for p in prefixes]
    with ThreadPoolExecutor(jobs or max(2, os.cpu_count() or 2)) as ex:
        list(ex.map(lambda s: _compile([cc, *flags, "-c", s, "-o", s[:-2] + ".o"], workdir), sources))
    binary = workdir / "host_check"
    _compile([cc, *flags, *[s[:-2] + ".o" for s in sources], "-o", str(binary)], workdir)
    return HostProgram(binary, models, cc, flags)


# ---- the check ---------------------------------------------------------------------------

@dataclass(frozen=True)
class HostCheckResult:
    matches: bool
    vectors: int
    max_lsb_diff: int | None  # None when the program stopped before printing outputs
    mismatched_elements: int
    mismatched_vectors: int
    first_mismatch: dict | None  # {"vector", "element", "expected", "got"}
    compiler: str
    compiler_version: str
    flags: tuple[str, ...]
    sanitizer_findings: tuple[str, ...]
    stopped: str | None  # why the host program stopped early, if it did

    def as_dict(self) -> dict:
        d = asdict(self)
        d["flags"], d["sanitizer_findings"] = list(self.flags), list(self.sanitizer_findings)
        d["reference"] = "tflite_micro interpreter"
        return d

    def verdict(self) -> str:
        """One line: what was compared, and the outcome."""
        how = f"{Path(self.compiler).name}, {' '.join(self.flags)}"
        if self.stopped is not None:
            return f"host check FAILED: the compiled C stopped under the sanitizers ({how}): {self.stopped}"
        if not self.matches:
            f = self.first_mismatch or {}
            return (f"host check FAILED: the compiled C differs from the tflite_micro reference in "
                    f"{self.mismatched_elements} outputs of {self.mismatched_vectors}/{self.vectors} vectors "
                    f"(max {self.max_lsb_diff} LSB; first: vector {f.get('vector')} output {f.get('element')}, "
                    f"want {f.get('expected')} got {f.get('got')}) ({how})")
        return (f"host check passed: the compiled C matches the tflite_micro reference bit-exactly on "
                f"{self.vectors} vectors, no sanitizer findings ({how})")


def _as_inputs(model: TfliteModel, inputs) -> np.ndarray:
    shape = tuple(model.input_tensor().shape)
    x = np.asarray(inputs)
    size = int(np.prod(shape))
    if x.dtype != np.int8 or x.ndim < 1 or len(x) < 1 or x.size != len(x) * size:
        raise TinygenError(f"host check inputs must be N int8 vectors of {size} values (input shape "
                           f"{list(shape)}); got {x.dtype} {list(x.shape)}")
    return np.ascontiguousarray(x).reshape((len(x),) + shape)


def check_model(model: TfliteModel, *, vectors: int = DEFAULT_VECTORS, seed: int = 0, inputs=None,
                name: str = "model") -> HostCheckResult:
    """Compile the model's emitted C on this host and compare it with tflite_micro on ``inputs``
    (N int8 vectors), or on ``vectors`` seeded ones: the four extreme patterns, then random."""
    cc = find_compiler()  # before any work: a missing compiler is the first thing to fix
    if inputs is None:
        if vectors < 1:
            raise TinygenError(f"the host check needs at least one vector, not {vectors}")
        rng = np.random.default_rng(seed)
        x = input_vectors(tuple(model.input_tensor().shape), max(vectors - 4, 0), rng)[:vectors]
    else:
        x = _as_inputs(model, inputs)
    from tinygen.analysis.reference import run_reference

    with tempfile.TemporaryDirectory(prefix="tinygen-hostcheck-") as tmp:
        program = build_program([model], Path(tmp), compiler=cc)
        common = dict(vectors=len(x), compiler=cc, compiler_version=compiler_version(cc), flags=program.flags)
        try:
            got = program.run(0, x)
        except HostRunFailed as exc:
            return HostCheckResult(matches=False, max_lsb_diff=None, mismatched_elements=0, mismatched_vectors=0,
                                   first_mismatch=None, sanitizer_findings=exc.findings,
                                   stopped=str(exc).removeprefix("the host program stopped: "), **common)
    want = run_reference(model.raw, x, name)
    return compare(got, want, **common)


def compare(got: np.ndarray, want: np.ndarray, **common) -> HostCheckResult:
    g = got.reshape(len(got), -1).astype(np.int32)
    w = want.reshape(len(want), -1).astype(np.int32)
    if g.shape != w.shape:
        raise ToolFailure(f"host check: the compiled C gave outputs of shape {list(got.shape)}, the reference "
                          f"{list(want.shape)}")
    diff = np.abs(g - w)
    bad = np.argwhere(diff != 0)
    first = None
    if len(bad):
        v, e = (int(i) for i in bad[0])
        first = {"vector": v, "element": e, "expected": int(w[v, e]), "got": int(g[v, e])}
    return HostCheckResult(matches=not len(bad), max_lsb_diff=int(diff.max()) if diff.size else 0,
                           mismatched_elements=len(bad), mismatched_vectors=int((diff != 0).any(axis=1).sum()),
                           first_mismatch=first, sanitizer_findings=(), stopped=None, **common)
