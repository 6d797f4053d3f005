import json
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from generator.config import describe, load_config
from generator.errors import AtlasError
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


BUILD = {"config": describe(load_config(None, {"preset": "quick", "layout": {"method": "umap", "n_neighbors": 5},
                                                       "grid": {"levels": [2], "min_count": 1}})),
         "model": "tiny", "images": 1, "crops": 1, "skipped": 0, "image_source": "jack-o'-lantern.jpg",
         "layers": ["blocks.4", "b.5"]}


def _tiny_levels_icons():
    rng = np.random.default_rng(0)
    levels = [Level(2, [{"x": 0, "y": 0, "count": 3, "top": [[1, 0.5]]}, {"x": 1, "y": 1, "count": 2, "top": [[0, 0.2]]}],
                    np.zeros((2, 4), np.float32), np.array([[0.1, 0.5, -0.2], [0.2, -0.1, 0.4]], np.float16))]
    from generator.icons import RenderedIcons

    icons = RenderedIcons(rng.integers(0, 255, (2, 16, 16, 3), dtype=np.uint8), np.array([0.9, 0.8]),
                          np.array([3.0, 2.0]))
    return levels, [icons]


def _tiny_atlas(data_dir, layer, names_count=3):
    return write_atlas(data_dir, layer, "tiny", (4, 3, 3), 5, *_tiny_levels_icons())


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
    from generator.regions import class_scale, quantize_scores

    scores = np.array([[0.5, -2.0], [-0.25, 1.0], [0.0, 0.02]], np.float32)
    scale = class_scale([Level(2, [], np.zeros((3, 1)), scores)])
    assert scale == 2.0  # the largest score of any class: classes share it
    codes = quantize_scores(scores, scale)
    assert codes.dtype == np.int8 and codes[0, 1] == -127 and codes[0, 0] == round(np.sqrt(0.25) * 127)
    decoded = np.sign(codes) * (codes / 127.0) ** 2 * scale
    assert (np.abs(decoded - scores) <= 2 * np.sqrt(np.abs(scores) / scale) * scale / 127 + 1e-6).all()
    assert codes[2, 1] > 0  # a class at 1% of the scale still shows, faintly


def _site(tmp_path, body, classes=("tabby", "<img src=x onerror=alert(1)>", "jack-o'-lantern"), files=None,
          templates=None, build=BUILD):
    """A site of two tiny atlases with `body` as content/index.md, `files` ({path: text or bytes}) beside it
    in content/, and `templates` ({name: text}) as the project's templates folder."""
    out = tmp_path / "site"
    (out / "data").mkdir(parents=True)
    manifest = write_manifest(out / "data", [_tiny_atlas(out / "data", "blocks.4"), _tiny_atlas(out / "data", "b.5")],
                              list(classes), "T")
    content = tmp_path / "content"
    for name, text in {"index.md": body, **(files or {})}.items():
        (content / name).parent.mkdir(parents=True, exist_ok=True)
        (content / name).write_bytes(text if isinstance(text, bytes) else text.encode())
    override = None
    if templates is not None:
        override = tmp_path / "templates"
        override.mkdir()
        for name, text in templates.items():
            (override / name).write_text(text)
    render_site(out, manifest, build, content, override)
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
    cases = {'{{< atlas layer="blocks.9" >}}': "no atlas of layer 'blocks.9' in this build (built: blocks.4, b.5)",
             '{{< atlas class="tabbby" >}}': "no class named 'tabbby' (closest: tabby)",
             '{{< atlas zoom="big" >}}': "zoom a number above 0",
             '{{< atlas colour="red" >}}': "unknown parameter 'colour'",
             '{{< gallery >}}': "unknown shortcode 'gallery'"}
    for number, (code, message) in enumerate(cases.items()):
        with pytest.raises(AtlasError, match=re.escape(message)) as info:
            _site(tmp_path / str(number), "---\ntitle: T\n---\n\nIntro\n\n" + code + "\n")
        assert str(info.value).startswith("content/index.md:7: ")


def test_figures_and_the_embed_page(tmp_path):
    out = _site(tmp_path, '![A cat](data/blocks-4/overview.webp "The atlas, small")\n')
    html = (out / "index.html").read_text()
    assert '<figure><img alt="A cat" src="data/blocks-4/overview.webp"><figcaption>The atlas, small</figcaption></figure>' in html
    embed = (out / "embed.html").read_text()
    assert 'class="atlas-viewer atlas-embed"' in embed and "site-header" not in embed
    assert local_references(out / "embed.html") == []


