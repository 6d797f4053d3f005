"""Reading an atlas in the browser: a cell's real examples (on hover, in the pinned panel, behind a
permalink, as text whatever the images are called) and the layout's trust overlay. Debian's chromium
driven by Playwright, from disk."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from .browser import VIEWER, Visit, _canvas, _cell_point, _cells, open_explorer

pytestmark = pytest.mark.slow


def _examples_of(folder, atlas, level, cell):
    """The cell's examples as the site publishes them: [(image name, predicted class name, percent), ...]."""
    info = atlas["examples"]
    stem = f"examples-{level['size']}-{cell['x'] // info['group']}-{cell['y'] // info['group']}"
    text = (folder / "data" / atlas["id"] / f"{stem}.js").read_text()
    data = json.loads(text.splitlines()[-1].split(" = ", 1)[1].rstrip().rstrip(";"))
    classes = json.loads((folder / "data" / "manifest.json").read_text())["classes"]
    for x, y, shown in data["cells"]:
        if (x, y) == (cell["x"], cell["y"]):
            return [(data["names"][n], classes[c], p) for n, c, p in shown]
    raise AssertionError(f"no examples for cell {cell} in {stem}")


def _busiest(folder, atlas, page):
    level = atlas["level_data"][page.evaluate(f"{VIEWER}.levelIndex()")]
    cell = max(_cells(folder, level), key=lambda c: c["count"])
    return level, cell


def test_examples_show_on_hover_and_in_the_pinned_panel_behind_a_permalink(browser, site):
    _, folder, manifest = site
    atlas = manifest["atlases"][0]
    visit = open_explorer(browser, folder, atlas)
    page = visit.page
    level, cell = _busiest(folder, atlas, page)
    expected = _examples_of(folder, atlas, level, cell)
    assert len(expected) == min(atlas["examples"]["per_cell"], cell["count"])
    point = _cell_point(page, level["size"], cell)
    page.mouse.move(*point)
    patches = page.locator(".tooltip .examples .patch")
    patches.first.wait_for(state="visible")
    assert patches.count() == len(expected)
    assert page.locator(".tooltip .example-name").count() == 0  # the hover card shows the patches alone
    # A click pins the panel: the icon, bars for the classes, each example named with the model's prediction.
    page.mouse.click(*point)
    page.locator(".tooltip .example-name").first.wait_for(state="visible")
    names = page.locator(".tooltip .example-name").all_inner_texts()
    predictions = page.locator(".tooltip .example-prediction").all_inner_texts()
    assert list(zip(names, predictions)) == [(n, f"{c} ({p}%)") for n, c, p in expected]
    assert page.locator(".tooltip canvas.card-icon").count() == 1
    assert page.locator(".tooltip li .bar").count() == len(cell["top"])
    sprite = page.evaluate("getComputedStyle(document.querySelector('.tooltip .patch')).backgroundImage")
    stem = f"examples-{level['size']}-{cell['x'] // 4}-{cell['y'] // 4}.webp"
    assert stem in sprite and any(u.endswith(stem) for u in visit.requests)
    page.wait_for_function(f"location.hash.indexOf('cell={level['size']}-{cell['x']}-{cell['y']}') >= 0")
    address = page.url
    visit.close()

    # The address opens the same cell's panel.
    again = Visit(browser, address)
    again.painted()
    again.page.locator(".tooltip .example-name").first.wait_for(state="visible")
    assert again.page.locator(".tooltip .example-name").all_inner_texts() == names
    assert again.page.evaluate(f"(p => [p.size, p.x, p.y])({VIEWER}.card.pinned)") == [level["size"], cell["x"],
                                                                                       cell["y"]]
    # Closing the panel takes the cell out of the address.
    again.page.locator(".viewer").focus()
    again.page.keyboard.press("Escape")
    again.page.wait_for_function("location.hash.indexOf('cell=') < 0")
    assert visit.problems == [] and again.problems == []
    again.close()


