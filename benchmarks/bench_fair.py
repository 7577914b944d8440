"""A fair benchmark: tinygen's compiled runtime vs TFLM + CMSIS-NN on an emulated core (prints a table;
not a test).

Per model, in one run and on the same int8 model bytes (the first build's model.tflite), on QEMU
(default qemu-m4 = mps2-an386, -icount shift=0, so instruction counts are exact and repeatable):

* **compiled, best**: the compiled runtime at -Os and at -O2, whichever runs fewer instructions;
* **TFLM release**: TFLM built the way its own release build is (kernels and CMSIS-NN -O2, interpreter
  core -Os, TF_LITE_STRIP_ERROR_STRINGS, NDEBUG; the platform's ``custom_tinygen_tflm_release``), its
  arena cut to the emulated board's minimum: the board reports ``arena_used_bytes()`` at tinygen's
  padded size, then the arena is bisected down in 16-byte steps, every candidate rebuilt and verified
  on the board (the minimum is the smallest size that initialises *and* stays bit-exact);
* **common flags**: both runtimes with -O2 everywhere (TFLM keeps its release defines, at the same
  minimum arena);
* **TFLM reference kernels**: with ``--tflm-ref-dir`` (or TINYGEN_TFLM_REF_DIR), a second TFLM tree
  whose CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED, ADD, MUL, pooling, SOFTMAX and SVDF are TFLM's
  portable reference kernels (the Arduino-layout Chirale tree ships only CMSIS-NN's versions of those,
  so the README says how such a tree is made), release build, at its own bisected minimum arena.

RAM = .data + .bss (which hold the arena and I/O buffers) + the stack high-water mark (the reset code
paints the stack; tinygen reads it through QEMU's monitor). Flash = every allocated section with
contents in the ELF (code, constants, the .data image). Every run must be bit-exact with tflite_micro.

Needs a TFLM tree: TINYGEN_TFLM_DIR or --tflm-dir (never committed; e.g. the Chirale_TensorFlowLite
v2.0.0 sources, Arduino-library layout, or a tree made by tflite-micro's create_tflm_tree.py). Without
one it prints the compiled columns only and says why.

    TINYGEN_TFLM_DIR=/path/to/tree python benchmarks/bench_fair.py [--only sine digits ds_cnn_kws ...]

* **TFLM newest release**: with ``--tflm-newest-dir`` (or TINYGEN_TFLM_NEWEST_DIR), a second tree -- meant
  for tflite-micro main with CMSIS-NN main, as create_tflm_tree.py writes it with
  OPTIMIZED_KERNEL_DIR=cmsis_nn (tensorflow/ and third_party/ at its top) -- measured exactly as the TFLM
  release row (release build, bisected minimum arena, bit-exact), beside it. ``--no-common`` skips both
  TFLMs' "common -O2" rebuilds (a full -O2 compile of the tree per model) when only the release rows are
  wanted.

On a Helium core (qemu-m55) every run also counts the MVE instructions in its ELF (objdump: VMLADAV,
VLDRB/VLDRW, VPST, ...; ``mve_instructions`` / ``vmladav`` in --json), so a TFLM row that claims
CMSIS-NN's MVE kernels is checked to contain them: CMSIS-NN picks them where ``__ARM_FEATURE_MVE`` is set
(Include/arm_nn_math_types.h -> ARM_MATH_MVEI), which -mcpu=cortex-m55 with a hard-float ABI does.

The official MLPerf Tiny int8 models (mlperf_kws, mlperf_vww, mlperf_ic, mlperf_ad) are read from
--mlperf-dir (or TINYGEN_MLPERF_DIR): a directory holding the .tflite files of the mlcommons/tiny
repository's benchmark/training/*/trained_models (kws_ref_model.tflite, vww_96_int8.tflite,
pretrainedResnet_quant.tflite, ad01_int8.tflite; never committed). Their rows also print instructions
per MAC beside X-CUBE-AI 10.2's and Plumerai's cycles per MAC in MLPerf Tiny v1.3 (closed division,
NUCLEO-L4R5ZI, Cortex-M4 at 120 MHz) and issue 25's goal (0.8 x X-CUBE-AI). --board qemu-m55 gives the
Cortex-M55 rows.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tinygen  # noqa: E402
from tinygen.common.boards import get_board  # noqa: E402
from tinygen.common.errors import TinygenError  # noqa: E402
from tinygen.device.emulator import qemu_for_project  # noqa: E402
from tinygen.device.guest_memory import elf_footprint, stack_high_water  # noqa: E402

ARENA_STEP = 16

# MLPerf Tiny's official int8 models: file in --mlperf-dir, and cycles per MAC of X-CUBE-AI 10.2 and of
# Plumerai in MLPerf Tiny v1.3 (closed division, NUCLEO-L4R5ZI, Cortex-M4 at 120 MHz).
MLPERF = {
    "mlperf_kws": ("kws_ref_model.tflite", 1.96, 2.16),
    "mlperf_vww": ("vww_96_int8.tflite", 1.43, 1.58),
    "mlperf_ic": ("pretrainedResnet_quant.tflite", 1.59, 1.61),
    "mlperf_ad": ("ad01_int8.tflite", 2.18, 1.84),
}


def _say(text: str) -> None:
    print(f"# {text}", file=sys.stderr, flush=True)


def _patch_ini(project: Path, flags: list[str], release: bool | str) -> None:
    ini = project / "platformio.ini"
    text = ini.read_text()
    text = re.sub(r"(?m)^(build_flags =\n    -DTG_BAUD=\d+\n)(    -O\w\n)*", lambda m: m.group(1) + "".join(
        f"    {f}\n" for f in flags), text, count=1)
    text = re.sub(r"(?m)^custom_tinygen_tflm_release = .*\n", "", text)
    if release:
        mode = release if isinstance(release, str) else "yes"
        text = text.replace("custom_tinygen_version", f"custom_tinygen_tflm_release = {mode}\ncustom_tinygen_version", 1)
    ini.write_text(text)


def _set_arena(project: Path, size: int) -> None:
    src = project / "lib" / "tinygen_model" / "src"
    for name, pattern, repl in (("tg_runtime_tflm.cc", r"#define TG_ARENA_BYTES \d+", f"#define TG_ARENA_BYTES {size}"),
                                ("tinygen_model.h", r"#define TINYGEN_MODEL_ARENA_BYTES \d+u",
                                 f"#define TINYGEN_MODEL_ARENA_BYTES {size}u")):
        path = src / name
        path.write_text(re.sub(pattern, repl, path.read_text(), count=1))


# MVE-only mnemonics (an M-profile FPU has VLDR/VSTR without a size suffix and no vector integer ops)
_MVE_INSN = re.compile(r"\tv(?:mladava?x?|mlava?|mlsdava?x?|rmlaldavha?|mlaldava?|ldr[bhw]|str[bhw]|ld[24][0-3]|"
                       r"st[24][0-3]|pst|pt|psel|ctp|addva?|addlva?|maxa?v|mina?v|qrdmulh|qdmulh|rmulh|mulh|"
                       r"qdmull[bt]|shr[bt]|movn[bt]|qmovn[bt]|qrshrn[bt]|dup)[bt]?\.?[a-z0-9]*\t")


def mve_instructions(elf: Path) -> dict[str, int]:
    """How many MVE (Helium) instructions the ELF's code holds, and how many of them are VMLADAV*."""
    # -m armv8.1-m.main: without it objdump 2.40 prints most MVE encodings as LDC/CDP; it writes VMLADAV
    # (no exchange) as its alias VMLAV
    out = subprocess.run(["arm-none-eabi-objdump", "-d", "--no-show-raw-insn", "-m", "armv8.1-m.main", str(elf)],
                         capture_output=True, text=True, check=True).stdout
    lines = [ln for ln in out.splitlines() if _MVE_INSN.search(ln)]
    return {"mve_instructions": len(lines), "vmladav": sum(bool(re.search(r"\tvml(?:ad)?av", ln)) for ln in lines)}