def test_class_scripts_stay_small_for_large_atlases():
    from generator.regions import CLASS_SCRIPT_BYTES, class_chunk

    assert class_chunk(700) == 100  # a default atlas: ten scripts for a thousand classes
    large = class_chunk(20 * 20 + 40 * 40 + 80 * 80 + 160 * 160)  # the full preset's grids, every cell kept
    assert large * (20 * 20 + 40 * 40 + 80 * 80 + 160 * 160) * 4 / 3 <= CLASS_SCRIPT_BYTES
    assert class_chunk(10 ** 9) == 1


def test_a_broken_shortcode_is_an_error_with_its_line_not_text(tmp_path):
    top = "---\ntitle: T\n---\n\nIntro with `{{< layers` in code.\n\n```\n{{< atlas\n```\n\n"  # the mistake is on line 11
    cases = {"{{< layers\n": "unclosed shortcode '{{< layers': end it with >}}",
             'See {{< atlas layer="blocks.4"\n\nand later {{< layers >}}\n': "unclosed shortcode '{{< atlas layer=\"blocks.4\"'",
             "{{< atlas layer=blocks.4 >}}\n": "malformed shortcode '{{< atlas layer=blocks.4 >}}': write {{< name param=\"value\" >}}",
             '{{< atlas layer="blocks.4" zoom="2 >}}\n': "malformed shortcode",  # a quote left open
             "{{< atlas blocks.4 >}}\n": "atlas shortcode: parameters are written name=\"value\", not 'blocks.4'",
             '{{< atlas zoom="2" zoom="3" >}}\n': "parameter 'zoom' given twice",
             "{{< layers all >}}\n": "the layers shortcode takes no parameters"}
    for number, (code, message) in enumerate(cases.items()):
        with pytest.raises(AtlasError, match=re.escape(message)) as info:
            _site(tmp_path / str(number), top + code)
        assert str(info.value).startswith("content/index.md:11: "), str(info.value)
    # In code, the same text is shown as it is.
    out = _site(tmp_path / "ok", top + "Fine.\n")
    assert "<code>{{&lt; layers</code>" in (out / "index.html").read_text()


def test_front_matter_without_its_closing_line_is_an_error(tmp_path):
    with pytest.raises(AtlasError, match=re.escape("content/index.md:1: the front matter opened here has no closing ---")):
        _site(tmp_path / "a", "---\ntitle: Atlas\n\n# Body\n")
    with pytest.raises(AtlasError, match=re.escape("content/notes/deep.md:3: front matter lines are `key: value`")):
        _site(tmp_path / "b", "# Home\n", files={"notes/deep.md": "---\ntitle: Deep\njust words\n---\nText\n"})
    assert parse_front_matter("---\ntitle: T\n---")[0] == {"title": "T"}  # a closing line at the very end counts
    with pytest.raises(AtlasError, match=re.escape("content/index.md:3: front matter 'order' must be a whole number")):
        _site(tmp_path / "c", "---\ntitle: T\norder: first\n---\n")
    with pytest.raises(AtlasError, match=re.escape("content/notes.md:2: not UTF-8 text")):
        _site(tmp_path / "d", "# Home\n", files={"notes.md": "# Notes\n".encode() + "caf\u00e9\n".encode("latin-1")})