def test_hostile_image_names_are_shown_as_text(browser, tiny_config, tmp_path, image_dir):
    from generator import pipeline

    from .conftest import synthetic_image

    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(1)
    hostile = ['<img src=x onerror=alert(1)>.png', '"quoted" & <b>bold.png', "a'b.png"]
    for i, name in enumerate(hostile * 3):
        sub = images / f"set{i // len(hostile)}"
        sub.mkdir(exist_ok=True)
        synthetic_image(rng).save(sub / name)
    result = pipeline.build(tiny_config(images={"dir": str(images), "crops_per_image": 2}))
    manifest = json.loads((result.out_dir / "data" / "manifest.json").read_text())
    atlas = manifest["atlases"][0]
    visit = open_explorer(browser, result.out_dir, atlas)
    page = visit.page
    level, cell = _busiest(result.out_dir, atlas, page)
    page.mouse.click(*_cell_point(page, level["size"], cell))
    page.locator(".tooltip .example-name").first.wait_for(state="visible")
    shown = page.locator(".tooltip .example-name").all_inner_texts()
    assert shown and all(re.fullmatch(r"set\d/(" + "|".join(map(re.escape, hostile)) + ")", s) for s in shown)
    assert page.locator(".tooltip img, .tooltip b").count() == 0 and visit.dialogs == []
    assert visit.problems == []
    visit.close()


def test_without_examples_the_site_has_none_and_the_card_says_nothing_of_them(browser, tiny_config):
    from generator import pipeline

    result = pipeline.build(tiny_config(site={"examples": False}))
    manifest = json.loads((result.out_dir / "data" / "manifest.json").read_text())
    atlas = manifest["atlases"][0]
    assert "examples" not in atlas and not list((result.out_dir / "data").rglob("examples-*"))
    visit = open_explorer(browser, result.out_dir, atlas)
    page = visit.page
    level, cell = _busiest(result.out_dir, atlas, page)
    page.mouse.click(*_cell_point(page, level["size"], cell))
    page.locator(".tooltip").wait_for(state="visible")
    assert page.locator(".tooltip .examples").count() == 0 and "Examples" not in page.locator(".tooltip").inner_text()
    assert visit.problems == []
    visit.close()


def test_the_trust_overlay_shades_cells_by_their_score_and_is_part_of_the_address(browser, site):
    _, folder, manifest = site
    atlas = manifest["atlases"][0]
    assert 0 < atlas["trustworthiness"] <= 1 and 0 <= atlas["trust_mean"] <= 1
    visit = open_explorer(browser, folder, atlas)
    page = visit.page
    page.click(".labels-toggle")  # region names are drawn above the shade: off, so that pixels show the shade alone
    visit.settled()
    before = _canvas(page)
    legend = page.locator(".trust-legend")
    assert not legend.is_visible()
    page.click(".trust-toggle")
    visit.settled()
    assert legend.is_visible() and f"{atlas['trustworthiness']:.3f}" in legend.inner_text()
    assert page.get_attribute(".trust-toggle", "aria-pressed") == "true"
    shaded = _canvas(page)
    level = atlas["level_data"][page.evaluate(f"{VIEWER}.levelIndex()")]
    cells = _cells(folder, level)
    clear = min(1, 2 * atlas["trust_mean"])
    worst = min((c for c in cells if c["trust"] is not None), key=lambda c: c["trust"])
    x, y = _cell_point(page, level["size"], worst)
    box = page.locator(".viewer").bounding_box()
    at = (int(y - box["y"]), int(x - box["x"]))
    if worst["trust"] < clear * 0.8:  # a shaded cell is darker; the overlay leaves the rest of the page alone
        assert shaded[at] < before[at] - 5
    lb = legend.bounding_box()
    mask = np.ones(shaded.shape, bool)
    mask[int(lb["y"] - box["y"]) - 2:int(lb["y"] - box["y"] + lb["height"]) + 2,
         int(lb["x"] - box["x"]) - 2:int(lb["x"] - box["x"] + lb["width"]) + 2] = False  # the legend itself
    # The overlay only darkens: next to no pixel outside the legend gets lighter, and some get darker.
    assert (shaded[mask] > before[mask] + 1).mean() < 0.01 and (shaded[mask] < before[mask] - 5).any()
    page.wait_for_function("location.hash.indexOf('trust=1') >= 0")
    address = page.url
    page.click(".trust-toggle")
    visit.settled()
    assert np.abs(_canvas(page) - before).max() <= 1 and not legend.is_visible()
    visit.close()
    again = Visit(browser, address)
    again.painted()
    assert again.page.get_attribute(".trust-toggle", "aria-pressed") == "true"
    assert again.page.get_attribute(".labels-toggle", "aria-pressed") == "false"
    assert again.problems == [] and visit.problems == []
    again.close()


