"""The site in a real browser: Debian's chromium driven by Playwright, from disk and over http.

Run on the quick build of the embedded default and, when ../shared is present, of the
ImageNet sample. With ATLAS_WRITE_DOCS=1 the tests also write the README's screenshots
and the page-weight and first-paint figures of BENCHMARKS.md.
"""

from __future__ import annotations

import io
import json
import os
import re
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pytest
from PIL import Image

from .browser import ROOT, SAFE_IN_URI_COMPONENT, VIEWER, WRITE_DOCS, Visit, _canvas, _cell_point, _cells

pytestmark = pytest.mark.slow

@pytest.mark.parametrize("where", ["file", "http"])
def test_every_page_loads_without_errors_or_outside_requests(browser, site, serve_under_subpath, where):
    name, folder, manifest = site
    base = folder.as_uri() + "/" if where == "file" else serve_under_subpath(folder)
    views = manifest["class_atlases"]
    assert [a["kind"] for a in views] == ["class", "class", "compare"]  # the quick preset's class.auto of 2
    pages = ["index.html", "embed.html"] + [f"explore/{a['id']}.html" for a in manifest["atlases"] + views]
    for path in pages:
        visit = Visit(browser, base + path)
        if path != "index.html":
            visit.painted()
            assert _canvas(visit.page).std() > 10, f"{path}: the atlas canvas is blank"
        else:
            assert visit.page.locator(".atlas-gallery img").count() == len(manifest["atlases"]) + len(views)
            # lazy ones too (the atlas switches' thumbnails): every image of the page loads
            visit.page.evaluate("document.querySelectorAll('img[loading=lazy]').forEach(i => { i.loading = 'eager'; })")
            visit.page.wait_for_function("[...document.images].every(i => i.complete)")
            assert all(visit.page.evaluate("[...document.images].map(i => i.naturalWidth > 0)"))
            visit.painted(".atlas-inline")  # the narrative's live atlases
        assert visit.problems == [] and visit.outside(base) == [], (path, visit.problems, visit.outside(base))
        if WRITE_DOCS and name == "default" and where == "file" and path == "index.html":
            visit.page.screenshot(path=str(ROOT / "docs" / "article.png"), clip={"x": 0, "y": 0, "width": 1000,
                                                                                  "height": 1400}, full_page=True)
        visit.close()


def test_hover_zoom_levels_and_tiles_in_view(browser, site):
    name, folder, manifest = site
    atlas = manifest["atlases"][0]
    visit = Visit(browser, folder.as_uri() + f"/explore/{atlas['id']}.html")
    page = visit.page
    visit.painted()
    level = atlas["level_data"][page.evaluate(f"{VIEWER}.levelIndex()")]
    cell = max(_cells(folder, level), key=lambda c: c["count"])
    page.mouse.move(*_cell_point(page, level["size"], cell))
    tooltip = page.locator(".tooltip")
    tooltip.wait_for(state="visible")
    assert manifest["classes"][cell["top"][0][0]] in tooltip.inner_text()
    assert f"Average of {cell['count']} activation" in tooltip.inner_text()
    # Zooming in switches to a finer level; deep in one corner, only the tiles in view load.
    finest = atlas["level_data"][-1]
    page.evaluate(f"{VIEWER}.setView({{cx: 0.02, cy: 0.02, z: {finest['size']}}})")
    visit.settled()
    assert page.evaluate(f"{VIEWER}.levelIndex()") == len(atlas["level_data"]) - 1
    assert f"{finest['size']} × {finest['size']} grid" in page.locator(".level-readout").inner_text()
    prefix = f"{atlas['id']}/{finest['size']}-"
    loaded = [p for p in page.evaluate(f"{VIEWER}.loader.requested") if p.startswith(prefix)]
    if len(finest["tiles"]) > 1:
        assert 0 < len(loaded) < len(finest["tiles"]), (loaded, finest["tiles"])
    assert visit.problems == []
    if WRITE_DOCS and name == "default":
        page.evaluate(f"{VIEWER}.setView({{cx: 0.5, cy: 0.5, z: 1.6}})")
        visit.settled()
        page.mouse.move(*_cell_point(page, atlas["level_data"][page.evaluate(f"{VIEWER}.levelIndex()")]["size"],
                                     {"x": 7, "y": 7}))
        page.wait_for_timeout(300)
        Image.open(io.BytesIO(page.screenshot())).convert("RGB").save(ROOT / "docs" / "explorer.jpg", quality=85)
    visit.close()


