"""Recurrent layers made convertible: LSTM, GRU and SimpleRNN (also inside Bidirectional)
rebuilt with ``unroll=True`` before int8 conversion.

Why unrolling (checked with TF 2.21): a Keras recurrent layer left as a loop crashes the
converter's calibration (a segfault in the child), so the fused UNIDIRECTIONAL_SEQUENCE_LSTM
is out of reach from Keras 3 here, and GRU has no fused int8 op at all. Unrolled over a fixed
sequence length the layers become plain int8 ops (UNPACK, FULLY_CONNECTED, SPLIT,
STRIDED_SLICE, LOGISTIC, TANH, MUL, ADD, SUB, PACK) that TFLM and the compiled runtime both
compute, bit-exact with each other. The cost is code size and flash: one copy of the cell's
ops per time step.

Supported: return_sequences, go_backwards, Bidirectional, any units / activations that
convert. Refused: stateful=True (state carried between calls has no place in a stateless
model). Only Functional and Sequential models can be rebuilt; a subclassed model is
converted as it is.
"""

from __future__ import annotations

from tinygen.common.errors import UnsupportedModel

RECURRENT = ("LSTM", "GRU", "SimpleRNN")


def _set_unroll(cfg) -> bool:
    """Set unroll=True on every recurrent layer config nested in ``cfg``; True if any."""
    found = False
    if isinstance(cfg, dict):
        if cfg.get("class_name") in RECURRENT and isinstance(cfg.get("config"), dict):
            cfg["config"]["unroll"] = True
            found = True
        for v in cfg.values():
            found = _set_unroll(v) or found
    elif isinstance(cfg, list):
        for v in cfg:
            found = _set_unroll(v) or found
    return found


def _recurrent_layers(layers):
    for layer in layers:
        if type(layer).__name__ in RECURRENT:
            yield layer
        for attr in ("forward_layer", "backward_layer"):  # Bidirectional
            inner = getattr(layer, attr, None)
            if inner is not None:
                yield from _recurrent_layers([inner])
        if hasattr(layer, "layers"):
            yield from _recurrent_layers(layer.layers)


def unroll_recurrent(model):
    """``(model, names)``: the model with its recurrent layers unrolled (same weights) and
    their names, or the model unchanged and ``[]`` when there is nothing to do or it cannot
    be rebuilt."""
    import keras

    found = list(_recurrent_layers(getattr(model, "layers", [])))
    if not found:
        return model, []
    for layer in found:
        if getattr(layer, "stateful", False):
            name = "".join(c if c.isprintable() else "?" for c in layer.name)[:40]
            raise UnsupportedModel(
                f"recurrent layer '{name}' ({type(layer).__name__}) is stateful=True: a microcontroller model "
                "starts every inference from a zero state; rebuild it with stateful=False and feed the whole "
                "sequence as one input")
    if any(d is None for inp in model.inputs for d in tuple(inp.shape)[1:]):
        return model, []  # the batch-1 rebuild refuses the free dimension with its own message

    def clone(layer):
        cfg = layer.get_config()
        if type(layer).__name__ in RECURRENT:
            cfg["unroll"] = True
        elif not _set_unroll(cfg):
            return layer  # shared as it is: same object, same weights
        return layer.__class__.from_config(cfg)

    try:
        new = keras.models.clone_model(model, clone_function=clone, recursive=True)
        for old_layer, new_layer in zip(model.layers, new.layers):
            if new_layer is not old_layer:
                new_layer.set_weights(old_layer.get_weights())
    except Exception:  # subclassed or exotic models: convert the original
        return model, []
    return new, [layer.name for layer in found]


def convert_settled(conv) -> bytes:
    """``conv.convert()``, run again (at most twice) while the only float op it leaves is SPLIT:
    TF 2.21's int8 pass sometimes leaves the first unrolled step's SPLIT in float (one of its
    outputs is dead there, the zero initial state folds away), and not the same way twice for
    one model; a fresh conversion then comes out fully int8."""
    from tinygen.tflite.int8 import float_ops
    from tinygen.tflite.model import parse_model

    result = bytes(conv.convert())
    for _ in range(2):
        if float_ops(parse_model(result)) != ["SPLIT"]:
            break
        result = bytes(conv.convert())
    return result
