"""Large levels split by region: the files the build writes, and the viewer loading only the regions in view."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest

from generator import regions, tiles
from generator.grid import bin_grid
from generator.icons import RenderedIcons

from .browser import VIEWER, Visit, _canvas, _cell_point, _cells
from .conftest import TINY_SPEC


def _payload(path):
    """The key and payload a data script registers in window.ATLAS_DATA."""
    line = path.read_text(encoding="utf-8").splitlines()[-1]
    key, value = line[len("window.ATLAS_DATA["):].split("] = ", 1)
    return json.loads(key), json.loads(value.rstrip(";"))


def _codes(text):
    return np.frombuffer(base64.b64decode(text), np.int8)


@pytest.fixture
def small_regions(monkeypatch):
    """Regions of 8 x 8 cells (4 tiles of 2 x 2 icons of 8 px), for levels of more than 50 cells."""
    monkeypatch.setattr(regions, "SPLIT_CELLS", 50)
    monkeypatch.setattr(regions, "REGION_CELLS", 8)
    monkeypatch.setattr(tiles, "TILE_PX", 16)


def test_a_large_level_is_written_region_by_region(tmp_path, small_regions):
    rng = np.random.default_rng(0)
    n, classes = 3000, 12
    xy = rng.beta(2, 2, (n, 2)).astype(np.float32)
    levels = bin_grid(xy, rng.normal(size=(n, 6)).astype(np.float16),
                      (rng.normal(size=(n, classes)) * 0.1).astype(np.float16), [4, 30], min_count=1, top=3)
    rendered = [RenderedIcons(rng.integers(0, 255, (len(lv.cells), 8, 8, 3), dtype=np.uint8),
                              rng.uniform(0.5, 1, len(lv.cells)), rng.uniform(0, 1, len(lv.cells))) for lv in levels]
    data = tmp_path / "data"
    atlas = tiles.write_atlas(data, "blocks.4", "tiny", (6, 3, 3), n, levels, rendered)
    tiles.write_manifest(data, [atlas], [f"c{k}" for k in range(classes)], "T")
    small, large = atlas["level_data"]
    folder = data / atlas["id"]
    # The 16-cell level stays one file of each kind; the 30 x 30 one is 4 x 4 regions of 8 x 8 cells.
    assert small["region_cells"] == 4 and small["regions"] == ["0-0"] and "class_script" not in small
    assert _payload(data / small["cells_script"])[0] == "blocks-4/level-4"
    assert large["region_cells"] == 8 and large["cells_script"] == "blocks-4/level-30-{region}.js"
    assert 8 < len(large["regions"]) <= 16 and not (folder / "level-30.js").exists()
    assert regions.read_cells(data, large) == [{**c, "fidelity": round(float(f), 3), "objective": round(float(o), 3)}
                                               for c, f, o in zip(levels[1].cells, rendered[1].fidelity,
                                                                  rendered[1].objective)]
    scale = regions.class_scale(levels)
    codes = regions.quantize_scores(levels[1].scores, scale)
    index = {(c["x"], c["y"]): i for i, c in enumerate(levels[1].cells)}
    for name in large["regions"]:
        key, cells = _payload(data / large["cells_script"].replace("{region}", name))
        assert key == f"blocks-4/level-30-{name}"
        rx, ry = map(int, name.split("-"))
        assert all(c[0] // 8 == rx and c[1] // 8 == ry for c in cells["cells"])
        rows = [index[(c[0], c[1])] for c in cells["cells"]]
        assert rows == sorted(rows)  # in the level's order
        for chunk in range(-(-classes // large["class_chunk"])):
            path = data / large["class_script"].replace("{region}", name).replace("{chunk}", str(chunk))
            key, scores = _payload(path)
            assert key == path.relative_to(data).as_posix()[:-3]
            for j, text in enumerate(scores["codes"]):
                np.testing.assert_array_equal(_codes(text), codes[rows, scores["first"] + j])
    # The one-file level's class scores hold it alone; the strongest cells are listed for both levels.
    key, small_scores = _payload(data / atlas["class_scripts"][0])
    assert list(small_scores["codes"]) == ["4"]
    first = _payload(data / atlas["strongest_scripts"][0])[1]
    assert len(first["cells"]) == min(classes, atlas["strongest_chunk"])
    for cls in range(len(first["cells"])):
        positive, negative = first["cells"][cls][1]
        order = sorted(range(len(codes)), key=lambda i: (-codes[i, cls], i))
        expected = [v for i in order[:regions.STRONGEST] if codes[i, cls] > 0
                    for v in (levels[1].cells[i]["x"], levels[1].cells[i]["y"], int(codes[i, cls]),
                              levels[1].cells[i]["top"][0][0])]
        assert positive == expected
        assert all(code < 0 for code in negative[2::4]) and negative[2::4] == sorted(negative[2::4])
    # The page's first script names regions and patterns, not every tile.
    shown = _payload(data / atlas["script"])[1]["atlas"]
    assert all("tiles" not in level and level["regions"] for level in shown["level_data"])


def test_strongest_cells_are_those_a_stable_sort_puts_first():
    rng = np.random.default_rng(1)
    codes = rng.integers(-3, 4, (300, 70)).astype(np.int8)  # many ties
    codes[:, 5] = 0  # a class with no cell above zero
    picked = regions.strongest_cells(codes, 6, classes=16)
    for cls in range(codes.shape[1]):
        expected = [i for i in np.argsort(-codes[:, cls].astype(int), kind="stable")[:6] if codes[i, cls] > 0]
        assert picked[cls].tolist() == expected + [-1] * (6 - len(expected))
    assert regions.strongest_cells(codes[:3], 6).shape == (70, 6)


# --- in the browser ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def split_site(tmp_path_factory, image_dir):
    """A tiny model's site whose 64 x 64 level is split into 8 x 8 regions of 8 x 8 cells."""
    from generator import pipeline
    from generator.config import load_config

    work = tmp_path_factory.mktemp("split")
    cfg = load_config(None, {
        "out": str(work / "site"), "cache": str(work / "cache"), "model": {"name": TINY_SPEC},
        "images": {"dir": str(image_dir), "crops_per_image": 24}, "collect": {"positions_per_image": 8,
                                                                               "layers": ["features.4"]},
        "layout": {"method": "tsne"}, "grid": {"levels": [4, 64], "min_count": 1},
        "icons": {"size_px": 24, "steps": 2, "batch_size": 64, "warm_start": False}})
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(regions, "SPLIT_CELLS", 200)
        patch.setattr(regions, "REGION_CELLS", 8)
        patch.setattr(tiles, "TILE_PX", 96)  # tiles of 4 x 4 icons of 24 px
        result = pipeline.build(cfg)
    return result.out_dir, result.manifest