def test_class_filter_fades_icons_and_the_share_link_reproduces_the_view(browser, site):
    _, folder, manifest = site
    atlas = manifest["atlases"][-1]
    visit = Visit(browser, folder.as_uri() + f"/explore/{atlas['id']}.html")
    page = visit.page
    visit.painted()
    before = _canvas(page)
    name = manifest["classes"][atlas["top_classes"][0]]
    page.fill(".class-search", name.upper())  # the exact name, in any case, is taken at once
    page.press(".class-search", "Enter")
    visit.settled()
    assert page.evaluate(f"{VIEWER}.filter.cls") >= 0
    faded = _canvas(page)
    assert faded.mean() > before.mean() + 3  # most icons fade towards the white ground
    page.click(".class-sign")
    visit.settled()
    negative = _canvas(page)
    assert np.abs(negative - faded).mean() > 1  # the other sign fades other icons
    page.locator(".viewer").focus()
    page.keyboard.press("+")
    page.keyboard.press("ArrowLeft")
    page.click(".share summary")
    page.wait_for_function("document.querySelector('.share-link').value !== ''")
    link = page.locator(".share-link").input_value()
    assert "class=" in link and "sign=-" in link and f"layer={atlas['id']}" in link
    page.wait_for_function(f"location.href === {json.dumps(link)}", timeout=2000)  # the address holds it too
    expected = page.evaluate(f"{VIEWER}.viewString()")
    other = Visit(browser, link)
    other.painted()
    assert other.page.evaluate(f"{VIEWER}.viewString()") == expected
    assert other.page.locator(".class-search").input_value() == page.locator(".class-search").input_value()
    assert visit.problems == [] and other.problems == []
    other.close()
    visit.close()


def test_keyboard_cursor_minimap_layer_switch_and_pinch(browser, site):
    _, folder, manifest = site
    atlas = manifest["atlases"][0]
    visit = Visit(browser, folder.as_uri() + f"/explore/{atlas['id']}.html", has_touch=True)
    page = visit.page
    visit.painted()
    page.keyboard.press("Tab")
    for _ in range(12):
        if page.evaluate("document.activeElement.classList.contains('viewer')"):
            break
        page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.classList.contains('viewer')"), "the atlas takes keyboard focus"
    page.keyboard.press("+")
    page.keyboard.press("ArrowRight")
    page.wait_for_function("document.querySelector('.announce').textContent.length > 0")
    spoken = page.locator(".announce").inner_text()
    assert re.match(r"Row \d+, column \d+ of the \d+ × \d+ grid: ", spoken)
    x = page.evaluate(f"{VIEWER}.view.cx")
    page.keyboard.press("ArrowRight")
    assert page.evaluate(f"{VIEWER}.view.cx") > x
    assert page.locator(".tooltip").is_visible() or "no activations" in page.locator(".announce").inner_text()
    page.keyboard.press("0")
    assert page.evaluate(f"{VIEWER}.view") == {"cx": 0.5, "cy": 0.5, "z": 1}
    # The minimap shows once zoomed in; dragging in it moves the view.
    page.keyboard.press("+")
    page.keyboard.press("+")
    box = page.locator(".minimap").bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.5)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.2, box["y"] + box["height"] * 0.8, steps=4)
    page.mouse.up()
    view = page.evaluate(f"{VIEWER}.view")
    assert abs(view["cx"] - 0.2) < 0.03 and abs(view["cy"] - 0.8) < 0.03
    # Two fingers spreading apart zoom in.
    page.keyboard.press("0")
    z = page.evaluate(f"{VIEWER}.view.z")
    frame = page.locator(".viewer").bounding_box()
    cx, cy = frame["x"] + frame["width"] / 2, frame["y"] + frame["height"] / 2
    cdp = visit.context.new_cdp_session(page)

    def touch(kind, gap):
        points = [{"x": cx - gap, "y": cy, "id": 1}, {"x": cx + gap, "y": cy, "id": 2}]
        cdp.send("Input.dispatchTouchEvent", {"type": kind, "touchPoints": [] if kind == "touchEnd" else points})

    touch("touchStart", 40)
    for gap in (60, 80, 100):
        touch("touchMove", gap)
    touch("touchEnd", 100)
    assert page.evaluate(f"{VIEWER}.view.z") > z * 1.8
    # The layer switcher loads another atlas in place and puts it in the address.
    if len(manifest["atlases"]) > 1:
        other = manifest["atlases"][1]
        page.click(f".layer-switch button[data-layer='{other['id']}']")
        page.wait_for_function(f"{VIEWER}.atlas.id === '{other['id']}'")
        visit.painted()
        page.click(".share summary")
        assert f"layer={other['id']}" in page.locator(".share-link").input_value()
        assert page.locator(f".layer-switch button[data-layer='{other['id']}']").get_attribute("aria-pressed") == "true"
    assert visit.problems == []
    visit.close()


