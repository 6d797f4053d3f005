"""The `atlas` command: a thin layer that loads the config and calls the library."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer

from .errors import AtlasError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Build explorable activation atlases of an image classifier as a static website.")


def _help(key: str) -> str:
    """An option's help and default, as declared once in options.py."""
    from .options import BY_KEY, toml_value

    option = BY_KEY[key]
    shown = f" Default: {toml_value(option.default)}." if option.default not in ("", ()) else ""
    # typer renders help with rich, which would take `[ray]` in an install command for markup
    from rich.markup import escape

    return escape(option.help + shown)


def _fail(message: str) -> None:
    """Print `message` as `error: ...`; the lines after the first (one problem each) are indented below it."""
    first, *rest = message.splitlines() or [""]
    lines = [f"error: {first}"] + [line if line.startswith(" ") else f"  {line}" for line in rest]
    typer.secho("\n".join(lines), err=True, fg=typer.colors.RED)
    raise typer.Exit(1)


@app.command()
def build(
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="atlas.toml with build settings "
                                                                        "(default: ./atlas.toml if there)."),
    out: Optional[str] = typer.Option(None, "--out", "-o", help=_help("out")),
    model: Optional[str] = typer.Option(None, help=_help("model.name")),
    images: Optional[str] = typer.Option(None, help=_help("images.dir")),
    layers: Optional[str] = typer.Option(None, help="Comma-separated. " + _help("collect.layers")),
    preset: Optional[str] = typer.Option(None, help=_help("preset")),
    seed: Optional[int] = typer.Option(None, help=_help("seed")),
    cache: Optional[str] = typer.Option(None, help=_help("cache")),
    engine: Optional[str] = typer.Option(None, help=_help("engine")),
    ray_address: Optional[str] = typer.Option(None, "--ray-address", help=_help("ray_address")),
    classes: Optional[str] = typer.Option(None, help="Comma-separated. " + _help("classes.names")),
    compare: Optional[List[str]] = typer.Option(None, help="Two classes, comma-separated (repeatable). "
                                                + _help("classes.compare")),
) -> None:
    """Build the atlas site."""
    if config is None and Path("atlas.toml").is_file():
        config = Path("atlas.toml")  # a project made by `atlas new`, built from its folder
    overrides: dict = {}
    if out is not None:
        overrides["out"] = str(Path(out).resolve())
    if cache is not None:
        overrides["cache"] = str(Path(cache).resolve())
    if preset is not None:
        overrides["preset"] = preset
    if seed is not None:
        overrides["seed"] = seed
    if engine is not None:
        overrides["engine"] = engine
    if ray_address is not None:
        overrides["ray_address"] = ray_address
    if model is not None:
        overrides.setdefault("model", {})["name"] = model
    if images is not None:
        overrides.setdefault("images", {})["dir"] = str(Path(images).resolve())
    if layers is not None:
        overrides.setdefault("collect", {})["layers"] = [x.strip() for x in layers.split(",") if x.strip()]
    if classes is not None:
        overrides.setdefault("classes", {})["names"] = [x.strip() for x in classes.split(",") if x.strip()]
    if compare:
        # a malformed pair reaches classes.compare's check, which says what a pair is
        overrides.setdefault("classes", {})["compare"] = [[x.strip() for x in pair.split(",")] for pair in compare]
    try:
        from .config import load_config

        cfg = load_config(config, overrides)
        from .pipeline import build as run_build
        from .progress import RichReporter

        reporter = RichReporter()
        result = run_build(cfg, reporter)
    except AtlasError as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        _fail("interrupted; the previous site and the cache are intact, run the same command to resume")
    total = sum(result.timings.values())
    out_dir = result.out_dir.resolve()
    reporter.note(f"site written to {out_dir} in {total:.0f} s; open {out_dir / 'index.html'}")


@app.command("layers")
def list_layers(
    model: str = typer.Option("efficientnet_lite0", help="Model spec, as for `atlas build --model`."),
    all_layers: bool = typer.Option(False, "--all", help="Also list nested modules."),
) -> None:
    """List a model's layers with their output shapes (channels, height, width); a transformer's tokens as their grid."""
    try:
        from .models import load_model

        loaded = load_model(model)
        shapes = loaded.layer_shapes()
    except AtlasError as exc:
        _fail(str(exc))
    depth = min((n.count(".") for n in shapes), default=0)
    for name, shape in shapes.items():
        if all_layers or name.count(".") <= depth + 1:
            how = loaded.view(name).describe()
            mark = (f"  ({how})" if how else "") + ("  (default)" if name in loaded.default_layers else "")
            typer.echo(f"{name:<32} {' x '.join(map(str, shape))}{mark}")


@app.command()
def new(folder: Path = typer.Argument(..., help="Folder for the new project; must be new or empty.")) -> None:
    """Start a site project: atlas.toml, content/index.md and a templates/ folder for overrides."""
    try:
        from .scaffold import create_project

        made = create_project(folder)
    except AtlasError as exc:
        _fail(str(exc))
    for path in made:
        typer.echo(f"  made {path}")
    typer.echo(f"next: cd {folder} && atlas build && atlas serve")


@app.command()
def serve(
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="atlas.toml (default: ./atlas.toml if there)."),
    out: Optional[str] = typer.Option(None, "--out", "-o", help="Site folder (default: the config's, site)."),
    host: str = typer.Option("127.0.0.1", help="Address to listen on; 0.0.0.0 shares the preview with your network."),
    port: int = typer.Option(8000, help="Port to listen on."),
    no_build: bool = typer.Option(False, "--no-build", help="Serve what is there; do not build a missing site."),
    no_reload: bool = typer.Option(False, "--no-reload", help="Do not watch the sources or reload pages."),
    allow_host: Optional[List[str]] = typer.Option(None, "--allow-host", help="A host name that the browser may "
                                                   "use besides IP addresses and localhost (repeatable)."),
) -> None:
    """Preview the site, rebuilding it and reloading the browser when content, templates or atlas.toml change."""
    if config is None and Path("atlas.toml").is_file():
        config = Path("atlas.toml")
    overrides = {"out": str(Path(out).resolve())} if out is not None else {}
    try:
        from .config import load_config
        from .progress import RichReporter
        from .serve import serve_site

        cfg = load_config(config, overrides)
        serve_site(cfg, config, overrides, host, port, build_first=not no_build, reload=not no_reload,
                   report=RichReporter(), allowed_hosts=tuple(allow_host or ()))
    except AtlasError as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        _fail("interrupted; the previous site and the cache are intact, run the same command to resume")


def main() -> None:
    import warnings

    # timm scripts a few activations at import; the deprecation is for timm, not for our users.
    warnings.filterwarnings("ignore", message=".*torch.jit.script.*", category=FutureWarning)
    app()


if __name__ == "__main__":
    sys.exit(main())