def _region_requests(visit, atlas, size):
    prefix = f"/data/{atlas['id']}/level-{size}-"
    return {u.split(prefix, 1)[1][:-3] for u in visit.requests if prefix in u and u.endswith(".js")}


@pytest.mark.slow
def test_a_split_level_loads_the_regions_in_view_and_its_cards_and_filter_work(browser, split_site):
    folder, manifest = split_site
    atlas = manifest["atlases"][0]
    coarse, fine = atlas["level_data"]
    assert fine["region_cells"] == 8 and len(fine["regions"]) > 20 and coarse["region_cells"] == 4
    visit = Visit(browser, folder.as_uri() + f"/explore/{atlas['id']}.html")
    visit.painted()
    page = visit.page
    assert _region_requests(visit, atlas, 64) == set()  # the first paint needs only the coarse level
    # Deep in the corner of the region nearest the top left, only that region and those around it load.
    cells = _cells(folder, fine)
    corner = min(cells, key=lambda c: c["x"] + c["y"])
    far = max(cells, key=lambda c: c["x"] + c["y"])
    far_region = f"{far['x'] // 8}-{far['y'] // 8}"
    assert far["x"] // 8 - corner["x"] // 8 >= 3 or far["y"] // 8 - corner["y"] // 8 >= 3, (corner, far)
    page.evaluate(f"{VIEWER}.setView({{cx: {(corner['x'] + 0.5) / 64}, cy: {(corner['y'] + 0.5) / 64}, z: 8}})")
    visit.settled()
    assert page.evaluate(f"{VIEWER}.levelIndex()") == 1
    near = _region_requests(visit, atlas, 64)
    assert f"{corner['x'] // 8}-{corner['y'] // 8}" in near and far_region not in near
    assert len(near) < len(fine["regions"])
    # Panned over the far cell, its region arrives and its icon is drawn.
    page.evaluate(f"{VIEWER}.setView({{cx: {(far['x'] + 0.5) / 64}, cy: {(far['y'] + 0.5) / 64}}})")
    visit.settled()
    assert far_region in _region_requests(visit, atlas, 64)
    assert _canvas(page).std() > 10
    # Its card shows the cell's classes and count.
    page.mouse.move(*_cell_point(page, 64, far))
    card = page.locator(".tooltip")
    card.wait_for(state="visible")
    assert manifest["classes"][far["top"][0][0]] in card.inner_text()
    assert f"Average of {far['count']} activation" in card.inner_text()
    # The class filter fades the far region's icons by their codes, and lists the class's strongest cells
    # at this level, wherever they are; a click flies to one and pins its card once its region arrives.
    cls = far["top"][0][0]
    page.fill(".class-search", manifest["classes"][cls])
    page.press(".class-search", "Enter")
    visit.settled()
    assert page.evaluate(f"{VIEWER}.filter.cls") == cls
    chunk = cls // fine["class_chunk"]
    assert any(f"/classes-64-{far_region}-{chunk}.js" in u for u in visit.requests)
    page.mouse.move(*_cell_point(page, 64, far))
    card.wait_for(state="visible")
    assert f"{manifest['classes'][cls]}: " in card.inner_text()
    buttons = page.locator(".class-panel .strongest button")
    buttons.first.wait_for(state="visible")
    targets = [[int(v) for v in b.get_attribute("data-cell").split(",")] for b in buttons.all()]
    assert targets and all(t[0] == 1 for t in targets)
    target = targets[0]
    page.mouse.move(5, 5)
    buttons.first.click()
    page.wait_for_function(f"{VIEWER}.card.pinned !== null")
    view = page.evaluate(f"{VIEWER}.view")
    assert abs(view["cx"] - (target[1] + 0.5) / 64) < 1e-6 and abs(view["cy"] - (target[2] + 0.5) / 64) < 1e-6
    pinned = page.evaluate(f"(c => [c.x, c.y])({VIEWER}.card.pinned)")
    assert pinned == target[1:]
    assert card.is_visible() and manifest["classes"][cls] in card.inner_text()
    assert visit.problems == []
    visit.close()
