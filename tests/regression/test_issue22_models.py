"""Issue 22, items 6 and 7 (model side): valid layouts the reference misread, and sizes that
made tinygen quadratic or unbounded.

* Weights stored outside the flatbuffer (Buffer.offset/size): tflite_micro ignores them, so the
  reference vectors were wrong. The model is now rewritten with its buffers inline before
  anything reads it; the rewrite's tflite_micro outputs and the compiled C's outputs equal
  TFLite's interpreter on the original file (which reads the offsets).
* A weight tensor flagged is_variable: tflite_micro allocates it in the arena at its zero point
  and ignores its data, the compiled runtime used the data. Refused in one line.
* A chain of 20,000 ops: the compiled memory planner was quadratic (minutes); now seconds.
* tinygen.json is read through the bounded reader (a 6 GB one was read whole: exit 70).
"""

from __future__ import annotations

import json
import re
import time

import numpy as np
import pytest

import support.compiled_harness as H
from conftest import run_cli
from support.flat_model import FlatModel, S, buffers_out_of_line, build_base, mutate, refused, relu_chain
from tinygen.tflite.model import parse_model


def _tflite_reference_outputs(raw: bytes, xs: np.ndarray) -> np.ndarray:
    """TFLite's own interpreter (reference kernels, which tflite_micro matches bit for bit)."""
    import tensorflow as tf

    it = tf.lite.Interpreter(model_content=raw,
                             experimental_op_resolver_type=tf.lite.experimental.OpResolverType.BUILTIN_REF)
    it.allocate_tensors()
    i, o = it.get_input_details()[0]["index"], it.get_output_details()[0]["index"]
    outs = []
    for x in xs:
        it.set_tensor(i, x)
        it.invoke()
        outs.append(it.get_tensor(o).copy())
    return np.stack(outs)


@pytest.fixture(scope="module")
def out_of_line() -> tuple[bytes, bytes]:
    raw = build_base()
    return raw, buffers_out_of_line(raw)


def test_out_of_line_weights_are_inlined_and_computed_as_tflite_reads_them(out_of_line, tmp_path):
    H.require(H.have_python_deps(), "tensorflow and tflite_micro")
    H.require(H.have_gcc(), "gcc")
    inline, off = out_of_line
    m = parse_model(off)
    assert m.raw != off
    want_data = {t.index: t.data for t in parse_model(inline).tensors if t.is_constant}
    assert {t.index for t in m.tensors if t.is_constant} == set(want_data)
    for t in m.tensors:
        if t.is_constant:
            assert np.array_equal(t.data, want_data[t.index]), t.index
    xs = H.input_vectors(m.input_tensor().shape, 12, np.random.default_rng(22))
    want = _tflite_reference_outputs(off, xs)  # the original file, offsets read by TFLite
    assert not np.array_equal(H.tflm_outputs(off, xs), want)  # what the reference used to compute
    H.assert_identical(H.tflm_outputs(m.raw, xs), want, "tflite_micro on the inlined model")
    got = H.build_host([m], tmp_path / "host").run(0, xs)
    H.assert_identical(got, want.reshape(got.shape), "compiled runtime on the inlined model")
    assert parse_model(m.raw).raw == m.raw  # inlining is done once: an inline model is kept as is


def test_build_writes_the_inlined_model_and_vectors_tflite_computes(out_of_line, tmp_path):
    H.require(H.have_python_deps(), "tensorflow and tflite_micro")
    _, off = out_of_line
    f = tmp_path / "offsets.tflite"
    f.write_bytes(off)
    out = tmp_path / "proj"
    res = run_cli("build", "--board", "esp32", "--model", str(f), "--out", str(out))
    assert res.returncode == 0, res.stderr
    written = (out / "model.tflite").read_bytes()
    assert written == parse_model(off).raw
    c_array = (out / "lib" / "tinygen_model" / "src" / "model_data.cc").read_text()
    body = c_array[c_array.index("= {") + 3: c_array.index("};")]
    assert bytes(int(v, 16) for v in re.findall(r"0x([0-9a-fA-F]{2})", body)) == written  # what the board runs
    man = json.loads((out / "tinygen.json").read_text())
    assert man["model_bytes"] == len(written)
    vec = np.load(out / "vectors" / "reference.npz")
    want = _tflite_reference_outputs(off, vec["inputs"])
    H.assert_identical(vec["outputs"], want.reshape(vec["outputs"].shape), "the project's reference vectors")


def test_variable_weight_tensor_is_refused_in_one_line():
    def f(m, g):
        g.tensors[g.operators[0].inputs[1]].isVariable = True

    refused(mutate(build_base(), f), "op 0 (CONV_2D) input 1", "is_variable", "zero point")


def test_variable_flag_on_a_computed_tensor_is_accepted():
    """tflite_micro computes a variable tensor an op writes as any other: nothing to refuse."""
    def f(m, g):
        g.tensors[g.operators[0].outputs[0]].isVariable = True

    parse_model(mutate(build_base(), f))


