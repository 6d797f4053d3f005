"""The static website: markdown narrative and Jinja templates rendered around the atlas data.

Pages: `index.html` (the article, from content/index.md), one page per other markdown
file, `explore/<atlas id>.html` per atlas and `embed.html`, the chrome-less viewer that
embed codes point at. Every link is relative, so the site works from any sub-path and
straight from disk.

Markdown pages may hold shortcodes:
  {{< atlas layer="blocks.4" zoom="2" center="0.3,0.7" class="tabby" caption=".." alt=".." >}}  a live
      viewer on that view; the caption is tied to the viewer, alt says what it shows to screen readers
  {{< layers >}}  a section per atlas of this build: its facts and a viewer
"""

from __future__ import annotations

import difflib
import html
import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import jinja2
import markdown

from .errors import AtlasError

_FRONT_MATTER = re.compile(r"\A---\s*\n(.*?)\n---\s*\n", re.S)
_SHORTCODE = re.compile(r"\{\{<\s*([\w-]+)((?:\s+[\w-]+\s*=\s*\"[^\"]*\")*)\s*>\}\}")
_PARAM = re.compile(r"([\w-]+)\s*=\s*\"([^\"]*)\"")
_CODE = re.compile(r"(^[ \t]*```.*?^[ \t]*```[ \t]*$|`[^`\n]+`)", re.S | re.M)  # shortcodes inside code stay as written
_FIGURE = re.compile(r"<p><img([^>]*?) title=\"([^\"]*)\"\s*/?></p>")
_ATLAS_PARAMS = {"layer", "zoom", "center", "class", "sign", "height", "caption", "alt"}


def resource_dir(name: str) -> Path:
    """A folder shipped with the package ('templates' or 'content'), installed or in a checkout."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "_data" / name, here.parent / name):
        if candidate.is_dir():
            return candidate
    raise AtlasError(f"the package's {name}/ folder is missing: reinstall the atlas package")


@dataclass
class Page:
    slug: str  # output name without .html
    title: str
    description: str
    order: int
    html: str
    toc: str
    has_viewer: bool = False


def parse_front_matter(text: str) -> tuple[dict[str, str], str]:
    """`key: value` lines between two `---` lines at the top, and the rest of the text."""
    match = _FRONT_MATTER.match(text)
    if not match:
        return {}, text
    meta = {}
    for line in match.group(1).splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, sep, value = line.partition(":")
            if sep:
                meta[key.strip().lower()] = value.strip().strip("\"'")
    return meta, text[match.end():]


def markdown_text(text: str) -> str:
    """`text` for a markdown source: HTML escaped and markdown's own characters backslashed."""
    return re.sub(r"([\\`*_{}\[\]()#+\-.!|~])", r"\\\1", html.escape(text, quote=False))


