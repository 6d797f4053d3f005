"""The engine interface with the local engine, and what a user sees without Ray; tests/test_ray.py runs Ray."""

import sys

import numpy as np
import pytest

from generator import engine as engine_module
from generator.engine import LocalEngine, ModelSource, load_model_cached, open_engine
from generator.errors import AtlasError
from generator.icons import IconSpec, render_icons

from .conftest import TESTS, TINY_SPEC


def _scaled(factor, x):
    return np.arange(3) * factor + x


class Reversed(LocalEngine):
    """Finishes the last item first, as a cluster may: render_icons must not depend on the order."""

    def map(self, fn, items, common=()):
        items = list(items)
        for i in reversed(range(len(items))):
            yield i, fn(*common, *items[i])


class DiesAfterOne(LocalEngine):
    def map(self, fn, items, common=()):
        for i, result in super().map(fn, items, common):
            yield i, result
            if fn.__name__ == "render_batch":
                raise KeyboardInterrupt


def test_the_local_engine_runs_each_item_in_order_with_the_common_arguments():
    results = list(LocalEngine().map(_scaled, [(1,), (2,), (3,)], common=(10,)))
    assert [i for i, _ in results] == [0, 1, 2]
    assert [r.tolist() for _, r in results] == [[1, 11, 21], [2, 12, 22], [3, 13, 23]]


def test_icons_are_the_same_whatever_order_the_batches_finish_in(tiny_model):
    directions = np.random.default_rng(0).normal(size=(10, 24)).astype(np.float32)
    settings = IconSpec(size_px=24, steps=3, batch_size=3)
    local = render_icons(tiny_model, "features.4", directions, settings, seed=4)
    shuffled = render_icons(tiny_model, "features.4", directions, settings, seed=4, engine=Reversed())
    assert shuffled.icons.tobytes() == local.icons.tobytes()
    assert shuffled.fidelity.tobytes() == local.fidelity.tobytes()


def test_each_batch_is_saved_as_it_arrives(tiny_model, tmp_path):
    directions = np.random.default_rng(1).normal(size=(7, 24)).astype(np.float32)
    settings = IconSpec(size_px=24, steps=2, batch_size=3)
    with pytest.raises(KeyboardInterrupt):
        render_icons(tiny_model, "features.4", directions, settings, cache_dir=tmp_path, engine=DiesAfterOne())
    assert len(list(tmp_path.glob("*.npz"))) == 1  # the batch that came back before the driver stopped


def test_a_model_is_loaded_once_a_process_and_checked_against_the_drivers_weights():
    source = ModelSource(TINY_SPEC)
    assert load_model_cached(source) is load_model_cached(source)
    with pytest.raises(AtlasError, match="other weights") as err:
        load_model_cached(ModelSource(TINY_SPEC, weights_id="not-these"))
    assert "\n" not in str(err.value)


def test_the_ray_engine_without_ray_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    assert isinstance(open_engine("local"), LocalEngine)  # the default needs no Ray
    with pytest.raises(AtlasError) as err:
        open_engine("ray")
    assert str(err.value) == 'the ray engine needs Ray: pip install "activation-atlas[ray]"'


def test_engine_mistakes_are_one_line():
    for name, address, words in [("spark", "", "unknown engine 'spark': use local or ray"),
                                 ("local", "auto", "the engine is local: add --engine ray")]:
        with pytest.raises(AtlasError, match=words) as err:
            open_engine(name, address)
        assert "\n" not in str(err.value)
    with pytest.raises(AtlasError, match="host:port") as err:
        engine_module._check_reachable("headnode")


def test_a_model_file_travels_by_absolute_path(monkeypatch):
    """Ray workers start in folders of their own: a relative model file would not be found there."""
    from types import SimpleNamespace

    monkeypatch.chdir(TESTS)
    source = ModelSource.of(SimpleNamespace(spec="tiny_model.py:tiny", weights_id="w"), "weights.pt", "")
    assert source == ModelSource(f"{TESTS.resolve() / 'tiny_model.py'}:tiny", str(TESTS.resolve() / "weights.pt"),
                                 "", "w")
    hub = SimpleNamespace(spec="torchvision:resnet18:DEFAULT", weights_id="")
    assert ModelSource.of(hub).spec == "torchvision:resnet18:DEFAULT"
