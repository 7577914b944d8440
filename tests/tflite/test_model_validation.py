"""Malformed .tflite models are refused at parse time: exit 2 (3 for an unknown op), one line
naming the op and the field, before anything measures, analyses or emits the model.

The base model is written here with the TFLite schema's own flatbuffer bindings (no
TensorFlow needed); each test breaks exactly one thing in it.
"""

from __future__ import annotations

import pytest

from conftest import run_cli
from tinygen.tflite.model import parse_model

from support.flat_model import S, build_base, mutate, pack, refused, unpack


@pytest.fixture(scope="module")
def base() -> bytes:
    return build_base()


def test_base_model_is_accepted_by_parse_analysis_and_the_compiled_runtime(base):
    from tinygen.analysis import ops as analyze
    from tinygen.tflite.int8 import check_int8
    from tinygen.codegen import compiled
    m = parse_model(base)
    check_int8(m)
    analyze.analyze(m)
    compiled.check_supported(compiled.lower(m))
    compiled.emit(m)


def _swap_first_two_ops(m, g):
    g.operators[0], g.operators[1] = g.operators[1], g.operators[0]


def test_op_reading_a_tensor_before_it_is_computed(base):
    refused(mutate(base, _swap_first_two_ops), "op 0 (DEPTHWISE_CONV_2D) input 0",
            "before it is computed", "op 1 (later)")


def test_operator_input_index_out_of_range(base):
    def f(m, g):
        g.operators[0].inputs[1] = 999

    refused(mutate(base, f), "op 0 (CONV_2D) input 1", "999", "out of range")


def test_operator_output_index_negative(base):
    def f(m, g):
        g.operators[2].outputs[0] = -1

    refused(mutate(base, f), "op 2 (AVERAGE_POOL_2D) output 0", "out of range")


def test_required_input_omitted(base):
    def f(m, g):
        g.operators[4].inputs[1] = -1

    refused(mutate(base, f), "op 4 (FULLY_CONNECTED) input 1", "required")


def _tensor(g, op, slot):
    return g.tensors[g.operators[op].outputs[0] if slot == "out" else g.operators[op].inputs[slot]]


@pytest.mark.parametrize("value, needle", [(float("nan"), "scale[0] is nan"), (-0.1, "scale[0] is -0.1"),
                                           (float("inf"), "scale[0] is inf"), (0.0, "scale[0] is 0.0")])
def test_bad_scale(base, value, needle):
    def f(m, g):
        _tensor(g, 0, "out").quantization.scale[0] = value

    refused(mutate(base, f), "op 0 (CONV_2D) output 0 (tensor 3)", needle)


def test_int8_zero_point_out_of_range(base):
    def f(m, g):
        _tensor(g, 1, "out").quantization.zeroPoint[0] = 200

    refused(mutate(base, f), "op 1 (DEPTHWISE_CONV_2D) output 0", "zero point[0] 200", "int8")


def test_int32_zero_point_out_of_range(base):
    def f(m, g):
        _tensor(g, 4, 2).quantization.zeroPoint[0] = 1 << 40

    refused(mutate(base, f), "op 4 (FULLY_CONNECTED) input 2", "int32 range")


def test_negative_dimension(base):
    def f(m, g):
        _tensor(g, 0, "out").shape[1] = -8

    refused(mutate(base, f), "op 0 (CONV_2D) output 0", "dimension 1 is negative")


def test_absurd_element_count(base):
    def f(m, g):
        _tensor(g, 0, "out").shape = [1, 70000, 70000, 3]

    refused(mutate(base, f), "op 0 (CONV_2D) output 0", "elements")


def test_shape_does_not_match_buffer(base):
    def f(m, g):
        _tensor(g, 0, 1).shape = [3, 3, 3, 3]

    refused(mutate(base, f), "op 0 (CONV_2D) input 1", "constant data is 54 bytes", "needs 81")


def test_unknown_opcode_is_unsupported(base):
    def f(m, g):
        m.operatorCodes[g.operators[2].opcodeIndex].builtinCode = 250

    refused(mutate(base, f), "op 2", "unsupported op 250", code=3)


def test_opcode_index_out_of_range(base):
    def f(m, g):
        g.operators[3].opcodeIndex = 17

    refused(mutate(base, f), "op 3", "opcode index 17", "out of range")


def test_conv_dilation_two_to_the_thirty(base):
    def f(m, g):
        g.operators[0].builtinOptions.dilationHFactor = 1 << 30

    refused(mutate(base, f), "op 0 (CONV_2D) option dilationHFactor", str(1 << 30))


