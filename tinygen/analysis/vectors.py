"""Reference vectors and quality figures.

``vectors/reference.npz`` in a generated project holds (N = number of vectors):

* ``inputs``         int8    (N, *input_shape)   — input_shape includes the batch of 1
* ``outputs``        int8    (N, *output_shape)  — what TFLM computes (tflite_micro interpreter)
* ``float_inputs``   float32 (N, *input_shape)   — the samples before quantization (when known)
* ``float_outputs``  float32 (N, *output_shape)  — the float model's outputs (when a float model exists)
* ``labels``         int64   (N,)                — class labels (classifiers with labels only)

The file is written with fixed zip timestamps so the same inputs give the same bytes.
"""

from __future__ import annotations

import io
import zipfile

import numpy as np


def quantize_input(x: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """Float -> int8 as TFLite's QUANTIZE does (reference_ops::AffineQuantize):
    x / scale in float32, std::round (halves away from zero), + zero point, clamp."""
    # float32 division, as the kernel does: in float64 a value a hair off a half can
    # land on the other side of it.
    with np.errstate(over="ignore", invalid="ignore"):  # +-inf saturate below, like the clamp
        v = np.asarray(x, dtype=np.float32) / np.float32(scale)
        # np.round rounds halves to even; trunc + the exact remainder rounds them away from zero.
        t = np.trunc(v)
        r = t + np.where(np.abs(v - t) >= np.float32(0.5), np.sign(v), np.float32(0))
    q = np.clip(r.astype(np.float64) + zero_point, -128, 127)
    return q.astype(np.int8)


def dequantize(q: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    return ((np.asarray(q, dtype=np.float32) - zero_point) * np.float32(scale)).astype(np.float32)


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """A deterministic .npz (numpy's savez stamps the current time into the zip)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name in sorted(arrays):
            arr = np.ascontiguousarray(arrays[name])
            member = io.BytesIO()
            np.lib.format.write_array(member, arr, allow_pickle=False)
            info = zipfile.ZipInfo(name + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, member.getvalue())
    return buf.getvalue()


def quality(task: str, int8_deq: np.ndarray, float_out: np.ndarray | None, y: np.ndarray | None) -> dict:
    """Float-vs-int8 figures on held-out data (both over the same samples)."""
    out: dict = {"task": task, "samples": int(len(int8_deq))}
    q = int8_deq.reshape(len(int8_deq), -1)
    f = float_out.reshape(len(float_out), -1) if float_out is not None else None
    if task == "classification":
        pred_q = q.argmax(axis=1)
        if f is not None:
            pred_f = f.argmax(axis=1)
            out["top1_agreement"] = float(np.mean(pred_q == pred_f))
        if y is not None:
            y = np.asarray(y).reshape(-1)
            out["int8_accuracy"] = float(np.mean(pred_q == y))
            if f is not None:
                out["float_accuracy"] = float(np.mean(pred_f == y))
            matrix = confusion_matrix(pred_q, y, q.shape[1]) if q.shape[1] <= MAX_CONFUSION_CLASSES else None
            if matrix is not None:
                out["int8_confusion_matrix"] = matrix
    elif task == "binary":
        out.update(binary_quality(q[:, 0], f[:, 0] if f is not None else None, y))
    else:
        if f is not None:
            d = q - f
            out["int8_vs_float_max_abs"] = float(np.max(np.abs(d)))
            out["int8_vs_float_rmse"] = float(np.sqrt(np.mean(d ** 2)))
        if y is not None:
            t = np.asarray(y, dtype=np.float32).reshape(len(y), -1)
            if t.shape == q.shape:
                out["int8_rmse"] = float(np.sqrt(np.mean((q - t) ** 2)))
                if f is not None:
                    out["float_rmse"] = float(np.sqrt(np.mean((f - t) ** 2)))
    return out


BINARY_THRESHOLD = 0.5
# Confusion matrices are kept for at most this many classes (64 x 64 counts: ~50 KB of tinygen.json,
# well under its 1 MiB limit; a larger matrix is no table anyone reads).
MAX_CONFUSION_CLASSES = 64


def confusion(pred: np.ndarray, y: np.ndarray) -> dict:
    """Counts of a binary classifier's outcomes: true/false negatives and positives."""
    pred, y = np.asarray(pred, dtype=bool), np.asarray(y).reshape(-1) == 1
    return {"tn": int(np.sum(~pred & ~y)), "fp": int(np.sum(pred & ~y)), "fn": int(np.sum(~pred & y)),
            "tp": int(np.sum(pred & y))}


def confusion_matrix(pred: np.ndarray, y: np.ndarray, k: int) -> list[list[int]] | None:
    """K x K counts: row = true label, column = predicted class.  None when a label is not a class
    index in [0, K) (a hostile or mismatched labels array: no matrix rather than a wrong one)."""
    y = np.asarray(y).reshape(-1)
    if y.dtype.kind not in "iub" and not (y.dtype.kind == "f" and np.all(np.isfinite(y)) and np.all(y == np.round(y))):
        return None
    y = y.astype(np.int64)
    pred = np.asarray(pred).reshape(-1).astype(np.int64)
    if k < 1 or len(pred) != len(y) or (y.size and (y.min() < 0 or y.max() >= k)) \
            or (pred.size and (pred.min() < 0 or pred.max() >= k)):
        return None
    counts = np.bincount(y * k + pred, minlength=k * k).reshape(k, k)
    return [[int(v) for v in row] for row in counts]


def binary_quality(q: np.ndarray, f: np.ndarray | None, y: np.ndarray | None) -> dict:
    """A one-output (sigmoid) classifier: the class is output >= 0.5."""
    out: dict = {"threshold": BINARY_THRESHOLD}
    pred_q = q >= BINARY_THRESHOLD
    pred_f = f >= BINARY_THRESHOLD if f is not None else None
    if pred_f is not None:
        out["top1_agreement"] = float(np.mean(pred_q == pred_f))
    if y is not None:
        y = np.asarray(y).reshape(-1)
        out["int8_accuracy"] = float(np.mean(pred_q == (y == 1)))
        out["int8_confusion"] = confusion(pred_q, y)
        if pred_f is not None:
            out["float_accuracy"] = float(np.mean(pred_f == (y == 1)))
            out["float_confusion"] = confusion(pred_f, y)
    return out
