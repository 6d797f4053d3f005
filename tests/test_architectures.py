"""Every supported architecture through collection, layout, grid and icons, as timm's tests sweep its models.

The networks are the real timm and torchvision architectures, narrow, at 64 px, with
seeded random weights (tests/zoo.py): nothing is downloaded.
"""

import json

import numpy as np
import pytest
import torch

from generator import pipeline
from generator.attribution import Attributor, RepeatedAttributor
from generator.collect import collect_shard
from generator.grid import bin_level
from generator.icons.render import IconSpec, render_icons
from generator.images import find_images, plan_samples
from generator.layout import fit_layout
from generator.models import load_model

from . import zoo
from .conftest import TESTS

ZOO = TESTS / "zoo.py"


@pytest.fixture(scope="module")
def plan(image_dir):
    return plan_samples(find_images(image_dir)[:8], crops_per_image=1, seed=0)


@pytest.mark.parametrize("factory, layer, layout", zoo.SWEEP, ids=[s[0] for s in zoo.SWEEP])
def test_every_architecture_runs_every_stage(factory, layer, layout, plan):
    model = load_model(f"{ZOO}:{factory}")
    assert model.view(layer).kind == layout
    channels, height, width = model.layer_shapes()[layer]
    assert height == width > 1

    rows = collect_shard(model, [layer], plan, range(len(plan.crops)), positions=4, seed=0)[layer]
    assert rows.activations.shape == (len(plan.crops) * 4, channels)
    assert rows.attributions.shape == (len(plan.crops) * 4, len(zoo.CLASS_NAMES))
    assert np.isfinite(rows.activations).all() and np.isfinite(rows.attributions).all()
    assert np.abs(rows.attributions).max() > 0  # the logits depend on the layer's places
    assert (rows.positions[:, 1:] < height).all()

    xy = fit_layout(rows.activations, method="tsne", seed=0)
    level = bin_level(xy, rows.activations, rows.attributions, size=3, min_count=1, top=3)
    assert len(level.cells) >= 2
    means = level.directions[:4]

    spec = IconSpec(size_px=24, steps=12, tries=1, batch_size=4, param="fourier")
    icons = render_icons(model, layer, means, spec, seed=0, device="cpu")
    assert icons.icons.shape == (len(means), 24, 24, 3)
    assert icons.icons.std() > 0
    # The icons point along their cells' mean activations more than noise does.
    assert np.mean(icons.fidelity) > 0.05


@pytest.mark.parametrize("factory", ["vit", "deit", "swin", "torchvision_vit"])
def test_the_two_attribution_routes_agree_on_each_layout(factory):
    """vmap of forward-mode tangents, and forward-mode AD on repeated activations, through each layout's view."""
    model = load_model(f"{ZOO}:{factory}")
    layer = next(layer for name, layer, _ in zoo.SWEEP if name == factory)
    _, height, width = model.layer_shapes()[layer]
    # In float64: at random weights a position's attribution is a sum of channels that nearly cancel.
    model.net.double()
    x = model.normalize(torch.rand(3, 3, zoo.INPUT_SIZE, zoo.INPUT_SIZE, generator=torch.Generator().manual_seed(0),
                                   dtype=torch.float64))
    g = torch.Generator().manual_seed(1)
    positions = torch.stack([torch.randint(0, height, (3, 5), generator=g),
                             torch.randint(0, width, (3, 5), generator=g)], -1)
    first = Attributor(model, [layer], {layer: 5})
    vectors, attributions = first(x, {layer: positions})[layer]
    assert first.fallback is None  # the fast route runs transformers too
    vectors_b, attributions_b = RepeatedAttributor(model, [layer])(x, {layer: positions})[layer]
    torch.testing.assert_close(vectors, vectors_b)
    scale = attributions.abs().max()
    assert scale > 0
    torch.testing.assert_close(attributions / scale, attributions_b / scale, atol=1e-9, rtol=1e-6)
    # Each vector is the map's activation at its place: read the layer directly.
    fmap = model.capture([layer], x)[layer]
    b, r, c = 1, positions[1, 2, 0], positions[1, 2, 1]
    torch.testing.assert_close(vectors[1 * 5 + 2], fmap[b, :, r, c])


def test_a_transformer_s_map_leaves_its_class_token_out():
    model = load_model(f"{ZOO}:deit")
    x = model.normalize(torch.rand(2, 3, zoo.INPUT_SIZE, zoo.INPUT_SIZE))
    from generator.attribution import capture

    tokens = capture(model.net, {"blocks.1": model.layer("blocks.1")}, x)["blocks.1"]
    fmap = model.view("blocks.1").to_map(tokens)
    assert tokens.shape[1] == 2 + 8 * 8 and fmap.shape == (2, 48, 8, 8)
    # Patch (r, c) is token 2 + 8 r + c: the class and distillation tokens come first.
    torch.testing.assert_close(fmap[:, :, 3, 5], tokens[:, 2 + 8 * 3 + 5])


def test_a_transformer_gets_two_of_its_blocks_by_default():
    """Not the last block: a ViT classifies from its class token, so the last block's patches reach no logit."""
    assert load_model(f"{ZOO}:vit").default_layers == ("blocks.0", "blocks.1")
    assert load_model(f"{ZOO}:torchvision_vit").default_layers == (
        "encoder.layers.encoder_layer_0", "encoder.layers.encoder_layer_1")


def test_atlas_layers_shows_token_grids(capsys):
    from typer.testing import CliRunner

    from generator.cli import app

    result = CliRunner().invoke(app, ["layers", "--model", f"{ZOO}:vit"])
    assert result.exit_code == 0, result.output
    line = next(line for line in result.output.splitlines() if line.startswith("blocks.1 "))
    assert "48 x 8 x 8" in line and "tokens on their grid of patches; the class token left out" in line
    swin = CliRunner().invoke(app, ["layers", "--model", f"{ZOO}:swin"])
    assert "layers.1" in swin.output and "(channels last)" in swin.output


def test_a_vision_transformer_builds_a_site(tiny_config):
    """End to end on a ViT whose position embedding fixes its input size: icons are enlarged to 64 px for it."""
    result = pipeline.build(tiny_config(model={"name": f"{ZOO}:vit"}, collect={"layers": ["blocks.1"]},
                                        icons={"size_px": 24, "steps": 4, "batch_size": 16, "method": "fourier"}))
    manifest = json.loads((result.out_dir / "data" / "manifest.json").read_text())
    (atlas,) = manifest["atlases"]
    assert atlas["layer"] == "blocks.1"
    for level in atlas["level_data"]:
        assert all((result.out_dir / "data" / atlas["id"] / f"{level['size']}-{t}.webp").is_file()
                   for t in level["tiles"])
    assert (result.out_dir / "explore" / f"{atlas['id']}.html").is_file()
