"""Structured pruning of a Keras 3 model: whole Conv1D/Conv2D filters and Dense units are removed, and
every layer that reads them loses the matching input channels, so the rebuilt model is smaller in
every dense int8 kernel (unstructured zeros would be stored and multiplied all the same).

Importance criterion: the L1 norm of a filter's (a unit's) incoming weights; each prunable layer
keeps its ``round(n * (1 - ratio))`` most important ones (at least one), in their original order.
A Conv1D/Conv2D/Dense whose channels reach the model's output is never pruned.  What follows a pruned
layer is sliced to match: DepthwiseConv1D/2D channels (with their multipliers), BatchNormalization's
statistics, the next convolution's or Dense's input channels, and after a Flatten the Dense rows of the
kept channels at every spatial position.  Layers that only reshape values per channel (pooling,
activations, dropout, padding) pass the channel set through.

Graphs (a functional ResNet-like block): the layers whose outputs meet in an ``Add`` must keep the
same channels, so they form one group, pruned together by the sum of their filters' L1 norms (and by
the largest ratio given to any of them).  A group that meets the model's input, the output, or a
tensor whose channels are not one group's (a Concatenate, a Flatten, a depth multiplier) in an Add
is not pruned.  ``Concatenate`` on the channel axis offsets each input's kept channels by where
that input starts.  Anything else is refused with its name, as is a shared layer.

``width_copy`` uses the same walk to build a width-scaled copy with fresh weights (the
distillation student).  Runs in the compression child (TensorFlow loaded).
"""

from __future__ import annotations

import numpy as np

from tinygen.common.errors import UnsupportedModel

KERNEL = ("Conv1D", "Conv2D", "Dense")  # a kernel's last axis is its filters/units, the one before its inputs
DEPTHWISE = ("DepthwiseConv1D", "DepthwiseConv2D")
PASS = ("MaxPooling1D", "AveragePooling1D", "GlobalAveragePooling1D", "GlobalMaxPooling1D", "ZeroPadding1D",
        "MaxPooling2D", "AveragePooling2D", "GlobalAveragePooling2D", "GlobalMaxPooling2D", "ZeroPadding2D",
        "ReLU", "Activation", "Dropout", "Softmax")
MERGE = ("Add", "Concatenate")
HANDLED = KERNEL + PASS + MERGE + DEPTHWISE + ("BatchNormalization", "Flatten")


def _show(name: str) -> str:
    return "".join(c if c.isprintable() else "?" for c in str(name))[:40]  # the model author's text


def _node_sources(lay, fn) -> list[str] | None:
    """Names of the layers feeding ``lay``'s one call inside the model, or None when it is called
    more than once there."""
    keys = [k for k in fn._nodes if k.rsplit("_ib-", 1)[0] == str(id(lay))]  # Keras' node keys
    if len(keys) != 1:
        return None
    node = lay._inbound_nodes[int(keys[0].rsplit("_ib-", 1)[1])]
    return [t._keras_history[0].name for t in node.input_tensors]


def _unhandled(name: str, cls: str) -> UnsupportedModel:
    return UnsupportedModel(
        f"structured pruning handles Conv1D, Conv2D, DepthwiseConv1D/2D, Dense, BatchNormalization, pooling, "
        f"Flatten, activation, Add and Concatenate layers; layer '{_show(name)}' is a {_show(cls)}: compress with "
        "--qat alone (it takes any layer) or rebuild the model from those layers")


def check_layer_classes(layers: list, spec=None) -> None:
    """Refuse, from the [layer name, class name] pairs a model was described with (no TensorFlow here),
    a layer that pruning, distillation and --fit cannot follow, and a ``--prune layer=ratio`` naming
    no layer or one that has no filters/units: before the compression child starts."""
    for name, cls in layers:
        if cls not in HANDLED and cls != "InputLayer":
            raise _unhandled(name, cls)
    if isinstance(spec, dict):
        kernels = [name for name, cls in layers if cls in KERNEL]
        for name in spec:
            if name not in kernels:
                raise UnsupportedModel(f"--prune names layer '{_show(name)}', which is not a prunable layer of this "
                                       f"model; its Conv1D/Conv2D/Dense layers: "
                                       f"{', '.join(_show(n) for n in kernels) or 'none'}")


