"""Where a PyTorch user's ``.onnx`` model enters (the parent side of :mod:`tinygen.intake.onnx_model`).

:func:`source_from_onnx` copies the file into the private work directory, has the worker child
parse and check it (``describe``: ONNX protobuf parsing is native code fed with user bytes, never
done in this process), copies the external-data files it names (only from the model's own folder,
:func:`stage_external`), reads ``--data`` in the user's PyTorch layout (NCHW images, NCL signals,
flat rows: :func:`user_samples`) and transposes it once to the board's channels-last layout; the
Source's description says so.  :func:`tinygen.intake.sources.convert` then runs the worker's
``convert`` job on it like any float model.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import numpy as np

from tinygen.common.errors import TinygenError
from tinygen.common.userfiles import MODEL_LIMIT, read_user_file
from tinygen.intake.onnx_model import EXTERNAL_LIMIT, SUBDIR, text


def stage_onnx(path: Path, work: Path) -> Path:
    """Copy the user's .onnx file into ``work/onnx/model.onnx`` (checked: regular, bounded)."""
    data = read_user_file(path, "model", MODEL_LIMIT)
    dest_dir = work / SUBDIR
    dest_dir.mkdir(mode=0o700)
    dest = dest_dir / "model.onnx"
    dest.write_bytes(data)
    return dest


def stage_external(path: Path, locations: list[str], dest_dir: Path) -> None:
    """Copy the external-data files the model names, each from the model's own folder (no absolute
    path, no '..', no symlink leading out of it), into ``dest_dir`` under the same relative name."""
    folder = path.parent.resolve()
    total = 0
    for loc in locations:
        rel = PurePosixPath(loc)
        if rel.is_absolute() or ".." in rel.parts or "\\" in loc or not rel.parts or loc.startswith("~"):
            raise TinygenError(f"{path.name} names external data '{text(loc)}' outside the model's folder; "
                               "save the model with its external data beside it (onnx.save(..., "
                               "save_as_external_data=True, location='weights.bin'))")
        src = folder.joinpath(*rel.parts)
        if not src.exists() and not src.is_symlink():
            raise TinygenError(f"{path.name} names external data '{text(loc)}', which is not in {folder}; "
                               "copy the data file beside the model")
        try:
            src.resolve().relative_to(folder)
        except ValueError:
            raise TinygenError(f"{path.name}'s external data '{text(loc)}' leads outside the model's folder "
                               "(a link); copy the data file itself beside the model") from None
        data = read_user_file(src, "ONNX external data", EXTERNAL_LIMIT)
        total += len(data)
        if total > EXTERNAL_LIMIT:
            raise TinygenError(f"{path.name}'s external data is over tinygen's {EXTERNAL_LIMIT >> 20} MiB limit")
        dest = dest_dir.joinpath(*rel.parts)
        if dest.exists():
            continue  # several tensors in one file
        dest.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        dest.write_bytes(data)


def user_samples(x: np.ndarray, onnx_shape: tuple[int, ...], source: str, layout: str) -> np.ndarray:
    """``x`` shaped (N, *onnx_shape[1:]) as the PyTorch model takes it; flat rows of the same size
    are reshaped; any other shape is refused (a channels-last copy must not be silently reshaped)."""
    want = tuple(onnx_shape[1:])
    x = np.asarray(x)
    if tuple(x.shape[1:]) == want:
        return x
    if x.ndim == 2 and x.shape[1] == int(np.prod(want)):
        return x.reshape((len(x),) + want)
    hint = ""
    if len(want) >= 2 and x.ndim == len(want) + 1 and tuple(x.shape[1:]) == want[1:] + want[:1]:
        hint = " (these look channels-last: give the samples as the PyTorch model takes them, channels first)"
    raise TinygenError(f"--data {source}: samples have shape {tuple(x.shape[1:])} but the ONNX model input is "
                       f"{layout} {tuple(onnx_shape)}; supply x shaped (N, {', '.join(map(str, want))}){hint}")


def source_from_onnx(path: Path, data_path: str | None):
    """A :class:`tinygen.intake.sources.Source` for an ONNX model (the float graph stays in the work
    directory; :func:`tinygen.intake.sources.convert` runs the worker's ``convert`` job on it)."""
    from tinygen.intake.loader import Dataset, load_data
    from tinygen.intake.sources import Source
    from tinygen.intake.jobs import Workdir, run_job

    if not data_path:
        raise TinygenError(f"--data is required with an ONNX model ({path.name}): int8 quantization needs "
                           "representative samples, as the PyTorch model takes them (.npz with x[, y], .npy or .csv)")
    work = Workdir()
    try:
        staged = stage_onnx(path, work.path)
        desc = run_job("describe", work.path, {"kind": "onnx", "model": str(staged), "display": path.name},
                       subject=path.name, timeout=600)
        stage_external(path, desc["external"], staged.parent)
        data = load_data(data_path)
        onnx_shape = tuple(desc["input_shape"])
        x = user_samples(data.x, onnx_shape, data.source, desc["layout"]).astype(np.float32)
        x = np.ascontiguousarray(np.transpose(x, [0] + [int(p) for p in desc["perm"][1:]]))
    except BaseException:
        work.cleanup()
        raise
    board_shape = tuple(desc["board_shape"])
    if desc["layout"] != desc["board_layout"]:
        how = (f"input {desc['layout']} {onnx_shape} -> board {desc['board_layout']} {board_shape}; tinygen "
               "transposed --data")
    else:
        how = f"input {desc['layout']} {onnx_shape}, the board's layout too"
    src = Source(path.stem, f"{path.name} (ONNX opset {desc['opset']}, converted by onnx2tf; {how})", "unknown",
                 model_path=staged, model_kind="onnx", work=work)
    src.x_rep, src.x_test, src.y_test = Dataset(x, data.y).split()
    src.x_train = src.x_rep
    src.y_train = data.y[:len(src.x_rep)] if data.y is not None else None
    return src