def test_a_chain_of_20000_ops_is_planned_in_seconds():
    """Quadratic before: ~90 s per plan of this model, and inspect plans it once per board."""
    from tinygen.codegen.compiled import compile_model, memory_table

    m = parse_model(relu_chain(20_000))
    t0 = time.process_time()
    build = compile_model(m)
    rows = memory_table(build.memory)
    spent = time.process_time() - t0
    assert spent < 10, f"planning 20,000 ops took {spent:.1f} s of CPU"
    assert build.memory.peak_bytes == 16  # every RELU in place over one 16-byte buffer
    arena = [r for r in rows if r["location"] == "arena"]
    assert len(arena) == 19_999 and {r["buffer"] for r in arena} == {arena[0]["buffer"]}
    assert max(len(r["shares_with"]) for r in rows) == 2  # its neighbours, not all 20,000


def test_placement_of_20000_buffers_that_cannot_share_is_legal_and_fast():
    """A chain whose buffers all need their own bytes (an overlap declared on every second op),
    plus long-lived ones: checked here by a sweep over ops, not by the planner's own check."""
    from tinygen.codegen.compiled.placement import Buffer, place_buffers

    rng = np.random.default_rng(7)
    n = 20_000
    bufs = [Buffer(k, int(rng.integers(1, 300)), k, k + 1) for k in range(n)]
    bufs += [Buffer(n + k, 64, 1000 * k, 1000 * k + 1500) for k in range(20)]
    overlaps = {(k, k + 1): int(rng.integers(0, 200)) for k in range(0, n - 1, 2)}
    t0 = time.process_time()
    offsets, peak = place_buffers(bufs, overlaps, 16)
    assert time.process_time() - t0 < 10
    live: dict[int, list[Buffer]] = {}
    for b in bufs:
        for t in (b.first, b.last) if b.last - b.first < 10 else range(b.first, b.last + 1):
            live.setdefault(t, []).append(b)
    for t, here in live.items():
        here.sort(key=lambda b: offsets[b.key])
        for a, b in zip(here, here[1:]):
            oa, ob = offsets[a.key], offsets[b.key]
            assert oa % 16 == 0 and ob % 16 == 0
            if oa + a.size <= ob:
                continue
            # only a declared overlap may share bytes: y starts at least the shift below x
            x, y = (a, b) if (a.key, b.key) in overlaps else (b, a)
            s = overlaps.get((x.key, y.key))
            assert s is not None and offsets[y.key] <= offsets[x.key] - s, (t, a, b)
    assert peak == max(offsets[b.key] + b.size for b in bufs)


def _manifest_padded(project, size: int) -> None:
    man = {"manifest_version": 1}
    text = json.dumps(man)
    project.mkdir()
    (project / "tinygen.json").write_text(text + " " * (size - len(text)))


def test_oversized_tinygen_json_is_refused_before_it_is_read(tmp_path):
    from tinygen.codegen.project import load_manifest
    from tinygen.common.errors import TinygenError

    proj = tmp_path / "proj"
    _manifest_padded(proj, 2 << 20)  # valid JSON, 2 MiB of it: tinygen writes a few KiB
    with pytest.raises(TinygenError) as info:
        load_manifest(proj)
    assert "1 MiB limit" in str(info.value) and info.value.exit_code == 2
    with open(proj / "tinygen.json", "r+b") as fh:  # sparse: no disk is used
        fh.truncate(6 << 30)
    res = run_cli("verify", "--project", str(proj), "--port", "loop://")
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr and "limit" in res.stderr


def test_rank0_input_is_refused_by_inspect_and_build_alike(tmp_path):
    """Issue 22.8: a scalar input passed inspect and failed build at render time (exit 4)."""
    fm = FlatModel()
    x = fm.tensor([], S.TensorType.INT8, [0.05], [-3])
    y = fm.tensor([], S.TensorType.INT8, [0.05], [-3])
    fm.op(S.BuiltinOperator.RELU, [x], [y], 0, None)
    f = tmp_path / "scalar.tflite"
    f.write_bytes(fm.pack([x], [y], b"scalar"))
    out = tmp_path / "out"
    for args in (["inspect", str(f)],
                 ["build", "--board", "qemu-m4", "--runtime", "compiled", "--model", str(f), "--out", str(out)]):
        res = run_cli(*args)
        assert res.returncode == 3, res.stderr
        lines = [ln for ln in res.stderr.splitlines() if ln.strip() and not ln.startswith("…")]
        assert len(lines) == 1 and "rank 0" in lines[0] and "shape [1]" in lines[0], res.stderr
    assert not out.exists()


def test_a_model_tflite_micro_refuses_is_not_called_too_large(tmp_path):
    """Issue 22.8: an ADD with one input passes the parse checks; tflite_micro's Prepare refuses
    it at every arena size, which was reported as "far too large for a microcontroller" (exit 4)."""
    fm = FlatModel()
    x = fm.tensor([1, 16], S.TensorType.INT8, [0.05], [-3])
    y = fm.tensor([1, 16], S.TensorType.INT8, [0.05], [-3])
    fm.op(S.BuiltinOperator.ADD, [x], [y], S.BuiltinOptions.AddOptions, S.AddOptionsT())
    f = tmp_path / "one_input_add.tflite"
    f.write_bytes(fm.pack([x], [y], b"corrupt"))
    res = run_cli("inspect", str(f))
    assert res.returncode == 2, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip() and not ln.startswith("…")]
    assert len(lines) == 1 and "op 0 (ADD)" in lines[0] and "corrupt" in lines[0], res.stderr
    assert "too large" not in lines[0]