def graph(model, prune: bool = True) -> tuple[str, list[tuple], str]:
    """(input layer name, [(layer, [names of the layers feeding it])] with every layer after its
    inputs, name of the layer making the output), refusing what the walk cannot follow.

    ``prune=False`` (QAT, which runs each layer as it is): any layer class, fed by any number of
    layers; only a shared layer or an operation outside the layers is refused."""
    what = "pruning" if prune else "quantization-aware training"
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise UnsupportedModel(f"{what} needs a single-input, single-output model")
    fn = getattr(model, "_functional", None) or model  # a Sequential keeps its graph in a Functional
    layers = [op for op in fn.operations if type(op).__name__ != "InputLayer"]
    first = model.inputs[0]._keras_history[0].name
    seen = {first}
    out = []
    for lay in layers:
        cls = type(lay).__name__
        if prune:
            _check_prunable_layer(lay, cls)
        srcs = _node_sources(lay, fn)
        if srcs is None:
            raise UnsupportedModel(f"layer '{_show(lay.name)}' is called more than once (a shared layer); "
                                   f"{what} needs each layer used once")
        if prune and cls not in MERGE and len(srcs) != 1 or any(n not in seen for n in srcs):
            raise UnsupportedModel(f"layer '{_show(lay.name)}' is fed by something that is not a layer of this "
                                   "model (an operation such as x + y): use keras.layers.Add/Concatenate")
        seen.add(lay.name)
        out.append((lay, srcs))
    last = model.outputs[0]._keras_history[0].name
    if last not in seen:
        raise UnsupportedModel(f"{what} needs the model's output to come from one of its layers")
    return first, out, last


def _check_prunable_layer(lay, cls: str) -> None:
    if cls not in HANDLED:
        raise _unhandled(lay.name, cls)
    if getattr(lay, "data_format", "channels_last") == "channels_first":
        raise UnsupportedModel(f"layer '{_show(lay.name)}' is channels-first (data_format='channels_first'), "
                               "which pruning does not handle: channels must be the last axis")
    if cls in ("Conv1D", "Conv2D") and getattr(lay, "groups", 1) != 1:
        raise UnsupportedModel(f"layer '{_show(lay.name)}' is a grouped {cls}, which pruning does not handle")
    if cls == "BatchNormalization" and lay.axis not in (-1, len(lay.input.shape) - 1):
        raise UnsupportedModel(f"layer '{_show(lay.name)}' normalizes axis {lay.axis}, not the channels")
    if cls == "Concatenate" and lay.axis not in (-1, len(lay.output.shape) - 1):
        raise UnsupportedModel(f"layer '{_show(lay.name)}' concatenates axis {lay.axis}, not the channels, "
                               "which pruning does not handle")


class _Groups:
    """Which Conv1D/Conv2D/Dense layers must keep the same channels (tied by an Add), and which may not be
    pruned at all."""

    def __init__(self, model):
        self.first, self.layers, self.last = graph(model)
        self.parent: dict[str, str] = {}
        fixed: set[str] = set()
        desc = {self.first: ("x", frozenset())}  # ("g", kernel): that group's channels; ("x", kernels): other

        def involved(d):
            return {d[1]} if d[0] == "g" else set(d[1])

        for lay, srcs in self.layers:
            cls = type(lay).__name__
            ins = [desc[n] for n in srcs]
            if cls in KERNEL:
                self.parent[lay.name] = lay.name
                desc[lay.name] = ("g", lay.name)
            elif cls == "Add":
                if all(d[0] == "g" for d in ins):
                    root = self.find(ins[0][1])
                    for d in ins[1:]:
                        self.parent[self.find(d[1])] = root
                    desc[lay.name] = ("g", root)
                else:
                    every = set().union(*(involved(d) for d in ins))
                    fixed |= every
                    desc[lay.name] = ("x", frozenset(every))
            elif cls in ("Concatenate", "Flatten") or (cls in DEPTHWISE and lay.depth_multiplier != 1):
                desc[lay.name] = ("x", frozenset(set().union(*(involved(d) for d in ins))))
            else:
                desc[lay.name] = ins[0]
        fixed |= involved(desc[self.last])  # the output's channels are the model's answer
        self.fixed = {self.find(k) for k in fixed}

    def find(self, k: str) -> str:
        while self.parent[k] != k:
            k = self.parent[k]
        return k

    def members(self) -> dict[str, list[str]]:
        groups: dict[str, list[str]] = {}
        for k in self.parent:  # insertion order: the graph's
            groups.setdefault(self.find(k), []).append(k)
        return groups


def prunable(model) -> list[str]:
    """Names of the layers whose filters/units may be removed."""
    g = _Groups(model)
    return [k for k in g.parent if g.find(k) not in g.fixed]


