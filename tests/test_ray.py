"""Builds on a real Ray cluster of two nodes on this machine: the same site as the local engine, a lost worker survived.

The module starts its own cluster (ray.cluster_utils.Cluster: two raylets, one CPU and a
small object store each) and stops it at the end; every build joins it by address.
"""

import dataclasses
import os

# Ray would name the machine by its network address; on the loopback the cluster stays this machine's.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

ray = pytest.importorskip("ray")

from generator import pipeline  # noqa: E402
from generator.config import load_config  # noqa: E402
from generator.errors import AtlasError  # noqa: E402

from .conftest import TESTS  # noqa: E402

pytestmark = pytest.mark.ray
OBJECT_STORE_BYTES = 80 * 2**20

# Appended to the tiny model: the first forward pass of a batch in a Ray worker, once armed, kills that
# worker's process outright, as a machine that goes away would.
TRIPWIRE = """

import os as _os
from pathlib import Path as _Path

_DRIVER, _ARMED, _TRIPPED = {driver}, _Path({armed!r}), _Path({tripped!r})


def _trip(_module, args):
    if _os.getpid() != _DRIVER and args[0].shape[0] > 1 and _ARMED.exists() and not _TRIPPED.exists():
        _TRIPPED.write_text(str(_os.getpid()))
        _os._exit(1)


def dying():
    net = tiny()
    net.register_forward_pre_hook(_trip)
    return net
"""


@pytest.fixture(scope="module")
def cluster():
    from ray.cluster_utils import Cluster

    made = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "object_store_memory": OBJECT_STORE_BYTES,
                                                         "include_dashboard": False})
    try:
        made.add_node(num_cpus=1, object_store_memory=OBJECT_STORE_BYTES)
        made.wait_for_nodes()
        yield made.address
    finally:
        made.shutdown()


@pytest.fixture(scope="module")
def work(tmp_path_factory, image_dir):
    """(folder, make_config(name, engine, address)) on the tiny model with the tripwire, disarmed."""
    folder = tmp_path_factory.mktemp("ray")
    model = folder / "dying_model.py"
    model.write_text((TESTS / "tiny_model.py").read_text() + TRIPWIRE.format(
        driver=os.getpid(), armed=str(folder / "armed"), tripped=str(folder / "tripped")))

    def make(name: str, engine: str = "local", address: str = ""):
        cfg = load_config(None, {
            "out": str(folder / name / "site"), "cache": str(folder / name / "cache"),
            "model": {"name": f"{model}:dying"}, "images": {"dir": str(image_dir), "crops_per_image": 3},
            "collect": {"layers": ["features.4"]},
            "layout": {"method": "tsne"}, "grid": {"levels": [2, 4], "min_count": 1},
            "icons": {"size_px": 24, "steps": 4, "batch_size": 3},  # batches for both nodes
        })
        return _with_engine(cfg, engine, address)

    return folder, make


def _with_engine(cfg, engine: str, address: str):
    """`cfg` with top-level `engine` and `ray_address`, whether or not Config declares them yet."""
    if "engine" in {f.name for f in dataclasses.fields(cfg)}:
        return dataclasses.replace(cfg, engine=engine, ray_address=address)
    with_keys = dataclasses.make_dataclass("EngineConfig", [("engine", str, "local"), ("ray_address", str, "")],
                                           bases=(type(cfg),), frozen=True)
    values = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)}
    return with_keys(**values, engine=engine, ray_address=address)


def _tree(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _icon_cache(cfg):
    """Every cached batch by layer and key: its arrays (the .npz files themselves carry the time they were written)."""
    batches = {}
    for path in sorted(cfg.path(cfg.cache).glob("icons/*/*.npz")):
        with np.load(path) as saved:
            batches[f"{path.parent.name}/{path.name}"] = {k: saved[k].tobytes() for k in saved.files}
    return batches


@pytest.fixture(scope="module")
def local(work):
    cfg = work[1]("local")
    pipeline.build(cfg)
    return cfg


def _assert_same_build(cfg, reference):
    site, expected = _tree(cfg.path(cfg.out)), _tree(reference.path(reference.out))
    assert sorted(site) == sorted(expected)
    assert [name for name in expected if site[name] != expected[name]] == []
    batches, expected_batches = _icon_cache(cfg), _icon_cache(reference)
    assert len(expected_batches) >= 4 and sorted(batches) == sorted(expected_batches)
    assert [name for name in expected_batches if batches[name] != expected_batches[name]] == []


def test_a_build_on_two_ray_nodes_gives_the_local_engine_s_site_and_icons(cluster, work, local):
    cfg = work[1]("ray", "ray", cluster)
    notes = []

    class Notes(pipeline.Reporter):
        def note(self, message):
            notes.append(message)

    pipeline.build(cfg, Notes())
    assert any(n.startswith("engine: Ray, 2 nodes, 2 CPUs") for n in notes), notes
    _assert_same_build(cfg, local)
    assert not ray.is_initialized()  # the build closed the session it opened


def test_a_worker_killed_mid_build_costs_only_its_batch(cluster, work, local):
    folder, make = work
    (folder / "armed").write_text("")
    cfg = make("killed", "ray", cluster)
    pipeline.build(cfg)
    assert (folder / "tripped").is_file()  # a worker process did die, in a task Ray then ran again
    assert int((folder / "tripped").read_text()) != os.getpid()
    _assert_same_build(cfg, local)


def test_an_address_with_no_cluster_is_one_line(work):
    cfg = work[1]("nowhere", "ray", "127.0.0.1:1")
    with pytest.raises(AtlasError) as err:
        pipeline.build(cfg)
    message = str(err.value)
    assert message.startswith("cannot reach a Ray cluster at 127.0.0.1:1") and "ray start --head" in message
    assert "\n" not in message
    assert not ray.is_initialized()
