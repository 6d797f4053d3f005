"""The static website: markdown narrative and Jinja templates rendered around the atlas data.

Pages: `index.html` (the article, from content/index.md), one page per other markdown
file, and `explore/<atlas id>.html` per atlas. Every link is relative, so the site
works from any sub-path and straight from disk.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import jinja2
import markdown

from .errors import AtlasError

_FRONT_MATTER = re.compile(r"\A---\s*\n(.*?)\n---\s*\n", re.S)


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


def read_pages(content_dir: Path) -> list[Page]:
    """Every markdown file in `content_dir`, rendered, sorted by front-matter `order` then name."""
    pages = []
    for path in sorted(content_dir.glob("*.md")):
        meta, body = parse_front_matter(path.read_text(encoding="utf-8"))
        md = markdown.Markdown(extensions=["tables", "toc", "fenced_code", "footnotes", "attr_list"],
                               extension_configs={"toc": {"permalink": False}})
        html = md.convert(body)
        try:
            order = int(meta.get("order", 100))
        except ValueError:
            raise AtlasError(f"{path}: front matter 'order' must be a whole number, not {meta['order']!r}") from None
        pages.append(Page(slug=path.stem, title=meta.get("title", path.stem.replace("-", " ").title()),
                          description=meta.get("description", ""), order=order, html=html, toc=md.toc))
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
    pages = read_pages(content_dir)
    if not any(p.slug == "index" for p in pages):
        raise AtlasError(f"{content_dir} has no index.md: the article page is made from it")
    env = template_env(override_dir)
    copy_assets(override_dir, out_dir)
    nav = [{"slug": p.slug, "title": p.title} for p in pages]
    common = {"site_title": manifest["title"], "nav": nav, "atlases": manifest["atlases"],
              "classes": manifest["classes"], "build": build_info}
    written = []
    for page in pages:
        template = env.get_template("index.html" if page.slug == "index" else "page.html")
        path = out_dir / f"{page.slug}.html"
        path.write_text(template.render(page=page, root="", current=page.slug, current_atlas="", **common), encoding="utf-8")
        written.append(path)
    explore = out_dir / "explore"
    explore.mkdir(exist_ok=True)
    for atlas in manifest["atlases"]:
        path = explore / f"{atlas['id']}.html"
        html = env.get_template("explorer.html").render(atlas=atlas, root="../", current="explore",
                                                          current_atlas=atlas["id"], **common)
        path.write_text(html, encoding="utf-8")
        written.append(path)
    return written