def ratios_for(model, spec) -> dict[str, float]:
    """``spec``: one ratio for every prunable layer, or {layer name: ratio}."""
    names = prunable(model)
    if isinstance(spec, dict):
        unknown = [n for n in spec if n not in names]
        if unknown:
            raise UnsupportedModel(f"--prune names layer '{_show(unknown[0])}', which is not a prunable layer of "
                                   f"this model; prunable: {', '.join(_show(n) for n in names) or 'none'}")
        return {n: float(spec[n]) for n in names if n in spec}
    return {n: float(spec) for n in names}


def _importance(kernel: np.ndarray) -> np.ndarray:
    return np.abs(kernel).reshape(-1, kernel.shape[-1]).sum(axis=0)


def rebuild(model, widths: dict[str, float], *, copy_weights: bool = True):
    """A copy of the model with each named layer's filters/units scaled by its factor (``1 - ratio``
    when pruning; the student's width when distilling; a tied group takes its smallest factor).
    With ``copy_weights`` the kept filters are the most important ones (summed over a tied group) and
    every weight is copied; without, the copy is freshly initialised."""
    import keras

    groups = _Groups(model)
    by_name = {lay.name: lay for lay, _ in groups.layers}
    keep_of: dict[str, np.ndarray] = {}  # group root -> output channels kept
    for root, members in groups.members().items():
        named = [widths[m] for m in members if m in widths]
        if not named or root in groups.fixed:
            continue
        kernels = [by_name[m].get_weights()[0] for m in members]
        n = kernels[0].shape[-1]
        n_keep = max(1, min(n, int(round(n * min(named)))))
        if copy_weights:
            # stable sort: ties keep the lower index, so the result does not depend on the sort's whims
            importance = sum(_importance(k) for k in kernels)
            keep_of[root] = np.sort(np.argsort(-importance, kind="stable")[:n_keep])
        else:
            keep_of[root] = np.arange(n_keep)
    keep: dict[str, np.ndarray | None] = {groups.first: None}  # channels kept on each layer's output
    chans = {groups.first: int(model.inputs[0].shape[-1])}  # the original channel count there
    configs, weights = {}, {}
    for lay, srcs in groups.layers:
        cls = type(lay).__name__
        cfg = lay.get_config()
        w = lay.get_weights()
        k_in, c_in = (keep[srcs[0]], chans[srcs[0]]) if srcs else (None, 0)
        out_keep, c_out = k_in, c_in
        if cls in KERNEL:
            kernel = w[0]
            if k_in is not None:
                kernel = kernel[..., k_in, :]  # (..., inputs, outputs) for a convolution and a Dense alike
            c_out = kernel.shape[-1]
            out_keep = keep_of.get(groups.find(lay.name))
            if out_keep is not None:
                cfg["units" if cls == "Dense" else "filters"] = int(len(out_keep))
                w = [kernel[..., out_keep]] + [b[out_keep] for b in w[1:]]
            else:
                w = [kernel] + w[1:]
        elif cls in DEPTHWISE:
            mult = int(cfg.get("depth_multiplier", 1))
            if k_in is not None:  # kernel (*window, inputs, multiplier)
                w = [w[0][..., k_in, :]] + [b.reshape(c_in, mult)[k_in].ravel() for b in w[1:]]
                out_keep = np.array([c * mult + m for c in k_in for m in range(mult)])
            c_out = c_in * mult
        elif cls == "BatchNormalization":
            if k_in is not None:
                w = [v[k_in] for v in w]
        elif cls == "Flatten":
            spatial = int(np.prod(lay.input.shape[1:-1])) if len(lay.input.shape) > 2 else 1
            if k_in is not None:
                out_keep = np.array([s * c_in + c for s in range(spatial) for c in k_in])
            c_out = c_in * spatial
        elif cls == "Concatenate":
            parts, off = [], 0
            for n in srcs:
                parts.append(off + (keep[n] if keep[n] is not None else np.arange(chans[n])))
                off += chans[n]
            out_keep = None if all(keep[n] is None for n in srcs) else np.concatenate(parts)
            c_out = off
        keep[lay.name], chans[lay.name] = out_keep, c_out
        configs[lay.name], weights[lay.name] = cfg, w
    new = keras.models.clone_model(
        model, clone_function=lambda lay: type(lay).from_config(configs.get(lay.name) or lay.get_config()))
    if copy_weights:
        for lay in new.layers:
            if lay.name in weights:
                lay.set_weights(weights[lay.name])
    return new


def prune(model, spec):
    """The pruned model (weights copied, not yet fine-tuned)."""
    return rebuild(model, {n: 1.0 - r for n, r in ratios_for(model, spec).items() if r > 0})


def width_copy(model, width: float):
    """A freshly initialised copy with every prunable layer ``width`` times as wide."""
    return rebuild(model, {n: float(width) for n in prunable(model)}, copy_weights=False)
