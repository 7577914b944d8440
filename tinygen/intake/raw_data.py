"""Raw samples a user gives with ``--data`` for a model with ``--frontend`` (docs/frontend.md).

An ``.npz`` ``--data`` may hold, beside ``x`` (the model's inputs) and ``y``, an array ``raw``: int16 raw
samples, one inference's worth per row (``window_samples`` x channels, imu interleaved x, y, z).  They
become the project's raw verification vectors (``raw_inputs``: sent with INFER_RAW, the board's front end
checked against the twin), instead of seeded synthetic ones.  Checked before any work: the wrong length,
NaN/Inf, fractions or values outside int16 are one line (exit 2, nothing written).
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np

from tinygen.common.errors import TinygenError
from tinygen.common.userfiles import DATA_LIMIT, read_user_file


def load_raw_samples(data_path: str | Path, spec) -> np.ndarray | None:
    """--data's ``raw`` array checked against ``spec`` (int16, N x n_samples), or None when it has none."""
    from tinygen.intake.frontend import check_samples

    p = Path(data_path)
    if p.suffix.lower() != ".npz":
        return None
    blob = read_user_file(p, "data file", DATA_LIMIT)
    try:
        with zipfile.ZipFile(io.BytesIO(blob)) as zf:
            if "raw.npy" not in zf.namelist():
                return None
            if zf.getinfo("raw.npy").file_size > DATA_LIMIT:
                raise TinygenError(f"--data {p}: array 'raw' unpacks to more than tinygen's {DATA_LIMIT >> 20} MiB "
                                   "limit; use fewer samples")
            raw = np.lib.format.read_array(io.BytesIO(zf.read("raw.npy")), allow_pickle=False)
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise TinygenError(f"--data {p}: its array 'raw' cannot be read ({exc}); save it with "
                           "np.savez(file, x=features, y=labels, raw=samples)") from None
    if raw.ndim == 1:
        raw = raw[None, :]
    return check_samples(raw, spec, f"--data {p}'s 'raw'")
