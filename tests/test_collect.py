import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import generator.collect as collect
from generator.attribution import Attributor, RepeatedAttributor, capture, plan_passes
from generator.collect import collect_activations, collect_shard, crop_positions, pick_device, positions_per_image
from generator.errors import AtlasError
from generator.images import CropLoader, crop_batches, find_images, plan_samples
from generator.models import load_model
from generator.shards import PROGRESS, RowFile

from .conftest import ROOT, TESTS

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _attributions_by_backward(model, layer, x, positions):
    """activation . d logit_k / d activation at each image's positions, every class, by reverse mode."""
    acts = capture(model.net, {layer: model.layer(layer)}, x)[layer].detach().requires_grad_(True)
    handle = model.layer(layer).register_forward_hook(lambda _m, _i, _o: acts)
    try:
        logits = model.net(x)
    finally:
        handle.remove()
    out = torch.zeros(x.shape[0], positions.shape[1], logits.shape[1])
    for k in range(logits.shape[1]):
        (grad,) = torch.autograd.grad(logits[:, k].sum(), acts, retain_graph=True)
        for b in range(x.shape[0]):
            for p, (r, c) in enumerate(positions[b].tolist()):
                out[b, p, k] = (grad[b, :, r, c] * acts[b, :, r, c]).sum()
    return out.detach().reshape(-1, logits.shape[1])


def _positions(model, layer, batch, count, seed=0):
    return torch.from_numpy(crop_positions(seed, layer, model.layer_shapes()[layer], count, range(batch)))


def test_attributions_match_reverse_mode_for_every_class_and_position(tiny_model):
    torch.manual_seed(0)
    x = torch.randn(3, 3, 48, 48)
    layers = ["features.2", "features.4"]
    positions = {name: _positions(tiny_model, name, 3, 4) for name in layers}
    attributor = Attributor(tiny_model, layers, {name: 4 for name in layers})
    result = attributor(x, positions)
    assert attributor.fallback is None  # the shared-primal route ran
    for name in layers:
        vectors, attributions = result[name]
        expected = _attributions_by_backward(tiny_model, name, x, positions[name])
        torch.testing.assert_close(attributions, expected, rtol=1e-4, atol=1e-5)
        acts = capture(tiny_model.net, {name: tiny_model.layer(name)}, x)[name]
        b = torch.arange(3).repeat_interleave(4)
        torch.testing.assert_close(vectors, acts[b, :, positions[name][..., 0].reshape(-1),
                                                 positions[name][..., 1].reshape(-1)])


def test_layers_sharing_a_pass_get_the_attributions_of_a_pass_each(tiny_model):
    torch.manual_seed(1)
    x = torch.randn(2, 3, 48, 48)
    layers = ["features.2", "features.4"]
    positions = {name: _positions(tiny_model, name, 2, 3) for name in layers}
    joint = Attributor(tiny_model, layers, {name: 3 for name in layers})
    joint.passes = [layers]
    apart = Attributor(tiny_model, layers, {name: 3 for name in layers})
    apart.passes = [[name] for name in layers]
    a, b = joint(x, positions), apart(x, positions)
    for name in layers:
        torch.testing.assert_close(a[name][1], b[name][1], rtol=1e-5, atol=1e-6)


def test_passes_are_shared_for_few_positions_and_split_for_many(tiny_model):
    layers = ["features.4", "features.2"]
    assert plan_passes(tiny_model, layers, {name: 1 for name in layers}) == [["features.2", "features.4"]]
    assert plan_passes(tiny_model, layers, {name: 16 for name in layers}) == [["features.2"], ["features.4"]]


def test_skip_connection_across_the_layer_stays_correct_on_both_routes():
    model = load_model(f"{TESTS / 'tiny_model.py'}:residual")
    torch.manual_seed(0)
    x = torch.randn(2, 3, 48, 48)
    layer = "body.1"
    positions = torch.tensor([[[5, 7], [10, 10], [3, 3]]] * 2)
    expected = _attributions_by_backward(model, layer, x, positions)
    shared = Attributor(model, [layer], {layer: 3})
    torch.testing.assert_close(shared(x, {layer: positions})[layer][1], expected, rtol=1e-4, atol=1e-5)
    assert shared.fallback is None
    repeated = RepeatedAttributor(model, [layer])
    torch.testing.assert_close(repeated(x, {layer: positions})[layer][1], expected, rtol=1e-4, atol=1e-5)
    assert repeated.repeat_input[layer]


