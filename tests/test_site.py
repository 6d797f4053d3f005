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
                    np.zeros((2, 4), np.float32), np.array([[0.1, 0.5, -0.2], [0.2, -0.1, 0.4]], np.float16))]
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


def test_icons_go_into_tiles_at_their_cells_places(tmp_path, monkeypatch):
    from PIL import Image

    from generator import tiles

    monkeypatch.setattr(tiles, "TILE_PX", 64)  # 4 x 4 cells of 16 px a tile
    cells = [{"x": x, "y": y, "count": 1, "top": []} for x, y in [(0, 0), (5, 1), (9, 9), (3, 3)]]
    level = Level(10, cells, np.zeros((4, 2), np.float32), np.zeros((4, 1), np.float16))
    icons = np.stack([np.full((16, 16, 3), 40 * (i + 1), np.uint8) for i in range(4)])
    span, names = tiles.write_tiles(level, icons, tmp_path)
    assert span == 4 and names == ["0-0", "1-0", "2-2"]  # tiles holding no cell are not written
    tile = np.asarray(Image.open(tmp_path / "10-1-0.webp"))
    assert tile.shape == (64, 64, 3)
    assert abs(int(tile[16 + 8, 16 + 8, 0]) - 80) <= 4  # cell (5, 1) is column 1, row 1 of tile (1, 0)
    edge = np.asarray(Image.open(tmp_path / "10-2-2.webp"))
    assert edge.shape == (32, 32, 3)  # the last tiles of a 10-cell row hold 2 cells
    assert abs(int(edge[16 + 8, 16 + 8, 0]) - 120) <= 4


def test_class_scores_round_trip_through_their_codes_on_one_scale():
    from generator.tiles import class_scale, quantize_scores

    scores = np.array([[0.5, -2.0], [-0.25, 1.0], [0.0, 0.02]], np.float32)
    scale = class_scale([Level(2, [], np.zeros((3, 1)), scores)])
    assert scale == 2.0  # the largest score of any class: classes share it
    codes = quantize_scores(scores, scale)
    assert codes.dtype == np.int8 and codes[0, 1] == -127 and codes[0, 0] == round(np.sqrt(0.25) * 127)
    decoded = np.sign(codes) * (codes / 127.0) ** 2 * scale
    assert (np.abs(decoded - scores) <= 2 * np.sqrt(np.abs(scores) / scale) * scale / 127 + 1e-6).all()
    assert codes[2, 1] > 0  # a class at 1% of the scale still shows, faintly


def _site(tmp_path, body, classes=("tabby", "<img src=x onerror=alert(1)>", "jack-o'-lantern")):
    out = tmp_path / "site"
    (out / "data").mkdir(parents=True)
    manifest = write_manifest(out / "data", [_tiny_atlas(out / "data", "blocks.4"), _tiny_atlas(out / "data", "b.5")],
                              list(classes), "T")
    content = tmp_path / "content"
    content.mkdir(exist_ok=True)
    (content / "index.md").write_text(body)
    render_site(out, manifest, BUILD, content, None)
    return out


def test_atlas_shortcode_renders_a_viewer_on_its_view(tmp_path):
    body = ('Intro\n\n{{< atlas layer="blocks.4" zoom="2" center="0.3,0.7" class="Tabby" sign="-" caption="Cats" >}}\n\n'
            'Inline `{{< atlas layer="nope" >}}` and a block:\n\n```\n{{< atlas layer="nope" >}}\n```\n')
    out = _site(tmp_path, body)
    html = (out / "index.html").read_text()
    assert html.count('class="atlas-viewer atlas-inline"') == 1
    view = re.search(r'data-view="([^"]*)"', html).group(1)
    assert json.loads(view.replace("&#34;", '"').replace("&quot;", '"')) == \
        {"layer": "blocks-4", "x": 0.3, "y": 0.7, "z": 2.0, "class": "tabby", "sign": "-"}
    assert "<p class=\"caption\">Cats</p>" in html
    # Code shows a shortcode as written.
    assert '<code>{{&lt; atlas layer="nope" &gt;}}</code>' in html
    assert '<pre><code>{{&lt; atlas layer=&quot;nope&quot; &gt;}}' in html
    assert 'src="assets/viewer.js"' in html
    assert local_references(out / "index.html") == []


def test_layers_shortcode_describes_every_atlas_and_escapes_class_names(tmp_path):
    out = _site(tmp_path, "{{< layers >}}\n", classes=("a", "<img src=x onerror=alert(1)>", "c"))
    html = (out / "index.html").read_text()
    assert '<h3 id="layer-blocks4">Layer <code>blocks.4</code></h3>' in html and "<code>b.5</code>" in html
    assert html.count('class="atlas-viewer atlas-inline"') == 2
    assert "<img src=x" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html


def test_shortcode_mistakes_name_the_page_and_the_fix(tmp_path):
    import pytest

    from generator.errors import AtlasError

    cases = {'{{< atlas layer="blocks.9" >}}': "no atlas of layer 'blocks.9' in this build (built: blocks.4, b.5)",
             '{{< atlas class="tabbby" >}}': "no class named 'tabbby' (closest: tabby)",
             '{{< atlas zoom="big" >}}': "zoom a number above 0",
             '{{< atlas colour="red" >}}': "unknown parameter 'colour'",
             '{{< gallery >}}': "unknown shortcode 'gallery'"}
    for number, (code, message) in enumerate(cases.items()):
        with pytest.raises(AtlasError, match=re.escape(message)) as info:
            _site(tmp_path / str(number), code + "\n")
        assert "content/index.md" in str(info.value)


def test_figures_and_the_embed_page(tmp_path):
    out = _site(tmp_path, '![A cat](data/blocks-4/overview.webp "The atlas, small")\n')
    html = (out / "index.html").read_text()
    assert '<figure><img alt="A cat" src="data/blocks-4/overview.webp"><figcaption>The atlas, small</figcaption></figure>' in html
    embed = (out / "embed.html").read_text()
    assert 'class="atlas-viewer atlas-embed"' in embed and "site-header" not in embed
    assert local_references(out / "embed.html") == []


def test_class_scripts_stay_small_for_large_atlases():
    from generator.tiles import CLASS_SCRIPT_BYTES, class_chunk

    assert class_chunk(700) == 100  # a default atlas: ten scripts for a thousand classes
    large = class_chunk(20 * 20 + 40 * 40 + 80 * 80 + 160 * 160)  # the full preset's grids, every cell kept
    assert large * (20 * 20 + 40 * 40 + 80 * 80 + 160 * 160) * 4 / 3 <= CLASS_SCRIPT_BYTES
    assert class_chunk(10 ** 9) == 1
