"""Seeded .tflite mutation fuzz: a malformed model is refused with a TinygenError (one line,
never "internal error"), and a mutant the compiled runtime accepts runs under ASan/UBSan
bit-exact with the tflite_micro interpreter.

Three small int8 models (TFLite converter, random weights, representative data) and
layouts the converter rarely writes -- the conv model with its weights stored after the
flatbuffer (Buffer.offset/size), a hand-built chain of 150 requantizing RELU ops -- are
mutated ~480 times: byte flips, int32 fields overwritten with boundary values, truncation,
and flatbuffer-aware edits through the TFLite schema's object API (shapes, scales, zero
points, operator indices, op order, options, opcodes, types, buffers, weights, biases,
is_variable flags). An out-of-line seed's tree edits are made on its inline form and
moved out of line again, so the mutants keep the layout. Each mutant goes through parse,
analysis and the compiled runtime's check / plan / emit in this process; the accepted
ones run under the sanitizers against tflite_micro on the model tinygen parsed (the
out-of-line weights inlined: tflite_micro reads no offsets).
"""

from __future__ import annotations

import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import flatbuffers
import numpy as np
import pytest

import support.compiled_harness as H
from conftest import run_cli
from tinygen.analysis import ops as analyze
from tinygen.tflite.int8 import check_int8
from tinygen.codegen import compiled
from tinygen.common.errors import TinygenError
from tinygen.analysis.reference import kernel_scratch_bound
from tinygen.tflite.model import parse_model

SEED = 8_2026
N_MUTANTS = 480
MAX_RUN = 15  # accepted mutants compiled and run under the sanitizers
CASES = {
    "dense": {"kind": "softmax", "shape": [6], "dense": True, "seed": 3, "w_std": 0.5},
    "conv": {"kind": "graph", "shape": [8, 8, 3], "seed": 5},  # CONV, MAX/AVG POOL, DEPTHWISE, MEAN, FC
    "add": {"kind": "graph", "shape": [8, 8, 3], "seed": 6},  # CONV, ADD, PAD, FC, SOFTMAX
}

INTERESTING = [0, 1, -1, 2, 3, 7, 255, 256, 65535, 65536, 1 << 16 | 1, 1 << 30, (1 << 31) - 1, -(1 << 31),
               -2, 1000, 100000]


def _schema():
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as S

    return S


CHAIN_OPS = 150
OUT_OF_LINE = "_out_of_line"  # a seed name ending so: its buffers are stored after the flatbuffer


@pytest.fixture(scope="module")
def seeds() -> dict[str, bytes]:
    from support.flat_model import buffers_out_of_line, relu_chain

    H.require(H.have_python_deps(), "tensorflow and tflite_micro")
    futures = {k: H.submit("convert_case", c) for k, c in CASES.items()}  # two at once, TF out of process
    out = {k: f.result() for k, f in futures.items()}
    for k, v in out.items():
        if isinstance(v, Exception):
            raise v
    out["conv" + OUT_OF_LINE] = buffers_out_of_line(out["conv"])
    out["chain"] = relu_chain(CHAIN_OPS, 12, seed=SEED)  # each op requantizes
    return out


# ---- mutations ---------------------------------------------------------------------------

def _pack(m) -> bytes:
    b = flatbuffers.Builder(4096)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def _pick(rng, seq):
    return seq[int(rng.integers(len(seq)))]


def _value(rng) -> int:
    return int(_pick(rng, INTERESTING)) if rng.random() < 0.7 else int(rng.integers(-300, 300))