def test_a_network_the_func_transforms_cannot_run_falls_back_and_stays_correct():
    model = load_model(f"{TESTS / 'tiny_model.py'}:old_function")
    torch.manual_seed(0)
    x = torch.randn(2, 3, 48, 48)
    layer = "features.2"
    positions = _positions(model, layer, 2, 2)
    attributor = Attributor(model, [layer], {layer: 2})
    result = attributor(x, {layer: positions})[layer][1]
    assert attributor.fallback is not None
    torch.testing.assert_close(result, _attributions_by_backward(model, layer, x, positions), rtol=1e-4, atol=1e-5)


def test_positions_avoid_the_border_are_distinct_and_do_not_depend_on_the_shards():
    pos = crop_positions(0, "blocks.4", (8, 7, 7), 10, range(50))
    assert pos.shape == (50, 10, 2)
    assert all(len({tuple(p) for p in crop}) == 10 for crop in pos)
    assert pos.min() >= 1 and pos.max() <= 5
    np.testing.assert_array_equal(pos, np.concatenate([crop_positions(0, "blocks.4", (8, 7, 7), 10, range(0, 13)),
                                                       crop_positions(0, "blocks.4", (8, 7, 7), 10, range(13, 50))]))
    assert not np.array_equal(pos, crop_positions(0, "blocks.5", (8, 7, 7), 10, range(50)))
    assert not np.array_equal(pos, crop_positions(1, "blocks.4", (8, 7, 7), 10, range(50)))
    assert crop_positions(0, "x", (8, 3, 3), 10, range(4)).shape == (4, 9, 2)  # too small for a margin: all
    assert positions_per_image((8, 3, 3), 10) == 9
    # Every inner position is chosen about equally often: 10 of 25 in 1,000 crops, 400 times each.
    many = crop_positions(0, "blocks.4", (8, 7, 7), 10, range(1000))
    seen = np.bincount(((many[..., 0] - 1) * 5 + many[..., 1] - 1).ravel(), minlength=25)
    assert len(seen) == 25 and seen.min() > 320 and seen.max() < 480


def _collect(model, plan, folder, layers, **kw):
    folders = {name: folder / name for name in layers}
    kw.setdefault("positions", 3)
    kw.setdefault("batch_size", 4)
    kw.setdefault("seed", 0)
    kw.setdefault("workers", 0)
    counts = collect_activations(model, layers, plan, folders, **kw)
    return folders, counts


def _files(folder):
    return {name: (folder / name).read_bytes() for name in ("activations.npy", "attributions.npy", "positions.npy")}


def test_collect_writes_the_arrays_and_repeats_with_the_seed(tmp_path, tiny_model, image_dir):
    plan = plan_samples(find_images(image_dir), 2, seed=0)
    layers = ["features.2", "features.4"]
    runs = [_collect(tiny_model, plan, tmp_path / f"run{run}", layers, shard_size=7, workers=run * 2)
            for run in range(2)]  # in this process, then in two decoding processes
    folders, counts = runs[0]
    assert counts == {"features.2": 3 * len(plan.crops), "features.4": 3 * len(plan.crops)}
    acts = np.load(folders["features.4"] / "activations.npy")
    attrs = np.load(folders["features.4"] / "attributions.npy")
    pos = np.load(folders["features.4"] / "positions.npy")
    assert acts.shape == (counts["features.4"], 24) and acts.dtype == np.float16
    assert attrs.shape == (counts["features.4"], 6) and attrs.dtype == np.float16
    assert pos.dtype == np.int32 and (pos[:, 0] == np.arange(len(plan.crops)).repeat(3)).all()
    assert np.abs(attrs).sum() > 0
    assert not (folders["features.4"] / PROGRESS).exists()
    for name in layers:
        assert _files(runs[0][0][name]) == _files(runs[1][0][name])
    # Each stored row is the layer's activation, and its attribution, at its recorded crop and position.
    crop, r, c = pos[7]
    x = tiny_model.normalize(CropLoader(plan, 48).load([int(crop)]))
    expected = _attributions_by_backward(tiny_model, "features.4", x, torch.tensor([[[r, c]]]))
    with torch.no_grad():
        full = capture(tiny_model.net, {"features.4": tiny_model.layer("features.4")}, x)["features.4"]
    np.testing.assert_allclose(acts[7], full[0, :, r, c].numpy(), rtol=1e-2, atol=1e-3)
    np.testing.assert_allclose(attrs[7], expected[0].numpy(), rtol=1e-2, atol=1e-4)


