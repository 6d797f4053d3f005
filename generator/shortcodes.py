"""Shortcodes: what a markdown page may ask of the build, expanded before markdown sees the page.

  {{< atlas layer="blocks.4" zoom="2" center="0.3,0.7" class="tabby" caption=".." alt=".." >}}  a live
      viewer on that view; the caption is tied to the viewer, alt says what it shows to screen readers
  {{< class_atlas class="fireboat" >}}  the class atlas of a class named in classes.names (or chosen by
      classes.auto), with the atlas shortcode's view parameters; `filter` fades by a class; without
      `class`, the build's first class atlas
  {{< compare classes="fireboat,streetcar" >}}  the comparison of two classes (classes.compare); without
      `classes`, the build's first
  {{< contradiction layer="blocks.5" >}}  the cell of that layer (default: the last) whose real
      examples most clearly contradict its top class (findings.py), said in words, and a viewer
      pinned on it; height, caption and alt as for atlas
  {{< linked layers="blocks.4,blocks.5" >}}  two layers side by side, linked: a cell hovered or pinned
      in one shows where its image positions fall in the other (links.py); default: the first two
  {{< layers >}}  a section per atlas of this build: its facts and a viewer
  {{< fact images >}}  one fact of the build as text (see `build_facts`)

Outside code, every `{{<` must start a well-formed shortcode, with its parameters written
name="value"; anything else stops the build with the file and line, never reaches the page as text.
"""

from __future__ import annotations

import difflib
import html
import re
from typing import Callable

from .errors import AtlasError

_SHORTCODE = re.compile(r'\{\{<\s*([A-Za-z][\w-]*)((?:\s+(?:[\w-]+="[^"\n]*"|[\w.-]+))*)\s*>\}\}')
_ARG = re.compile(r'([\w-]+)="([^"\n]*)"|([\w.-]+)')
# Shortcodes inside code stay as written: fenced blocks (``` or ~~~) and inline spans.
_CODE = re.compile(r"^[ \t]*(`{3,}|~{3,}).*?^[ \t]*\1[ \t]*$|``[^\n]+?``|`[^`\n]+`", re.S | re.M)
_VIEW_PARAMS = {"zoom", "center", "sign", "height", "caption", "alt"}
_ATLAS_PARAMS = _VIEW_PARAMS | {"layer", "class"}
_CLASS_ATLAS_PARAMS = _VIEW_PARAMS | {"class", "filter"}
_COMPARE_PARAMS = _VIEW_PARAMS | {"classes", "filter"}
_CONTRADICTION_PARAMS = {"layer", "height", "caption", "alt"}
_LINKED_PARAMS = {"layers", "height", "caption"}
# Paths differ between machines, and the site is published: they are not facts a page can quote.
_PATH_SETTINGS = {"out", "cache", "images.dir", "model.checkpoint", "model.labels", "site.content", "site.templates"}
_BUILD_FACTS = ("images", "crops", "skipped", "image_source", "model", "layers")


def markdown_text(text: str) -> str:
    """`text` for a markdown source: HTML escaped and markdown's own characters backslashed."""
    return re.sub(r"([\\`*_{}\[\]()#+\-.!|~])", r"\\\1", html.escape(text, quote=False))


def _fact_text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, (list, tuple)):
        return ", ".join(map(_fact_text, value))
    return str(value)


def build_facts(build_info: dict) -> dict[str, str]:
    """What a page can quote with `{{< fact NAME >}}`, as text: images, crops, skipped,
    image_source, model, layers, and `config.<key>` for every setting that is not a path."""
    facts = {name: _fact_text(build_info[name]) for name in _BUILD_FACTS if name in build_info}

    def add(key: str, value: object) -> None:
        if isinstance(value, dict):
            for name, inner in value.items():
                add(f"{key}.{name}" if key else name, inner)
        elif key not in _PATH_SETTINGS:
            facts[f"config.{key}"] = _fact_text(value)

    add("", build_info.get("config", {}))
    return facts


