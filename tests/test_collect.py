import numpy as np
import torch

from generator.collect import Attributor, capture, collect_activations, sample_positions
from generator.images import CropLoader, find_images, plan_samples
from generator.models import load_model

from .conftest import TESTS


def _attribution_by_backward(model, layer, x, position, klass):
    """activation . d logit_k / d activation at one position, by ordinary backprop."""
    acts = capture(model.net, {layer: model.layer(layer)}, x)[layer].detach().requires_grad_(True)
    handle = model.layer(layer).register_forward_hook(lambda _m, _i, _o: acts)
    try:
        logits = model.net(x)
    finally:
        handle.remove()
    (grad,) = torch.autograd.grad(logits[:, klass].sum(), acts)
    r, c = position
    return (grad[:, :, r, c] * acts[:, :, r, c]).sum(1).detach()


def test_forward_mode_attribution_matches_backprop(tiny_model):
    torch.manual_seed(0)
    x = torch.randn(3, 3, 48, 48)
    layer = "features.2"
    acts = capture(tiny_model.net, {layer: tiny_model.layer(layer)}, x)[layer].detach()
    positions = torch.tensor([[[2, 3], [4, 1]]] * 3)
    attributor = Attributor(tiny_model, layer)
    result = attributor(x, acts, positions).view(3, 2, -1)
    assert not attributor.repeat_input
    for k in range(6):
        expected = _attribution_by_backward(tiny_model, layer, x, (4, 1), k)
        torch.testing.assert_close(result[:, 1, k], expected, rtol=1e-4, atol=1e-5)


def test_skip_connection_across_the_layer_falls_back_and_stays_correct():
    model = load_model(f"{TESTS / 'tiny_model.py'}:residual")
    torch.manual_seed(0)
    x = torch.randn(2, 3, 48, 48)
    layer = "body.1"
    acts = capture(model.net, {layer: model.layer(layer)}, x)[layer].detach()
    positions = torch.tensor([[[5, 7], [10, 10], [3, 3]]] * 2)
    attributor = Attributor(model, layer)
    result = attributor(x, acts, positions).view(2, 3, -1)
    assert attributor.repeat_input
    expected = _attribution_by_backward(model, layer, x, (10, 10), 2)
    torch.testing.assert_close(result[:, 1, 2], expected, rtol=1e-4, atol=1e-5)


def test_positions_avoid_the_border_and_are_distinct():
    rng = np.random.default_rng(0)
    pos = sample_positions(7, 7, 10, rng)
    assert len(pos) == 10 and len({tuple(p) for p in pos}) == 10
    assert pos.min() >= 1 and pos.max() <= 5
    assert len(sample_positions(3, 3, 10, rng)) == 9  # too small for a margin: all positions


def test_collect_writes_bounded_arrays_and_repeats_with_the_seed(tmp_path, tiny_model, image_dir):
    plan = plan_samples(find_images(image_dir), 2, seed=0)
    layers = ["features.2", "features.4"]
    runs = []
    for run in range(2):
        folders = {name: tmp_path / f"run{run}" / name for name in layers}
        counts = collect_activations(tiny_model, layers, plan, folders, positions=3, batch_size=5, seed=0)
        runs.append(folders)
    assert counts == {"features.2": 3 * len(plan.crops), "features.4": 3 * len(plan.crops)}
    acts = np.load(runs[0]["features.4"] / "activations.npy")
    attrs = np.load(runs[0]["features.4"] / "attributions.npy")
    pos = np.load(runs[0]["features.4"] / "positions.npy")
    assert acts.shape == (counts["features.4"], 24) and acts.dtype == np.float16
    assert attrs.shape == (counts["features.4"], 6)
    assert np.abs(attrs).sum() > 0
    for name in ("activations.npy", "attributions.npy", "positions.npy"):
        assert (runs[0]["features.4"] / name).read_bytes() == (runs[1]["features.4"] / name).read_bytes()
    # Each stored vector is the layer's activation at its recorded crop and position.
    crop, r, c = pos[7]
    x = tiny_model.normalize(CropLoader(plan, 48).load([int(crop)]))
    with torch.no_grad():
        full = capture(tiny_model.net, {"features.4": tiny_model.layer("features.4")}, x)["features.4"]
    np.testing.assert_allclose(acts[7], full[0, :, r, c].numpy(), rtol=1e-2, atol=1e-3)