def _byte_mutation(rng, raw: bytes) -> tuple[str, bytes]:
    b = bytearray(raw)
    kind = int(rng.integers(3))
    if kind == 0:
        for _ in range(int(rng.integers(1, 9))):
            b[int(rng.integers(8, len(b)))] ^= 1 << int(rng.integers(8))
        return "flip", bytes(b)
    if kind == 1:  # an int32 field (offsets, lengths, indices are all 4-byte aligned)
        at = int(rng.integers(1, len(b) // 4)) * 4
        old = struct.unpack_from("<i", b, at)[0]
        new = _value(rng) if rng.random() < 0.6 else old + int(rng.integers(-64, 65))
        struct.pack_into("<i", b, at, max(-(1 << 31), min((1 << 31) - 1, new)))
        return "int32", bytes(b)
    return "truncate", bytes(b[:int(rng.integers(0, len(b)))])


def _tree_mutation(rng, raw: bytes) -> tuple[str, bytes]:
    S = _schema()
    m = S.ModelT.InitFromPackedBuf(bytearray(raw), 0)
    g = m.subgraphs[0]
    ops, tensors = g.operators, g.tensors
    t = _pick(rng, tensors)
    op = _pick(rng, ops)
    kind = _pick(rng, ["shape", "scale", "zero_point", "per_channel", "op_index", "order", "options",
                       "opcode", "type", "buffer", "graph_io", "weights", "weights", "bias", "bias",
                       "activation", "variable"])
    if kind == "shape" and t.shape is not None and len(t.shape):
        t.shape = list(t.shape)
        t.shape[int(rng.integers(len(t.shape)))] = _value(rng)
    elif kind == "scale" and t.quantization is not None and t.quantization.scale is not None:
        q = t.quantization
        q.scale = list(q.scale)
        q.scale[int(rng.integers(len(q.scale)))] = float(_pick(
            rng, [float("nan"), float("inf"), -0.5, 0.0, 1e-30, 1e30, 1e-6, 3.5, q.scale[0] * 2.0 ** int(rng.integers(-12, 13))]))
    elif kind == "zero_point" and t.quantization is not None and t.quantization.zeroPoint is not None:
        q = t.quantization
        q.zeroPoint = list(q.zeroPoint)
        q.zeroPoint[int(rng.integers(len(q.zeroPoint)))] = _pick(rng, [200, -200, 127, -128, 1 << 40, 0, 5])
    elif kind == "per_channel" and t.quantization is not None and t.quantization.scale is not None:
        q = t.quantization
        if rng.random() < 0.5:
            q.quantizedDimension = int(rng.integers(-1, 6))
        else:
            q.scale, q.zeroPoint = list(q.scale) + [0.01], list(q.zeroPoint if q.zeroPoint is not None else []) + [0]
    elif kind == "op_index":
        vec = "inputs" if rng.random() < 0.6 else "outputs"
        v = list(getattr(op, vec))
        if v:
            v[int(rng.integers(len(v)))] = int(rng.integers(-2, len(tensors) + 3))
            setattr(op, vec, v)
    elif kind == "order" and len(ops) > 1:
        i, j = (int(x) for x in rng.choice(len(ops), 2, replace=False))
        ops[i], ops[j] = ops[j], ops[i]
    elif kind == "options" and op.builtinOptions is not None:
        keys = [k for k in ("strideH", "strideW", "dilationHFactor", "dilationWFactor", "filterHeight",
                            "filterWidth", "padding", "depthMultiplier", "axis", "beta", "keepNumDims")
                if hasattr(op.builtinOptions, k)]
        if keys:
            k = _pick(rng, keys)
            setattr(op.builtinOptions, k, float(_value(rng)) if k == "beta"
                    else int(np.clip(_value(rng), -(1 << 31), (1 << 31) - 1)) if k not in ("padding", "keepNumDims")
                    else bool(rng.integers(0, 2)) if k == "keepNumDims" else int(rng.integers(0, 3)))
    elif kind == "opcode":
        c = _pick(rng, m.operatorCodes)
        c.builtinCode = int(rng.integers(0, 260))
        c.deprecatedBuiltinCode = min(c.builtinCode, 127)
    elif kind == "type":
        t.type = int(rng.integers(0, 20))
    elif kind == "buffer":
        t.buffer = int(rng.integers(0, len(m.buffers) + 3))
    elif kind == "variable":  # constant data flagged variable is refused; a computed tensor is not
        t.isVariable = True
    elif kind == "graph_io":
        setattr(g, _pick(rng, ["inputs", "outputs"]), [int(rng.integers(-1, len(tensors) + 2))])
    elif kind in ("weights", "bias", "activation"):
        const = [x for x in tensors if 0 < x.buffer < len(m.buffers) and m.buffers[x.buffer].data is not None
                 and len(m.buffers[x.buffer].data) and x.type == (9 if kind == "weights" else 2)]
        if kind == "activation" and op.builtinOptions is not None \
                and hasattr(op.builtinOptions, "fusedActivationFunction"):
            op.builtinOptions.fusedActivationFunction = int(rng.integers(0, 8))
        elif const:
            buf = m.buffers[_pick(rng, const).buffer]
            data = np.array(buf.data, dtype=np.uint8).copy()
            if kind == "weights":
                data[:] = rng.integers(0, 256, len(data)) if rng.random() < 0.5 else _pick(rng, [0x7F, 0x80, 0x81])
            else:
                vals = data.view(np.int32)
                vals[int(rng.integers(len(vals)))] = _pick(rng, [(1 << 31) - 1, -(1 << 31), 1 << 24, -(1 << 20)])
            buf.data = data
    return kind, _pack(m)


def _tree_mutation_keeping_layout(rng, raw: bytes, name: str) -> tuple[str, bytes]:
    """A tree edit; on an out-of-line seed it is made on the inline form (the object API drops
    the data after the flatbuffer) and the buffers are moved out of line again."""
    from support.flat_model import buffers_out_of_line

    if not name.endswith(OUT_OF_LINE):
        return _tree_mutation(rng, raw)
    kind, edited = _tree_mutation(rng, parse_model(raw).raw)
    return kind + OUT_OF_LINE, buffers_out_of_line(edited)


def mutants(seeds: dict[str, bytes]):
    rng = np.random.default_rng(SEED)
    names = sorted(seeds)
    for i in range(N_MUTANTS):
        name = names[i % len(names)]
        base = seeds[name]
        if rng.random() < 0.4:
            kind, raw = _byte_mutation(rng, base)
        else:
            kind, raw = _tree_mutation_keeping_layout(rng, base, name)
        if rng.random() < 0.15 and raw[4:8] == b"TFL3" and _parses(raw):  # a second edit on top
            try:
                raw = _tree_mutation_keeping_layout(rng, raw, name)[1]
            except (IndexError, TypeError, ValueError, AttributeError, struct.error, TinygenError):
                pass  # the first edit left nothing this edit can apply to (or pack, or parse)
        yield f"{i}:{name}:{kind}", raw


def _parses(raw: bytes) -> bool:
    try:
        _schema().ModelT.InitFromPackedBuf(bytearray(raw), 0)
        return True
    except Exception:
        return False


# ---- the fuzz ------------------------------------------------------------------------------

def _through_tinygen(raw: bytes):
    """Everything build/inspect do in-process with a model; returns the model when the
    compiled runtime emitted it."""
    m = parse_model(raw, "mutant.tflite")
    analyze.analyze(m)
    kernel_scratch_bound(m)
    check_int8(m, "mutant.tflite")
    program = compiled.lower(m)
    compiled.check_supported(program)
    compiled.print_c(program, compiled.plan_memory(program))
    return m


_REF_CHILD = r"""
import sys
import numpy as np
from tflite_micro.python.tflite_micro import runtime
d = sys.argv[1]
for i in range(int(sys.argv[2]), int(sys.argv[3])):
    print("TRY", i, flush=True)
    try:
        it = runtime.Interpreter.from_bytes(open(f"{d}/{i}.tflite", "rb").read(), arena_size=1 << 22)
        xs = np.load(f"{d}/{i}.in.npy")
        outs = []
        for x in xs:
            it.set_input(x, 0)
            it.invoke()
            outs.append(np.array(it.get_output(0), dtype=np.int8, copy=True))
        np.save(f"{d}/{i}.out.npy", np.stack(outs))
    except Exception as exc:
        print("REFUSED", i, type(exc).__name__, flush=True)
"""


def _tflm_outputs(models: list[bytes], inputs: list[np.ndarray], d: Path) -> list[np.ndarray | None]:
    """Reference outputs per model in child processes; None where the interpreter refuses
    or crashes on the mutant (a crash restarts the child after that model)."""
    for i, (raw, x) in enumerate(zip(models, inputs)):
        (d / f"{i}.tflite").write_bytes(raw)
        np.save(d / f"{i}.in.npy", x)
    start = 0
    while start < len(models):
        p = subprocess.run([sys.executable, "-c", _REF_CHILD, str(d), str(start), str(len(models))],
                           capture_output=True, text=True, timeout=600)
        tried = [int(ln.split()[1]) for ln in p.stdout.splitlines() if ln.startswith("TRY ")]
        start = (tried[-1] + 1) if (p.returncode != 0 and tried) else len(models)
    return [np.load(d / f"{i}.out.npy") if (d / f"{i}.out.npy").exists() else None for i in range(len(models))]


def test_mutated_models_are_refused_cleanly_or_run_bit_exact(seeds):
    counts = {"refused": 0, "accepted": 0}
    accepted: dict[str, bytes] = {}
    for label, raw in mutants(seeds):
        try:
            _through_tinygen(raw)
        except TinygenError as exc:
            msg = str(exc)
            assert msg and "\n" not in msg, f"{label}: {msg!r}"
            assert "internal error" not in msg.lower(), f"{label}: {msg}"
            assert exc.exit_code in (2, 3), f"{label}: exit {exc.exit_code}: {msg}"
            counts["refused"] += 1
            counts["variable_refused"] = counts.get("variable_refused", 0) + ("is_variable" in msg)
            continue
        except Exception as exc:  # the point of the test: nothing else may escape
            pytest.fail(f"mutant {label}: {type(exc).__name__}: {exc}")
        counts["accepted"] += 1
        if raw not in accepted.values() and raw not in seeds.values():
            accepted[label] = raw
    assert counts["refused"] >= N_MUTANTS // 2, counts
    assert counts.get("variable_refused"), f"no constant tensor flagged is_variable was met: {counts}"
    assert accepted, f"no mutant was accepted (nothing to run): {counts}"

    # Accepted mutants: emitted C under ASan/UBSan, bit-exact with tflite_micro where it runs them.
    H.require(H.have_gcc(), "gcc")
    # the first accepted mutants of each seed in turn, so every layout reaches the sanitizers
    per_seed: dict[str, list[str]] = {}
    for k in sorted(accepted, key=lambda k: int(k.split(":")[0])):
        per_seed.setdefault(k.split(":")[1], []).append(k)
    round_robin = [k for j in range(MAX_RUN) for ks in per_seed.values() for k in ks[j:j + 1]]
    labels = sorted(round_robin[:MAX_RUN], key=lambda k: int(k.split(":")[0]))
    assert {"conv" + OUT_OF_LINE, "chain"} <= set(per_seed), f"no accepted mutant of a layout: {sorted(per_seed)}"
    models = [parse_model(accepted[k]) for k in labels]
    rng = np.random.default_rng(SEED + 1)
    inputs = [H.input_vectors(m.input_tensor().shape, 4, rng) for m in models]
    with tempfile.TemporaryDirectory(prefix="tg_fuzz_") as tmp:
        d = Path(tmp)
        host = H.build_host(models, d / "host")
        want = _tflm_outputs([m.raw for m in models], inputs, d)  # what tinygen's reference runs
        compared = 0
        for i, k in enumerate(labels):
            got = host.run(i, inputs[i])  # the sanitizers abort on any undefined behaviour
            if want[i] is not None:
                H.assert_identical(got, want[i].reshape(got.shape), f"mutant {k}")
                compared += 1
    assert compared >= min(3, len(labels)), f"tflite_micro ran only {compared} of {len(labels)} accepted mutants"


@pytest.mark.parametrize("how", ["truncate", "flip"])
def test_cli_on_mutants_one_line_no_traceback(seeds, tmp_path, how):
    raw = seeds["conv"]
    bad = raw[: len(raw) // 3] if how == "truncate" else _flip_until_refused(raw)
    f = tmp_path / "mutant.tflite"
    f.write_bytes(bad)
    for args in (["inspect", str(f)],
                 ["build", "--board", "qemu-m4", "--runtime", "compiled", "--model", str(f),
                  "--out", str(tmp_path / "out")]):
        res = run_cli(*args)
        assert res.returncode in (2, 3), res.stderr
        assert "Traceback" not in res.stderr + res.stdout
        lines = [ln for ln in res.stderr.splitlines() if ln.strip() and not ln.startswith("…")]
        assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
        assert not (tmp_path / "out").exists()


def _flip_until_refused(raw: bytes) -> bytes:
    rng = np.random.default_rng(SEED + 2)
    for _ in range(1000):
        _, bad = _byte_mutation(rng, raw)
        try:
            parse_model(bad)
        except TinygenError:
            return bad
    raise AssertionError("no byte mutation was refused")


def test_large_dilations_within_the_bounds_run_bit_exact_under_sanitizers(tmp_path):
    """Near the validation bounds (effective filter 60001 rows, 40001 columns on an 8x8
    input): accepted, and the kernels' index arithmetic stays defined (ASan/UBSan) and
    bit-exact with tflite_micro."""
    from support.flat_model import build_base, mutate

    H.require(H.have_gcc(), "gcc")

    def wide(m, g):
        g.operators[0].builtinOptions.dilationHFactor = 30000
        g.operators[1].builtinOptions.dilationWFactor = 20000
        g.operators[1].builtinOptions.dilationHFactor = 3

    raw = mutate(build_base(), wide)
    m = parse_model(raw)
    x = H.input_vectors(m.input_tensor().shape, 8, np.random.default_rng(SEED))
    got = H.build_host([m], tmp_path / "host").run(0, x)
    want = _tflm_outputs([raw], [x], tmp_path)[0]
    assert want is not None, "tflite_micro refused the model"
    H.assert_identical(got, want.reshape(got.shape), "wide dilations")
