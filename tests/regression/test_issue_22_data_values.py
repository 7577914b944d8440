"""Issue 22 item 8, the data side: values and files that got through intake.

* float16 samples with Inf passed the finiteness check (the 1e30 bound is Inf in float16, and
  ``inf <= inf``) and crashed the converter's calibration.  Fails before the fix: no error.
* integer labels outside 0..K-1 gave "accuracy 0.0 %" without a word.  Fails before the fix: the
  build exits 0.
* a SavedModel *file* symlinked out of its folder was followed and copied (folder links were
  refused).  Fails before the fix: the outside file's bytes land in the private copy.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from conftest import assert_one_line_error, run_cli
from tinygen.common.errors import TinygenError


def test_float16_inf_is_refused_with_its_place(tmp_path):
    from tinygen.intake.loader import load_data

    x = np.zeros((6, 4), dtype=np.float16)
    x[3, 2] = np.inf
    np.savez(tmp_path / "d.npz", x=x)
    with pytest.raises(TinygenError, match=r"x\[3, 2\] \(sample 3\) is inf") as exc:
        load_data(tmp_path / "d.npz")
    assert "\n" not in str(exc.value)
    x[3, 2] = 60000  # finite and in bounds in float16: accepted
    np.savez(tmp_path / "ok.npz", x=x)
    assert load_data(tmp_path / "ok.npz").x[3, 2] == 60000


def test_labels_outside_the_classes_are_refused_in_one_line(tmp_path):
    import keras

    from tinygen.intake.recipes import seed_everything

    seed_everything(2)
    keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")]).save(tmp_path / "m.keras")
    y = np.array([0, 1, 2, 1, 7, 0, 2, 1, 0, 2], dtype=np.int64)
    np.savez(tmp_path / "d.npz", x=np.random.default_rng(2).normal(size=(10, 4)).astype(np.float32), y=y)
    res = run_cli("build", "--board", "qemu-m4", "--model", str(tmp_path / "m.keras"), "--data",
                  str(tmp_path / "d.npz"), "--out", str(tmp_path / "p"))
    assert_one_line_error(res, "y[4] = 7 is outside 0..2", "3 outputs", code=2)
    assert not (tmp_path / "p").exists()


def test_a_savedmodel_file_linked_out_of_its_folder_is_refused(tmp_path):
    from tinygen.intake.loader import stage_model

    sm = tmp_path / "sm"
    (sm / "variables").mkdir(parents=True)
    (sm / "saved_model.pb").write_bytes(b"graph")
    (sm / "variables" / "variables.index").write_bytes(b"index")
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"not part of the model")
    # a link within the folder is read as the file it names
    os.symlink(sm / "variables" / "variables.index", sm / "variables" / "copy.index")
    work = tmp_path / "w1"
    work.mkdir()
    staged = stage_model(sm, "savedmodel", work)
    assert (staged / "variables" / "copy.index").read_bytes() == b"index"
    os.symlink(secret, sm / "variables" / "variables.data-00000-of-00001")
    work = tmp_path / "w2"
    work.mkdir()
    with pytest.raises(TinygenError, match="symlink .*variables.data-00000-of-00001 to a file outside it") as exc:
        stage_model(sm, "savedmodel", work)
    assert "\n" not in str(exc.value)
    assert not any(p.read_bytes() == secret.read_bytes() for p in work.rglob("*") if p.is_file())
