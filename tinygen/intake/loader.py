"""Load the user's model and data.

Model sources: ``.keras``, ``.h5``, a SavedModel directory, or ``.tflite``.
An int8 ``.tflite`` is used as is; a float ``.tflite`` is refused (it cannot
be re-quantized without the graph it was converted from).  Keras and
SavedModel models are copied into a private directory (:func:`stage_model`)
and only ever loaded by the child process of :mod:`tinygen.intake.jobs`
(:func:`load_keras`, :func:`load_saved_model` run there).

``--data`` files (samples for calibration, held-out quality and reference
vectors):

* ``.npz`` with key ``x`` — float32 samples shaped ``(N, *input_shape)``
  (without the batch dimension of 1; ``(N, prod(input_shape))`` is also
  accepted and reshaped; channels-first ``(N, C, ...)`` for a channels-last
  input is transposed, with a note) — and optionally ``y``: integer class
  labels ``(N,)`` in ``0..K-1`` for a classifier of K outputs (one-hot
  ``(N, K)`` becomes those labels, with a note; a label outside is refused),
  or float targets ``(N, *output_shape)`` for a regressor.
* ``.npy``: just ``x``.
* ``.csv``: one sample per row, numbers only; a header row is allowed; a
  column named ``label`` or ``y`` becomes ``y``.  Places in a CSV are given
  as a spreadsheet shows them: row = line of the file (the header is row 1),
  column counted from 1.

Every value must be finite with ``|v| <= 1e30`` (:data:`VALUE_BOUND`),
refused up front with the first offending place: NaN would silently become
int8 0, and Inf or huge values make the converter's calibration produce
infinite ranges (and crash).  1e30 leaves eight orders of magnitude below
float32's 3.4e38, so sums of products of such inputs with ordinary weights in
the float model still do not overflow; no real sensor or feature is that
large.  Arrays are read without pickle, from their header first: object
arrays and headers that claim more data than the file holds are refused.

The last 20 % of the rows (at least one) are held out for quality figures and
reference vectors; the rest calibrate the quantizer.
"""

from __future__ import annotations

import csv
import io
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tinygen.common.errors import TinygenError
from tinygen.common.userfiles import CSV_LIMIT, DATA_LIMIT, MODEL_LIMIT, check_regular, copy_user_tree, read_user_file

MODEL_SUFFIXES = (".keras", ".h5", ".hdf5", ".tflite", ".onnx")
VALUE_BOUND = 1e30
# The converter calibrates int8 ranges on at most this many of the calibration samples
# (tinygen.intake.quantize); the parent hands the worker no more than that.
CALIBRATION_SAMPLES = 300