def _names_of(folder, atlas):
    text = (folder / "data" / atlas["id"] / "names.js").read_text()
    return json.loads(text.splitlines()[-1].split(" = ", 1)[1].rstrip().rstrip(";"))


def _drawn(page):
    return page.evaluate(f"{VIEWER}.names.drawn")


def test_region_names_are_drawn_apart_change_with_the_zoom_and_toggle(browser, site):
    _, folder, manifest = site
    atlas = manifest["atlases"][0]
    names = _names_of(folder, atlas)
    visit = open_explorer(browser, folder, atlas)
    page = visit.page
    visit.settled()
    size = atlas["level_data"][page.evaluate(f"{VIEWER}.levelIndex()")]["size"]
    drawn = _drawn(page)
    assert drawn and {d["name"] for d in drawn} <= {n[3] for n in names[str(size)]}
    for i, a in enumerate(drawn):  # no two names overlap
        for b in drawn[i + 1:]:
            assert a["right"] <= b["left"] or b["right"] <= a["left"] or a["bottom"] <= b["top"] or b["bottom"] <= a["top"]
    # Zoomed in, the finer level's names are drawn instead.
    page.evaluate(f"{VIEWER}.setView({{z: 6}})")
    visit.settled()
    finer = atlas["level_data"][page.evaluate(f"{VIEWER}.levelIndex()")]["size"]
    assert finer > size
    assert {d["name"] for d in _drawn(page)} <= {n[3] for n in names[str(finer)]}
    page.evaluate(f"{VIEWER}.setView({{z: 1}})")
    visit.settled()
    before = _canvas(page)
    page.click(".labels-toggle")
    visit.settled()
    assert _drawn(page) == [] and page.get_attribute(".labels-toggle", "aria-pressed") == "false"
    assert np.abs(_canvas(page) - before).max() > 50  # the names' pixels are gone
    page.wait_for_function("location.hash.indexOf('labels=0') >= 0")
    address = page.url
    visit.close()
    again = Visit(browser, address)
    again.painted()
    again.settled()
    assert again.page.get_attribute(".labels-toggle", "aria-pressed") == "false" and _drawn(again.page) == []
    assert again.problems == [] and visit.problems == []
    again.close()


@pytest.mark.parametrize("where", ["file", "http"])
def test_class_atlases_and_comparisons_open_switch_and_name_their_sides(browser, site, serve_under_subpath, where):
    _, folder, manifest = site
    base = folder.as_uri() + "/" if where == "file" else serve_under_subpath(folder)
    one, compare = manifest["class_atlases"][0], manifest["class_atlases"][-1]
    visit = Visit(browser, base + f"explore/{compare['id']}.html")
    page = visit.page
    visit.painted()
    assert _canvas(page).std() > 10
    assert page.title() == f"{compare['title']} · {manifest['title']}"
    a, b = compare["class_names"]
    axis = page.locator(".compare-axis")
    assert axis.is_visible() and axis.inner_text().split("\n") == [f"← more {b}", f"more {a} →"]
    # the switch holds the class atlases and comparisons only; a class atlas has no sides
    shown = page.evaluate("[...document.querySelectorAll('.layer-switch button')].filter(b => !b.hidden)"
                          ".map(b => b.dataset.layer)")
    assert shown == [v["id"] for v in manifest["class_atlases"]]
    page.click(f".layer-switch button[data-layer='{one['id']}']")
    page.wait_for_function(f"{VIEWER}.atlas.id === '{one['id']}'")
    visit.settled()
    assert not axis.is_visible() and page.title() == f"{one['title']} · {manifest['title']}"
    assert page.locator("main h1").inner_text() == one["title"]
    assert f"layer={one['id']}" in page.url
    # a cell of a class atlas reads like any other: its count, classes and examples
    level, cell = _busiest(folder, one, page)
    page.mouse.move(*_cell_point(page, level["size"], cell))
    page.locator(".tooltip .examples .patch").first.wait_for(state="visible")
    assert f"Average of {cell['count']} activation" in page.locator(".tooltip").inner_text()
    assert visit.problems == [] and visit.outside(base) == []
    visit.close()
    # an embed code may name a comparison: the embed page offers the class atlases with it, not the layers
    embed = Visit(browser, base + f"embed.html#layer={compare['id']}")
    embed.painted()
    assert embed.page.evaluate(f"{VIEWER}.atlas.id") == compare["id"]
    assert embed.page.locator(".compare-axis").is_visible()
    assert embed.page.evaluate("[...document.querySelectorAll('.layer-switch button')].filter(b => !b.hidden)"
                               ".map(b => b.dataset.layer)") == [v["id"] for v in manifest["class_atlases"]]
    assert embed.problems == []
    embed.close()