def _listed(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _arguments(text: str) -> list[tuple[str | None, str]]:
    """A shortcode's parameters in order: (name, value) for name="value", (None, word) for a bare word."""
    return [(m[1], m[2]) if m[1] else (None, m[3]) for m in _ARG.finditer(text)]


def _malformed(text: str, start: int, end: int) -> str:
    """Why the `{{<` at `start` does not begin a shortcode."""
    close = text.find(">}}", start, end)
    again = text.find("{{<", start + 3, end)
    if close < 0 or 0 <= again < close:
        line_end = text.find("\n", start, end)
        opening = text[start:line_end if line_end >= 0 else end].strip()
        return f"unclosed shortcode {opening[:60]!r}: end it with >}}}}, or put it in `code` to show it as text"
    return (f"malformed shortcode {text[start:close + 3]!r}: write {{{{< name param=\"value\" >}}}}, "
            "each value in double quotes")


class Shortcodes:
    """Expands `{{< atlas ... >}}`, `{{< class_atlas ... >}}`, `{{< compare ... >}}`, `{{< layers >}}` and
    `{{< fact NAME >}}` in a page's markdown."""

    def __init__(self, viewer: Callable[..., str], atlases: list[dict], classes: list[str],
                 facts: dict[str, str] | None = None, class_atlases: list[dict] | None = None):
        self.viewer = viewer  # (atlas, root, mode, view, caption, height, for_what) -> the viewer's HTML
        self.atlases = atlases
        self.class_atlases = class_atlases or []
        self.classes = classes
        self.facts = facts or {}
        self.by_name = {a["layer"]: a for a in atlases} | {a["id"]: a for a in atlases}

    def expand(self, text: str, where: str, first_line: int = 1, root: str = "") -> tuple[str, dict[str, str]]:
        """Markdown with each shortcode expanded, each viewer a placeholder paragraph; and the placeholders' HTML.

        `where` names the file in messages and `first_line` is the line of the file that `text`
        starts on. Outside code, a `{{<` that does not start a well-formed shortcode is an error.
        """
        blocks: dict[str, str] = {}
        out: list[str] = []
        at = 0
        for code in [*_CODE.finditer(text), None]:
            end = code.start() if code else len(text)
            while (start := text.find("{{<", at, end)) >= 0:
                line = f"{where}:{first_line + text.count(chr(10), 0, start)}"
                match = _SHORTCODE.match(text, start, end)
                if match is None:
                    raise AtlasError(f"{line}: {_malformed(text, start, end)}")
                out += [text[at:start], self._expand_one(match[1], _arguments(match[2]), line, root, blocks)]
                at = match.end()
            out.append(text[at:end])
            if code:
                out.append(code[0])
                at = code.end()
        return "".join(out), blocks

    def _expand_one(self, name: str, args: list[tuple[str | None, str]], where: str, root: str,
                    blocks: dict[str, str]) -> str:
        if name == "atlas":
            return self._atlas(self._named(name, args, where), where, root, blocks)
        if name in ("class_atlas", "compare"):
            return self._class_view(name, self._named(name, args, where), where, root, blocks)
        if name == "linked":
            return self._linked(self._named(name, args, where), where, root, blocks)
        if name == "contradiction":
            return self._contradiction(self._named(name, args, where), where, root, blocks)
        if name == "layers":
            if args:
                raise AtlasError(f"{where}: the layers shortcode takes no parameters: write {{{{< layers >}}}}")
            return self._layers(where, root, blocks)
        if name == "fact":
            return self._fact(args, where)
        raise AtlasError(f"{where}: unknown shortcode {name!r}: use atlas, class_atlas, compare, contradiction, linked, layers or fact")

    @staticmethod
    def _named(name: str, args: list[tuple[str | None, str]], where: str) -> dict[str, str]:
        params: dict[str, str] = {}
        for key, value in args:
            if key is None:
                raise AtlasError(f"{where}: {name} shortcode: parameters are written name=\"value\", not {value!r}")
            if key in params:
                raise AtlasError(f"{where}: {name} shortcode: parameter {key!r} given twice")
            params[key] = value
        return params

    def _fact(self, args: list[tuple[str | None, str]], where: str) -> str:
        if len(args) != 1 or args[0][0] is not None:
            raise AtlasError(f"{where}: the fact shortcode names one fact: write {{{{< fact images >}}}}")
        name = args[0][1]
        if name not in self.facts:
            close = difflib.get_close_matches(name, list(self.facts), n=3, cutoff=0.6)
            hint = f" (closest: {', '.join(close)})" if close else ""
            raise AtlasError(f"{where}: unknown fact {name!r}{hint}: the facts are {', '.join(_BUILD_FACTS)}, "
                             "and config.<key> for a setting of atlas.toml, such as config.icons.steps")
        return markdown_text(self.facts[name])

    def _layers(self, where: str, root: str, blocks: dict[str, str]) -> str:
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
                + self._place_viewer(atlas, {"layer": atlas["id"]}, "", 440, "", where, root, blocks))
        return "\n".join(sections)

    def _atlas(self, params: dict[str, str], where: str, root: str, blocks: dict[str, str]) -> str:
        self._check_params("atlas", params, _ATLAS_PARAMS, where)
        if not self.atlases:
            raise AtlasError(f"{where}: an atlas shortcode needs at least one atlas in the build")
        layer = params.get("layer", self.atlases[0]["id"])
        atlas = self.by_name.get(layer)
        if atlas is None:
            raise AtlasError(f"{where}: atlas shortcode: no atlas of layer {layer!r} in this build "
                             f"(built: {', '.join(a['layer'] for a in self.atlases)})")
        return self._viewer_of("atlas", atlas, params, params.get("class"), where, root, blocks)

    def _linked(self, params: dict[str, str], where: str, root: str, blocks: dict[str, str]) -> str:
        """Two layers' viewers side by side in one figure, which viewer.js links."""
        self._check_params("linked", params, _LINKED_PARAMS, where)
        if len(self.atlases) < 2:
            if "layers" not in params:  # the packaged article, on a build of one layer
                return "This build maps one layer, so there is no other to link it to.\n\n"
            raise AtlasError(f"{where}: a linked shortcode needs two layers in the build: name them in "
                             "collect.layers")
        wanted = [w.strip() for w in params["layers"].split(",")] if "layers" in params else \
            [a["id"] for a in self.atlases[:2]]
        if len(wanted) != 2 or len(set(wanted)) != 2:
            raise AtlasError(f'{where}: linked shortcode: name two layers as layers="blocks.4,blocks.5"')
        pair = []
        for layer in wanted:
            if layer not in self.by_name:
                raise AtlasError(f"{where}: linked shortcode: no atlas of layer {layer!r} in this build "
                                 f"(built: {', '.join(a['layer'] for a in self.atlases)})")
            pair.append(self.by_name[layer])
        try:
            height = int(params.get("height", 400))
        except ValueError:
            raise AtlasError(f"{where}: linked shortcode: height must be whole pixels") from None
        a, b = pair
        viewers = "".join(self.viewer(atlas, root, "inline", {"layer": atlas["id"]}, "", height,
                                      f"Activation atlas of layer {atlas['layer']}, linked to layer "
                                      f"{other['layer']} beside it", where)
                          for atlas, other in ((a, b), (b, a)))
        caption = html.escape(params.get("caption") or f"Layers {a['layer']} and {b['layer']}, linked: hover or "
                              "pin a cell in one to see where its image positions fall in the other.")
        key = f"ATLASVIEWER{len(blocks)}X"
        blocks[key] = (f'<figure class="atlas-linked" aria-label="{html.escape(a["layer"])} and '
                       f'{html.escape(b["layer"])}, linked">{viewers}<figcaption>{caption}</figcaption></figure>')
        return f"\n\n{key}\n\n"

    def _contradiction(self, params: dict[str, str], where: str, root: str, blocks: dict[str, str]) -> str:
        """The finding of one layer's atlas (findings.contradiction) in words, and a viewer pinned on its cell."""
        self._check_params("contradiction", params, _CONTRADICTION_PARAMS, where)
        if not self.atlases:
            raise AtlasError(f"{where}: a contradiction shortcode needs at least one atlas in the build")
        layer = params.get("layer", self.atlases[-1]["id"])
        atlas = self.by_name.get(layer)
        if atlas is None:
            raise AtlasError(f"{where}: contradiction shortcode: no atlas of layer {layer!r} in this build "
                             f"(built: {', '.join(a['layer'] for a in self.atlases)})")
        name = f"`{atlas['layer']}`"
        if "finding" not in atlas:
            return (f"This build publishes no real examples (`site.examples = false`), so the cells of layer "
                    f"{name} cannot be checked against them here.\n\n")
        found = atlas["finding"]
        if found is None:
            return (f"At layer {name}, every cell with a full set of examples has at least one that the model "
                    "predicts as the cell's top class: in this build, no cell's examples contradict it.\n\n")
        top = markdown_text(self.classes[found["top"]])
        shares = [f"{n} {'is' if n == 1 else 'are'} predicted *{markdown_text(self.classes[c])}*"
                  for c, n in found["predicted"][:3]]
        rest = found["k"] - sum(n for _, n in found["predicted"][:3])
        if rest:
            shares.append(f"{rest} {'is' if rest == 1 else 'are'} predicted as other classes")
        images = found["images"]
        shown = ", ".join(markdown_text(n) for n in images[:3]) + (f" and {len(images) - 3} more" if len(images) > 3
                                                                    else "")
        text = (f"At layer {name}, the cell pinned below averages {found['count']:,} activations whose attribution "
                f"goes most to **{top}**, yet none of its {found['k']} real examples comes from a crop that the model "
                f"takes for {top}: {_listed(shares)}. The feature pushes the network toward {top} in images of "
                f"something else (the examples come from {shown}): what the cell stands for is not what its top "
                "class says.\n\n")
        caption = params.get("caption") or (f"The cell of layer {atlas['layer']} whose examples contradict its top "
                                            f"class, {self.classes[found['top']]}.")
        try:
            height = int(params.get("height", 440))
        except ValueError:
            raise AtlasError(f"{where}: contradiction shortcode: height must be whole pixels") from None
        view = {"layer": atlas["id"], "cell": f"{found['size']}-{found['x']}-{found['y']}"}
        # its own words for screen readers: the page may hold the layer's whole atlas too
        alt = params.get("alt") or (f"Activation atlas of layer {atlas['layer']}, pinned on the cell whose "
                                    "examples contradict its top class")
        return text + self._place_viewer(atlas, view, caption, height, alt, where, root, blocks)

    def _class_view(self, name: str, params: dict[str, str], where: str, root: str, blocks: dict[str, str]) -> str:
        """A class atlas (`class`) or comparison (`classes`), which the build must have made."""
        self._check_params(name, params, _CLASS_ATLAS_PARAMS if name == "class_atlas" else _COMPARE_PARAMS, where)
        key, setting = ("class", "classes.names") if name == "class_atlas" else ("classes", "classes.compare")
        kind = "class" if name == "class_atlas" else "compare"
        built = [a for a in self.class_atlases if a["kind"] == kind]
        what = "class atlas" if kind == "class" else "comparison"
        if key not in params:  # the build's first: a page that suits any build, as the packaged article does
            if not built:
                return (f"This build made no {what} (`{setting}` names none and `classes.auto` is 0), so there is "
                        "none to show here.\n\n")
            return self._viewer_of(name, built[0], params, params.get("filter"), where, root, blocks)
        wanted = [w.strip() for w in params[key].split(",")]
        if len(wanted) != (1 if kind == "class" else 2) or not all(wanted):
            example = 'class="fireboat"' if kind == "class" else 'classes="fireboat,streetcar"'
            raise AtlasError(f"{where}: {name} shortcode: name the class{'es' if kind == 'compare' else ''} "
                             f"as {example}")
        indices = [self.class_index(w, where, name) for w in wanted]
        atlas = next((a for a in built if a["classes"] == indices), None)
        if atlas is None:
            shown = " and ".join(self.classes[k] for k in indices)
            raise AtlasError(f"{where}: {name} shortcode: this build has no {what} of {shown} "
                             f"(built: {', '.join(a['label'] for a in built) or 'none'}): add it to {setting} "
                             "in atlas.toml")
        return self._viewer_of(name, atlas, params, params.get("filter"), where, root, blocks)

    @staticmethod
    def _check_params(name: str, params: dict[str, str], allowed: set[str], where: str) -> None:
        unknown = sorted(set(params) - allowed)
        if unknown:
            raise AtlasError(f"{where}: {name} shortcode: unknown parameter {unknown[0]!r} "
                             f"(allowed: {', '.join(sorted(allowed))})")

    def _viewer_of(self, name: str, atlas: dict, params: dict[str, str], filter_class: str | None, where: str,
                   root: str, blocks: dict[str, str]) -> str:
        """A viewer of `atlas` on the view the shortcode's parameters describe."""
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
            raise AtlasError(f"{where}: {name} shortcode: center must be two numbers like \"0.3,0.7\", zoom a "
                             "number above 0 and height whole pixels") from None
        if filter_class is not None:
            view["class"] = self.classes[self.class_index(filter_class, where, name)]
        if params.get("sign", "+") not in ("+", "-"):
            raise AtlasError(f"{where}: {name} shortcode: sign must be \"+\" or \"-\"")
        if params.get("sign") == "-":
            view["sign"] = "-"
        return self._place_viewer(atlas, view, params.get("caption", ""), height, params.get("alt", ""), where,
                                  root, blocks)

    def _place_viewer(self, atlas: dict, view: dict, caption: str, height: int, alt: str, where: str, root: str,
                      blocks: dict[str, str]) -> str:
        key = f"ATLASVIEWER{len(blocks)}X"
        blocks[key] = self.viewer(atlas, root, "inline", view, caption, height, alt, where)
        return f"\n\n{key}\n\n"

    def class_index(self, name: str, where: str, shortcode: str = "atlas") -> int:
        lower = [c.lower() for c in self.classes]
        if name.lower() in lower:
            return lower.index(name.lower())
        close = difflib.get_close_matches(name.lower(), lower, n=3, cutoff=0.6)
        hint = f" (closest: {', '.join(self.classes[lower.index(c)] for c in close)})" if close else ""
        raise AtlasError(f"{where}: {shortcode} shortcode: no class named {name!r}{hint}")