def test_template_mistakes_name_the_broken_file_and_line(tmp_path):
    broken = "{% extends 'base.html' %}\n{% block main %}\n<p>{{ page.title }</p>\n{% endblock %}\n"
    with pytest.raises(AtlasError, match=r"^templates/page\.html:3: unexpected '}'"):
        _site(tmp_path / "syntax", "# Home\n", files={"about.md": "About\n"}, templates={"page.html": broken})
    # A mistake in an included template names that template, not the page's.
    base = "<html>\n<body>\n{{ site_title }}\n{{ site_subtitle }}\n{% block main %}{% endblock %}\n</body>\n</html>\n"
    with pytest.raises(AtlasError) as info:
        _site(tmp_path / "undefined", "# Home\n", templates={"base.html": base})
    assert str(info.value) == "templates/base.html:4: 'site_subtitle' is undefined (rendering index.html for content/index.md)"
    # The viewer's macro, rendered for a shortcode, is reported at its own line too.
    viewer = "{% macro viewer(atlas, atlases, root, mode, view, caption, height, alt) %}\n<div>\n{{ atlas.nothing }}\n</div>\n{% endmacro %}\n"
    with pytest.raises(AtlasError, match=r"^templates/viewer\.html:3: .*nothing.* \(rendering viewer\.html for content/index\.md:2\)"):
        _site(tmp_path / "macro", "Intro\n{{< atlas >}}\n", templates={"viewer.html": viewer})
    old = viewer.replace(", alt)", ")")  # an override made for the macro before it took alt
    with pytest.raises(AtlasError, match=r"^templates/viewer\.html: the viewer macro is called as viewer\(atlas, .*alt\)"):
        _site(tmp_path / "old", "Intro\n{{< atlas >}}\n", templates={"viewer.html": old})
    with pytest.raises(AtlasError, match=r"^templates/page\.html:1: template 'nope\.html' not found"):
        _site(tmp_path / "missing", "# Home\n", files={"about.md": "About\n"},
              templates={"page.html": "{% include 'nope.html' %}\n"})


def test_pages_in_subfolders_keep_every_link_relative(tmp_path):
    image = (tmp_path / "pic.png")
    from PIL import Image

    Image.new("RGB", (4, 4), "red").save(image)
    files = {"notes/deep.md": "---\ntitle: Deep\norder: 1\n---\n![A dot](dot.png)\n\n[Home](../index.html)\n\n"
                              '{{< atlas layer="b.5" >}}\n',
             "notes/dot.png": image.read_bytes(), "notes/index.md": "---\norder: 2\n---\nAll notes.\n",  # titled after its folder
             "about.md": "---\ntitle: About\norder: 3\n---\nAbout.\n", "notes/.draft.md": "---\nunclosed\n",
             ".DS_Store": b"junk"}
    out = _site(tmp_path, "# Home\n![A dot](notes/dot.png)\n", files=files)
    assert (out / "notes" / "deep.html").is_file() and (out / "notes" / "index.html").is_file()
    assert (out / "notes" / "dot.png").read_bytes() == image.read_bytes()
    assert not (out / ".DS_Store").exists() and not (out / "notes" / ".draft.html").exists()
    deep = (out / "notes" / "deep.html").read_text()
    assert 'data-root="../"' in deep and 'src="../assets/viewer.js"' in deep and 'href="../assets/style.css"' in deep
    # The nav lists the pages of subfolders too, by order then path, from any page.
    nav = re.findall(r'<nav[^>]*>(.*?)</nav>', deep, re.S)[0]
    assert re.findall(r'href="([^"]+)"', nav)[:3] == ["../notes/deep.html", "../notes/index.html", "../about.html"]
    assert 'href="../notes/deep.html" aria-current="page"' in nav
    assert 'href="notes/deep.html"' in (out / "index.html").read_text()
    assert "<h1>Notes</h1>" in (out / "notes" / "index.html").read_text()
    for page in [out / "index.html", out / "about.html", out / "notes" / "deep.html", out / "notes" / "index.html",
                 out / "explore" / "blocks-4.html", out / "embed.html"]:
        assert local_references(page) == [], page


def test_content_files_may_not_land_on_what_atlas_writes(tmp_path):
    with pytest.raises(AtlasError, match=re.escape("content/data/x.png: data/, assets/, explore/ and embed.html")):
        _site(tmp_path / "a", "# Home\n", files={"data/x.png": b"x"})
    with pytest.raises(AtlasError, match=re.escape("content/embed.md: data/, assets/")):
        _site(tmp_path / "b", "# Home\n", files={"embed.md": "Mine\n"})
    with pytest.raises(AtlasError, match=re.escape("content/about.html: the page about.md is written to the same place")):
        _site(tmp_path / "c", "# Home\n", files={"about.md": "About\n", "about.html": "<p>old</p>"})


