"""Load the user's model and data.

Model sources: ``.keras``, ``.h5``, a SavedModel directory, or ``.tflite``.
An int8 ``.tflite`` is used as is; a float ``.tflite`` is refused (it cannot
be re-quantized without the graph it was converted from).

``--data`` files (samples for calibration, held-out quality and reference
vectors):

* ``.npz`` with key ``x`` — float32 samples shaped ``(N, *input_shape)``
  (without the batch dimension of 1; ``(N, prod(input_shape))`` is also
  accepted and reshaped) — and optionally ``y``: integer class labels ``(N,)``
  for a classifier, or float targets ``(N, *output_shape)`` for a regressor.
* ``.npy``: just ``x``.
* ``.csv``: one sample per row, numbers only; a header row is allowed; a
  column named ``label`` or ``y`` becomes ``y``.

The last 20 % of the rows (at least one) are held out for quality figures and
reference vectors; the rest calibrate the quantizer.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tinygen.errors import TinygenError

MODEL_SUFFIXES = (".keras", ".h5", ".hdf5", ".tflite")


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
    quantization and by the float-model predictions)."""
    path: Path
    loaded: object = field(repr=False)  # keeps the signature's variables alive
    fn: object = field(repr=False)  # the 'serving_default' concrete function
    input_name: str
    input_shape: tuple[int, ...]  # with the batch dimension fixed to 1

    def predict(self, x: np.ndarray) -> np.ndarray:
        import tensorflow as tf

        outs = []
        for i in range(len(x)):
            r = self.fn(**{self.input_name: tf.constant(x[i: i + 1])})
            r = list(r.values())[0] if isinstance(r, dict) else r
            outs.append(np.asarray(r))
        return np.concatenate(outs).astype(np.float32)


@dataclass
class UserModel:
    path: Path
    kind: str  # "keras" | "savedmodel" | "tflite"
    keras_model: object | None = field(default=None, repr=False)
    tflite_bytes: bytes | None = field(default=None, repr=False)
    saved_model: SavedModelFn | None = field(default=None, repr=False)


def model_kind(path: Path) -> str:
    if not path.exists():
        raise TinygenError(f"model {path} does not exist; check the path")
    if path.is_dir():
        if (path / "saved_model.pb").exists() or (path / "saved_model.pbtxt").exists():
            return "savedmodel"
        raise TinygenError(f"{path} is a directory without saved_model.pb; pass a SavedModel directory, "
                           ".keras, .h5 or .tflite")
    suffix = path.suffix.lower()
    if suffix == ".tflite":
        return "tflite"
    if suffix in (".keras", ".h5", ".hdf5"):
        return "keras"
    raise TinygenError(f"{path}: unknown model type '{suffix or '(none)'}'; "
                       "pass a .keras, .h5, .tflite file or a SavedModel directory")


def load_model(path: str | Path) -> UserModel:
    p = Path(path)
    kind = model_kind(p)
    if kind == "tflite":
        return UserModel(p, kind, tflite_bytes=p.read_bytes())
    if kind == "savedmodel":
        return UserModel(p, kind, saved_model=load_saved_model(p))
    import tensorflow as tf

    try:
        model = tf.keras.models.load_model(str(p), compile=False)
    except Exception as exc:
        msg = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise TinygenError(f"{p} could not be loaded as a Keras model ({msg}); "
                           "save it with model.save('model.keras')") from None
    return UserModel(p, kind, keras_model=model)


def load_saved_model(path: Path) -> SavedModelFn:
    import tensorflow as tf

    try:
        loaded = tf.saved_model.load(str(path))
    except Exception as exc:
        msg = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise TinygenError(f"{path} could not be loaded as a SavedModel ({msg}); re-export it") from None
    sig = loaded.signatures.get("serving_default")
    if sig is None:
        raise TinygenError(f"SavedModel {path} has no 'serving_default' signature; re-export it with one")
    inputs = sig.structured_input_signature[1]
    if len(inputs) != 1:
        raise TinygenError(f"SavedModel {path} has {len(inputs)} inputs; tinygen supports one")
    (name, spec), = inputs.items()
    if any(d is None for d in spec.shape[1:]):
        raise TinygenError(f"SavedModel {path} input '{name}' has an unknown dimension {tuple(spec.shape)}; "
                           "export it with a fixed input shape")
    return SavedModelFn(path, loaded, sig, name, (1,) + tuple(int(d) for d in spec.shape[1:]))


def load_data(path: str | Path) -> Dataset:
    p = Path(path)
    if not p.exists():
        raise TinygenError(f"data file {p} does not exist; check the --data path")
    suffix = p.suffix.lower()
    try:
        if suffix == ".npz":
            with np.load(p, allow_pickle=False) as z:
                if "x" not in z.files:
                    raise TinygenError(f"{p} has no array named 'x' (found: {', '.join(z.files) or 'none'}); "
                                       "save samples with np.savez(file, x=samples, y=labels)")
                x = np.asarray(z["x"])
                y = np.asarray(z["y"]) if "y" in z.files else None
        elif suffix == ".npy":
            x, y = np.load(p, allow_pickle=False), None
        elif suffix == ".csv":
            x, y = _load_csv(p)
        else:
            raise TinygenError(f"--data {p}: unknown format '{suffix}'; use .npz (x, y), .npy or .csv")
    except TinygenError:
        raise
    except Exception as exc:
        raise TinygenError(f"--data {p} could not be read ({type(exc).__name__}: {exc}); "
                           "check that it is a valid .npz/.npy/.csv file") from None
    if x.dtype.kind not in "fiu":
        raise TinygenError(f"--data {p}: 'x' holds {x.dtype}, not numbers")
    if y is not None and len(y) != len(x):
        raise TinygenError(f"--data {p}: 'x' has {len(x)} samples but 'y' has {len(y)}; they must match")
    if len(x) == 0:
        raise TinygenError(f"--data {p} holds no samples")
    return Dataset(x, y, str(p))


def _load_csv(p: Path) -> tuple[np.ndarray, np.ndarray | None]:
    with p.open(newline="") as f:
        rows = [r for r in csv.reader(f) if r and any(c.strip() for c in r)]
    if not rows:
        raise TinygenError(f"--data {p} is empty")
    header = None
    try:
        [float(c) for c in rows[0]]
    except ValueError:
        header, rows = [c.strip().lower() for c in rows[0]], rows[1:]
    try:
        arr = np.array([[float(c) for c in r] for r in rows], dtype=np.float64)
    except ValueError as exc:
        raise TinygenError(f"--data {p}: not all cells are numbers ({exc})") from None
    if arr.ndim != 2:
        raise TinygenError(f"--data {p}: rows have different lengths")
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


def fit_to_input(x: np.ndarray, input_shape: tuple[int, ...], source: str) -> np.ndarray:
    """Reshape samples to (N, *input_shape_without_batch), or fail with the shapes."""
    want = tuple(int(d) for d in input_shape[1:])
    size = int(np.prod(want)) if want else 1
    x = np.asarray(x)
    if tuple(x.shape[1:]) == want:
        return x
    if x.ndim >= 1 and int(np.prod(x.shape[1:])) == size:
        return x.reshape((len(x),) + want)
    raise TinygenError(
        f"--data {source}: samples have shape {tuple(x.shape[1:])} but the model input is "
        f"{tuple(input_shape)}; supply x shaped (N, {', '.join(map(str, want))})"
    )
