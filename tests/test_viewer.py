"""The viewer as its readers use it: on a phone with touch, embedded in a course page from another
origin, switching layers, zoomed to its limit, filtering by class, with a screen reader, and against
a hostile address. Debian's chromium driven by Playwright, on the quick builds of the default and,
when ../shared is present, of the ImageNet sample.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import threading
from pathlib import Path

import numpy as np
import pytest

from .browser import VIEWER, Visit, _canvas, _cell_point, _cells, open_explorer

pytestmark = pytest.mark.slow

AXE = Path(__file__).parent / "node_modules" / "axe-core" / "axe.min.js"
PHONE = (375, 667)


def _touch(visit, kind, points):
    cdp = getattr(visit, "cdp", None) or visit.context.new_cdp_session(visit.page)
    visit.cdp = cdp
    cdp.send("Input.dispatchTouchEvent", {"type": kind, "touchPoints": [
        {"x": x, "y": y, "id": i} for i, (x, y) in enumerate(points)] if kind != "touchEnd" else []})


def _tap(visit, x, y):
    _touch(visit, "touchStart", [(x, y)])
    _touch(visit, "touchEnd", [])
    visit.page.wait_for_timeout(100)


def _swipe(visit, x, y0, y1, steps=8):
    _touch(visit, "touchStart", [(x, y0)])
    for k in range(1, steps + 1):
        _touch(visit, "touchMove", [(x, y0 + (y1 - y0) * k / steps)])
        visit.page.wait_for_timeout(16)
    _touch(visit, "touchEnd", [])
    visit.page.wait_for_timeout(300)


def _biggest_cell(folder, atlas, page, selector=".viewer"):
    level = atlas["level_data"][page.evaluate(f"{VIEWER}.levelIndex()")]
    cell = max(_cells(folder, level), key=lambda c: c["count"])
    return level, cell, _cell_point(page, level["size"], cell, selector)


def _axe(page):
    if not AXE.is_file():
        if os.environ.get("CI"):
            pytest.fail("axe-core is missing: run `npm install --prefix tests` (CI must install it)")
        pytest.skip("needs axe-core: npm install --prefix tests")
    page.add_script_tag(path=str(AXE))
    result = page.evaluate("axe.run(document, {resultTypes: ['violations']})")
    return [(v["id"], v["impact"], [n["target"] for n in v["nodes"]][:3]) for v in result["violations"]]


def test_on_a_phone_a_tap_pins_the_card_and_a_swipe_scrolls_the_page(browser, site):
    name, folder, manifest = site
    atlas = manifest["atlases"][0]
    visit = Visit(browser, folder.as_uri() + "/index.html", viewport=PHONE, has_touch=True, is_mobile=True)
    page = visit.page
    viewer = "document.querySelector('.atlas-inline')"
    page.locator(".atlas-inline").first.scroll_into_view_if_needed()
    visit.painted(".atlas-inline")
    # The toolbar keeps to one row, every part of it on screen.
    bar = page.evaluate(f"[...{viewer}.querySelector('.atlas-bar').children].filter(e => e.offsetParent)"
                        ".map(e => e.getBoundingClientRect()).map(r => [r.top, r.bottom, r.left, r.right])")
    assert max(b[1] for b in bar) - min(b[0] for b in bar) < 48, bar
    assert min(b[2] for b in bar) >= 0 and max(b[3] for b in bar) <= PHONE[0], bar
    # A vertical swipe over an atlas not yet tapped scrolls the page and leaves the view alone.
    box = page.locator(".atlas-inline .viewer").first.bounding_box()
    before = page.evaluate("window.scrollY"), page.evaluate(f"{viewer}.viewer.view")
    _swipe(visit, box["x"] + box["width"] / 2, box["y"] + box["height"] * 0.8, box["y"] + box["height"] * 0.2)
    assert page.evaluate("window.scrollY") > before[0] + 40
    assert page.evaluate(f"{viewer}.viewer.view") == before[1]
    # A tap pins the card of the cell under the finger; tapping it again closes it.
    page.locator(".atlas-inline").first.scroll_into_view_if_needed()
    page.wait_for_timeout(200)
    level = atlas["level_data"][page.evaluate(f"{viewer}.viewer.levelIndex()")]
    cell = max(_cells(folder, level), key=lambda c: c["count"])

    def point():  # the cell's centre on screen, at the atlas's current view
        view = page.evaluate(f"(({{cx, cy, z}}) => [cx, cy, z])({viewer}.viewer.view)")
        box = page.locator(".atlas-inline .viewer").first.bounding_box()
        side = min(box["width"], box["height"]) * 0.96 * view[2]
        return (box["x"] + box["width"] / 2 + ((cell["x"] + 0.5) / level["size"] - view[0]) * side,
                box["y"] + box["height"] / 2 + ((cell["y"] + 0.5) / level["size"] - view[1]) * side)

    x, y = point()
    _tap(visit, x, y)
    card = page.locator(".atlas-inline .tooltip").first
    assert card.is_visible()
    assert manifest["classes"][cell["top"][0][0]] in card.inner_text()
    card_box = card.bounding_box()
    assert card_box["x"] >= 0 and card_box["x"] + card_box["width"] <= PHONE[0] + 1
    x, y = point()  # the view moves the cell above the card where the card would hide it
    assert y < card_box["y"]
    _tap(visit, x, y)
    assert not card.is_visible()
    _tap(visit, x, y)
    assert card.is_visible()
    card_box = card.bounding_box()  # a tap on the card itself closes it too
    _tap(visit, card_box["x"] + card_box["width"] / 2, card_box["y"] + card_box["height"] / 2)
    assert not card.is_visible()
    x, y = point()
    _tap(visit, x, y)
    assert card.is_visible()
    page.keyboard.press("Escape")  # a keyboard on a tablet
    assert not card.is_visible()
    # After the tap the atlas is active: one finger now pans it instead of the page.
    scroll = page.evaluate("window.scrollY")
    page.evaluate(f"{viewer}.viewer.setView({{z: 2, cy: 0.5}})")
    cy = page.evaluate(f"{viewer}.viewer.view.cy")
    box = page.locator(".atlas-inline .viewer").first.bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    _swipe(visit, x, y + 60, y - 60)
    assert page.evaluate(f"{viewer}.viewer.view.cy") > cy + 0.02
    assert abs(page.evaluate("window.scrollY") - scroll) < 5
    assert visit.problems == []
    visit.close()


def test_phone_embed_fits_its_screen(browser, site):
    """On a phone the toolbar is one row, the minimap shrinks and the Share panel opens on screen."""
    name, folder, manifest = site
    visit = Visit(browser, folder.as_uri() + "/embed.html", viewport=(PHONE[0], 480), has_touch=True, is_mobile=True)
    page = visit.page
    visit.painted()
    assert page.locator(".atlas-bar").bounding_box()["height"] < 56
    page.evaluate(f"{VIEWER}.setView({{z: 2}})")
    page.wait_for_timeout(100)
    assert page.locator(".minimap").bounding_box()["width"] <= 72
    page.click(".share summary")
    panel = page.locator(".share-panel").bounding_box()
    assert panel["x"] >= 0 and panel["x"] + panel["width"] <= PHONE[0], panel
    page.keyboard.press("Escape")
    assert not page.locator(".share-panel").is_visible()
    assert visit.problems == []
    visit.close()


@pytest.fixture(scope="module")
def course_host(tmp_path_factory):
    """A static host on its own loopback port, for course pages that embed the site from another origin."""
    root = tmp_path_factory.mktemp("course")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield root, f"http://localhost:{server.server_address[1]}/"
    server.shutdown()


def test_embed_in_a_cross_origin_iframe_follows_its_size_and_leaves_the_wheel_to_the_page(
        browser, site, serve_under_subpath, course_host):
    _, folder, manifest = site
    base = serve_under_subpath(folder)  # 127.0.0.1:PORT; the course page is on localhost:OTHER
    visit = Visit(browser, base + f"explore/{manifest['atlases'][0]['id']}.html")
    visit.page.click(".share summary")
    code = visit.page.locator(".embed-code").input_value()
    visit.close()
    root, host = course_host
    (root / "week3.html").write_text("<!doctype html><html lang=en><title>Course notes</title><link rel=icon href='data:,'><main><h1>Week 3</h1>"
                                     f"<p>Read the map below.</p>{code}<div style='height: 1500px'></div></main>")
    visit = Visit(browser, host + "week3.html", viewport=(1400, 900), has_touch=True)
    page = visit.page
    page.evaluate("document.querySelector('iframe').style.width = '1280px'")
    child = next(f for f in page.frames if f != page.main_frame)
    assert child.url.startswith(base)
    child.wait_for_function(f"{VIEWER} && {VIEWER}.firstPaint !== null")

    def fits(width):
        page.evaluate(f"document.querySelector('iframe').style.width = '{width}px'")
        page.wait_for_timeout(400)
        inner = child.evaluate("document.documentElement.clientWidth")
        canvas = child.evaluate("document.querySelector('.atlas-canvas').getBoundingClientRect().width")
        assert abs(canvas - inner) <= 2, (width, inner, canvas)
        for part in (".share summary", ".open-explorer"):
            r = child.evaluate(f"(() => {{ const r = document.querySelector('{part}').getBoundingClientRect();"
                               f" return [r.left, r.right]; }})()")
            assert r[0] >= 0 and r[1] <= inner + 1, (width, part, r)
        child.evaluate(f"{VIEWER}.setView({{z: 2}})")
        page.wait_for_timeout(100)
        r = child.evaluate("(() => { const r = document.querySelector('.minimap').getBoundingClientRect();"
                           " return [r.left, r.right]; })()")
        assert r[0] >= 0 and r[1] <= inner + 1, (width, r)
        child.evaluate(f"{VIEWER}.setView({{z: 1}})")

    fits(1280)
    fits(700)
    fits(340)
    page.evaluate("document.querySelector('iframe').style.width = '700px'")
    # The wheel over an embed nobody has clicked scrolls the course page, not the atlas.
    box = page.locator("iframe").bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.wheel(0, 400)
    page.wait_for_timeout(400)
    assert page.evaluate("window.scrollY") > 100
    assert child.evaluate(f"{VIEWER}.view.z") == 1
    # Once the reader clicks into it, the wheel zooms.
    page.evaluate("window.scrollTo(0, 0)")
    page.wait_for_timeout(100)
    box = page.locator("iframe").bounding_box()
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.wheel(0, -300)
    page.wait_for_timeout(300)
    assert child.evaluate(f"{VIEWER}.view.z") > 1.2
    # At a phone's width, a tap in the frame pins the card of the cell under the finger.
    child.locator(".viewer").press("Escape")  # the click above pinned the card of the cell it hit
    assert not child.locator(".tooltip").is_visible()
    page.evaluate("document.querySelector('iframe').style.width = '340px'")
    child.evaluate(f"{VIEWER}.setView({{cx: 0.5, cy: 0.5, z: 1}})")
    page.wait_for_timeout(300)
    atlas = manifest["atlases"][0]
    child.wait_for_function(f"(v => v.atlas && v.cells[v.levelIndex()])({VIEWER})")
    level = atlas["level_data"][child.evaluate(f"{VIEWER}.levelIndex()")]
    cell = max(_cells(folder, level), key=lambda c: c["count"])
    at = child.evaluate(f"{VIEWER}.toScreen({(cell['x'] + 0.5) / level['size']}, {(cell['y'] + 0.5) / level['size']})")
    frame_box = child.locator(".viewer").bounding_box()
    page.touchscreen.tap(frame_box["x"] + at[0], frame_box["y"] + at[1])
    card = child.locator(".tooltip")
    card.wait_for(state="visible", timeout=2000)
    assert manifest["classes"][cell["top"][0][0]] in card.inner_text()
    child.locator(".viewer").press("Escape")
    assert not card.is_visible()
    assert visit.problems == []
    visit.close()


def test_switching_layers_updates_the_address_title_and_nav(browser, site, serve_under_subpath):
    _, folder, manifest = site
    if len(manifest["atlases"]) < 2:
        pytest.fail("the quick builds map two layers")
    first, second = manifest["atlases"][:2]
    for base in (folder.as_uri() + "/", serve_under_subpath(folder)):
        visit = Visit(browser, base + f"explore/{first['id']}.html")
        page = visit.page
        visit.painted()
        page.click(f".layer-switch button[data-layer='{second['id']}']")
        page.wait_for_function(f"{VIEWER}.atlas.id === '{second['id']}'")
        assert f"layer={second['id']}" in page.url
        assert page.title().startswith(f"{second['title']} · ")
        assert page.locator(f".site-header a[data-atlas='{second['id']}']").get_attribute("aria-current") == "page"
        assert page.locator(f".site-header a[data-atlas='{first['id']}']").get_attribute("aria-current") is None
        page.reload()
        page.wait_for_function(f"{VIEWER}.atlas && {VIEWER}.atlas.id === '{second['id']}'")
        assert page.title().startswith(f"{second['title']} · ")
        assert visit.problems == []
        visit.close()


def test_zoom_stops_at_the_finest_level_and_says_so(browser, site):
    _, folder, manifest = site
    atlas = manifest["atlases"][0]
    visit = open_explorer(browser, folder, atlas)
    page = visit.page
    page.locator(".viewer").focus()
    for _ in range(25):
        page.keyboard.press("+")
    visit.settled()  # the finest level's cells arrive, and the cursor's cell is read out
    page.keyboard.press("+")
    view = page.evaluate(f"{VIEWER}.view")
    finest = atlas["level_data"][-1]
    assert page.evaluate(f"{VIEWER}.levelIndex()") == len(atlas["level_data"]) - 1
    cell_px = page.evaluate(f"{VIEWER}.scale() / {finest['size']}")
    assert 2.5 * atlas["icon_px"] <= cell_px <= 3.01 * atlas["icon_px"], (cell_px, view)
    page.wait_for_timeout(100)
    assert "limit" in page.locator(".level-readout").inner_text()
    assert "as far as the finest grid allows" in page.locator(".announce").inner_text()
    page.mouse.move(500, 400)
    page.mouse.wheel(0, -2000)
    page.wait_for_timeout(200)
    assert page.evaluate(f"{VIEWER}.view.z") == view["z"]
    assert visit.problems == []
    visit.close()


def test_class_box_takes_exact_names_lists_ambiguous_ones_and_uses_one_scale(browser, site):
    _, folder, manifest = site
    atlas = manifest["atlases"][-1]
    classes = manifest["classes"]
    visit = open_explorer(browser, folder, atlas)
    page = visit.page
    box = page.locator(".class-search")
    # Several classes contain "wolf": the box lists them instead of taking one.
    box.fill("wolf")
    box.press("Enter")
    page.wait_for_timeout(100)
    assert page.evaluate(f"{VIEWER}.filter.cls") == -1
    options = page.locator(".class-options [role=option]").all_inner_texts()
    assert {"timber wolf", "white wolf", "red wolf", "wolf spider"} <= set(options)
    assert "classes match" in page.locator(".announce").inner_text()
    page.click(".class-options [role=option]:text-is('timber wolf')")
    assert page.evaluate(f"{VIEWER}.filter.cls") == classes.index("timber wolf")
    # An exact name is taken at once, whatever else contains it.
    box.fill("Tabby")
    box.press("Enter")
    assert page.evaluate(f"{VIEWER}.filter.cls") == classes.index("tabby")
    assert "tabby" in page.locator(".announce").inner_text()
    box.fill("no such thing")
    box.press("Enter")
    assert "No class matches" in page.locator(".announce").inner_text()
    # One scale for every class: a weakly attributed class stays faint next to the strongest one.
    peaks = f"""(() => {{
        const v = {VIEWER}, out = [], keep = v.filter.cls;
        for (let c = 0; c < v.atlas.class_chunk; c++) {{
          v.filter.cls = c; const codes = v.classFilter.codes(v.levelIndex());
          if (codes) out.push([c, Math.max(...codes)]);
        }}
        v.filter.cls = keep; return out; }})()"""
    page.evaluate(peaks)  # asks for the first chunk of classes
    page.wait_for_function(f"!!window.ATLAS_DATA['{atlas['id']}/classes-0']")
    peaks = page.evaluate(peaks)
    strong = max(peaks, key=lambda p: p[1])
    weak = min((p for p in peaks if p[1] > 0), key=lambda p: p[1])
    # The opacity each icon is drawn with, read from the canvas calls of one frame.
    page.evaluate(f"""(() => {{ const v = {VIEWER}, draw = v.ctx.drawImage.bind(v.ctx);
        v.alphas = []; v.ctx.drawImage = (...a) => {{ if (a.length === 9) v.alphas.push(v.ctx.globalAlpha); draw(...a); }}; }})()""")
    opacity = {}
    for cls in (strong[0], weak[0]):
        box.fill(classes[cls])
        box.press("Enter")
        page.wait_for_timeout(250)
        opacity[cls] = max(page.evaluate(f"{VIEWER}.alphas.splice(0)"))
    # Scaled to its own maximum, each class would have an icon at full opacity.
    assert opacity[weak[0]] < min(0.6, opacity[strong[0]] * 0.75), (peaks, opacity)
    assert page.locator(".class-panel .legend-max").inner_text() == f"{atlas['class_scale']:.2g}".replace("e-0", "e-")
    # The class's strongest cells are listed; a click flies there and pins the cell's card.
    box.fill(classes[strong[0]])
    box.press("Enter")
    first = page.locator(".class-panel .strongest button").first
    first.wait_for(state="visible")
    target = [int(v) for v in first.get_attribute("data-cell").split(",")]
    first.click()
    view = page.evaluate(f"{VIEWER}.view")
    size = atlas["level_data"][target[0]]["size"]
    assert abs(view["cx"] - (target[1] + 0.5) / size) < 1e-6 and abs(view["cy"] - (target[2] + 0.5) / size) < 1e-6
    card = page.locator(".tooltip")
    assert card.is_visible() and classes[strong[0]] in card.inner_text()
    assert visit.problems == []
    visit.close()


def test_card_shows_fidelity_and_explains_its_scores(browser, site):
    _, folder, manifest = site
    atlas = manifest["atlases"][0]
    visit = open_explorer(browser, folder, atlas)
    page = visit.page
    level, cell, point = _biggest_cell(folder, atlas, page)
    page.mouse.move(*point)
    card = page.locator(".tooltip")
    card.wait_for(state="visible")
    text = card.inner_text()
    assert f"icon fidelity {cell['fidelity']:.2f}" in text
    assert "activation × gradient" in text and "cosine" in text
    # A click pins it; Escape closes it, and a second Escape closes the Share panel.
    page.mouse.click(*point)
    page.mouse.move(5, 5)
    assert card.is_visible()
    page.click(".share summary")
    page.locator(".viewer").focus()
    page.keyboard.press("Escape")
    assert not card.is_visible()
    assert page.locator(".share-panel").is_visible()
    page.keyboard.press("Escape")
    assert not page.locator(".share-panel").is_visible()
    assert visit.problems == []
    visit.close()


def test_only_the_sites_own_atlases_reach_a_script_url(browser, site):
    """`#layer=../../evil.js?` once made the viewer load and run a script from outside the site."""
    _, folder, manifest = site
    evil = folder.parent / "evil.js"
    evil.write_text("window.PWNED = true;")
    for path in ("embed.html", f"explore/{manifest['atlases'][0]['id']}.html"):
        visit = Visit(browser, folder.as_uri() + "/" + path + "#layer=..%2F..%2Fevil.js%3F&x=0.5")
        visit.painted()
        page = visit.page
        assert page.evaluate("window.PWNED") is None
        assert page.evaluate("[...document.scripts].filter(s => s.src.includes('evil')).length") == 0
        assert page.evaluate(f"{VIEWER}.atlas.id") == manifest["atlases"][0]["id"]
        visit.close()


def test_axe_finds_no_violation_on_any_page_in_any_state(browser, site):
    name, folder, manifest = site
    pages = ["index.html", "embed.html"] + [f"explore/{a['id']}.html"
                                            for a in manifest["atlases"] + manifest["class_atlases"]]
    for viewport in ((1000, 800), PHONE):
        for path in pages:
            visit = Visit(browser, folder.as_uri() + "/" + path, viewport=viewport)
            page = visit.page
            assert _axe(page) == [], (path, viewport)
            if path != "index.html":
                visit.painted()
                # Open everything a reader can open: the class list, a filter, a pinned card, the Share panel.
                page.fill(".class-search", "wolf")
                page.press(".class-search", "Enter")
                assert _axe(page) == [], (path, viewport, "class list")
                page.fill(".class-search", manifest["classes"][manifest["atlases"][0]["top_classes"][0]])
                page.press(".class-search", "Enter")
                page.wait_for_timeout(200)
                atlas = next(a for a in manifest["atlases"] + manifest["class_atlases"]
                             if a["id"] == page.evaluate(f"{VIEWER}.atlas.id"))
                _, _, point = _biggest_cell(folder, atlas, page)
                page.mouse.click(*point)
                page.click(".share summary")
                assert _axe(page) == [], (path, viewport, "filtered, card pinned, share open")
            visit.close()


def test_caption_and_alt_describe_an_inline_atlas(browser, tiny_config, tmp_path):
    from generator import pipeline

    content = tmp_path / "content"
    content.mkdir()
    (content / "index.md").write_text('---\ntitle: Notes\n---\nText.\n\n'
                                      '{{< atlas caption="Fur and faces." alt="Cats, mostly, on the left" >}}\n')
    result = pipeline.build(tiny_config(site={"content": str(content)}))
    visit = Visit(browser, result.out_dir.as_uri() + "/index.html")
    visit.painted(".atlas-inline")
    page = visit.page
    described = page.evaluate("document.getElementById(document.querySelector('.atlas-inline .viewer')"
                              ".getAttribute('aria-describedby')).textContent")
    assert described == "Fur and faces."
    assert page.get_attribute(".atlas-inline .viewer", "aria-label").startswith("Cats, mostly, on the left. ")
    assert visit.problems == []
    visit.close()
