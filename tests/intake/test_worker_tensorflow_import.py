"""The worker's TensorFlow import (issue 29): Keras imports scikit-learn and matplotlib at its own import
when they are installed, for its estimator wrappers and image-gallery plots, which no worker job uses
(1.1 s of CPU and 85 MiB resident of a cold build's critical path).  tinygen's worker imports TensorFlow
without them; afterwards they import as usual (the digits recipe reads its data with scikit-learn)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")

PROBE = """
import json, sys
from tinygen.intake.jobs import preload
preload()                                   # what a prestarted worker imports
import tensorflow as tf, keras
from keras.src.wrappers import fixes
seen = {"sklearn": "sklearn" in sys.modules, "matplotlib": "matplotlib" in sys.modules,
        "keras_sees_sklearn": fixes.sklearn is not None}
from sklearn.datasets import load_digits    # the digits recipe, later in the same worker
seen["digits"] = load_digits().images.shape[0]
seen["tf_layer"] = int(tf.keras.layers.Dense(3)(tf.zeros((1, 2))).shape[-1])
print(json.dumps(seen))
"""


def test_the_worker_imports_tensorflow_without_kerass_optional_extras_and_they_import_later():
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen == {"sklearn": False, "matplotlib": False, "keras_sees_sklearn": False, "digits": 1797,
                    "tf_layer": 3}
