"""When a build has the worker import TensorFlow ahead (tinygen.intake.jobs.will_need_tensorflow):
a float model or an uncached recipe does, an int8 .tflite or a cached recipe does not."""

from __future__ import annotations

from tinygen.common import cache
from tinygen.intake.jobs import will_need_tensorflow


def test_float_models_and_uncached_recipes_need_it_tflite_and_cached_recipes_do_not(tmp_path, monkeypatch):
    monkeypatch.setenv("TINYGEN_CACHE_DIR", str(tmp_path / "cache"))
    with cache.session(False):  # --no-cache
        assert will_need_tensorflow(None, "sine", 1234, None)
        assert will_need_tensorflow("m.keras", None, 1234, None) and will_need_tensorflow("dir", None, 1, None)
        assert not will_need_tensorflow("m.TFLITE", None, 1234, None)
        assert not will_need_tensorflow(None, "no-such-recipe", 1234, None)  # refused later, in one line
    with cache.session(True):
        assert will_need_tensorflow(None, None, 1234, None)  # the default recipe, not in the cache yet
        k = cache.key("recipe", {"recipe": "sine", "seed": 1234, "epochs": None})
        cache.put("recipe", k, {"result.json": b"{}"})
        assert not will_need_tensorflow(None, "sine", 1234, None)
        assert will_need_tensorflow(None, "sine", 1234, 3)  # other epochs: another entry