class Shortcodes:
    """Expands `{{< atlas ... >}}` and `{{< layers >}}` in a page's markdown for this build's atlases."""

    def __init__(self, env: jinja2.Environment, atlases: list[dict], classes: list[str]):
        self.env = env
        self.atlases = atlases
        self.classes = classes
        self.by_name = {a["layer"]: a for a in atlases} | {a["id"]: a for a in atlases}

    def expand(self, text: str, where: str) -> tuple[str, dict[str, str]]:
        """Markdown with each viewer replaced by a placeholder paragraph, and the placeholders' HTML."""
        blocks: dict[str, str] = {}
        parts = _CODE.split(text)
        for i in range(0, len(parts), 2):  # even parts are outside code
            parts[i] = _SHORTCODE.sub(lambda m: self._layers(m, where), parts[i])
            parts[i] = _SHORTCODE.sub(lambda m: self._viewer(m, where, blocks), parts[i])
        return "".join(parts), blocks

    def _layers(self, match: re.Match, where: str) -> str:
        if match.group(1) != "layers":
            return match.group(0)
        if match.group(2).strip():
            raise AtlasError(f"{where}: the layers shortcode takes no parameters: write {{{{< layers >}}}}")
        sections = []
        for number, atlas in enumerate(self.atlases, 1):
            channels, height, width = (atlas["shape"] + [1, 1, 1])[:3]
            names = ", ".join(markdown_text(self.classes[k]) for k in atlas["top_classes"][:6])
            sections.append(
                f"### Layer `{atlas['layer']}`\n\n"
                f"Atlas {number} of {len(self.atlases)}. The layer has {channels} channels on a {height} × {width} "
                f"grid of positions; the atlas places {atlas['activations']:,} of its activation vectors and draws "
                f"grids of {', '.join(map(str, atlas['levels']))} cells across. Its icons point along their "
                f"cells' directions with a mean cosine of {atlas['fidelity_mean']:.2f}. "
                + (f"The classes that lead the most cells: {names}.\n\n" if names else "\n\n")
                + f'{{{{< atlas layer="{atlas["id"]}" >}}}}\n')
        return "\n".join(sections)

    def _viewer(self, match: re.Match, where: str, blocks: dict[str, str]) -> str:
        name, params = match.group(1), dict(_PARAM.findall(match.group(2)))
        if name != "atlas":
            raise AtlasError(f"{where}: unknown shortcode {name!r}: use atlas or layers")
        unknown = sorted(set(params) - _ATLAS_PARAMS)
        if unknown:
            raise AtlasError(f"{where}: atlas shortcode: unknown parameter {unknown[0]!r} "
                             f"(allowed: {', '.join(sorted(_ATLAS_PARAMS))})")
        if not self.atlases:
            raise AtlasError(f"{where}: an atlas shortcode needs at least one atlas in the build")
        layer = params.get("layer", self.atlases[0]["id"])
        atlas = self.by_name.get(layer)
        if atlas is None:
            raise AtlasError(f"{where}: atlas shortcode: no atlas of layer {layer!r} in this build "
                             f"(built: {', '.join(a['layer'] for a in self.atlases)})")
        view: dict[str, object] = {"layer": atlas["id"]}
        try:
            if "center" in params:
                x, y = (float(v) for v in params["center"].split(","))
                view |= {"x": x, "y": y}
            if "zoom" in params:
                zoom = float(params["zoom"])
                if not zoom > 0:
                    raise ValueError
                view["z"] = zoom
            height = int(params.get("height", 440))
        except ValueError:
            raise AtlasError(f"{where}: atlas shortcode: center must be two numbers like \"0.3,0.7\", zoom a "
                             "number above 0 and height whole pixels") from None
        if "class" in params:
            view["class"] = self.classes[self.class_index(params["class"], where)]
        if params.get("sign", "+") not in ("+", "-"):
            raise AtlasError(f"{where}: atlas shortcode: sign must be \"+\" or \"-\"")
        if params.get("sign") == "-":
            view["sign"] = "-"
        key = f"ATLASVIEWER{len(blocks)}X"
        blocks[key] = self.viewer_html(atlas, "", "inline", view, params.get("caption", ""), height,
                                       params.get("alt", ""))
        return f"\n\n{key}\n\n"

    def class_index(self, name: str, where: str) -> int:
        lower = [c.lower() for c in self.classes]
        if name.lower() in lower:
            return lower.index(name.lower())
        close = difflib.get_close_matches(name.lower(), lower, n=3, cutoff=0.6)
        hint = f" (closest: {', '.join(self.classes[lower.index(c)] for c in close)})" if close else ""
        raise AtlasError(f"{where}: atlas shortcode: no class named {name!r}{hint}")

    def viewer_html(self, atlas: dict, root: str, mode: str, view: dict | None = None, caption: str = "",
                    height: int = 0, alt: str = "") -> str:
        """The viewer's markup; `view` ({"x", "y", "z", "class", "sign"}) goes to the script as JSON,
        which alone writes views as URL hashes."""
        macro = self.env.get_template("viewer.html").module.viewer
        return str(macro(atlas=atlas, atlases=self.atlases, root=root, mode=mode,
                         view=json.dumps(view, sort_keys=True) if view else "", caption=caption, height=height,
                         alt=alt))