def test_a_killed_collection_resumes_at_its_first_missing_shard(tmp_path, tiny_model, image_dir, monkeypatch):
    plan = plan_samples(find_images(image_dir), 2, seed=0)  # 48 crops: shards of 10, the last of 8
    layers = ["features.2", "features.4"]
    whole, _ = _collect(tiny_model, plan, tmp_path / "whole", layers, shard_size=10)

    class Killed(Exception):
        pass

    seen = [0]

    def progress(n):
        seen[0] += n
        if seen[0] > 10:  # the first batch of the second shard
            raise Killed

    with pytest.raises(Killed):
        _collect(tiny_model, plan, tmp_path / "part", layers, shard_size=10, progress=progress)
    for name in layers:
        assert json.loads((tmp_path / "part" / name / PROGRESS).read_text())["done"] == [0]
    computed = []
    real = collect.collect_shard
    monkeypatch.setattr(collect, "collect_shard", lambda *a, **k: computed.append(a[3]) or real(*a, **k))
    heard = []
    _collect(tiny_model, plan, tmp_path / "part", layers, shard_size=10, progress=heard.append)
    assert computed == [range(10, 20), range(20, 30), range(30, 40), range(40, 48)]
    assert heard[0] == 10 and sum(heard) == len(plan.crops)
    for name in layers:
        assert _files(tmp_path / "part" / name) == _files(whole[name])


def test_a_record_made_with_other_settings_starts_over(tmp_path, tiny_model, image_dir):
    plan = plan_samples(find_images(image_dir), 1, seed=0)
    layers = ["features.4"]
    folders, _ = _collect(tiny_model, plan, tmp_path / "a", layers, shard_size=5)
    fresh, _ = _collect(tiny_model, plan, tmp_path / "b", layers, shard_size=5, batch_size=2)
    (folders["features.4"] / PROGRESS).write_text(json.dumps({"settings": {"shard_size": 5}, "done": [0, 1, 2, 3, 4]}))
    (folders["features.4"] / "attributions.npy").write_bytes(b"\x00" * 100)  # damaged: must not be read
    _collect(tiny_model, plan, tmp_path / "a", layers, shard_size=5, batch_size=2)
    assert _files(folders["features.4"]) == _files(fresh["features.4"])


def test_rows_past_float16_turn_the_file_float32_keeping_earlier_rows(tmp_path):
    rows = RowFile(tmp_path / "a.npy", (6, 2), np.float16, "test rows", widen=True)
    rows.write(0, np.array([[1.5, -2.0], [3.0, 4.0]], np.float32))
    rows.write(4, np.array([[1e6, 1.0], [0.1, 2.0]], np.float32))
    rows.write(2, np.array([[5.0, 6.0], [7.0, 8.0]], np.float32))
    rows.close()
    out = np.load(tmp_path / "a.npy")
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out[:4], [[1.5, -2.0], [3.0, 4.0], [5.0, 6.0], [7.0, 8.0]])
    np.testing.assert_array_equal(out[4], [1e6, 1.0])
    assert out[5, 0] == np.float32(0.1)  # the row that widened the file is kept in float32
    with pytest.raises(AtlasError, match="infinite or NaN"):
        RowFile(tmp_path / "b.npy", (1, 1), np.float16, "test rows", widen=True).write(0, np.array([[np.inf]]))