def run(project: tinygen.Project, flags: list[str], release: bool | str = False, arena: int | None = None
        ) -> dict | None:
    """Build with ``flags``, boot QEMU, verify; the measurements, or None when the firmware does not
    initialise or is not bit-exact."""
    _patch_ini(project.path, flags, release)
    if arena is not None:
        _set_arena(project.path, arena)
    elf = project.build_firmware()
    foot = elf_footprint(elf)
    with tempfile.TemporaryDirectory(prefix="tg-mon-") as tmp:
        sock = str(Path(tmp) / "monitor")
        with qemu_for_project(project.path, project.board, monitor_socket=sock) as qb:
            try:
                report = tinygen.verify(project, port=qb.port, fresh_vectors=4, timeout=120.0)
            except TinygenError:
                return None
            stack = stack_high_water(sock, foot)
            from tinygen.device.serial_link import DeviceLink

            with DeviceLink(qb.port, 115200, timeout=30) as link:
                used = link.hello().arena_bytes
    if not report.passed:
        return None
    res = {"instructions": report.metrics["instructions_per_inference"]["median"], "flash": foot["flash_bytes"],
           "static": foot["static_ram_bytes"], "stack": stack or 0, "ram": foot["static_ram_bytes"] + (stack or 0),
           "arena_used": used}
    if get_board(project.board.id).cpu == "cortex-m55":
        res.update(mve_instructions(elf))
    return res


