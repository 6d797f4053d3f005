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
from .tiny_model import INPUT_SIZE  # noqa: E402

pytestmark = pytest.mark.ray
OBJECT_STORE_BYTES = 80 * 2**20

# Appended to the tiny model: once armed, the first forward pass of a batch in a Ray worker, in the stage
# the armed file names, kills that worker's process outright, as a machine that goes away would.
TRIPWIRE = """

import os as _os
from pathlib import Path as _Path

_DRIVER, _ARMED, _TRIPPED = {driver}, _Path({armed!r}), _Path({tripped!r})


def _trip(_module, args):
    # The armed file names the stage to die in: collection feeds whole crops of the model's input size.
    if _os.getpid() == _DRIVER or args[0].shape[0] < 2 or not _ARMED.exists() or _TRIPPED.exists():
        return
    if (args[0].shape[-1] == {input_size}) == (_ARMED.read_text() == "collect"):
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
        driver=os.getpid(), armed=str(folder / "armed"), tripped=str(folder / "tripped"), input_size=INPUT_SIZE))

    def make(name: str, engine: str = "local", address: str = ""):
        cfg = load_config(None, {
            "out": str(folder / name / "site"), "cache": str(folder / name / "cache"),
            "model": {"name": f"{model}:dying"}, "images": {"dir": str(image_dir), "crops_per_image": 3},
            "collect": {"layers": ["features.4"], "shard_size": 4},  # shards for both nodes
            "layout": {"method": "tsne"}, "grid": {"levels": [2, 4], "min_count": 1},
            "icons": {"size_px": 24, "steps": 4, "batch_size": 3},  # batches for both nodes
        })
        return dataclasses.replace(cfg, engine=engine, ray_address=address)

    return folder, make


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


def _activation_cache(cfg):
    """Every collected array, by layer folder and name."""
    return {f"{p.parent.name}/{p.name}": p.read_bytes() for p in sorted(cfg.path(cfg.cache).glob("activations/*/*.npy"))}


def _assert_same_build(cfg, reference):
    arrays, expected_arrays = _activation_cache(cfg), _activation_cache(reference)
    assert len(expected_arrays) == 3 and sorted(arrays) == sorted(expected_arrays)
    assert [name for name in expected_arrays if arrays[name] != expected_arrays[name]] == []
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


@pytest.mark.parametrize("stage", ["collect", "icons"])
def test_a_worker_killed_mid_build_costs_only_its_task(cluster, work, local, stage):
    folder, make = work
    (folder / "tripped").unlink(missing_ok=True)
    (folder / "armed").write_text(stage)
    try:
        cfg = make(f"killed-{stage}", "ray", cluster)
        pipeline.build(cfg)
    finally:
        (folder / "armed").unlink()
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
