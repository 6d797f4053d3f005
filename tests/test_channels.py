"""Models that do not read RGB photographs: a 1-channel spectrogram classifier, and other channel counts."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from generator import pipeline
from generator.display import display_rgb
from generator.errors import AtlasError
from generator.icons.param import FourierImage, MacoImage, colour_basis, natural_amplitude
from generator.images import CropLoader, find_images, open_image, plan_samples
from generator.models import load_model

from .conftest import MONO_SPEC, TESTS


def test_a_model_s_channels_come_from_its_first_convolution():
    model = load_model(MONO_SPEC)
    assert model.channels == 1
    assert model.mean == (0.5,) and model.std == (0.5,)  # inputs in [0, 1] taken to [-1, 1]
    x = model.normalize(torch.ones(2, 1, 8, 8))
    assert torch.equal(x, torch.ones(2, 1, 8, 8))


def test_metadata_must_give_one_mean_per_channel(tmp_path):
    path = tmp_path / "model.py"
    source = (TESTS / "mono_model.py").read_text()
    path.write_text(source + "\nCHANNELS = 1\nMEAN = (0.5, 0.5, 0.5)\nSTD = (0.5,)\n")
    with pytest.raises(AtlasError, match=r"MEAN = \(0.5, 0.5, 0.5\): must be 1 number, one per input channel$"):
        load_model(f"{path}:mono")
    # MEAN without CHANNELS is read as RGB's, and the message says how to declare other inputs.
    path.write_text(source + "\nMEAN = (0.4,)\nSTD = (0.2,)\n")
    with pytest.raises(AtlasError, match=r"MEAN = \(0.4,\): must be 3 numbers, .*set CHANNELS for a model of other"):
        load_model(f"{path}:mono")
    path.write_text(source + "\nCHANNELS = 1\nMEAN = (0.4,)\nSTD = (0.2,)\n")
    model = load_model(f"{path}:mono")
    assert (model.channels, model.mean, model.std) == (1, (0.4,), (0.2,))


def test_arrays_and_pictures_read_with_the_model_s_channels(spectrogram_dir, tmp_path):
    call = spectrogram_dir / "call00.npy"  # saved (1, H, W)
    as_read = open_image(call, 1)
    assert as_read.shape == (64, 96, 1) and as_read.dtype == np.uint8
    np.testing.assert_array_equal(as_read[..., 0], np.round(np.load(call)[0] * 255).astype(np.uint8))
    assert open_image(spectrogram_dir / "colour.jpg", 1).shape[-1] == 1  # a colour picture, in grey
    assert open_image(spectrogram_dir / "grey0.png", 3).shape[-1] == 3  # and the other way round
    four = tmp_path / "tile.npy"
    np.save(four, np.random.default_rng(0).random((4, 20, 30)).astype(np.float32))
    assert open_image(four, 4).shape == (20, 30, 4)
    with pytest.raises(ValueError, match=r"a 1-channel model reads \(H, W\) arrays"):
        open_image(four, 1)


def test_arrays_out_of_range_say_how_to_save_them(tmp_path):
    for i in range(2):
        np.save(tmp_path / f"db{i}.npy", np.linspace(-80, 0, 64 * 64).reshape(64, 64))
    with pytest.raises(AtlasError, match=r"db0.npy holds values from -80 to 0: save arrays as uint8 or as floats "
                                         r"scaled to \[0, 1\]"):
        plan_samples(find_images(tmp_path), 1, 0, channels=1)


def test_crops_of_a_spectrogram_keep_one_channel_and_every_frequency(spectrogram_dir):
    plan = plan_samples(find_images(spectrogram_dir), 2, 0, channels=1)
    assert plan.channels == 1 and len(plan.images) == 17 and plan.skipped == 0
    arrays = [c[1:] for c in plan.crops if plan.images[c[0]].endswith(".npy")]
    # 64 bins by 96 frames: windows of all 64 bins, at the start and the end of the clip, unstretched.
    assert arrays == [(0, 0, 64, 64), (32, 0, 96, 64)] * 12
    centre = plan_samples(find_images(spectrogram_dir), 1, 0, channels=1)
    assert {c[1:] for c in centre.crops if centre.images[c[0]].endswith(".npy")} == {(16, 0, 80, 64)}
    crops = CropLoader(plan, 48).load_uint8(range(6))
    assert crops.shape == (6, 1, 48, 48)
    assert crops.float().std() > 10  # the harmonics, not a blank


def test_icons_of_other_channel_counts_skip_colour_decorrelation():
    assert torch.equal(colour_basis(1), torch.eye(1)) and torch.equal(colour_basis(4), torch.eye(4))
    image = FourierImage(2, 16, torch.Generator().manual_seed(0), channels=1)
    assert image().shape == (2, 1, 16, 16)
    target = torch.rand(2, 1, 16, 16) * 0.8 + 0.1
    image.start_from(torch.arange(2), target)  # runs the parameterization backwards, channel for channel
    torch.testing.assert_close(image(), target, atol=2e-3, rtol=0)
    amplitude = natural_amplitude(torch.rand(5, 4, 32, 32), 16)
    assert amplitude.shape == (4, 16, 9)
    assert MacoImage(3, 16, torch.Generator().manual_seed(0), amplitude)().shape == (3, 4, 16, 16)


def test_other_channel_counts_are_shown_through_a_colour_map():
    grey = np.arange(256, dtype=np.uint8).reshape(16, 16, 1)
    shown = display_rgb(grey)
    assert shown.shape == (16, 16, 3)
    # Viridis: dark purple to yellow, lighter at every step.
    lightness = shown.reshape(-1, 3).astype(float) @ [0.299, 0.587, 0.114]
    assert (np.diff(lightness) > -1).all() and lightness[-1] - lightness[0] > 150  # -1: 8-bit rounding
    assert tuple(shown[0, 0]) == (68, 1, 84) and tuple(shown[-1, -1]) == (253, 231, 37)
    rgb = np.random.default_rng(0).integers(0, 256, (4, 4, 3), dtype=np.uint8)
    assert display_rgb(rgb) is rgb


@pytest.mark.parametrize("method", ["fourier", "auto"])
def test_a_spectrogram_classifier_builds_a_site(tiny_config, spectrogram_dir, method):
    result = pipeline.build(tiny_config(model={"name": MONO_SPEC}, images={"dir": str(spectrogram_dir)},
                                        icons={"method": method}))
    out = result.out_dir
    manifest = json.loads((out / "data" / "manifest.json").read_text())
    assert [a["layer"] for a in manifest["atlases"]] == ["features.2", "features.4"]
    for atlas in manifest["atlases"]:
        level = atlas["level_data"][-1]
        tiles = [np.asarray(Image.open(out / "data" / atlas["id"] / f"{level['size']}-{t}.webp").convert("RGB"))
                 for t in level["tiles"]]
        pixels = np.concatenate([t.reshape(-1, 3) for t in tiles]).astype(int)
        icons = pixels[(pixels != 255).any(1)]  # not the white between cells
        # Colour-mapped, not grey: viridis never has red, green and blue alike.
        assert len(icons) and np.median(np.abs(icons[:, 1] - icons[:, 0]) + np.abs(icons[:, 2] - icons[:, 1])) > 30
        assert (out / "explore" / f"{atlas['id']}.html").is_file()
