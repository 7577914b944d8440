"""Refused TFLite ops in the user's words: which Keras layer made each op, and what to use instead.

A user wrote ``UpSampling2D``, not ``TILE``.  The converter keeps each layer's name in the names
of the tensors its ops write (``sequential_1/sequential_1/up_sampling2d_1/Repeat/Tile``; Keras 3's
export appends ``_1`` to every name), so an op can be traced back to the layer: exactly, when the
model's layer list (name, class) is known (a Keras model: the worker's ``describe`` job), or by
Keras's default layer names (``up_sampling2d``) for a .tflite converted elsewhere.

The tables below are data: a runtime that gains a kernel stops refusing its op without a change
here, and a replacement is offered only when every op it converts to runs on the chosen runtime
(``runtime_ops``).  Layer names are the model author's text: they pass through :func:`_quote`
(printable, one line, bounded) and the CLI's terminal escape.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tinygen.common.escape import terminal
from tinygen.tflite.model import TfliteModel


@dataclass(frozen=True)
class Replacement:
    code: str  # what the user writes instead (Keras)
    ops: tuple[str, ...]  # the int8 TFLite ops it converts to: all must run on the runtime
    same: bool = False  # computes the same function with the same weights (no retraining)


R = Replacement
_ACT = ("RELU",)
_RELU = 'ReLU() (activation="relu")'
_UNROLLED = ("UNPACK", "SPLIT", "SUB", "STRIDED_SLICE", "PACK", "FULLY_CONNECTED", "LOGISTIC", "TANH", "MUL", "ADD",
             "RESHAPE", "CONCATENATION")
# Keras class, or "op:<TFLITE_OP>" for an op that any layer's activation can make (Conv2D(...,
# activation="elu")), -> replacements, best first.
REPLACEMENTS: dict[str, tuple[Replacement, ...]] = {
    "UpSampling2D": (R('UpSampling2D(interpolation="bilinear")', ("RESIZE_BILINEAR",)),
                     R('Resizing(height, width, interpolation="nearest")', ("RESIZE_NEAREST_NEIGHBOR",), True)),
    "UpSampling1D": (R('Reshape((steps, 1, channels)), Resizing(steps * size, 1, interpolation="nearest"), '
                       'Reshape((steps * size, channels))', ("RESHAPE", "RESIZE_NEAREST_NEIGHBOR"), True),),
    "Embedding": (R("one-hot token ids fed to Dense(output_dim, use_bias=False) (its kernel is the embedding "
                    "matrix)", ("FULLY_CONNECTED",), True),),
    "GlobalMaxPooling2D": (R("MaxPooling2D(pool_size=(height, width)) + Flatten()", ("MAX_POOL_2D", "RESHAPE"),
                             True), R("GlobalAveragePooling2D()", ("MEAN",))),
    "GlobalMaxPooling1D": (R("MaxPooling1D(pool_size=steps) + Flatten()", ("MAX_POOL_2D", "RESHAPE"), True),
                           R("GlobalAveragePooling1D()", ("MEAN",))),
    "Conv2DTranspose": (R('UpSampling2D(interpolation="bilinear") + Conv2D', ("RESIZE_BILINEAR", "CONV_2D")),
                        R('Resizing(height, width, interpolation="nearest") + Conv2D',
                          ("RESIZE_NEAREST_NEIGHBOR", "CONV_2D"))),
    "Resizing": (R('Resizing(..., interpolation="nearest")', ("RESIZE_NEAREST_NEIGHBOR",)),
                 R('Resizing(..., interpolation="bilinear")', ("RESIZE_BILINEAR",))),
    "Permute": (R("reorder the axes of the data before the model", ()),),
    "LayerNormalization": (R("BatchNormalization() (folds into the convolution or Dense before it)", ()),),
    "Normalization": (R("normalize the data before the model, or Rescaling(scale, offset)", ("MUL", "ADD")),),
    # An unrolled GRU is plain ops (issue 16 lists them); conservative: every op it may use.
    "LSTM": (R("GRU(..., unroll=True) with a fixed sequence length", _UNROLLED),),
    "GRU": (R("GRU(..., unroll=True) with a fixed sequence length", _UNROLLED),),
    "SimpleRNN": (R("SimpleRNN(..., unroll=True) with a fixed sequence length", _UNROLLED),),
    "op:ELU": (R("LeakyReLU()", ("LEAKY_RELU",)), R(_RELU, _ACT),
               R('activation="swish"', ("LOGISTIC", "MUL"))),
    "op:GELU": (R('activation="swish"', ("LOGISTIC", "MUL")), R(_RELU, _ACT)),
    "op:HARD_SWISH": (R('activation="swish"', ("LOGISTIC", "MUL")), R('activation="relu6"', ("RELU6",))),
    "op:LEAKY_RELU": (R(_RELU, _ACT),),
    "op:PRELU": (R("LeakyReLU()", ("LEAKY_RELU",)), R(_RELU, _ACT)),
}
# TFLite op -> the Keras layer classes that usually make it (a class is named only when the model's
# own layer list or a default layer name confirms it).
OP_SOURCES: dict[str, tuple[str, ...]] = {
    "TILE": ("UpSampling2D", "UpSampling1D", "UpSampling3D", "RepeatVector"),
    "GATHER": ("Embedding",), "SELECT": ("Embedding",), "SELECT_V2": ("Embedding",), "CAST": ("Embedding",),
    "LESS": ("Embedding",),
    "ELU": ("ELU",), "LEAKY_RELU": ("LeakyReLU",), "PRELU": ("PReLU",), "HARD_SWISH": ("Activation",),
    "TRANSPOSE": ("Permute",), "REDUCE_MAX": ("GlobalMaxPooling2D", "GlobalMaxPooling1D"),
    "TRANSPOSE_CONV": ("Conv2DTranspose", "Conv1DTranspose"),
    "RESIZE_BILINEAR": ("UpSampling2D", "Resizing"), "RESIZE_NEAREST_NEIGHBOR": ("Resizing", "UpSampling2D"),
    "STRIDED_SLICE": ("Cropping1D", "Cropping2D", "GRU", "SimpleRNN"),
    "SQUARED_DIFFERENCE": ("LayerNormalization",), "RSQRT": ("LayerNormalization", "Normalization"),
    "SUB": ("Subtract", "Normalization"), "MINIMUM": ("Minimum", "ReLU"), "MAXIMUM": ("Maximum", "ReLU"),
    "BATCH_MATMUL": ("Dot", "Attention", "MultiHeadAttention"),
    "UNIDIRECTIONAL_SEQUENCE_LSTM": ("LSTM",), "WHILE": ("LSTM", "GRU", "SimpleRNN"),
    "SPLIT": ("GRU", "LSTM"), "UNPACK": ("GRU", "SimpleRNN", "LSTM"), "PACK": ("GRU", "SimpleRNN", "LSTM"),
}
_CONTAINERS = ("Sequential", "Functional", "Model")
# Ops a layer's activation= argument makes (Conv2D(..., activation="elu")).
_ACTIVATIONS = ("ELU", "GELU", "HARD_SWISH", "LEAKY_RELU", "PRELU")


def snake_name(cls: str) -> str:
    """Keras's default layer name for a class: UpSampling2D -> up_sampling2d, PReLU -> p_re_lu."""
    s = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", re.sub(r"\W+", "", cls))
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", s).lower()