def tflm_min_arena(project: tinygen.Project, start: int, used: int) -> tuple[int, dict]:
    """Smallest arena (16-byte steps) with which the board initialises and stays bit-exact."""
    hi, hi_res = start, None
    # What the board reported using, rounded up, is the first guess: usually the answer in two builds.
    guess = -(-used // ARENA_STEP) * ARENA_STEP
    res = run(project, [], release=True, arena=guess)
    _say(f"  arena {guess}: {'ok' if res else 'too small'}")
    if res is not None:
        hi, hi_res = guess, res
    lo = max(ARENA_STEP, guess - ARENA_STEP)
    res = run(project, [], release=True, arena=lo)
    _say(f"  arena {lo}: {'ok' if res else 'too small'}")
    if res is not None:
        return lo, res  # (never seen: TFLM does need what it reports)
    while hi - lo > ARENA_STEP:
        mid = (lo + hi) // 2 // ARENA_STEP * ARENA_STEP
        if mid <= lo:
            break
        res = run(project, [], release=True, arena=mid)
        _say(f"  arena {mid}: {'ok' if res else 'too small'}")
        if res is not None:
            hi, hi_res = mid, res
        else:
            lo = mid
    if hi_res is None:
        hi_res = run(project, [], release=True, arena=hi)
    return hi, hi_res


def reference_kernels_available(tree: str) -> bool:
    root = Path(tree) / "src" if (Path(tree) / "src" / "tensorflow").is_dir() else Path(tree)
    kernels = root / "tensorflow" / "lite" / "micro" / "kernels"
    return all((kernels / f"{op}.cpp").exists() or (kernels / f"{op}.cc").exists()
               for op in ("conv", "depthwise_conv", "fully_connected"))


# The TFLM rows measured per tree, by key prefix: --tflm-dir's ("tflm_release", ...) and --tflm-newest-dir's.
TFLM_ROWS = ("release", "min_arena", "padded_arena", "O2", "error", "tree")


def bench_tflm(row: dict, prefix: str, name: str, board: str, work: Path, model: Path, tree: str,
               common: bool = True) -> None:
    """TFLM from ``tree``: the release build at its bisected minimum arena (and the common -O2 build at that
    arena), into ``row`` as <prefix>_release, <prefix>_min_arena, ..."""
    tflm = tinygen.build(model, board=board, runtime="tflm", out=work / f"{name}-{prefix.replace('_', '-')}",
                         force=True, vectors=8, tflm_dir=tree)
    row[f"{prefix}_tree"] = str(Path(tree).resolve())
    padded = tflm.plan.arena.recommended_bytes
    first = run(tflm, [], release=True)
    if first is None:
        row[f"{prefix}_error"] = "TFLM release build did not run bit-exact at tinygen's padded arena"
        return
    arena, res = tflm_min_arena(tflm, padded, first["arena_used"])
    row.update({f"{prefix}_padded_arena": padded, f"{prefix}_min_arena": arena, f"{prefix}_release": res})
    if common:
        row[f"{prefix}_O2"] = run(tflm, ["-O2"], release="defines", arena=arena)


def bench_model(name: str, board: str, work: Path, tree: str | None, earlier: dict | None = None,
                ref_tree: str | None = None, model_bytes: bytes | None = None, newest_tree: str | None = None,
                common: bool = True) -> dict:
    """One model's rows; ``model_bytes`` (an MLPerf model read from --mlperf-dir) or the zoo's recipe."""
    if model_bytes is None:
        from bench_compiled import _model_bytes  # the model zoo (trained recipes, MLPerf-Tiny-shaped nets)

        model_bytes = _model_bytes(name)
    model = work / f"{name}.tflite"
    model.write_bytes(model_bytes)
    digest = hashlib.sha256(model.read_bytes()).hexdigest()
    row: dict = {"model": name, "model_sha256": digest}
    comp = tinygen.build(model, board=board, runtime="compiled", out=work / f"{name}-compiled", force=True, vectors=8)
    row["macs"] = comp.plan.analysis.macs
    row["compiled_Os"] = run(comp, ["-Os"])
    row["compiled_O2"] = run(comp, ["-O2"])
    # TFLM's rows depend only on the model bytes, the tree and the flags: an earlier run's rows for the
    # very same bytes (sha256) are reused, so re-measuring the compiled runtime after a change does not
    # rebuild and re-bisect TFLM. Anything else about the model -> measured again.
    # (The newest tree's rows also need the same tree path.)
    same = bool(earlier) and earlier.get("model_sha256") == digest
    for prefix, t in (("tflm_newest", newest_tree), ("tflm", tree)):
        if same and f"{prefix}_release" in earlier and (
                prefix == "tflm" or not t or earlier.get(f"{prefix}_tree") == str(Path(t).resolve())):
            row.update({f"{prefix}_{k}": earlier[f"{prefix}_{k}"] for k in TFLM_ROWS if f"{prefix}_{k}" in earlier})
            row[f"{prefix}_reused"] = True
        elif t:
            bench_tflm(row, prefix, name, board, work, model, t, common)
    if same and "tflm_ref" in earlier:
        row.update({k: v for k, v in earlier.items() if k.startswith("tflm_ref")})
    elif ref_tree:
        # TFLM's portable reference kernels, built and cut to their own minimum arena the same way.
        ref = tinygen.build(model, board=board, runtime="tflm", out=work / f"{name}-tflm-ref", force=True,
                            vectors=8, tflm_dir=ref_tree)
        first = run(ref, [], release=True)
        if first is not None:
            arena, res = tflm_min_arena(ref, ref.plan.arena.recommended_bytes, first["arena_used"])
            row.update(tflm_ref_min_arena=arena, tflm_ref=res)
    return row


def _fmt(n) -> str:
    return "—" if n is None else (f"{n / 1e6:.2f} M" if n >= 1e6 else f"{n:,.0f}")


def table(rows: list[dict], tree: str | None) -> str:
    out = ["| model (MACs) | runtime, flags | instructions | flash B | RAM B (static + stack) | compiled / TFLM instr | flash | RAM |",
           "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        c_os, c_o2 = r.get("compiled_Os"), r.get("compiled_O2")
        best_key = min((k for k in ("compiled_Os", "compiled_O2") if r.get(k)), key=lambda k: r[k]["instructions"],
                       default=None)
        best = r.get(best_key) if best_key else None
        t_rel, t_o2 = r.get("tflm_release"), r.get("tflm_O2")
        t_new, t_new_o2 = r.get("tflm_newest_release"), r.get("tflm_newest_O2")

        def line(label, m, ref=None):
            if m is None:
                return f"| {r['model']} ({r['macs']:,}) | {label} | failed | | | | | |"
            ratio = (f"{m['instructions'] / ref['instructions']:.2f} | {m['flash'] / ref['flash']:.2f} | "
                     f"{m['ram'] / ref['ram']:.2f}") if ref else " | | "
            return (f"| {r['model']} ({r['macs']:,}) | {label} | {_fmt(m['instructions'])} | {m['flash']:,} | "
                    f"{m['ram']:,} ({m['static']:,} + {m['stack']:,}) | {ratio} |")

        out.append(line(f"compiled, best ({best_key.split('_')[1] if best_key else '?'})", best, t_rel))
        if t_rel:
            reused = " (reused: same model bytes)" if r.get("tflm_reused") else ""
            out.append(line(f"TFLM release, arena {r['tflm_min_arena']:,} (padded {r['tflm_padded_arena']:,})"
                            f"{reused}", t_rel))
        elif tree:
            out.append(f"| {r['model']} | TFLM | {r.get('tflm_error', 'failed')} | | | | | |")
        if t_new:
            reused = " (reused: same model bytes)" if r.get("tflm_newest_reused") else ""
            out.append(line(f"TFLM newest release, arena {r['tflm_newest_min_arena']:,} "
                            f"(padded {r['tflm_newest_padded_arena']:,}){reused}", t_new))
            out.append(line("compiled, best / TFLM newest", best, t_new))
        elif r.get("tflm_newest_error"):
            out.append(f"| {r['model']} | TFLM newest | {r['tflm_newest_error']} | | | | | |")
        if t_o2 or not t_new_o2:
            out.append(line("compiled, common -O2", c_o2, t_o2))
        if t_o2:
            out.append(line("TFLM, common -O2", t_o2))
        if t_new_o2:
            out.append(line("compiled, common -O2 / TFLM newest", c_o2, t_new_o2))
            out.append(line("TFLM newest, common -O2", t_new_o2))
        if r.get("tflm_ref"):
            out.append(line(f"TFLM reference kernels, release, arena {r['tflm_ref_min_arena']:,}", r["tflm_ref"]))
        if c_os and best_key != "compiled_Os":
            out.append(line("compiled -Os", c_os, t_rel))
    return "\n".join(out)


def mlperf_table(rows: list[dict], board: str) -> str:
    """Instructions per MAC of the MLPerf rows beside MLPerf Tiny v1.3's best engines (cycles per MAC)."""
    out = [f"| MLPerf model (MACs) | compiled instr ({board}) | instr / MAC | TFLM newest instr / MAC | "
           "TFLM instr / MAC | X-CUBE-AI 10.2 cyc/MAC | Plumerai cyc/MAC | goal (0.8 x X-CUBE-AI) | met |",
           "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if r["model"] not in MLPERF:
            continue
        best = min((r[k] for k in ("compiled_Os", "compiled_O2") if r.get(k)), key=lambda m: m["instructions"],
                   default=None)
        _, xcube, plumerai = MLPERF[r["model"]]
        tflm = [f"{r[k]['instructions'] / r['macs']:.2f}" if r.get(k) else "—"
                for k in ("tflm_newest_release", "tflm_release")]
        if best is None:
            out.append(f"| {r['model']} ({r['macs']:,}) | failed | | {tflm[0]} | {tflm[1]} | {xcube} | {plumerai} | "
                       f"{0.8 * xcube:.2f} | |")
            continue
        ipm = best["instructions"] / r["macs"]
        out.append(f"| {r['model']} ({r['macs']:,}) | {_fmt(best['instructions'])} | {ipm:.2f} | {tflm[0]} | "
                   f"{tflm[1]} | {xcube} | {plumerai} | {0.8 * xcube:.2f} | {'yes' if ipm <= 0.8 * xcube else 'no'} |")
    return "\n".join(out)


def main(argv=None) -> int:
    from bench_compiled import MODELS

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="*", choices=list(MODELS) + list(MLPERF),
                    help="model names (default: the zoo's, plus the MLPerf models with --mlperf-dir)")
    ap.add_argument("--mlperf-dir", default=os.environ.get("TINYGEN_MLPERF_DIR") or None,
                    help="directory with MLPerf Tiny's int8 .tflite files (" + ", ".join(
                        f for f, _, _ in MLPERF.values()) + ")")
    ap.add_argument("--board", default="qemu-m4", help="an emulated board (default qemu-m4)")
    ap.add_argument("--tflm-dir", default=os.environ.get("TINYGEN_TFLM_DIR") or None,
                    help="a TFLM source tree (Arduino-library layout, or create_tflm_tree.py's on the mps2 boards)")
    ap.add_argument("--tflm-newest-dir", default=os.environ.get("TINYGEN_TFLM_NEWEST_DIR") or None,
                    help="a second TFLM tree (e.g. tflite-micro main + CMSIS-NN main from create_tflm_tree.py): "
                         "adds 'TFLM newest release' rows, measured the same way")
    ap.add_argument("--no-common", action="store_true",
                    help="skip the TFLM 'common -O2' rebuilds (release rows only)")
    ap.add_argument("--work", default=None, help="where the projects go (default: a temporary directory)")
    ap.add_argument("--tflm-ref-dir", default=os.environ.get("TINYGEN_TFLM_REF_DIR") or None,
                    help="a TFLM tree (Arduino layout) whose CONV_2D/DEPTHWISE/FC/... are TFLM's portable reference "
                         "kernels: adds a 'TFLM reference kernels' row")
    ap.add_argument("--json", default=None, help="also write every row (all measurements) to this JSON file")
    ap.add_argument("--reuse-tflm", default=None, metavar="JSON",
                    help="an earlier --json: TFLM rows of models with the same bytes (sha256) are taken from it")
    args = ap.parse_args(argv)
    earlier = {}
    if args.reuse_tflm:
        earlier = {r["model"]: r for r in json.loads(Path(args.reuse_tflm).read_text())}
    get_board(args.board)
    tree = args.tflm_dir
    for flag, value in (("--tflm-dir", tree), ("--tflm-newest-dir", args.tflm_newest_dir)):
        if value and not any(Path(value, sub, "tensorflow", "lite", "micro").is_dir() for sub in ("src", ".")):
            print(f"error: {flag} {value} is not a TFLM source tree (no src/tensorflow/lite/micro nor "
                  "tensorflow/lite/micro)", file=sys.stderr)
            return 2
    if not tree and not args.tflm_newest_dir:
        print("note: no TFLM tree (TINYGEN_TFLM_DIR / --tflm-dir): TFLM columns skipped; TFLM is in no registry "
              "reachable here, point it at a TFLM source tree in Arduino-library layout", file=sys.stderr)
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="tg-fair-"))
    work.mkdir(parents=True, exist_ok=True)
    names = args.only or (list(MODELS) + (list(MLPERF) if args.mlperf_dir else []))
    mlperf_bytes = {}
    for name in names:
        if name in MLPERF:
            path = Path(args.mlperf_dir or ".") / MLPERF[name][0]
            if not args.mlperf_dir or not path.is_file():
                print(f"error: {name} needs {MLPERF[name][0]} in --mlperf-dir (or TINYGEN_MLPERF_DIR); "
                      "extract it from the mlcommons/tiny repository's benchmark/training/*/trained_models",
                      file=sys.stderr)
                return 2
            mlperf_bytes[name] = path.read_bytes()
    rows = []
    for name in names:
        _say(f"{name} ...")
        rows.append(bench_model(name, args.board, work, tree, earlier.get(name), args.tflm_ref_dir,
                                mlperf_bytes.get(name), args.tflm_newest_dir, not args.no_common))
        _say(f"{name}: {rows[-1]}")
        if args.json:
            Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")
    print(table(rows, tree))
    if any(r["model"] in MLPERF for r in rows):
        print()
        print(mlperf_table(rows, args.board))
    if tree and not args.tflm_ref_dir and not reference_kernels_available(tree):
        print("\nTFLM reference kernels: not measured -- this tree ships CMSIS-NN's CONV_2D, DEPTHWISE_CONV_2D "
              "and FULLY_CONNECTED only (no kernels/conv.cpp etc.), so TFLM's portable kernels cannot be built "
              "from it; give --tflm-ref-dir a tree with them.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
