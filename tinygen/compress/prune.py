"""Structured pruning of a Keras 3 model: whole Conv2D filters and Dense units are removed, and
every layer that reads them loses the matching input channels, so the rebuilt model is smaller in
every dense int8 kernel (unstructured zeros would be stored and multiplied all the same).

Importance criterion: the L1 norm of a filter's (a unit's) incoming weights; each prunable layer
keeps its ``round(n * (1 - ratio))`` most important ones (at least one), in their original order.
The last Conv2D/Dense (the model's outputs) is never pruned.  What follows a pruned layer is
sliced to match: DepthwiseConv2D channels (with their multipliers), BatchNormalization's
statistics, the next Conv2D's or Dense's input channels, and after a Flatten the Dense rows of the
kept channels at every spatial position.  Layers that only reshape values per channel (pooling,
activations, dropout, padding) pass the channel set through.  Anything else is refused with its
name, as is a model that is not a single chain of layers.

``width_copy`` uses the same walk to build a width-scaled copy with fresh weights (the
distillation student).  Runs in the compression child (TensorFlow loaded).
"""

from __future__ import annotations

import numpy as np

from tinygen.common.errors import UnsupportedModel

KERNEL = ("Conv2D", "Dense")
PASS = ("MaxPooling2D", "AveragePooling2D", "GlobalAveragePooling2D", "GlobalMaxPooling2D", "ReLU",
        "Activation", "Dropout", "Softmax", "ZeroPadding2D")
HANDLED = KERNEL + PASS + ("DepthwiseConv2D", "BatchNormalization", "Flatten")


def _show(name: str) -> str:
    return "".join(c if c.isprintable() else "?" for c in str(name))[:40]  # the model author's text


def chain(model) -> list:
    """The model's layers in order, refusing what the walk cannot follow."""
    layers = [lay for lay in model.layers if type(lay).__name__ != "InputLayer"]
    for lay in layers:
        cls = type(lay).__name__
        if cls not in HANDLED:
            raise UnsupportedModel(
                f"structured pruning handles Conv2D, DepthwiseConv2D, Dense, BatchNormalization, pooling, Flatten "
                f"and activation layers; layer '{_show(lay.name)}' is a {cls}: compress without --prune/--distill/"
                "--fit (e.g. --qat only) or rebuild the model from those layers")
        if cls == "Conv2D" and getattr(lay, "groups", 1) != 1:
            raise UnsupportedModel(f"layer '{_show(lay.name)}' is a grouped Conv2D, which pruning does not handle")
        if cls == "BatchNormalization" and lay.axis not in (-1, len(lay.input.shape) - 1):
            raise UnsupportedModel(f"layer '{_show(lay.name)}' normalizes axis {lay.axis}, not the channels")
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise UnsupportedModel("pruning needs a single-input, single-output model")
    prev = None  # the operation that must feed the next layer (None: the model's input layer)
    for lay in layers:
        try:
            src = lay.input._keras_history[0]
            ok = (type(src).__name__ == "InputLayer") if prev is None else src is prev
        except Exception:  # a layer called more than once has no single input
            ok = False
        if not ok:
            raise UnsupportedModel(f"pruning needs a single chain of layers; '{_show(lay.name)}' is not fed by the "
                                   "layer before it (a branch, a skip connection or a shared layer)")
        prev = lay
    try:
        last_ok = model.outputs[0]._keras_history[0] is prev
    except Exception:
        last_ok = False
    if not last_ok:
        raise UnsupportedModel("pruning needs a single chain of layers ending at the model's output")
    return layers


def prunable(model) -> list[str]:
    """Names of the layers whose filters/units may be removed (every Conv2D/Dense but the last)."""
    kernels = [lay.name for lay in chain(model) if type(lay).__name__ in KERNEL]
    return kernels[:-1]


