"""The static website: markdown narrative and Jinja templates rendered around the atlas data.

Pages: `index.html` (the article, from content/index.md), one page per other markdown
file of content/ and its subfolders (content/notes/deep.md -> notes/deep.html),
`explore/<atlas id>.html` per atlas (each layer's, each class atlas's and comparison's) and `embed.html`, the chrome-less viewer that embed
codes point at. content/'s other files (images) are copied to the same places. Every link
is relative, so the site works from any sub-path and straight from disk. Markdown pages
may hold shortcodes (see shortcodes.py).
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable
from urllib.parse import quote

import jinja2
import markdown

from .errors import AtlasError
from .shortcodes import Shortcodes, build_facts

_FIGURE = re.compile(r"<p><img([^>]*?) title=\"([^\"]*)\"\s*/?></p>")
# Written by atlas itself; a page or file of content/ there would mix with them.
_RESERVED = ("data/", "assets/", "explore/", "embed.")


def resource_dir(name: str) -> Path:
    """A folder shipped with the package ('templates' or 'content'), installed or in a checkout."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "_data" / name, here.parent / name):
        if candidate.is_dir():
            return candidate
    raise AtlasError(f"the package's {name}/ folder is missing: reinstall the atlas package")


@dataclass
class Page:
    slug: str  # output path without .html, from the site's root: "index", "notes/deep"
    title: str
    description: str
    order: int
    html: str
    toc: str
    source: str = ""  # the markdown file as messages name it: "content/notes/deep.md"
    has_viewer: bool = False

    @property
    def root(self) -> str:
        """The way back to the site's root from this page: "" at the top, "../" a folder down."""
        return "../" * self.slug.count("/")


def parse_front_matter(text: str, where: str = "page") -> tuple[dict[str, str], str]:
    """`key: value` lines between two `---` lines at the top, and the rest of the text.

    A `---` on the first line with no closing `---` is an error, not a page whose front matter
    becomes text; so is a line in it that is not `key: value`.
    """
    lines = text.splitlines(keepends=True)
    if not lines or lines[0].strip() != "---":
        return {}, text
    end = next((i for i in range(1, len(lines)) if lines[i].strip() == "---"), None)
    if end is None:
        raise AtlasError(f"{where}:1: the front matter opened here has no closing --- line")
    meta = {}
    for number, line in enumerate(lines[1:end], 2):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, sep, value = line.partition(":")
        if not sep or not key.strip():
            raise AtlasError(f"{where}:{number}: front matter lines are `key: value`, not {line.strip()!r}")
        meta[key.strip().lower()] = value.strip().strip("\"'")
    return meta, "".join(lines[end + 1:])


def _published(rel: str) -> bool:
    """Whether a file of content/ (path relative to it) goes into the site: not hidden, nor in a hidden folder."""
    return not any(part.startswith(".") for part in rel.split("/"))


def _check_not_reserved(rel: str, where: str) -> None:
    if rel.startswith(_RESERVED):
        raise AtlasError(f"{where}: data/, assets/, explore/ and embed.html of the site are written by atlas; "
                         "move or rename this file")


def read_pages(content_dir: Path, shortcodes: Shortcodes | None = None) -> list[Page]:
    """Every markdown file under `content_dir`, rendered: index first, then by front-matter `order`, then path.

    `content/notes/deep.md` becomes the page `notes/deep` (notes/deep.html), whose viewers and
    links find the site's root one folder up.
    """
    pages = []
    for path in sorted(content_dir.rglob("*.md")):
        rel = path.relative_to(content_dir).as_posix()
        if not path.is_file() or not _published(rel):
            continue
        where = f"{content_dir.name}/{rel}"
        _check_not_reserved(rel, where)
        try:
            text = path.read_text(encoding="utf-8-sig")
        except UnicodeDecodeError as exc:
            line = path.read_bytes().count(b"\n", 0, exc.start) + 1
            raise AtlasError(f"{where}:{line}: not UTF-8 text: save the file as UTF-8") from None
        meta, body = parse_front_matter(text, where)
        try:
            order = int(meta.get("order", 100))
        except ValueError:
            line = next(n for n, t in enumerate(text.splitlines(), 1) if t.strip().lower().startswith("order"))
            raise AtlasError(f"{where}:{line}: front matter 'order' must be a whole number, "
                             f"not {meta['order']!r}") from None
        slug = rel[:-3]
        name = Path(slug).parent.name if Path(slug).name == "index" and "/" in slug else Path(slug).name
        page = Page(slug=slug, title=meta.get("title", name.replace("-", " ").title()),
                    description=meta.get("description", ""), order=order, html="", toc="", source=where)
        blocks: dict[str, str] = {}
        if shortcodes is not None:
            first_line = text.count("\n", 0, len(text) - len(body)) + 1
            body, blocks = shortcodes.expand(body, where, first_line, page.root)
        md = markdown.Markdown(extensions=["tables", "toc", "fenced_code", "footnotes", "attr_list"],
                               extension_configs={"toc": {"permalink": False}})
        page.html = _FIGURE.sub(r"<figure><img\1><figcaption>\2</figcaption></figure>", md.convert(body))
        for key, block in blocks.items():
            page.html = page.html.replace(f"<p>{key}</p>", block)
        page.toc, page.has_viewer = md.toc, bool(blocks)
        pages.append(page)
    pages.sort(key=lambda p: (p.slug != "index", p.order, p.slug))
    return pages