def test_fact_shortcode_quotes_the_build(tmp_path):
    build = {**BUILD, "images": 1500, "crops": 2000, "image_source": "my_photos"}
    body = ("From {{< fact images >}} images of {{< fact image_source >}} in {{< fact crops >}} crops, "
            "{{< fact config.icons.steps >}} steps, grids {{< fact config.grid.levels >}}, warm "
            "{{< fact config.icons.warm_start >}}; layers {{< fact layers >}} of {{< fact model >}}. "
            "Shown as written: `{{< fact nothing >}}`.\n")
    html = (_site(tmp_path / "ok", body, build=build) / "index.html").read_text()
    steps = BUILD["config"]["icons"]["steps"]
    assert (f"From 1,500 images of my_photos in 2,000 crops, {steps} steps, grids 2, warm true; "
            "layers blocks.4, b.5 of tiny.") in html
    with pytest.raises(AtlasError, match=re.escape("content/index.md:1: unknown fact 'image' (closest: images")):
        _site(tmp_path / "typo", "{{< fact image >}}\n")
    # Paths differ from machine to machine: no page may publish them.
    with pytest.raises(AtlasError, match=re.escape("unknown fact 'config.cache'")):
        _site(tmp_path / "path", "{{< fact config.cache >}}\n")
    with pytest.raises(AtlasError, match=re.escape("the fact shortcode names one fact")):
        _site(tmp_path / "two", "{{< fact images crops >}}\n")


def test_the_packaged_article_states_this_builds_sample(tmp_path):
    out = tmp_path / "site"
    (out / "data").mkdir(parents=True)
    manifest = write_manifest(out / "data", [_tiny_atlas(out / "data", "blocks.4")], ["tabby", "b", "c"], "T")
    build = {**BUILD, "images": 500, "crops": 500, "image_source": "imagenet-sample", "layers": ["blocks.4"]}
    render_site(out, manifest, build, None, None)
    text = re.sub(r"<[^>]+>|\s+", " ", (out / "index.html").read_text())
    assert "built from 500 images (imagenet-sample), cut into 500 crops" in text
    assert "dozen" not in text and "this build used umap" in text
    assert "grids of 2 cells across" in text


def _class_site(tmp_path, body):
    """A site of one layer's atlas, a class atlas of class 1 (a hostile name) and a comparison of 1 and 0."""
    from generator.class_atlas import ClassView

    out = tmp_path / "site"
    data = out / "data"
    data.mkdir(parents=True)
    names = ["tabby", "<img src=x onerror=alert(1)>", "jack-o'-lantern"]
    layer = _tiny_atlas(data, "blocks.4")
    views = []
    for view in (ClassView((1,)), ClassView((1, 0))):
        views.append(write_atlas(data, "blocks.4", "tiny", (4, 3, 3), 5, *_tiny_levels_icons(),
                                 aid=view.atlas_id(names), about=view.about(names, "blocks.4", 5, 2)))
    manifest = write_manifest(data, [layer], names, "T", views)
    content = tmp_path / "content"
    content.mkdir()
    (content / "index.md").write_text(body)
    render_site(out, manifest, BUILD, content, None)
    return out


def test_class_atlases_get_explorer_pages_a_gallery_and_shortcodes(tmp_path):
    out = _class_site(tmp_path, "{{< class_atlas >}}\n\n{{< compare classes=\"<img src=x onerror=alert(1)>,tabby\" "
                                "filter=\"tabby\" >}}\n")
    hostile = "&lt;img src=x onerror=alert(1)&gt;"
    for page in ("class-img-src-x-onerror-alert-1", "compare-img-src-x-onerror-alert-1-tabby"):
        html = (out / "explore" / f"{page}.html").read_text()
        assert "<img src=x" not in html and hostile in html
        assert local_references(out / "explore" / f"{page}.html") == []
        # the switch offers the class atlases and comparisons, not the layers
        assert re.findall(r'data-layer="([^"]+)"', html) == ["class-img-src-x-onerror-alert-1",
                                                             "compare-img-src-x-onerror-alert-1-tabby"]
    compare = (out / "explore" / "compare-img-src-x-onerror-alert-1-tabby.html").read_text()
    assert f"<title>{hostile} against tabby (layer blocks.4) · T</title>" in compare
    assert f"← more tabby</span><span class=\"axis-a\">more {hostile} →" in compare
    index = (out / "index.html").read_text()
    assert index.count('class="atlas-viewer atlas-inline"') == 2
    views = [json.loads(v.replace("&#34;", '"')) for v in re.findall(r'data-view="([^"]*)"', index)]
    assert views == [{"layer": "class-img-src-x-onerror-alert-1"},
                     {"layer": "compare-img-src-x-onerror-alert-1-tabby", "class": "tabby"}]
    assert 'href="explore/compare-img-src-x-onerror-alert-1-tabby.html"' in index  # in the gallery
    assert local_references(out / "index.html") == []
    # the embed page knows every atlas, so that an embed code may name any
    embed = (out / "embed.html").read_text()
    assert len(re.findall(r'data-layer="', embed)) == 3


