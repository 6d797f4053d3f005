"""One real build: `atlas build --preset quick` on the embedded default model and photographs."""

import json
import re

import numpy as np
import pytest
from PIL import Image

from generator.regions import read_cells
from generator.tiles import DATA_SCHEMA

from .test_site import local_references

pytestmark = pytest.mark.slow


def test_quick_build_output_tree_and_manifest(quick_site):
    site, log = quick_site
    assert "preset quick: icons by auto, 40 px, 32 steps (24 when warm-started), 1 try" in log
    manifest = json.loads((site / "data" / "manifest.json").read_text())
    assert manifest["schema"] == DATA_SCHEMA and len(manifest["classes"]) == 1000
    assert len(manifest["atlases"]) >= 2
    for atlas in manifest["atlases"]:
        assert atlas["model"] == "efficientnet_lite0"
        assert len(atlas["levels"]) >= 3 and atlas["activations"] >= 500
        for level in atlas["level_data"]:
            cells = read_cells(site / "data", level)
            assert len(cells) == level["cell_count"] > 0, (atlas["layer"], level["size"])
            span, icon = level["tile_cells"], atlas["icon_px"]
            cell = cells[0]
            tile = site / "data" / atlas["id"] / f"{level['size']}-{cell['x'] // span}-{cell['y'] // span}.webp"
            image = np.asarray(Image.open(tile).convert("RGB"), dtype=np.float32)
            x, y = cell["x"] % span * icon, cell["y"] % span * icon
            assert image[y:y + icon, x:x + icon].std() > 8, "icon is blank"
            names = {manifest["classes"][k] for c in cells for k, _ in c["top"]}
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