def copy_content_files(content_dir: Path, out_dir: Path, page_files: set[str]) -> list[Path]:
    """Every other file under `content_dir` (images, downloads) into the site at the same relative
    path, as a page's relative links expect; `page_files` are the pages' own outputs."""
    copied = []
    for path in sorted(content_dir.rglob("*")):
        rel = path.relative_to(content_dir).as_posix()
        if not path.is_file() or path.suffix == ".md" or not _published(rel):
            continue
        where = f"{content_dir.name}/{rel}"
        if rel in page_files:
            raise AtlasError(f"{where}: the page {rel[:-len('.html')]}.md is written to the same place; rename one")
        _check_not_reserved(rel, where)
        target = out_dir / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
        copied.append(target)
    return copied


def template_env(override_dir: Path | None) -> jinja2.Environment:
    """Jinja environment whose search path puts the project's own templates first."""
    folders = [str(override_dir)] if override_dir and override_dir.is_dir() else []
    folders.append(str(resource_dir("templates")))
    return jinja2.Environment(loader=jinja2.FileSystemLoader(folders), autoescape=True,
                              undefined=jinja2.StrictUndefined, keep_trailing_newline=True)


def _template_place(env: jinja2.Environment, filename: str, line: int | None) -> str | None:
    """'templates/page.html:3' for a file of a project's templates folder, the full path for a
    packaged one; None for a file outside the search path."""
    folders = [Path(f).resolve() for f in env.loader.searchpath]  # type: ignore[union-attr]
    path = Path(filename).resolve()
    for folder in folders:
        if folder in path.parents:
            name = str(path) if folder == folders[-1] else f"{folder.name}/{path.relative_to(folder).as_posix()}"
            return f"{name}:{line}" if line else name
    return None


def template_error(exc: Exception, env: jinja2.Environment, name: str, for_what: str = "") -> AtlasError | None:
    """A template's mistake as one line naming the file and line at fault, not the one that included it."""
    place = None
    if isinstance(exc, jinja2.TemplateSyntaxError) and exc.filename:
        place = _template_place(env, exc.filename, exc.lineno)
    else:
        # jinja gives each frame of template code the template's file name and line
        tb = exc.__traceback__
        while tb is not None:
            filename = tb.tb_frame.f_code.co_filename
            if Path(filename).is_absolute():
                place = _template_place(env, filename, tb.tb_lineno) or place
            tb = tb.tb_next
    if not isinstance(exc, jinja2.TemplateError) and place is None:
        return None  # not raised by template code: a bug of ours
    if isinstance(exc, jinja2.TemplateNotFound):
        message = f"template {exc.name!r} not found"
    else:
        message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    context = f" (rendering {name}{' for ' + for_what if for_what else ''})"
    return AtlasError(f"{place or name}: {message}{context}")


def render_template(env: jinja2.Environment, template: str | jinja2.Template, values: dict,
                    name: str = "", for_what: str = "") -> str:
    """`template` (a name in `env`, or a template of it) rendered with `values`; a mistake in it, or in
    a template it uses, raised as an AtlasError naming that file and line. `for_what` names the page."""
    name = name or str(template)
    try:
        if isinstance(template, str):
            template = env.get_template(template)
        return template.render(**values)
    except jinja2.TemplateError as exc:
        raise template_error(exc, env, name, for_what) from None
    except TypeError as exc:  # a macro called with the wrong arguments, say an override made for an older viewer
        error = template_error(exc, env, name, for_what)
        if error is None:
            raise
        raise error from None


