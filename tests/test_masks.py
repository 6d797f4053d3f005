"""Importance masks (icons.mask): where each icon's optimization leaned on it, kept with the icon, written
as the alpha of tiles of their own and drawn by the viewer; and what the site says made its icons."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from PIL import Image

from generator import pipeline
from generator.icons import IconSpec, render_icons
from generator.icons.render import MASK_PERCENTILE, importance_mask

from .browser import VIEWER, Visit, _canvas, open_explorer
from .conftest import MONO_SPEC
from .test_icons import _real_directions


def test_a_mask_is_opaque_where_the_gradient_fell_most():
    import torch

    importance = torch.zeros(2, 10, 10)
    importance[0] = torch.arange(100.0).view(10, 10)  # a ramp
    importance[1, 4:6, 4:6] = 1.0  # a spot, and nothing elsewhere
    mask = importance_mask(importance)
    assert mask.shape == (2, 10, 10) and mask.dtype == np.uint8
    # The top fifth of each icon's importance is opaque; below it, alpha falls in proportion.
    assert (mask[0] == 255).mean() == pytest.approx(1 - MASK_PERCENTILE / 100, abs=0.01)
    assert (np.diff(mask[0].ravel().astype(int)) >= 0).all() and mask[0, 0, 0] == 0
    assert (mask[1, 4:6, 4:6] == 255).all() and mask[1].sum() == 4 * 255


def test_masks_follow_the_centre_s_receptive_field_and_leave_the_icons_as_they_were(tiny_model, image_dir, tmp_path):
    # features.4 of the tiny network sees 15 px around a position: the centre of a 32-px icon.
    directions = _real_directions(tiny_model, "features.4", image_dir, 6)
    plain = IconSpec(size_px=32, steps=24, batch_size=6, precision="float32")
    masked = dataclasses.replace(plain, mask=True)
    without = render_icons(tiny_model, "features.4", directions, plain, seed=3)
    a = render_icons(tiny_model, "features.4", directions, masked, seed=3, cache_dir=tmp_path)
    assert without.mask is None
    np.testing.assert_array_equal(a.icons, without.icons)  # the mask only watches the optimization
    assert a.mask.shape == (6, 32, 32) and a.mask.dtype == np.uint8
    centre, corners = a.mask[:, 10:22, 10:22].mean(), np.concatenate(
        [a.mask[:, :6, :6], a.mask[:, :6, -6:], a.mask[:, -6:, :6], a.mask[:, -6:, -6:]]).mean()
    assert centre > 200 and corners < centre / 3, (centre, corners)
    # Cached with its icons: a second render reads the same masks back without rendering.
    again = render_icons(tiny_model, "features.4", directions, masked, seed=3, cache_dir=tmp_path)
    np.testing.assert_array_equal(again.mask, a.mask)
    # Masks are part of the key: asking for them never reads a cached batch that has none.
    assert "mask" not in plain.with_(batch_size=6).key_parts() and masked.key_parts()["mask"] is True


def _alpha(path):
    image = Image.open(path)
    assert image.mode == "RGBA"
    return np.asarray(image)[..., 3]


def test_a_masked_build_writes_mask_tiles_and_says_how_its_icons_were_made(tiny_config):
    result = pipeline.build(tiny_config(icons={"mask": True, "method": "fourier"}))
    data = result.out_dir / "data"
    manifest = json.loads((data / "manifest.json").read_text())
    for atlas in manifest["atlases"]:
        assert atlas["mask"] is True and atlas["method"] == "fourier" and "colour_map" not in atlas
        for level in atlas["level_data"]:
            for tile in level["tiles"]:
                colour = Image.open(data / atlas["id"] / f"{level['size']}-{tile}.webp")
                alpha = _alpha(data / atlas["id"] / f"{level['size']}-{tile}-mask.webp")
                assert alpha.shape == colour.size[::-1] and alpha.max() >= 250 and alpha.min() < 60
    facts = (result.out_dir / "index.html").read_text()
    assert "by Fourier at <code>features.2</code>, Fourier at <code>features.4</code>, with importance masks" in facts
    first = {p.relative_to(data): p.read_bytes() for p in data.rglob("*-mask.webp")}
    again = pipeline.build(tiny_config(icons={"mask": True, "method": "fourier"}))
    assert again.timings.get("icons", 0) < result.timings["icons"]
    assert {p.relative_to(data): p.read_bytes() for p in data.rglob("*-mask.webp")} == first


def test_without_masks_there_are_no_mask_tiles(tiny_config):
    result = pipeline.build(tiny_config(icons={"method": "fourier"}))
    manifest = json.loads((result.out_dir / "data" / "manifest.json").read_text())
    assert [a["mask"] for a in manifest["atlases"]] == [False, False]
    assert not list((result.out_dir / "data").rglob("*-mask.webp"))


@pytest.mark.slow
def test_the_viewer_cuts_icons_by_their_masks_with_a_toggle_in_the_address(browser, tiny_config):
    result = pipeline.build(tiny_config(icons={"mask": True, "method": "fourier"}))
    atlas = json.loads((result.out_dir / "data" / "manifest.json").read_text())["atlases"][0]
    visit = open_explorer(browser, result.out_dir, atlas)
    page = visit.page
    page.evaluate(f"{VIEWER}.names.set(false, true)")  # names, where a build has any, draw pixels of their own
    visit.settled()
    button = page.locator(".mask-toggle")
    assert button.is_visible() and button.get_attribute("aria-pressed") == "true"
    masked = _canvas(page)
    button.click()
    visit.settled()
    whole = _canvas(page)
    assert button.get_attribute("aria-pressed") == "false"
    page.wait_for_function("location.hash.indexOf('mask=0') >= 0")
    # Cut by its mask, an icon fades toward the white page where its optimization leaned on it least:
    # the canvas only gets lighter, and clearly so somewhere.
    assert (masked < whole - 2).mean() < 0.01 and (masked > whole + 40).mean() > 0.01
    address = page.url
    visit.close()
    again = Visit(browser, address)
    again.painted()
    again.settled()
    assert again.page.get_attribute(".mask-toggle", "aria-pressed") == "false"
    assert again.page.evaluate(f"{VIEWER}.mask.on") is False
    assert again.problems == [] and visit.problems == []
    again.close()


@pytest.mark.slow
def test_a_spectrogram_atlas_has_a_colour_legend_and_no_mask_toggle(browser, tiny_config, spectrogram_dir):
    result = pipeline.build(tiny_config(model={"name": MONO_SPEC}, images={"dir": str(spectrogram_dir)},
                                        icons={"method": "fourier"}))
    atlas = json.loads((result.out_dir / "data" / "manifest.json").read_text())["atlases"][0]
    assert atlas["colour_map"] == "viridis" and atlas["mask"] is False
    assert "shown through the viridis colour map" in (result.out_dir / "index.html").read_text()
    visit = open_explorer(browser, result.out_dir, atlas)
    legend = visit.page.locator(".colour-legend")
    assert legend.is_visible() and legend.inner_text().split()[:2] == ["low", "high"], legend.inner_text()
    assert not visit.page.locator(".mask-toggle").is_visible()
    assert visit.problems == []
    visit.close()