def read_pages(content_dir: Path, shortcodes: Shortcodes | None = None) -> list[Page]:
    """Every markdown file in `content_dir`, rendered, sorted by front-matter `order` then name."""
    pages = []
    for path in sorted(content_dir.glob("*.md")):
        meta, body = parse_front_matter(path.read_text(encoding="utf-8"))
        blocks: dict[str, str] = {}
        if shortcodes is not None:
            body, blocks = shortcodes.expand(body, f"{content_dir.name}/{path.name}")
        md = markdown.Markdown(extensions=["tables", "toc", "fenced_code", "footnotes", "attr_list"],
                               extension_configs={"toc": {"permalink": False}})
        text = _FIGURE.sub(r"<figure><img\1><figcaption>\2</figcaption></figure>", md.convert(body))
        for key, block in blocks.items():
            text = text.replace(f"<p>{key}</p>", block)
        try:
            order = int(meta.get("order", 100))
        except ValueError:
            raise AtlasError(f"{path}: front matter 'order' must be a whole number, not {meta['order']!r}") from None
        pages.append(Page(slug=path.stem, title=meta.get("title", path.stem.replace("-", " ").title()),
                          description=meta.get("description", ""), order=order, html=text, toc=md.toc,
                          has_viewer=bool(blocks)))
    pages.sort(key=lambda p: (p.slug != "index", p.order, p.slug))
    return pages


def template_env(override_dir: Path | None) -> jinja2.Environment:
    """Jinja environment whose search path puts the project's own templates first."""
    folders = [str(override_dir)] if override_dir and override_dir.is_dir() else []
    folders.append(str(resource_dir("templates")))
    return jinja2.Environment(loader=jinja2.FileSystemLoader(folders), autoescape=True,
                              undefined=jinja2.StrictUndefined, keep_trailing_newline=True)


def copy_assets(override_dir: Path | None, out_dir: Path) -> None:
    """templates/assets/* into <site>/assets/, a project's file replacing the packaged one of that name."""
    target = out_dir / "assets"
    target.mkdir(parents=True, exist_ok=True)
    sources = [resource_dir("templates") / "assets"]
    if override_dir and (override_dir / "assets").is_dir():
        sources.append(override_dir / "assets")
    for source in sources:
        for path in source.iterdir():
            if path.is_file():
                shutil.copy2(path, target / path.name)


def render_site(out_dir: Path, manifest: dict, build_info: dict, content_dir: Path | None,
                override_dir: Path | None) -> list[Path]:
    """Render every page into `out_dir` (which already holds data/); returns the pages written."""
    if content_dir is None or not content_dir.is_dir():
        content_dir = resource_dir("content")
    env = template_env(override_dir)
    shortcodes = Shortcodes(env, manifest["atlases"], manifest["classes"])
    pages = read_pages(content_dir, shortcodes)
    if not any(p.slug == "index" for p in pages):
        raise AtlasError(f"{content_dir} has no index.md: the article page is made from it")
    copy_assets(override_dir, out_dir)
    nav = [{"slug": p.slug, "title": p.title} for p in pages]
    common = {"site_title": manifest["title"], "nav": nav, "atlases": manifest["atlases"],
              "classes": manifest["classes"], "build": build_info}
    written = []

    def write(path: Path, template: str, **values) -> None:
        try:
            text = env.get_template(template).render(**common, **values)
        except jinja2.TemplateError as exc:
            raise AtlasError(f"template {template}: {exc}") from None
        path.write_text(text, encoding="utf-8")
        written.append(path)

    for page in pages:
        write(out_dir / f"{page.slug}.html", "index.html" if page.slug == "index" else "page.html",
              page=page, root="", current=page.slug, current_atlas="")
    explore = out_dir / "explore"
    explore.mkdir(exist_ok=True)
    for atlas in manifest["atlases"]:
        write(explore / f"{atlas['id']}.html", "explorer.html", atlas=atlas, root="../", current="explore",
              current_atlas=atlas["id"], viewer=shortcodes.viewer_html(atlas, "../", "explorer"))
    if manifest["atlases"]:
        atlas = manifest["atlases"][0]
        write(out_dir / "embed.html", "embed.html", atlas=atlas, root="", current="embed", current_atlas="",
              viewer=shortcodes.viewer_html(atlas, "", "embed"))
    return written