def test_depthwise_stride_zero(base):
    def f(m, g):
        g.operators[1].builtinOptions.strideW = 0

    refused(mutate(base, f), "op 1 (DEPTHWISE_CONV_2D) option strideW", "0 is not in 1..")


def test_pool_filter_zero(base):
    def f(m, g):
        g.operators[2].builtinOptions.filterHeight = 0

    refused(mutate(base, f), "op 2 (AVERAGE_POOL_2D) option filterHeight")


def test_valid_window_larger_than_input(base):
    def f(m, g):
        g.operators[2].builtinOptions.filterWidth = 9

    refused(mutate(base, f), "op 2 (AVERAGE_POOL_2D)", "effective filter width 9", "VALID")


def test_conv_options_of_the_wrong_type(base):
    def f(m, g):
        g.operators[0].builtinOptionsType = S.BuiltinOptions.Pool2DOptions
        g.operators[0].builtinOptions = S.Pool2DOptionsT()

    refused(mutate(base, f), "op 0 (CONV_2D)", "builtin options are Pool2DOptions")


def test_per_channel_scale_count_mismatch(base):
    def f(m, g):
        q = _tensor(g, 0, 1).quantization
        q.scale, q.zeroPoint = q.scale[:2], q.zeroPoint[:2]

    refused(mutate(base, f), "op 0 (CONV_2D) input 1", "2 per-channel scales", "size 3")


def test_scale_and_zero_point_counts_differ(base):
    def f(m, g):
        _tensor(g, 1, 1).quantization.zeroPoint = [0]

    refused(mutate(base, f), "op 1 (DEPTHWISE_CONV_2D) input 1", "3 quantization scales but 1 zero points")


def test_quantized_dimension_out_of_range(base):
    def f(m, g):
        _tensor(g, 1, 1).quantization.quantizedDimension = 7

    refused(mutate(base, f), "op 1 (DEPTHWISE_CONV_2D) input 1", "quantized_dimension 7")


def test_fully_connected_weights_not_2d(base):
    def f(m, g):
        _tensor(g, 4, 1).shape = [4, 6, 8]

    refused(mutate(base, f), "op 4 (FULLY_CONNECTED) input 1 (weights)", "2-D")


def test_op_writes_a_constant(base):
    def f(m, g):
        g.operators[4].outputs[0] = g.operators[0].inputs[1]

    refused(mutate(base, f), "op 4 (FULLY_CONNECTED) output 0", "constant data")


def test_graph_output_out_of_range(base):
    def f(m, g):
        g.outputs = [99]

    refused(mutate(base, f), "graph output 0", "tensor index 99")


@pytest.mark.parametrize("side", ["inputs", "outputs"])
def test_graph_without_inputs_or_outputs(base, side):
    # found by the mutation fuzz (tests/fuzz/test_fuzz_models.py): an empty output list reached
    # TfliteModel.output_tensor() and raised IndexError (exit 70)
    def f(m, g):
        setattr(g, side, [])

    refused(mutate(base, f), "has no graph " + side[:-1])


def test_buffer_index_out_of_range(base):
    def f(m, g):
        _tensor(g, 4, 1).buffer = 500

    refused(mutate(base, f), "op 4 (FULLY_CONNECTED) input 1", "buffer index 500")


@pytest.mark.parametrize("cut", [9, 40, 200, -100, -7])
def test_truncated_file(base, cut):
    refused(base[:cut], "not a valid .tflite")


def test_root_offset_out_of_range(base):
    refused(b"\xff\xff\xff\x7f" + base[4:], "not a valid .tflite")


def test_aliased_tables_cannot_make_parsing_quadratic(base):
    """A hostile file whose 1500 operator entries all point at one table with 3000 inputs
    would have the reader convert 4.5 M numbers from 25 kB; it is refused instead."""
    import time

    m = unpack(base)
    g = m.subgraphs[0]
    g.operators[0].inputs = list(g.operators[0].inputs) + [-1] * 3000
    g.operators += [g.operators[3]] * 1500
    raw = bytearray(pack(m))
    sub = S.Model.GetRootAs(raw, 0).Subgraphs(0)
    vec = sub._tab.Vector(sub._tab.Offset(10))  # SubGraph.operators
    first = vec + int.from_bytes(raw[vec:vec + 4], "little")
    for i in range(1, sub.OperatorsLength()):
        at = vec + 4 * i
        raw[at:at + 4] = (first - at).to_bytes(4, "little")
    t0 = time.monotonic()
    refused(bytes(raw), "not a valid .tflite", "tables overlap")
    assert time.monotonic() - t0 < 2.0