def test_device_names():
    assert pick_device("cpu").type == "cpu"
    assert pick_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(AtlasError, match="must be one of"):
        pick_device("gpu")
    if not torch.cuda.is_available():
        with pytest.raises(AtlasError, match="no CUDA device"):
            pick_device("cuda")


def test_a_shard_on_given_batches_equals_a_shard_that_decodes_its_own(tiny_model, image_dir):
    plan = plan_samples(find_images(image_dir), 2, seed=0)
    crops = range(10, 23)
    own = collect_shard(tiny_model, ["features.4"], plan, crops, 3, 0, batch_size=4)
    batches = [range(s, min(s + 4, crops.stop)) for s in range(crops.start, crops.stop, 4)]
    given = collect_shard(tiny_model, ["features.4"], plan, crops, 3, 0, batch_size=4,
                          images=crop_batches(plan, 48, batches, workers=1))
    for a, b in zip(own["features.4"], given["features.4"]):
        np.testing.assert_array_equal(a, b)
    assert own["features.4"].positions[0, 0] == 10 and len(own["features.4"].positions) == 13 * 3


@needs_cuda
def test_collection_on_cuda_matches_the_cpu(tmp_path, image_dir):
    model = load_model(f"{TESTS / 'tiny_model.py'}:tiny")
    plan = plan_samples(find_images(image_dir), 2, seed=0)
    layers = ["features.2", "features.4"]
    cpu, _ = _collect(model, plan, tmp_path / "cpu", layers, device="cpu", shard_size=16)
    cuda, _ = _collect(model, plan, tmp_path / "cuda", layers, device="cuda", shard_size=16, workers=2)
    assert next(model.net.parameters()).device.type == "cpu"  # handed back where it was
    for name in layers:
        assert np.array_equal(np.load(cpu[name] / "positions.npy"), np.load(cuda[name] / "positions.npy"))
        for array in ("activations.npy", "attributions.npy"):
            np.testing.assert_allclose(np.load(cuda[name] / array).astype(np.float32),
                                       np.load(cpu[name] / array).astype(np.float32), rtol=1e-2, atol=1e-3)


_PEAK = """
import sys, json
from pathlib import Path
import numpy as np
import torch
from PIL import Image
from generator.collect import collect_activations
from generator.images import SamplePlan
from generator.models import load_model
folder, crops = Path(sys.argv[1]), int(sys.argv[2])
torch.set_num_threads(1)  # on a busy machine a second thread mostly waits
Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(folder / "a.png")
model = load_model(sys.argv[3])
plan = SamplePlan([str(folder / "a.png")], [(40, 40)], [(0, 0, 0, 40, 40)] * crops, 0)
collect_activations(model, ["conv"], plan, {"conv": folder / "conv"}, 9, 64, 0, workers=0, shard_size=256)
peak = [l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1]
print(json.dumps({"peak_kb": int(peak), "bytes": sum(p.stat().st_size for p in (folder / "conv").iterdir())}))
"""


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads peak memory from /proc")
def test_peak_memory_does_not_grow_with_the_number_of_activations(tmp_path):
    runs = {}
    for crops in (1024, 8192):  # 9,216 and 73,728 rows of 16 channels and 2,000 classes
        folder = tmp_path / str(crops)
        folder.mkdir()
        done = subprocess.run([sys.executable, "-c", _PEAK, str(folder), str(crops), f"{TESTS / 'wide_model.py'}:many_classes"],
                              capture_output=True, text=True, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)),
                              timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
        runs[crops] = json.loads(done.stdout.strip().splitlines()[-1])
    grown = (runs[8192]["peak_kb"] - runs[1024]["peak_kb"]) * 1024
    written = runs[8192]["bytes"] - runs[1024]["bytes"]
    assert written > 250e6  # each array written through a memory map would grow resident memory so much
    assert grown < 0.25 * written, (runs, grown)  # what a few shards in flight and a fragmented heap take