def _quote(name: str) -> str:
    text = terminal(name).replace("\n", "?")
    return "'" + (text if len(text) <= 60 else text[:57] + "...") + "'"


@dataclass(frozen=True)
class Origin:
    """Where one refused op came from: the layer (name and class, either may be unknown)."""
    opcode: str
    layer: str | None
    cls: str | None

    def key(self) -> tuple:
        return (self.layer, self.cls) if self.layer else (None, None, self.opcode)


def _components(m: TfliteModel, op) -> list[str]:
    """Path components of the op's output tensor names, innermost last."""
    out: list[str] = []
    for t in op.outputs:
        for name in m.tensors[t].name.split(";"):
            out.extend(c for c in name.split("/") if c)
    return out


def _match(component: str, names: dict[str, str]) -> str | None:
    """The layer name ``component`` stands for: itself, or itself without export suffixes (_1)."""
    c = component
    while True:
        if c in names:
            return c
        stripped = re.sub(r"_\d+$", "", c)
        if stripped == c:
            return None
        c = stripped


def origin(m: TfliteModel, op, layers: list | None = None) -> Origin:
    """The Keras layer (name, class) that produced ``op``, as far as the names tell."""
    parts = _components(m, op)
    if layers:
        names = {str(n): str(c) for n, c in layers if str(c) not in _CONTAINERS}
        for comp in reversed(parts):
            hit = _match(comp, names)
            if hit is not None:
                return Origin(op.opcode, hit, names[hit])
        # The converter names the model's output tensor after the call, not the layer; with one
        # output, the op that writes it is the last layer's (e.g. Dense(activation="softmax")).
        last = [(str(n), str(c)) for n, c in layers if str(c) not in _CONTAINERS]
        if last and len(m.outputs) == 1 and m.outputs[0] in op.outputs:
            return Origin(op.opcode, *last[-1])
        return Origin(op.opcode, None, None)
    defaults = {snake_name(c): c for c in OP_SOURCES.get(op.opcode, ())}
    for comp in reversed(parts):
        base = re.sub(r"(_\d+)+$", "", comp)
        if base in defaults:
            return Origin(op.opcode, re.sub(r"_1$", "", comp), defaults[base])
    if len(parts) > 3 and parts[0] == parts[1]:  # Keras 3's export: model/model/layer_1/op...
        return Origin(op.opcode, re.sub(r"_1$", "", parts[2]), None)
    return Origin(op.opcode, None, None)