def test_the_article_pins_a_cell_whose_examples_contradict_its_top_class(browser, site):
    _, folder, manifest = site
    atlas = manifest["atlases"][-1]
    found = atlas["finding"]
    assert found is not None, "the quick builds' last layer has such a cell"
    top = manifest["classes"][found["top"]]
    visit = Visit(browser, folder.as_uri() + "/index.html")
    page = visit.page
    text = page.locator("main").inner_text()
    assert f"goes most to {top}, yet none of its {found['k']} real examples" in text
    selector = ".atlas-viewer[data-view*=cell]"  # the one viewer whose view pins a cell
    assert page.locator(selector).count() == 1
    visit.painted(selector)
    page.wait_for_function(f"document.querySelector(`{selector}`).viewer.card.pinned !== null")
    pinned = page.evaluate(f"(p => [p.size, p.x, p.y])(document.querySelector(`{selector}`).viewer.card.pinned)")
    assert pinned == [found["size"], found["x"], found["y"]]
    card = page.locator(f"{selector} .tooltip")
    card.locator(".example-name").first.wait_for(state="visible")
    predictions = card.locator(".example-prediction").all_inner_texts()
    assert len(predictions) == found["k"] and not any(p.startswith(f"{top} (") for p in predictions)
    assert card.locator("li").first.inner_text().split("\n")[0].endswith(top)  # its top class, first of the bars
    assert visit.problems == []
    visit.close()


def test_linked_layers_light_up_where_a_cell_s_positions_fall_in_the_other(browser, site):
    _, folder, manifest = site
    first, second = manifest["atlases"][:2]
    visit = Visit(browser, folder.as_uri() + "/index.html", viewport=(1000, 1400))  # the figure's two atlases in view
    page = visit.page
    figure = ".atlas-linked .atlas-viewer"
    assert page.locator(figure).count() == 2
    visit.painted(figure)
    pair = f"[...document.querySelectorAll('{figure}')].map(n => n.viewer)"
    page.wait_for_function(f"{pair}.every(v => v.atlas && v.firstPaint !== null)")
    level = first["level_data"][page.evaluate(f"{pair}[0].levelIndex()")]
    cell = max(_cells(folder, level), key=lambda c: c["count"])
    other = page.locator(".atlas-linked .viewer").nth(1)
    before = _canvas(page, ".atlas-linked .viewer >> nth=1")
    point = _cell_point(page, level["size"], cell, selector=".atlas-linked .viewer")  # every inline view starts whole
    page.mouse.move(*point)
    page.wait_for_function(f"{pair}[1].links.cells !== null")
    shown = page.evaluate(f"{pair}[1].links.cells")
    text = (folder / "data" / first["links"][second["id"]][str(level["size"])]).read_text()
    listed = {(x, y): links for x, y, links in json.loads(text.splitlines()[-1].split(" = ", 1)[1].rstrip(";"))["cells"]}
    assert shown["size"] == level["size"] and shown["list"] == listed[(cell["x"], cell["y"])]
    readout = other.locator(".link-readout")
    assert readout.is_visible() and f"The cell of {first['layer']}: {sum(shown['list'][2::3])} of its positions" \
        in readout.inner_text()
    page.wait_for_timeout(200)  # the next frame
    changed = np.abs(_canvas(page, ".atlas-linked .viewer >> nth=1") - before) > 10
    # drawn: the veil over the other cells' icons and the outlines of the linked ones (a busy cell of a
    # coarse level may reach most of the other atlas's cells, and leave little to veil)
    assert changed.mean() > 0.005
    # pinned, the cell stays linked when the pointer leaves; unpinned, the other layer clears
    page.mouse.click(*point)
    page.mouse.move(5, 5)
    page.wait_for_timeout(200)
    assert page.evaluate(f"{pair}[1].links.cells !== null")
    page.keyboard.press("Escape")
    page.wait_for_function(f"{pair}[1].links.cells === null")
    assert not readout.is_visible()
    assert visit.problems == []
    visit.close()
