import json
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np

from generator.grid import Level
from generator.site import parse_front_matter, read_pages, render_site
from generator.tiles import write_atlas, write_manifest


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.urls = []

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name in ("href", "src") and value:
                self.urls.append(value)


def local_references(page: Path) -> list[str]:
    """Every href and src in `page`, checked to be relative and pointing at an existing file."""
    parser = _Links()
    parser.feed(page.read_text(encoding="utf-8"))
    problems = []
    for url in parser.urls:
        if url.startswith("#"):
            continue
        if re.match(r"^[a-z]+:|^//|^/", url):
            problems.append(f"{page.name}: non-relative {url}")
            continue
        target = (page.parent / url.split("#")[0].split("?")[0]).resolve()
        if not target.is_file():
            problems.append(f"{page.name}: missing {url}")
    return problems


def test_front_matter():
    meta, body = parse_front_matter("---\ntitle: A: B\norder: 2\n---\n# Hi\n")
    assert meta == {"title": "A: B", "order": "2"}
    assert body == "# Hi\n"
    assert parse_front_matter("no front matter") == ({}, "no front matter")


def test_markdown_extensions(tmp_path):
    (tmp_path / "index.md").write_text("---\ntitle: T\n---\n## One\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n"
                                       "Note.[^1]\n\n```python\nx = 1\n```\n\n[^1]: A footnote.\n")
    (tmp_path / "about.md").write_text("---\ntitle: About\norder: 5\n---\nText\n")
    pages = read_pages(tmp_path)
    assert [p.slug for p in pages] == ["index", "about"]
    html = pages[0].html
    assert "<table>" in html and 'class="footnote"' in html and "<code" in html and 'id="one"' in html


BUILD = {"config": {"layout": {"method": "umap", "n_neighbors": 5, "min_dist": 0.1},
                    "grid": {"levels": [2], "min_count": 1},
                    "icons": {"size_px": 16, "steps": 1, "learning_rate": 0.05, "tries": 1, "cossim_power": 2},
                    "seed": 0, "preset": "quick"},
         "model": "tiny", "images": 1, "crops": 1, "skipped": 0, "image_source": "jack-o'-lantern.jpg"}


def _tiny_atlas(data_dir, layer, names_count=3):
    rng = np.random.default_rng(0)
    levels = [Level(2, [{"x": 0, "y": 0, "count": 3, "top": [[1, 0.5]]}, {"x": 1, "y": 1, "count": 2, "top": [[0, 0.2]]}],
                    np.zeros((2, 4), np.float32))]
    from generator.icons import RenderedIcons

    icons = RenderedIcons(rng.integers(0, 255, (2, 16, 16, 3), dtype=np.uint8), np.array([0.9, 0.8]),
                          np.array([3.0, 2.0]))
    return write_atlas(data_dir, layer, "tiny", (4, 3, 3), 5, levels, [icons])


def test_site_escapes_hostile_names_and_references_only_existing_files(tmp_path):
    out = tmp_path / "site"
    data = out / "data"
    data.mkdir(parents=True)
    hostile = "<img src=x onerror=alert(1)>"
    atlases = [_tiny_atlas(data, "layer.one"), _tiny_atlas(data, "</script><b>two")]
    manifest = write_manifest(data, atlases, ["tabby", hostile, "jack-o'-lantern"], "Title <i>x</i>")
    pages = render_site(out, manifest, BUILD, None, None)
    assert {p.name for p in pages} >= {"index.html", "layer-one.html", "script-b-two.html"}
    for page in pages:
        text = page.read_text()
        assert "<i>x</i>" not in text and "<b>two" not in text
        assert local_references(page) == []
    script = (data / atlases[1]["script"]).read_text()
    assert "</script" not in script and "<img" not in script
    payload = json.loads(script.splitlines()[-1].split("] = ", 1)[1].rstrip(";"))
    assert payload["classes"][1] == hostile  # escaped in transit, intact once parsed
    assert json.loads((data / "manifest.json").read_text())["atlases"][0]["levels"] == [2]


def test_project_templates_override_packaged_ones(tmp_path):
    out = tmp_path / "site"
    (out / "data").mkdir(parents=True)
    manifest = write_manifest(out / "data", [], ["a"], "T")
    overrides = tmp_path / "templates"
    (overrides / "assets").mkdir(parents=True)
    (overrides / "page.html").write_text("CUSTOM {{ page.title }}")
    (overrides / "assets" / "style.css").write_text("body{color:red}")
    content = tmp_path / "content"
    content.mkdir()
    (content / "index.md").write_text("# Home\n")
    (content / "extra.md").write_text("---\ntitle: Extra\n---\nhello\n")
    render_site(out, manifest, BUILD, content, overrides)
    assert (out / "extra.html").read_text() == "CUSTOM Extra"
    assert (out / "assets" / "style.css").read_text() == "body{color:red}"
    assert (out / "assets" / "viewer.js").is_file()  # the rest still comes from the package


def test_large_levels_split_into_sheets_webp_can_hold(tmp_path, monkeypatch):
    from generator import tiles

    monkeypatch.setattr(tiles, "_MAX_SHEET_PX", 64)  # 4 icons of 16 px a side per sheet
    icons = np.stack([np.full((16, 16, 3), i, np.uint8) for i in range(40)])
    names, columns, per_sheet = tiles.write_sheets(icons, tmp_path, "level-8")
    assert (columns, per_sheet) == (4, 16)
    assert names == ["level-8.webp", "level-8-1.webp", "level-8-2.webp"]
    from PIL import Image

    last = np.asarray(Image.open(tmp_path / names[2]))
    assert last.shape == (2 * 16, 4 * 16, 3)
    # icon 37 is the 6th of the third sheet: row 1, column 1
    assert abs(int(last[16 + 8, 16 + 8, 0]) - 37) <= 3


def test_160_by_160_grid_of_80_px_icons_fits(tmp_path):
    from generator.tiles import sheet_layout

    columns, per_sheet = sheet_layout(160 * 160, 80)
    assert columns * 80 <= 16383 and (per_sheet // columns) * 80 <= 16383