def test_embed_code_works_inside_an_iframe_on_another_page(browser, site, serve_under_subpath, tmp_path):
    _, folder, manifest = site
    base = serve_under_subpath(folder)
    visit = Visit(browser, base + f"explore/{manifest['atlases'][0]['id']}.html")
    visit.page.click(".share summary")
    code = visit.page.locator(".embed-code").input_value()
    visit.close()
    assert code.startswith(f'<iframe src="{base}embed.html#layer=')
    host = tmp_path / "host.html"
    host.write_text(f"<!doctype html><title>Course notes</title><h1>Week 3</h1>{code}")
    visit = Visit(browser, host.as_uri())
    frame = visit.page.frame_locator("iframe")
    child = next(f for f in visit.page.frames if f != visit.page.main_frame)
    child.wait_for_function(f"{VIEWER} && {VIEWER}.firstPaint !== null")
    visit.page.wait_for_timeout(200)
    shot = np.asarray(Image.open(io.BytesIO(frame.locator(".viewer").screenshot())).convert("L"), np.float32)
    assert shot.std() > 10
    assert visit.problems == []
    visit.close()


def test_budgets_page_weight_and_first_paint(browser, site, serve_under_subpath):
    """HTML, CSS and JS of an explorer page before tiles: under 150 KB. First paint from disk: recorded."""
    name, folder, manifest = site
    atlas = manifest["atlases"][0]
    visit = Visit(browser, serve_under_subpath(folder) + f"explore/{atlas['id']}.html")
    visit.painted()
    weight = sum(size for kind, size in visit.sizes.values() if kind in ("document", "script", "stylesheet"))
    visit.close()
    assert weight < 150_000, weight
    paints = []
    for _ in range(3):
        visit = Visit(browser, folder.as_uri() + f"/explore/{atlas['id']}.html")
        visit.painted()
        paints.append(visit.page.evaluate(f"{VIEWER}.firstPaint"))
        visit.close()
    figures = f"{weight / 1000:.1f} KB of HTML, CSS and JS; first atlas paint {np.median(paints):.0f} ms"
    print(f"{name}: explorer/{atlas['id']}.html: {figures}")
    if WRITE_DOCS:
        import sys

        sys.path.insert(0, str(ROOT / "benchmarks"))
        from bench_build import machine, write_section

        text = (f"{'Default site' if name == 'default' else 'ImageNet-sample site'}, `explore/{atlas['id']}.html` "
                f"(quick preset): {figures} (median of 3 loads from file://, Chromium headless, "
                f"{machine()}). Command: `ATLAS_WRITE_DOCS=1 python -m pytest tests/test_browser.py -k budgets`.")
        write_section("Site in the browser", f"<!-- browser-{name}:start -->", f"<!-- browser-{name}:end -->", text)