@dataclass
class Dataset:
    x: np.ndarray
    y: np.ndarray | None = None
    source: str = ""

    def split(self) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(calibration x, held-out x, held-out y)."""
        n = len(self.x)
        n_test = max(1, n // 5)
        if n < 2:
            return self.x, self.x, self.y
        y_test = self.y[n - n_test:] if self.y is not None else None
        return self.x[: n - n_test], self.x[n - n_test:], y_test


@dataclass
class SavedModelFn:
    """A SavedModel's serving signature with its single input (loaded once, used by
    quantization and by the float-model predictions, in the worker child)."""
    path: Path
    loaded: object = field(repr=False)  # keeps the signature's variables alive
    fn: object = field(repr=False)  # the 'serving_default' concrete function
    input_name: str
    input_shape: tuple[int, ...]  # with the batch dimension fixed to 1
    input_dtype: str = "float32"

    def predict(self, x: np.ndarray) -> np.ndarray:
        import tensorflow as tf

        outs = []
        for i in range(len(x)):
            r = self.fn(**{self.input_name: tf.constant(x[i: i + 1])})
            r = list(r.values())[0] if isinstance(r, dict) else r
            outs.append(np.asarray(r))
        return np.concatenate(outs).astype(np.float32)


def model_kind(path: Path) -> str:
    """"keras" | "savedmodel" | "tflite" | "onnx", after checking the path names regular files within the size limit."""
    if not path.exists() and not path.is_symlink():
        raise TinygenError(f"model {path} does not exist; check the path")
    if path.is_dir():
        for name in ("saved_model.pb", "saved_model.pbtxt"):
            if (path / name).exists() or (path / name).is_symlink():
                check_regular(path / name, "SavedModel graph", MODEL_LIMIT)
                return "savedmodel"
        raise TinygenError(f"{path} is a directory without saved_model.pb; pass a SavedModel directory, "
                           ".keras, .h5 or .tflite")
    suffix = path.suffix.lower()
    if suffix not in MODEL_SUFFIXES:
        raise TinygenError(f"{path}: unknown model type '{suffix or '(none)'}'; "
                           "pass a .keras, .h5, .tflite, .onnx file or a SavedModel directory")
    check_regular(path, "model", MODEL_LIMIT)
    return "tflite" if suffix == ".tflite" else "onnx" if suffix == ".onnx" else "keras"


def stage_model(path: Path, kind: str, work: Path) -> Path:
    """Copy a Keras file or SavedModel into the private ``work`` directory; return the copy.

    TensorFlow in the child then reads only what was checked here (regular files,
    bounded size), never the user's path.
    """
    if kind == "savedmodel":
        dest = work / "model.savedmodel"
        copy_user_tree(path, dest, "SavedModel", MODEL_LIMIT)
        return dest
    data = read_user_file(path, "model", MODEL_LIMIT)
    suffix = ".keras" if path.suffix.lower() == ".keras" else ".h5"
    if suffix == ".keras" and not data.startswith(b"PK"):
        raise TinygenError(f"{path} is not a .keras file (a .keras file is a zip archive); "
                           "save the model with model.save('model.keras')")
    if suffix == ".h5" and not data.startswith(b"\x89HDF"):
        raise TinygenError(f"{path} is not an HDF5 file; save the model with model.save('model.h5') "
                           "or as .keras")
    dest = work / f"model{suffix}"
    dest.write_bytes(data)
    return dest


def _load_failed(display: str, exc: Exception, what: str, fix: str) -> TinygenError:
    msg = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
    return TinygenError(f"{display} could not be loaded as {what} ({msg}); {fix}")


def load_keras(path: Path, display: str | None = None):
    """The Keras model in ``path`` (worker child only; safe_mode keeps Lambda code from running)."""
    import tensorflow as tf

    try:
        return tf.keras.models.load_model(str(path), compile=False, safe_mode=True)
    except Exception as exc:
        raise _load_failed(display or str(path), exc, "a Keras model", "save it with model.save('model.keras')") \
            from None


def load_saved_model(path: Path, display: str | None = None) -> SavedModelFn:
    import tensorflow as tf

    display = display or str(path)
    try:
        loaded = tf.saved_model.load(str(path))
    except Exception as exc:
        raise _load_failed(display, exc, "a SavedModel", "re-export it") from None
    sig = loaded.signatures.get("serving_default")
    if sig is None:
        raise TinygenError(f"SavedModel {display} has no 'serving_default' signature; re-export it with one")
    inputs = sig.structured_input_signature[1]
    if len(inputs) != 1:
        raise TinygenError(f"SavedModel {display} has {len(inputs)} inputs; tinygen supports one", exit_code=3)
    (name, spec), = inputs.items()
    if any(d is None for d in spec.shape[1:]):
        raise TinygenError(f"SavedModel {display} input '{name}' has an unknown dimension {tuple(spec.shape)}; "
                           "export it with a fixed input shape")
    return SavedModelFn(path, loaded, sig, name, (1,) + tuple(int(d) for d in spec.shape[1:]), spec.dtype.name)


# ---------------------------------------------------------------- data

def load_data(path: str | Path) -> Dataset:
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in (".npz", ".npy", ".csv"):
        if not p.exists():
            raise TinygenError(f"data file {p} does not exist; check the --data path")
        raise TinygenError(f"--data {p}: unknown format '{suffix}'; use .npz (x, y), .npy or .csv")
    if suffix == ".csv":
        x, y = _load_csv(p, read_user_file(p, "data file", CSV_LIMIT))
        _check_arrays(x, y, p, csv_places=True)
        return Dataset(x, y, str(p))
    raw = read_user_file(p, "data file", DATA_LIMIT)
    if suffix == ".npy":
        x, y = _npy(raw, p, "x"), None
    else:
        try:
            zf = zipfile.ZipFile(io.BytesIO(raw))
            names = zf.namelist()
        except (zipfile.BadZipFile, ValueError, OSError) as exc:
            raise TinygenError(f"--data {p} is not a valid .npz file ({exc}); save samples with "
                               "np.savez(file, x=samples, y=labels)") from None
        with zf:
            if "x.npy" not in names:
                found = ", ".join(n[:-4] for n in names if n.endswith(".npy")) or "none"
                raise TinygenError(f"{p} has no array named 'x' (found: {found}); "
                                   "save samples with np.savez(file, x=samples, y=labels)")
            x = _npz_member(zf, p, "x")
            y = _npz_member(zf, p, "y") if "y.npy" in names else None
    _check_arrays(x, y, p)
    return Dataset(x, y, str(p))


def _npz_member(zf: zipfile.ZipFile, p: Path, key: str) -> np.ndarray:
    info = zf.getinfo(f"{key}.npy")
    if info.file_size > DATA_LIMIT:
        raise TinygenError(f"--data {p}: array '{key}' unpacks to {info.file_size / (1 << 20):.0f} MiB, over "
                           f"tinygen's {DATA_LIMIT >> 20} MiB limit; use fewer samples")
    try:
        with zf.open(info) as f:
            data = f.read(DATA_LIMIT + 1)
    except Exception as exc:  # zipfile raises assorted errors on corrupt members
        raise TinygenError(f"--data {p}: array '{key}' cannot be unpacked ({type(exc).__name__}: {exc}); "
                           "save it again with np.savez") from None
    return _npy(data, p, key)


def _npy(data: bytes, p: Path, key: str) -> np.ndarray:
    """Array ``key`` from .npy bytes, checked from its header before any allocation."""
    fmt = np.lib.format
    f = io.BytesIO(data)
    try:
        version = fmt.read_magic(f)
        reader = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
        shape, fortran, dtype = reader(f)
    except Exception as exc:
        raise TinygenError(f"--data {p}: '{key}' is not a valid .npy array ({exc}); save it with np.save/np.savez") \
            from None
    if dtype.hasobject:
        raise TinygenError(f"--data {p}: '{key}' is an array of Python objects, which tinygen does not load "
                           "(it would need pickle); save numbers, e.g. x.astype('float32')")
    count = 1
    for d in shape:
        count *= int(d)
    if count * dtype.itemsize != len(data) - f.tell():
        raise TinygenError(f"--data {p}: '{key}' claims shape {tuple(shape)} of {dtype}, but the file holds "
                           f"{len(data) - f.tell():,} bytes of data; the file is truncated or corrupt")
    try:
        return np.load(io.BytesIO(data), allow_pickle=False)
    except Exception as exc:
        raise TinygenError(f"--data {p}: '{key}' cannot be read ({type(exc).__name__}: {exc}); "
                           "save it again with np.save/np.savez") from None


def _check_arrays(x: np.ndarray, y: np.ndarray | None, p: Path, csv_places: bool = False) -> None:
    if x.dtype.kind not in "fiu":
        raise TinygenError(f"--data {p}: 'x' holds {x.dtype}, not numbers; save samples as float32")
    if x.ndim == 0:
        raise TinygenError(f"--data {p}: 'x' is a single number, not samples; save x shaped (N, *input_shape)")
    if len(x) == 0:
        raise TinygenError(f"--data {p} holds no samples")
    if x.size == 0:
        raise TinygenError(f"--data {p}: 'x' has shape {x.shape}, samples without values")
    if not csv_places:  # a CSV's cells were checked where they stand in the file
        _check_finite(x, p, "x")
    if y is None:
        return
    if y.dtype.kind not in "fiu":
        raise TinygenError(f"--data {p}: 'y' holds {y.dtype}, not numbers; save class labels as integers "
                           "(0..classes-1) or regression targets as floats")
    if y.ndim == 0:
        raise TinygenError(f"--data {p}: 'y' is a single number; save one label or target per sample")
    if len(y) != len(x):
        raise TinygenError(f"--data {p}: 'x' has {len(x)} samples but 'y' has {len(y)}; they must match")
    if not csv_places:
        _check_finite(y, p, "y")


def _bad_values(a: np.ndarray) -> np.ndarray:
    """Mask of values tinygen refuses (NaN, Inf, |v| > VALUE_BOUND); integers always pass.

    Compared in float32 at least: in float16 the bound itself rounds to Inf, and ``inf <= inf``
    would let Inf through (to crash the converter's calibration)."""
    if a.dtype.kind != "f":
        return np.zeros(a.shape, dtype=bool)
    if a.dtype.itemsize < 4:
        a = a.astype(np.float32)
    with np.errstate(invalid="ignore"):
        return ~(np.abs(a) <= VALUE_BOUND)


def _refuse_value(where: str, v: float) -> TinygenError:
    return TinygenError(f"{where} is {float(v):g}; tinygen needs finite values with |v| <= {VALUE_BOUND:g} "
                        "(NaN would become int8 0, Inf or huge values break int8 calibration): fix or drop "
                        "that sample")


def _check_finite(a: np.ndarray, p: Path, key: str) -> None:
    bad = _bad_values(a)
    if not bad.any():
        return
    first = tuple(int(i) for i in np.argwhere(bad)[0])
    where = f"--data {p.name}: {key}[{', '.join(map(str, first))}] (sample {first[0]})"
    raise _refuse_value(where, a[first])


def _load_csv(p: Path, raw: bytes) -> tuple[np.ndarray, np.ndarray | None]:
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise TinygenError(f"--data {p} is not UTF-8 text; save the CSV as plain text, one sample per row") \
            from None
    reader = csv.reader(io.StringIO(text, newline=""))
    rows, lines = [], []
    try:
        for r in reader:
            if r and any(c.strip() for c in r):
                rows.append(r)
                lines.append(reader.line_num)
    except csv.Error as exc:
        raise TinygenError(f"--data {p} row {reader.line_num}: {exc}; fix the CSV") from None
    if not rows:
        raise TinygenError(f"--data {p} is empty")
    header = None
    try:
        [float(c) for c in rows[0]]
    except ValueError:
        header, rows, lines = [c.strip().lower() for c in rows[0]], rows[1:], lines[1:]
    if not rows:
        raise TinygenError(f"--data {p} holds no samples (only a header row)")
    width = len(rows[0])
    values = []
    for r, line in zip(rows, lines):
        if len(r) != width:
            raise TinygenError(f"--data {p.name} row {line} has {len(r)} columns, the first data row {width}; "
                               "every row must have the same columns")
        row = []
        for col, c in enumerate(r, 1):
            try:
                v = float(c)
            except ValueError:
                raise TinygenError(f"--data {p.name} row {line}, column {col} is '{c.strip()[:20]}', not a number; "
                                   "fix the CSV") from None
            if not abs(v) <= VALUE_BOUND:
                raise _refuse_value(f"--data {p.name} row {line}, column {col}", v)
            row.append(v)
        values.append(row)
    arr = np.array(values, dtype=np.float64)
    y = None
    if header is not None:
        for name in ("label", "y"):
            if name in header:
                col = header.index(name)
                y = arr[:, col]
                if np.all(y == np.round(y)):
                    y = y.astype(np.int64)
                arr = np.delete(arr, col, axis=1)
                break
    return arr.astype(np.float32), y


def fit_to_input(x: np.ndarray, input_shape: tuple[int, ...], source: str,
                 notes: list[str] | None = None) -> np.ndarray:
    """Reshape samples to (N, *input_shape_without_batch), or fail with the shapes.

    Channels-first samples (``x.shape[1:]`` is the input shape only once axis 1 moves last, e.g.
    (N, 3, 128) for a (128, 3) input) are transposed, and a line saying so goes to ``notes``:
    reshaping them as they are would interleave the channels, and the model would run at chance
    without a word."""
    want = tuple(int(d) for d in input_shape[1:])
    size = int(np.prod(want)) if want else 1
    x = np.asarray(x)
    if x.ndim >= 1 and tuple(x.shape[1:]) == want:
        return x
    if x.ndim >= 3 and tuple(x.shape[2:]) + (x.shape[1],) == want:
        if notes is not None:
            notes.append(f"--data {source}: x is channels-first {tuple(x.shape[1:])}; moved its axis 1 last to "
                         f"match the model input {want} (save x shaped (N, {', '.join(map(str, want))}) to "
                         "skip this)")
        return np.ascontiguousarray(np.moveaxis(x, 1, -1))
    if x.ndim >= 1 and int(np.prod(x.shape[1:])) == size:
        return x.reshape((len(x),) + want)
    raise TinygenError(
        f"--data {source}: samples have shape {tuple(x.shape[1:])} but the model input is "
        f"{tuple(input_shape)}; supply x shaped (N, {', '.join(map(str, want))})"
    )


def _one_hot(y: np.ndarray) -> bool:
    """Rows of 0 and 1 with exactly one 1 each (at least two columns)."""
    if y.ndim != 2 or y.shape[1] < 2 or y.dtype.kind not in "fiub":
        return False
    return bool(np.all((y == 0) | (y == 1)) and np.all(y.sum(axis=1) == 1))


def labels_for_model(y: np.ndarray | None, out_shape, source: str, task: str | None = None,
                     notes: list[str] | None = None) -> np.ndarray | None:
    """``y`` as the model's task reads it, or a one-line refusal.

    ``out_shape``: the model output without the batch dimension (None: unknown, ``y`` kept).  A
    classifier's labels given one-hot ((N, K), rows of 0/1 summing to 1, K the model's outputs) become
    integer labels with a line in ``notes`` (as they are they would be taken for regression targets);
    integer labels outside 0..K-1 are refused with the first one (they would score 0 % silently).
    ``task`` "regression" or "binary" (the user's ``--task``) leaves ``y`` as given."""
    if y is None or out_shape is None or task in ("regression", "binary"):
        return y
    n_out = int(np.prod(tuple(out_shape))) if len(tuple(out_shape)) else 1
    if _one_hot(y):
        if y.shape[1] != n_out:
            what = f"integer class labels 0..{n_out - 1}" if n_out > 1 else "labels of 0 and 1"
            raise TinygenError(f"--data {source}: y is one-hot with {y.shape[1]} columns but the model has {n_out} "
                               f"output{'s' if n_out > 1 else ''}; give {what} (one per sample)")
        if notes is not None:
            notes.append(f"--data {source}: y is one-hot ({len(y)}, {n_out}); using its argmax as the class labels "
                         f"0..{n_out - 1} (save y as integers to skip this)")
        return np.argmax(y, axis=1).astype(np.int64)
    if y.ndim == 1 and y.dtype.kind in "iu" and n_out > 1:
        bad = np.flatnonzero((y < 0) | (y >= n_out))
        if len(bad):
            i = int(bad[0])
            raise TinygenError(f"--data {source}: label y[{i}] = {int(y[i])} is outside 0..{n_out - 1} (the model "
                               f"has {n_out} outputs, one per class); renumber the classes 0..{n_out - 1}"
                               + ("" if task else " or pass --task regression for numeric targets"))
    return y