def viewer_group(manifest: dict, atlas: dict) -> list[dict]:
    """The atlases a viewer of `atlas` switches between: the layers' atlases for a layer's, the class
    atlases and comparisons for one of those."""
    return manifest["atlases"] if atlas.get("kind", "layer") == "layer" else manifest["class_atlases"]


def viewer_renderer(env: jinja2.Environment, manifest: dict) -> Callable[..., str]:
    """viewer(atlas, root, mode, view, caption, height, alt, for_what): viewer.html's macro as HTML;
    `root` is the way from the page that holds it to the site's root. `view` ({"x", "y", "z",
    "class", "sign"}) goes to the script as JSON: the script alone writes views as URL hashes.
    The embed page's viewer knows every atlas, as an embed code may name any; others, their group's."""
    # Called through a template, not as a macro from Python, so that jinja maps a mistake to its line.
    call = env.from_string('{% from "viewer.html" import viewer %}'
                           "{{ viewer(atlas, atlases, root, mode, view, caption, height, alt) }}")

    def viewer(atlas: dict, root: str, mode: str, view: dict | None = None, caption: str = "", height: int = 0,
               alt: str = "", for_what: str = "") -> str:
        atlases = manifest["atlases"] + manifest["class_atlases"] if mode == "embed" else viewer_group(manifest, atlas)
        values = {"atlas": atlas, "atlases": atlases, "root": root, "mode": mode,
                  "view": json.dumps(view, sort_keys=True) if view else "", "caption": caption, "height": height,
                  "alt": alt}
        try:
            return render_template(env, call, values, "viewer.html", for_what)
        except TypeError as exc:  # a project's viewer.html made for another version of the macro
            where = _template_place(env, env.get_template("viewer.html").filename, None) or "viewer.html"
            raise AtlasError(f"{where}: the viewer macro is called as viewer({', '.join(values)}): {exc}") from None

    return viewer


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
    """Render every page into `out_dir` (which already holds data/); returns the pages written.

    Also copies content/'s other files (images) to the same places in the site.
    """
    if content_dir is None or not content_dir.is_dir():
        content_dir = resource_dir("content")
    env = template_env(override_dir)
    manifest = {"class_atlases": [], **manifest}  # a manifest of a build before class atlases
    viewer = viewer_renderer(env, manifest)
    shortcodes = Shortcodes(viewer, manifest["atlases"], manifest["classes"], build_facts(build_info),
                            manifest["class_atlases"])
    pages = read_pages(content_dir, shortcodes)
    if not any(p.slug == "index" for p in pages):
        raise AtlasError(f"{content_dir} has no index.md: the article page is made from it")
    copy_assets(override_dir, out_dir)
    copy_content_files(content_dir, out_dir, {f"{p.slug}.html" for p in pages})
    nav = [{"slug": quote(p.slug), "title": p.title} for p in pages]
    common = {"site_title": manifest["title"], "nav": nav, "atlases": manifest["atlases"],
              "class_atlases": manifest["class_atlases"], "classes": manifest["classes"], "build": build_info}
    written = []

    def write(path: Path, template: str, for_what: str = "", **values) -> None:
        text = render_template(env, template, {**common, **values}, template, for_what)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)

    for page in pages:
        write(out_dir / f"{page.slug}.html", "index.html" if page.slug == "index" else "page.html", page.source,
              page=page, root=page.root, current=quote(page.slug), current_atlas="")
    for atlas in manifest["atlases"] + manifest["class_atlases"]:
        write(out_dir / "explore" / f"{atlas['id']}.html", "explorer.html", atlas=atlas, root="../",
              current="explore", current_atlas=atlas["id"],
              viewer=viewer(atlas, "../", "explorer", for_what=f"explore/{atlas['id']}.html"))
    if manifest["atlases"]:
        atlas = manifest["atlases"][0]
        write(out_dir / "embed.html", "embed.html", atlas=atlas, root="", current="embed", current_atlas="",
              viewer=viewer(atlas, "", "embed", for_what="embed.html"))
    return written