def test_hostile_names_stay_text(browser, tiny_config, tmp_path, image_dir):
    """A class named `<img src=x onerror=alert(1)>` and files with quotes in their names change nothing."""
    import shutil

    from generator import pipeline

    folder = tmp_path / "jack-o'-lantern <img src=x onerror=alert(2)>"
    shutil.copytree(image_dir, folder)
    assert any(p.name == "jack-o'-lantern.jpg" for p in folder.rglob("*"))
    result = pipeline.build(tiny_config(images={"dir": str(folder)}))
    manifest = result.manifest
    hostile = manifest["classes"].index("<img src=x onerror=alert(1)>")
    for path in ["index.html", f"explore/{manifest['atlases'][0]['id']}.html", "embed.html"]:
        visit = Visit(browser, result.out_dir.as_uri() + "/" + path)
        if path != "index.html":
            visit.painted()
            visit.page.fill(".class-search", "<img src=x onerror=alert(1)>")
            visit.page.press(".class-search", "Enter")
            assert visit.page.evaluate(f"{VIEWER}.filter.cls") == hostile
            visit.page.wait_for_timeout(200)
        else:
            assert "jack-o'-lantern <img src=x onerror=alert(2)>" in visit.page.locator(".facts").inner_text()
        assert visit.page.evaluate("document.querySelectorAll('img[src=x]').length") == 0
        assert visit.dialogs == [] and visit.problems == [], (path, visit.problems)
        visit.close()


def test_serve_reloads_the_open_page_after_a_text_edit(browser, quick_site, tmp_path):
    """`atlas serve`: an edit in content/ re-renders the pages only, and the open page reloads itself."""
    import shutil
    import threading
    import time

    from generator import serve
    from generator.config import load_config
    from generator.site import resource_dir

    site, _ = quick_site
    project = tmp_path / "project"
    shutil.copytree(resource_dir("content"), project / "content")
    shutil.copytree(site, project / "site")
    (project / "atlas.toml").write_text('out = "site"\ncache = ".atlas-cache"\n')
    watcher = serve.Watcher(load_config(project / "atlas.toml"), project / "atlas.toml")
    server = serve.make_server(project / "site", port=0, version=lambda: watcher.version)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        visit = Visit(browser, f"http://127.0.0.1:{server.server_address[1]}/index.html")
        tiles = sorted((project / "site" / "data").rglob("*.webp"))
        stamps = [p.stat().st_mtime_ns for p in tiles]
        manifest = json.loads((site / "data" / "manifest.json").read_text())
        atlas = manifest["atlases"][-1]
        name = manifest["classes"][atlas["top_classes"][0]]
        page = project / "content" / "index.md"
        page.write_text(page.read_text().replace("\ntitle: ", "\ntitle: Edited live: ", 1) +
                        f'\n{{{{< atlas layer="{atlas["layer"]}" zoom="2" center="0.3,0.7" class="{name}" >}}}}\n')
        start = time.perf_counter()
        assert watcher.poll() == "pages"
        seconds = time.perf_counter() - start
        visit.page.wait_for_function("document.querySelector('h1').textContent.startsWith('Edited live: ')",
                                     timeout=5000)
        assert [p.stat().st_mtime_ns for p in tiles] == stamps  # no icon was drawn again
        # The new shortcode's atlas opens on its view.
        last = "[...document.querySelectorAll('.atlas-inline')].pop().viewer"
        visit.page.locator(".atlas-inline").last.scroll_into_view_if_needed()
        visit.page.wait_for_function(f"{last}.atlas && {last}.firstPaint !== null")
        assert visit.page.evaluate(f"{last}.viewString()") == \
            f"layer={atlas['id']}&x=0.3000&y=0.7000&z=2.000&class={quote(name, safe=SAFE_IN_URI_COMPONENT)}"
        assert visit.problems == []
        print(f"pages re-rendered in {seconds:.2f} s")
        visit.close()
    finally:
        server.shutdown()
        server.server_close()


