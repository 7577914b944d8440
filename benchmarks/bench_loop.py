"""The loop in seconds (issue 29): whole-process times of the main commands, beside the previous release's.

    .venv/bin/python benchmarks/bench_loop.py [--runs 3] [--skip-hand]

Each figure is the median of ``--runs`` runs after one warm-up run (the warm-up fills the OS page
cache with TensorFlow's libraries, as on a machine that has run tinygen before), of the real
``tinygen`` command in a child process:

* ``tinygen run --board qemu-m4``, cold: a new, empty build cache (TINYGEN_CACHE_DIR) every run;
* ``tinygen build --board qemu-rv32`` of the same (unchanged) model after a qemu-m4 build filled the cache;
* ``tinygen run --project P`` of that project;
* peak memory: the largest sum of the resident sets of the command's processes (sampled every 20 ms)
  during the cold run, and the largest single process (what ``/usr/bin/time`` reports);
* ``tinygen build --board esp32 --no-cache`` beside the same steps scripted by hand in one Python process
  (train the same Keras model, TFLite int8 converter, an xxd-style C array, a jinja render).

Also the CPU time (user + system, the process and its children), which a loaded machine changes less
than wall time.  The "previous" column is the issue's own measurement of the previous release on an idle
2-core machine; this script does not rebuild that release.  Goals: run <= 10 s cold, second-board build
<= 3 s, run --project <= 3 s, peak <= 600 MiB, esp32 build <= 1.2x the hand-scripted steps.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import psutil

PREVIOUS = {"run cold": 18.9, "build (2nd board)": 16.3, "run --project": 3.3, "peak MiB": 648.0}
GOALS = {"run cold": 10.0, "build (2nd board)": 3.0, "run --project": 3.0, "peak MiB": 600.0}

HAND = textwrap.dedent('''
    # The same steps as `tinygen build --board esp32` for the sine recipe, by hand.
    import os, sys
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import numpy as np, tensorflow as tf, jinja2
    out = sys.argv[1]
    tf.keras.utils.set_random_seed(1234)
    rng = np.random.default_rng(1234)
    x = rng.uniform(0, 2 * np.pi, size=(2000, 1)).astype(np.float32)
    y = (np.sin(x) + rng.normal(0, 0.05, size=x.shape)).astype(np.float32)
    model = tf.keras.Sequential([tf.keras.Input(shape=(1,), batch_size=1), tf.keras.layers.Dense(16, activation="relu"),
                                 tf.keras.layers.Dense(16, activation="relu"), tf.keras.layers.Dense(1)])
    model.compile(optimizer=tf.keras.optimizers.Adam(0.01), loss="mse")
    model.fit(x[:1600], y[:1600], epochs=40, batch_size=64, verbose=0)
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([x[i:i + 1]] for i in range(1600, 1800))
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = conv.inference_output_type = tf.int8
    conv._experimental_disable_per_channel_quantization_for_dense_layers = True
    raw = conv.convert()
    rows = ",\\n".join("  " + ", ".join(f"0x{b:02x}" for b in raw[i:i + 12]) for i in range(0, len(raw), 12))
    os.makedirs(out, exist_ok=True)
    open(os.path.join(out, "model_data.cc"), "w").write(
        f"alignas(16) const unsigned char g_model_data[] = {{\\n{rows}\\n}};\\nconst unsigned int g_model_data_len = {len(raw)};\\n")
    tmpl = jinja2.Template("#include <TensorFlowLite.h>\\nconstexpr int kArena = {{ arena }};\\n{% for op in ops %}// {{ op }}\\n{% endfor %}")
    open(os.path.join(out, "main.cpp"), "w").write(tmpl.render(arena=4096, ops=["FULLY_CONNECTED"]))
''')


def measure(cmd: list[str], env: dict, cwd: Path) -> dict:
    """Wall seconds, CPU seconds (the command and its children) and peak memory of one run.

    stderr goes to a file, not a pipe: a pipe read only at the end fills (64 KiB) and blocks the
    command for ever, which is how an earlier version of this script never finished."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    with tempfile.TemporaryFile() as errf:
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=errf,
                                stdin=subprocess.DEVNULL)
        peak_sum = peak_one = 0
        root = psutil.Process(proc.pid)
        while proc.poll() is None:
            try:
                rss = [p.memory_info().rss for p in [root] + root.children(recursive=True)]
            except psutil.Error:
                rss = []
            peak_sum = max(peak_sum, sum(rss))
            peak_one = max([peak_one] + rss)
            time.sleep(0.02)
        wall = time.perf_counter() - t0
        errf.seek(0)
        err = errf.read().decode(errors="replace")
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{err[-4000:]}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"wall": wall, "cpu": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
            "peak_sum_mib": peak_sum / 2**20, "peak_one_mib": peak_one / 2**20,
            "load": os.getloadavg()[0]}  # the machine's 1-minute load average as the run ended


def median_of(runs: int, once, label: str = "") -> dict:
    rows = []
    for i in range(runs + 1):  # the first is a warm-up
        r = once()
        print(f"  {label} {'warm-up' if i == 0 else f'run {i}'}: {r['wall']:.1f} s wall, {r['cpu']:.1f} s CPU, "
              f"peak {r['peak_sum_mib']:.0f} MiB, load {r['load']:.1f}", flush=True)
        if i:
            rows.append(r)
    return {k: statistics.median(r[k] for r in rows) for k in rows[0]} | {"runs": rows}


