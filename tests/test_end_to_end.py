"""One real build: `atlas build --preset quick` on the embedded default model and photographs."""

import functools
import http.server
import io
import json
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from .test_site import local_references

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def quick_site(tmp_path_factory):
    work = tmp_path_factory.mktemp("e2e")
    command = [sys.executable, "-m", "generator.cli", "build", "--preset", "quick",
               "--out", str(work / "site"), "--cache", str(work / "cache")]
    done = subprocess.run(command, cwd=work, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return work / "site", done.stderr


def test_quick_build_output_tree_and_manifest(quick_site):
    site, log = quick_site
    assert "preset quick: icons 40 px, 32 steps (24 when warm-started), 1 try" in log
    manifest = json.loads((site / "data" / "manifest.json").read_text())
    assert manifest["schema"] == 1 and len(manifest["classes"]) == 1000
    assert len(manifest["atlases"]) >= 2
    for atlas in manifest["atlases"]:
        assert atlas["model"] == "efficientnet_lite0"
        assert len(atlas["levels"]) >= 3 and atlas["activations"] >= 500
        for level in atlas["level_data"]:
            assert level["cells"], (atlas["layer"], level["size"])
            sheet = np.asarray(Image.open(site / "data" / level["tiles"][0]).convert("RGB"), dtype=np.float32)
            icon = atlas["icon_px"]
            first = sheet[:icon, :icon]
            assert first.std() > 8, "icon is blank"
            names = {manifest["classes"][k] for cell in level["cells"] for k, _ in cell["top"]}
            assert len(names) > 5
        assert (site / "explore" / f"{atlas['id']}.html").is_file()


def test_every_page_references_only_files_that_exist_and_nothing_outside(quick_site):
    site, _ = quick_site
    pages = sorted(site.rglob("*.html"))
    assert len(pages) >= 3
    for page in pages:
        assert local_references(page) == []
    for path in list(pages) + sorted(site.rglob("*.js")) + sorted(site.rglob("*.css")):
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"(?:src|href|url)\s*[=(]\s*[\"']?(?:https?:)?//", text), path


CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def browser():
    playwright = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip("needs Debian's chromium (apt-get install -y chromium)")
    with playwright.sync_playwright() as p:
        instance = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield instance
        instance.close()


@pytest.fixture(scope="module")
def served(quick_site):
    """The site over http under a sub-path: http://127.0.0.1:PORT/sub/path/site/."""
    site, _ = quick_site
    root = site.parent / "www"
    (root / "sub" / "path").mkdir(parents=True, exist_ok=True)
    link = root / "sub" / "path" / "site"
    if not link.exists():
        link.symlink_to(site, target_is_directory=True)
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(Quiet, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/sub/path/site/"
    server.shutdown()


def _visit(browser, url, allowed_prefix):
    page = browser.new_page(viewport={"width": 1000, "height": 800})
    problems, requests = [], []
    page.on("console", lambda m: m.type in ("error", "warning") and problems.append(m.text))
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on("request", lambda r: requests.append(r.url))
    page.goto(url)
    page.wait_for_load_state("networkidle")
    outside = [u for u in requests if not u.startswith(allowed_prefix) and not u.startswith("data:")]
    return page, problems, outside


@pytest.mark.parametrize("where", ["file", "http"])
def test_pages_open_without_errors_or_outside_requests(browser, quick_site, served, where):
    site, _ = quick_site
    base = site.as_uri() + "/" if where == "file" else served
    manifest = json.loads((site / "data" / "manifest.json").read_text())
    atlas = manifest["atlases"][0]
    page, problems, outside = _visit(browser, base + "index.html", base)
    assert page.locator(".atlas-gallery img").count() == len(manifest["atlases"])
    assert all(page.evaluate("[...document.images].map(i => i.naturalWidth > 0)"))
    page.close()
    assert problems == [] and outside == []

    page, problems, outside = _visit(browser, base + f"explore/{atlas['id']}.html", base)
    page.wait_for_timeout(300)
    shot = np.asarray(Image.open(io.BytesIO(page.locator(".viewer").screenshot())).convert("L"), np.float32)
    assert shot.std() > 10, "the atlas canvas is blank"
    # Hover the middle of a known cell of the level on show and read its classes.
    level = atlas["level_data"][page.evaluate("document.querySelector('.explorer').viewer.levelIndex()")]
    cell = max(level["cells"], key=lambda c: c["count"])
    box = page.locator(".viewer").bounding_box()
    side = min(box["width"], box["height"]) * 0.96
    size = level["size"]
    x = box["x"] + box["width"] / 2 + ((cell["x"] + 0.5) / size - 0.5) * side
    y = box["y"] + box["height"] / 2 + ((cell["y"] + 0.5) / size - 0.5) * side
    page.mouse.move(x, y)
    tooltip = page.locator(".tooltip")
    tooltip.wait_for(state="visible")
    text = tooltip.inner_text()
    assert manifest["classes"][cell["top"][0][0]] in text
    assert f"Average of {cell['count']} activation" in text
    # Zooming in switches to a finer level.
    before = page.locator(".level-readout").inner_text()
    page.locator(".viewer").focus()
    for _ in range(4):
        page.keyboard.press("+")
    assert page.locator(".level-readout").inner_text().split(" ")[0] != before.split(" ")[0]
    page.close()
    assert problems == [] and outside == []
