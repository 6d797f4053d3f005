"""What the browser tests share: a page visit that records its problems and requests, and the
geometry of the viewer's cells on screen."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
WRITE_DOCS = os.environ.get("ATLAS_WRITE_DOCS") == "1"
VIEWER = "document.querySelector('.atlas-viewer').viewer"
SAFE_IN_URI_COMPONENT = "-_.!~*'()"  # what JavaScript's encodeURIComponent leaves as it is


class Visit:
    """A page with its console problems, its requests and the bytes of the responses it received."""

    def __init__(self, browser, url, viewport=(1000, 800), **context):
        self.context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]}, **context)
        self.page = self.context.new_page()
        self.problems, self.requests, self.sizes, self.dialogs = [], [], {}, []
        self.page.on("console", lambda m: m.type in ("error", "warning") and self.problems.append(m.text))
        self.page.on("pageerror", lambda e: self.problems.append(str(e)))
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))
        self.page.on("response", self._size)
        self.page.goto(url)
        self.page.wait_for_load_state("networkidle")

    def _size(self, response):
        try:
            self.sizes[response.url] = (response.request.resource_type, len(response.body()))
        except Exception:  # a redirect or a body already gone
            pass

    def outside(self, prefix):
        return [u for u in self.requests if not u.startswith(prefix) and not u.startswith("data:")]

    def painted(self, selector=".atlas-viewer"):
        self.page.locator(selector).first.scroll_into_view_if_needed()  # atlases in an article load when near
        self.page.wait_for_function(f"document.querySelector('{selector}').viewer.firstPaint !== null")
        self.page.wait_for_load_state("networkidle")
        self.page.wait_for_timeout(150)

    def settled(self, selector=".atlas-viewer"):
        """Wait until the viewer has drawn its last change with every tile and score it needs."""
        self.page.wait_for_function(f"(v => v.atlas && !v.renderer.pending && !v.loading)"
                                    f"(document.querySelector('{selector}').viewer)")

    def close(self):
        self.context.close()


def _canvas(page, selector=".viewer"):
    return np.asarray(Image.open(io.BytesIO(page.locator(selector).first.screenshot())).convert("L"), np.float32)


def _cell_point(page, level_size, cell, selector=".viewer"):
    """Screen point of the centre of a cell, at the page's current view."""
    view = page.evaluate(f"(({{cx, cy, z}}) => [cx, cy, z])({VIEWER}.view)")
    box = page.locator(selector).first.bounding_box()
    side = min(box["width"], box["height"]) * 0.96 * view[2]
    x = box["x"] + box["width"] / 2 + ((cell["x"] + 0.5) / level_size - view[0]) * side
    y = box["y"] + box["height"] / 2 + ((cell["y"] + 0.5) / level_size - view[1]) * side
    return x, y


def _cells(folder, level):
    from generator.regions import read_cells

    return read_cells(folder / "data", level)




def open_explorer(browser, folder, atlas, **context) -> Visit:
    """The explorer page of `atlas` from disk, once it has painted."""
    visit = Visit(browser, folder.as_uri() + f"/explore/{atlas['id']}.html", **context)
    visit.painted()
    return visit