ORDER = ("run cold", "build (2nd board)", "run --project", "esp32 build", "by hand")


def table(res: dict, runs: int, before: dict | None = None) -> str:
    """The medians beside the previous release's figures (and, with --compare, an earlier result file's)."""
    lines = [f"whole-process medians of {runs} runs after a warm-up; wall time depends on the machine's load "
             f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores), CPU time (user + sys of the "
             "command and its children) much less"]
    head = f"{'':22} {'wall s':>8} {'CPU s':>8}"
    if before:
        head += f" {'before wall':>12} {'before CPU':>11}"
    lines.append(head + f" {'previous':>9} {'goal':>7}")
    for k in ORDER:
        if k in res:
            row = f"{k:22} {res[k]['wall']:8.1f} {res[k]['cpu']:8.1f}"
            if before:
                b = before.get(k)
                row += f" {b['wall']:12.1f} {b['cpu']:11.1f}" if b else f" {'-':>12} {'-':>11}"
            prev = f"{PREVIOUS[k]:.1f}" if k in PREVIOUS else "-"
            goal = f"<= {GOALS[k]:.0f}" if k in GOALS else "-"
            lines.append(row + f" {prev:>9} {goal:>7}")
    if "run cold" in res:
        cold = res["run cold"]
        line = (f"{'peak MiB (run cold)':22} {cold['peak_sum_mib']:8.0f} all processes at once, "
                f"{cold['peak_one_mib']:.0f} the largest single process")
        if before and "run cold" in before:
            line += f"; before {before['run cold']['peak_sum_mib']:.0f} / {before['run cold']['peak_one_mib']:.0f}"
        lines.append(line + f"; previous {PREVIOUS['peak MiB']:.0f}, goal <= {GOALS['peak MiB']:.0f}")
    if "by hand" in res and "esp32 build" in res:
        lines.append(f"esp32 build / by hand: {res['esp32 build']['wall'] / res['by hand']['wall']:.2f}x wall, "
                     f"{res['esp32 build']['cpu'] / res['by hand']['cpu']:.2f}x CPU (goal <= 1.2x)")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--skip-hand", action="store_true", help="Leave out the esp32 vs hand-scripted comparison.")
    ap.add_argument("--json", type=Path, default=None,
                    help="Where to write the results (default benchmarks/results/loop-<git commit>.json); "
                         "written after each measurement, so an interrupted run keeps what it measured.")
    ap.add_argument("--compare", type=Path, default=None, help="An earlier result file, printed beside this run.")
    args = ap.parse_args()
    tg = [sys.executable, "-m", "tinygen"]
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=here, capture_output=True, text=True,
                                check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    out_json = args.json or here / "results" / f"loop-{commit}.json"
    before = json.loads(args.compare.read_text())["results"] if args.compare else None
    work = Path(tempfile.mkdtemp(prefix="tinygen-bench-loop-"))
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", TINYGEN_TFLM_DIR="")
    env.setdefault("TINYGEN_HOME", str(work / "home"))
    n = [0]

    def fresh_cache() -> dict:
        n[0] += 1
        return dict(env, TINYGEN_CACHE_DIR=str(work / f"cache{n[0]}"))

    def out_dir() -> str:
        n[0] += 1
        return str(work / f"p{n[0]}")

    res: dict = {}

    def save() -> None:
        out_json.parent.mkdir(parents=True, exist_ok=True)
        doc = {"commit": commit, "runs": args.runs, "cores": os.cpu_count(), "load_average": os.getloadavg()[0],
               "previous": PREVIOUS, "goals": GOALS, "results": res}
        out_json.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")

    try:
        res["run cold"] = median_of(args.runs, lambda: measure(
            tg + ["run", "--board", "qemu-m4", "--out", out_dir()], fresh_cache(), work), "run cold")
        save()
        warm = dict(env, TINYGEN_CACHE_DIR=str(work / "warm-cache"))
        first = work / "first"
        measure(tg + ["build", "--board", "qemu-m4", "--out", str(first)], warm, work)
        res["build (2nd board)"] = median_of(args.runs, lambda: measure(
            tg + ["build", "--board", "qemu-rv32", "--out", out_dir()], warm, work), "build (2nd board)")
        save()
        measure(tg + ["run", "--project", str(first)], warm, work)  # builds the firmware once
        res["run --project"] = median_of(args.runs, lambda: measure(
            tg + ["run", "--project", str(first)], warm, work), "run --project")
        save()
        if not args.skip_hand:
            res["esp32 build"] = median_of(args.runs, lambda: measure(
                tg + ["build", "--board", "esp32", "--no-cache", "--out", out_dir()], env, work), "esp32 build")
            save()
            script = work / "hand.py"
            script.write_text(HAND)
            res["by hand"] = median_of(args.runs, lambda: measure(
                [sys.executable, str(script), out_dir()], env, work), "by hand")
            save()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(table(res, args.runs, before))
    print(f"results: {out_json}")


if __name__ == "__main__":
    main()