def test_class_shortcode_mistakes_say_what_to_add_to_the_config(tmp_path):
    cases = {'{{< class_atlas class="tabby" >}}': "this build has no class atlas of tabby (built: "
                                                  "<img src=x onerror=alert(1)>): add it to classes.names",
             '{{< compare classes="tabby,jack-o\'-lantern" >}}': "no comparison of tabby and jack-o'-lantern",
             '{{< compare classes="tabby" >}}': 'name the classes as classes="fireboat,streetcar"',
             '{{< class_atlas class="tabbby" >}}': "class_atlas shortcode: no class named 'tabbby' (closest: tabby)",
             '{{< class_atlas layer="blocks.4" >}}': "unknown parameter 'layer'"}
    for number, (code, message) in enumerate(cases.items()):
        with pytest.raises(AtlasError, match=re.escape(message)):
            _class_site(tmp_path / str(number), code + "\n")
    # the packaged article's form, on a build that made none, says so
    html = (_site(tmp_path / "none", "{{< compare >}}\n") / "index.html").read_text()
    assert "This build made no comparison (<code>classes.compare</code> names none" in html


def test_contradiction_shortcode_says_what_the_cell_shows_and_pins_it(tmp_path):
    out = tmp_path / "site"
    data = out / "data"
    data.mkdir(parents=True)
    names = ["tabby", "<img src=x onerror=alert(1)>", "jack-o'-lantern"]
    plain, found = _tiny_atlas(data, "blocks.4"), _tiny_atlas(data, "b.5")
    found["finding"] = {"size": 2, "x": 1, "y": 0, "count": 1234, "top": 1, "predicted": [[0, 5], [2, 2]],
                        "images": ["<b>cat</b>.jpg", "b.jpg", "c.jpg", "d.jpg"], "k": 8}
    plain["finding"] = None
    manifest = write_manifest(data, [plain, found], names, "T")
    content = tmp_path / "content"
    content.mkdir()
    (content / "index.md").write_text("{{< contradiction >}}\n\n{{< contradiction layer=\"blocks.4\" >}}\n")
    render_site(out, manifest, BUILD, content, None)
    html = (out / "index.html").read_text()
    hostile = "&lt;img src=x onerror=alert(1)&gt;"
    assert (f"averages 1,234 activations whose attribution goes most to <strong>{hostile}</strong>, yet none of "
            f"its 8 real examples comes from a crop that the model takes for {hostile}: 5 are predicted "
            "<em>tabby</em>, 2 are predicted <em>jack-o'-lantern</em> and 1 is predicted as other classes") in html
    assert "&lt;b&gt;cat&lt;/b&gt;.jpg, b.jpg, c.jpg and 1 more" in html
    view = json.loads(re.search(r'data-view="([^"]*)"', html).group(1).replace("&#34;", '"'))
    assert view == {"layer": "b-5", "cell": "2-1-0"}
    assert "in this build, no cell's examples contradict it" in html
    assert "<b>cat" not in html and "<img src=x" not in html


def test_linked_shortcode_puts_two_layers_side_by_side_in_one_figure(tmp_path):
    out = _site(tmp_path, '{{< linked layers="b.5,blocks.4" height="300" >}}\n')
    html = (out / "index.html").read_text()
    figure = re.search(r'<figure class="atlas-linked"[^>]*>(.*?)</figure>', html, re.S).group(1)
    assert re.findall(r'class="atlas-viewer atlas-inline" data-atlas="([^"]+)"', figure) == ["b-5", "blocks-4"]
    assert figure.count("height: 300px") == 2
    assert "<figcaption>Layers b.5 and blocks.4, linked: hover or pin a cell" in figure
    assert 'src="assets/viewer.js"' in html and local_references(out / "index.html") == []
    for code, message in {'{{< linked layers="b.5" >}}': 'name two layers as layers="blocks.4,blocks.5"',
                          '{{< linked layers="b.5,b.6" >}}': "no atlas of layer 'b.6' in this build",
                          '{{< linked zoom="2" >}}': "unknown parameter 'zoom'"}.items():
        with pytest.raises(AtlasError, match=re.escape(message)):
            _site(tmp_path / str(len(code)), code + "\n")