def test_compiled_runtime_refuses_an_average_pool_whose_sum_overflows_int32():
    """A valid model whose average-pool window (4096 x 4097 int8 values) would overflow the
    kernel's int32 sum: parse accepts it, the compiled runtime refuses it naming the op."""
    from tinygen.codegen import compiled
    from tinygen.common.errors import UnsupportedModel

    t_in, t_out = S.TensorT(), S.TensorT()
    for t, shape, name in ((t_in, [1, 4096, 4097, 1], b"x"), (t_out, [1, 1, 1, 1], b"y")):
        t.shape, t.type, t.buffer, t.name = shape, S.TensorType.INT8, 0, name
        t.quantization = S.QuantizationParametersT()
        t.quantization.scale, t.quantization.zeroPoint = [0.1], [0]
    code = S.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = S.BuiltinOperator.AVERAGE_POOL_2D
    o = S.OperatorT()
    o.opcodeIndex, o.inputs, o.outputs = 0, [0], [1]
    o.builtinOptionsType = S.BuiltinOptions.Pool2DOptions
    o.builtinOptions = S.Pool2DOptionsT()
    p = o.builtinOptions
    p.padding, p.strideH, p.strideW, p.filterHeight, p.filterWidth = S.Padding.VALID, 1, 1, 4096, 4097
    g = S.SubGraphT()
    g.tensors, g.operators, g.inputs, g.outputs = [t_in, t_out], [o], [0], [1]
    m = S.ModelT()
    m.version, m.operatorCodes, m.subgraphs, m.buffers = 3, [code], [g], [S.BufferT()]
    model = parse_model(pack(m))
    with pytest.raises(UnsupportedModel, match="AVERAGE_POOL_2D.*window sum"):
        compiled.check_supported(compiled.lower(model))


# ---- the CLI: one line, the right exit code, no traceback -----------------------------

def _one_line(res, code: int, *needles: str) -> None:
    assert res.returncode == code, res.stderr
    assert "Traceback" not in res.stderr + res.stdout
    lines = [ln for ln in res.stderr.splitlines() if ln.strip() and not ln.startswith("…")]  # progress
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    for n in needles:
        assert n in lines[0], lines[0]


def _custom_op(m, g):
    c = m.operatorCodes[g.operators[2].opcodeIndex]
    c.builtinCode, c.deprecatedBuiltinCode, c.customCode = S.BuiltinOperator.CUSTOM, 32, b"Evil\x1b[31m*/"


def test_custom_op_name_is_kept_inert(base):
    m = parse_model(mutate(base, _custom_op))
    assert m.operators[2].opcode == "CUSTOM:Evil??31m??"


@pytest.mark.parametrize("case", ["nan_scale", "unknown_op", "dilation", "order", "custom_op"])
def test_cli_inspect_reports_the_malformed_model_not_an_arena_size(base, tmp_path, case):
    fns = {
        "nan_scale": lambda m, g: _tensor(g, 0, "out").quantization.scale.__setitem__(0, float("nan")),
        "unknown_op": lambda m, g: setattr(m.operatorCodes[0], "builtinCode", 250),
        "dilation": lambda m, g: setattr(g.operators[0].builtinOptions, "dilationWFactor", 1 << 30),
        "order": _swap_first_two_ops,
        "custom_op": _custom_op,  # valid, but TFLM (which measures the arena) has no kernel for it
    }
    f = tmp_path / "bad.tflite"
    f.write_bytes(mutate(base, fns[case]))
    res = run_cli("inspect", str(f))
    _one_line(res, 3 if case in ("unknown_op", "custom_op") else 2, "op")
    assert "arena" not in res.stderr


def test_cli_build_compiled_refuses_before_writing(base, tmp_path):
    f = tmp_path / "bad.tflite"
    f.write_bytes(mutate(base, lambda m, g: setattr(g.operators[1].builtinOptions, "dilationHFactor", 1 << 30)))
    out = tmp_path / "out"
    res = run_cli("build", "--board", "qemu-m4", "--runtime", "compiled", "--model", str(f), "--out", str(out))
    _one_line(res, 2, "op 1 (DEPTHWISE_CONV_2D) option dilationHFactor")
    assert not out.exists()