def ratios_for(model, spec) -> dict[str, float]:
    """``spec``: one ratio for every prunable layer, or {layer name: ratio}."""
    names = prunable(model)
    if isinstance(spec, dict):
        unknown = [n for n in spec if n not in names]
        if unknown:
            raise UnsupportedModel(f"--prune names layer '{_show(unknown[0])}', which is not a prunable layer of "
                                   f"this model; prunable: {', '.join(_show(n) for n in names) or 'none'}")
        return {n: float(spec.get(n, 0.0)) for n in names}
    return {n: float(spec) for n in names}


def _importance(kernel: np.ndarray) -> np.ndarray:
    return np.abs(kernel).reshape(-1, kernel.shape[-1]).sum(axis=0)


def _keep(kernel: np.ndarray, n_keep: int, by_importance: bool) -> np.ndarray:
    if not by_importance:
        return np.arange(n_keep)
    # stable sort: ties keep the lower index, so the result does not depend on the sort's whims
    return np.sort(np.argsort(-_importance(kernel), kind="stable")[:n_keep])


def rebuild(model, widths: dict[str, float], *, copy_weights: bool = True):
    """A new Sequential model with each named layer's filters/units scaled by its factor
    (``1 - ratio`` when pruning; the student's width when distilling).  With ``copy_weights`` the
    kept filters are the most important ones and every weight is copied; without, the copy is
    freshly initialised."""
    import keras

    layers = chain(model)
    keep = None  # channel indices kept on the current tensor's last axis (None: all)
    channels = int(model.inputs[0].shape[-1])
    new_layers, new_weights = [], []
    for lay in layers:
        cls = type(lay).__name__
        cfg = lay.get_config()
        w = lay.get_weights()
        out_keep = keep
        if cls in KERNEL:
            kernel = w[0]
            if keep is not None:
                kernel = kernel[..., keep, :] if cls == "Conv2D" else kernel[keep, :]
            n = kernel.shape[-1]
            if lay.name in widths:
                n_keep = max(1, min(n, int(round(n * widths[lay.name]))))
                out_keep = _keep(w[0], n_keep, copy_weights)
                kernel = kernel[..., out_keep]
                cfg["filters" if cls == "Conv2D" else "units"] = int(n_keep)
                w = [kernel] + [b[out_keep] for b in w[1:]]
            else:
                out_keep = None
                w = [kernel] + w[1:]
            channels = n
        elif cls == "DepthwiseConv2D":
            mult = int(cfg.get("depth_multiplier", 1))
            if keep is not None:
                w = [w[0][:, :, keep, :]] + [b.reshape(channels, mult)[keep].ravel() for b in w[1:]]
                out_keep = np.array([c * mult + m for c in keep for m in range(mult)])
            channels *= mult
        elif cls == "BatchNormalization":
            if keep is not None:
                w = [v[keep] for v in w]
        elif cls == "Flatten":
            spatial = int(np.prod(lay.input.shape[1:-1])) if len(lay.input.shape) > 2 else 1
            if keep is not None:
                out_keep = np.array([s * channels + c for s in range(spatial) for c in keep])
            channels *= spatial
        new_layers.append(type(lay).from_config(cfg))
        new_weights.append(w)
        keep = out_keep
    inp = model.inputs[0]
    new = keras.Sequential([keras.Input(shape=tuple(inp.shape[1:]), name=_input_name(model))] + new_layers,
                           name=model.name)
    if copy_weights:
        for lay, w in zip(new_layers, new_weights):
            lay.set_weights(w)
    return new


def _input_name(model) -> str:
    name = getattr(model.inputs[0], "name", "input") or "input"
    return name.split(":")[0]


def prune(model, spec):
    """The pruned model (weights copied, not yet fine-tuned)."""
    return rebuild(model, {n: 1.0 - r for n, r in ratios_for(model, spec).items() if r > 0})


def width_copy(model, width: float):
    """A freshly initialised copy with every prunable layer ``width`` times as wide."""
    return rebuild(model, {n: float(width) for n in prunable(model)}, copy_weights=False)