def replacements(o: Origin, runtime_ops) -> list[Replacement]:
    """What can replace the layer on a runtime that runs ``runtime_ops`` (None: any), best first."""
    found = []
    for key in (o.cls, f"op:{o.opcode}"):
        for r in REPLACEMENTS.get(key or "", ()):
            if (runtime_ops is None or all(op in runtime_ops for op in r.ops)) and r not in found:
                found.append(r)
        if found:
            break
    return found


def describe(origin_ops: list[tuple[Origin, str]], runtime_ops) -> str:
    """One phrase per layer: "the UpSampling2D layer 'up' (TFLite op TILE: no kernel): use ..."."""
    grouped: dict[tuple, list[tuple[Origin, str]]] = {}
    for o, why in origin_ops:
        grouped.setdefault(o.key(), []).append((o, why))
    phrases = []
    for items in grouped.values():
        o = items[0][0]
        ops = list(dict.fromkeys(f"{x.opcode}{': ' + w if w else ''}" for x, w in items))
        made = OP_SOURCES.get(o.opcode, ())
        if o.cls and o.opcode in _ACTIVATIONS and o.cls not in made:
            who = f"the activation of the {o.cls} layer {_quote(o.layer)}"
        elif o.cls:
            who = f"the {o.cls} layer {_quote(o.layer)}"
        else:
            who = f"the layer {_quote(o.layer)}" if o.layer else "a layer"
            who += f" (made by {_either(made)})" if made else ""
        reps, for_cls = replacements(o, runtime_ops), ""
        for cls in ([] if reps or o.cls else made):
            reps, for_cls = replacements(Origin(o.opcode, None, cls), runtime_ops), f" (for {cls})"
            if reps:
                break
        advice = ("use " + _either([r.code + (" (same result, same weights)" if r.same else "") for r in reps])
                  + for_cls) if reps else "remove or replace it"
        if any("scale" in w and ("small" in w or "range" in w) for _, w in items):  # the layer is fine; its calibrated range is degenerate
            advice = ("calibrate with representative --data (the values reaching it span almost nothing, "
                      "as in an untrained model)")
        phrases.append(f"{who} (TFLite op{'s' if len(ops) > 1 else ''} {', '.join(ops)}): {advice}")
    return "; ".join(phrases)


def _either(words) -> str:
    words = list(words)
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


def explain_ops(m: TfliteModel, refused: dict[int, str], layers: list | None, runtime_ops) -> str:
    """``refused``: op index -> why ('' for no reason beyond the op itself)."""
    by_index = {op.index: op for op in m.operators}
    items = [(origin(m, by_index[i], layers), why) for i, why in refused.items() if i in by_index]
    return describe(items, runtime_ops)


# What the serial protocol, the vectors and the firmware carry: one tensor in, one out.
ONE_TENSOR = "tinygen builds models with one input and one output (the vectors, the serial protocol and " \
    "the firmware carry one tensor each)"


def check_keras_io(display: str, n_inputs: int, n_outputs: int, input_dtype: str, layers: list | None) -> None:
    """Refuse, in Keras terms, a model whose inputs or outputs no later stage can carry."""
    from tinygen.common.errors import UnsupportedModel

    if n_inputs != 1:
        raise UnsupportedModel(f"{display} has {n_inputs} inputs; {ONE_TENSOR}: give the model one Input holding "
                               "all features (concatenate them before the model), or build one model per input")
    if n_outputs != 1:
        raise UnsupportedModel(f"{display} has {n_outputs} outputs; {ONE_TENSOR}: join them with Concatenate() "
                               "into one output, or keep the one you deploy: keras.Model(model.input, "
                               "model.outputs[0])")
    emb = [str(n) for n, c in (layers or []) if c == "Embedding"]
    is_int = input_dtype.startswith(("int", "uint", "bool"))
    if not emb and not is_int:
        return
    reps = " or ".join(r.code for r in REPLACEMENTS["Embedding"])
    if emb:
        why = (f"the Embedding layer {_quote(emb[0])} looks up integer token ids, which tinygen cannot carry: its "
               "inputs are quantized from float to int8, which changes ids (12 becomes 11)")
        raise UnsupportedModel(f"{display}: {why}; use {reps} (same result, same weights)")
    raise UnsupportedModel(f"{display}: the model input is {terminal(input_dtype)}; tinygen carries int8 inputs "
                           "quantized from float only (integer values would be quantized and change): give the "
                           "Keras Input dtype float32 and scale the values, or pass an int8 .tflite")