def test_serve_shows_a_failed_rebuild_over_the_open_page(browser, tmp_path):
    """`atlas serve`: a failed rebuild's error appears over the open page, as text, and goes when a rebuild works."""
    import threading

    from generator import serve
    from generator.config import describe, load_config

    project = tmp_path / "project"  # a site without atlases: no model needed
    (project / "site" / "data").mkdir(parents=True)
    (project / "site" / "data" / "manifest.json").write_text(json.dumps({"title": "T", "atlases": [], "classes": []}))
    (project / "site" / "data" / "build.json").write_text(json.dumps(
        {"config": describe(load_config(None, {"preset": "quick"})), "model": "tiny", "images": 3, "crops": 5,
         "skipped": 0, "image_source": "photos", "layers": []}))
    (project / "content").mkdir()
    page = project / "content" / "index.md"
    page.write_text("---\ntitle: First\n---\nHello.\n")
    (project / "atlas.toml").write_text('out = "site"\ncache = ".atlas-cache"\n')
    watcher = serve.Watcher(load_config(project / "atlas.toml"), project / "atlas.toml")
    watcher.render_pages()
    server = serve.make_server(project / "site", port=0, version=lambda: watcher.version,
                               error=lambda: watcher.last_error)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        visit = Visit(browser, f"http://127.0.0.1:{server.server_address[1]}/index.html")
        assert visit.page.locator("[role=alert]").count() == 0
        # A mistake whose message quotes the user's text, markup included.
        page.write_text('---\ntitle: Second\n---\nHello {{< atlas caption="<b id=injected>x</b>"\n')
        os.utime(page, ns=(page.stat().st_atime_ns, page.stat().st_mtime_ns + 2_000_000_000))
        assert watcher.poll() == "pages" and watcher.version == 0
        banner = visit.page.locator("[role=alert]")
        banner.wait_for(timeout=5000)
        text = banner.text_content()
        assert "content/index.md:4: unclosed shortcode" in text and '<b id=injected>x</b>' in text
        assert visit.page.evaluate("document.getElementById('injected')") is None  # shown as text, never as HTML
        box = banner.bounding_box()
        assert box["y"] == 0 and box["width"] == 1000  # across the top of the page, over it
        assert visit.page.locator("h1").text_content() == "First"  # the last good page stays
        # Fixed: the page reloads into the new version, without the banner.
        page.write_text("---\ntitle: Second\n---\nHello.\n")
        os.utime(page, ns=(page.stat().st_atime_ns, page.stat().st_mtime_ns + 4_000_000_000))
        assert watcher.poll() == "pages" and watcher.version == 1
        visit.page.wait_for_function("document.querySelector('h1').textContent === 'Second'", timeout=5000)
        assert visit.page.locator("[role=alert]").count() == 0
        # Every authoring mistake shows there with its file and line.
        templates = project / "templates"
        templates.mkdir()
        mistakes = [(page, "---\ntitle: Third\nHello.\n", "content/index.md:1: the front matter opened here"),
                    (page, "---\ntitle: Third\n---\nSee {{< layers\n", "content/index.md:4: unclosed shortcode"),
                    (templates / "page.html", '{% extends "base.html" %}\n{% block main %}\n{% if %}\n{% endblock %}\n',
                     "templates/page.html:3:")]
        for n, (path, text, expected) in enumerate(mistakes, 3):
            if path.parent == templates:
                page.write_text("---\ntitle: Third\n---\nHello.\n")
                (project / "content" / "notes.md").write_text("---\ntitle: Notes\n---\nA page of page.html.\n")
            path.write_text(text)
            os.utime(path, ns=(0, path.stat().st_mtime_ns + n * 2_000_000_000))
            assert watcher.poll() == "pages" and watcher.version == 1
            visit.page.wait_for_function(
                f"(b => b && b.textContent.includes({json.dumps(expected)}))(document.querySelector('[role=alert]'))",
                timeout=5000)
        (templates / "page.html").unlink()
        os.utime(page, ns=(0, page.stat().st_mtime_ns + 20_000_000_000))
        assert watcher.poll() == "pages" and watcher.version == 2
        visit.page.wait_for_function("document.querySelector('h1').textContent === 'Third'", timeout=5000)
        assert visit.page.locator("[role=alert]").count() == 0
        # A config with several problems shows every one of them.
        (project / "atlas.toml").write_text('out = "site"\nseed = -1\n[icons]\nsteps = 0\n')
        os.utime(project / "atlas.toml", ns=(0, (project / "atlas.toml").stat().st_mtime_ns + 2_000_000_000))
        assert watcher.poll() == "build" and watcher.version == 2
        banner.wait_for(timeout=5000)
        text = visit.page.locator("[role=alert]").text_content()
        assert "seed" in text and "icons.steps" in text
        assert visit.problems == []
        visit.close()
    finally:
        server.shutdown()
        server.server_close()
