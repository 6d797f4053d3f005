"""One real build: `atlas build --preset quick` on the embedded default model and photographs."""

import json
import re
import subprocess
import sys

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
    assert "preset quick: icons 40 px, 32 steps, 1 try" in log
    manifest = json.loads((site / "data" / "manifest.json").read_text())
    assert manifest["schema"] == 1 and len(manifest["classes"]) == 1000
    assert len(manifest["atlases"]) >= 2
    for atlas in manifest["atlases"]:
        assert atlas["model"] == "efficientnet_lite0"
        assert len(atlas["levels"]) >= 3 and atlas["activations"] >= 500
        for level in atlas["level_data"]:
            assert level["cells"], (atlas["layer"], level["size"])
            sheet = np.asarray(Image.open(site / "data" / level["tile"]).convert("RGB"), dtype=np.float32)
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
