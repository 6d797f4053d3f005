import re
import subprocess
import sys

import pytest

from generator.config import PRESETS, load_config, tomllib
from generator.errors import AtlasError

from .conftest import ROOT


def test_defaults_then_preset_then_file_then_overrides(tmp_path):
    path = tmp_path / "atlas.toml"
    path.write_text('preset = "quick"\nseed = 3\n[icons]\nsteps = 50\n')
    cfg = load_config(path, {"icons": {"size_px": 32}})
    assert cfg.preset == "quick"
    assert cfg.seed == 3
    assert cfg.icons.steps == 50  # the file beats the preset
    assert cfg.icons.size_px == 32  # the command line beats the file
    assert cfg.grid.levels == tuple(PRESETS["quick"]["grid"]["levels"])
    assert cfg.path("content") == tmp_path / "content"  # relative to the config file


def test_every_problem_is_reported_at_once_one_a_line(tmp_path):
    path = tmp_path / "atlas.toml"
    path.write_text('preset = "huge"\n[icons]\nsteps = -1\nsize_px = "big"\ncolour = 1\n[layout]\nmethod = "pca"\n')
    with pytest.raises(AtlasError) as err:
        load_config(path)
    header, *lines = str(err.value).splitlines()
    assert header == f"invalid config in {path}:"
    assert all(line.startswith("  ") for line in lines)
    # a bad preset is one problem among the others, not a stop before them
    wanted = ["preset = 'huge': must be one of quick, default, full", "icons.steps = -1", "icons.size_px = 'big'",
              "icons.colour: unknown key", "layout.method = 'pca'"]
    assert len(lines) == len(wanted)
    for part in wanted:
        assert sum(part in line for line in lines) == 1, part


def test_missing_file_and_bad_toml(tmp_path):
    with pytest.raises(AtlasError, match="not found"):
        load_config(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("seed = [")
    with pytest.raises(AtlasError, match="not valid TOML"):
        load_config(bad)
    bad.write_text("preset = [1]\n")
    with pytest.raises(AtlasError, match=r"preset = \[1\]: must be a string"):
        load_config(bad)


def test_grid_levels_up_to_160_are_valid():
    cfg = load_config(None, {"preset": "full"})
    assert cfg.grid.levels == (20, 40, 80, 160)
    with pytest.raises(AtlasError, match="grid.levels"):
        load_config(None, {"grid": {"levels": [0, 8]}})


def test_grid_levels_must_increase_without_repeats():
    # each level's files are named by its size: a repeat would overwrite another level's
    for levels in ([8, 8, 16], [16, 8]):
        with pytest.raises(AtlasError, match=re.escape(f"grid.levels = {levels}: must be increasing, "
                                                       "without repeats, e.g. [8, 16, 32]")):
            load_config(None, {"grid": {"levels": levels}})
    assert load_config(None, {"grid": {"levels": [3]}}).grid.levels == (3,)


def test_seed_fits_numpy_and_torch():
    assert load_config(None, {"seed": 2**32 - 1}).seed == 2**32 - 1
    for seed in (2**32, -1):
        with pytest.raises(AtlasError, match=f"seed = {seed}: must be 0 to 4294967295"):
            load_config(None, {"seed": seed})


def test_range_messages_say_which_ends_are_allowed():
    with pytest.raises(AtlasError, match=r"layout.clip_percentile = 50.0: must be at least 0 and below 50$"):
        load_config(None, {"layout": {"clip_percentile": 50}})
    assert load_config(None, {"layout": {"clip_percentile": 49.5}}).layout.clip_percentile == 49.5
    with pytest.raises(AtlasError, match=r"icons.learning_rate = 0.0: must be above 0 and at most 1$"):
        load_config(None, {"icons": {"learning_rate": 0.0}})
    with pytest.raises(AtlasError, match=r"collect.layers = \['a', 'a'\]: must be layer names, each once$"):
        load_config(None, {"collect": {"layers": ["a", "a"]}})


def test_named_folders_must_exist_default_ones_may_not(tmp_path):
    path = tmp_path / "atlas.toml"
    path.write_text("seed = 1\n")
    cfg = load_config(path)  # no content/ or templates/ beside it: the packaged ones are used
    assert not cfg.path(cfg.site.content).exists()
    path.write_text('[site]\ncontent = "contnet"\n')
    with pytest.raises(AtlasError) as err:
        load_config(path, {"site": {"templates": "templates"}})
    lines = str(err.value).splitlines()[1:]
    assert lines == [
        f"  site.content = 'contnet' ({tmp_path / 'contnet'}): folder not found: fix the path, "
        "or leave the key out for the packaged pages",
        f"  site.templates = 'templates' ({tmp_path / 'templates'}): folder not found: fix the path, "
        "or leave the key out for the packaged templates",
    ]
    (tmp_path / "contnet").mkdir()
    (tmp_path / "templates").mkdir()
    assert load_config(path).path(load_config(path).site.content) == tmp_path / "contnet"


def test_missing_inputs_and_unusable_folders_are_config_problems(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(AtlasError) as err:
        load_config(None, {"images": {"dir": str(tmp_path / "photos")}, "cache": str(tmp_path / "file"),
                           "out": str(tmp_path / "file" / "site"),
                           "model": {"checkpoint": str(tmp_path / "w.pt"), "labels": str(tmp_path / "file")}})
    lines = str(err.value).splitlines()
    assert lines == [
        "invalid config:",
        f"  images.dir = '{tmp_path / 'photos'}': image folder not found: give a folder of images, "
        "or leave it out for the embedded photographs",
        f"  model.checkpoint = '{tmp_path / 'w.pt'}': file not found",
        f"  cache = '{tmp_path / 'file'}': is a file, not a folder: choose another folder",
        f"  out = '{tmp_path / 'file' / 'site'}': is inside {tmp_path / 'file'}, a file, not a folder: "
        "choose another folder",
    ]
    with pytest.raises(AtlasError, match="images.dir = .*: is not a folder"):
        load_config(None, {"images": {"dir": str(tmp_path / "file")}})


def test_reads_toml_with_tomli_where_tomllib_is_missing(tmp_path):
    """Python 3.10 has no tomllib: the config module falls back to tomli, which pyproject.toml installs there."""
    script = (
        "import sys\n"
        "from generator.config import tomllib\n"  # tomllib, or on 3.10 tomli itself
        "sys.modules['tomli'] = tomllib\n"  # the two share an API
        "del sys.modules['generator.config']\n"
        "sys.modules['tomllib'] = None\n"  # as on 3.10: `import tomllib` fails
        "from generator.config import load_config\n"
        f"print(load_config({str(tmp_path / 'atlas.toml')!r}).seed)\n"
    )
    (tmp_path / "atlas.toml").write_text("seed = 5\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "5"
    with open(ROOT / "pyproject.toml", "rb") as f:
        project = tomllib.load(f)["project"]
    assert project["requires-python"] == ">=3.10"
    assert "tomli>=2; python_version < '3.11'" in project["dependencies"]


def test_readme_table_is_the_declared_options():
    # The README's settings table is made from generator/options.py; an option added there shows here.
    from generator.options import markdown_table

    text = (ROOT / "README.md").read_text(encoding="utf-8")
    table = text.split("<!-- options:start -->\n", 1)[1].split("<!-- options:end -->", 1)[0]
    assert table == markdown_table(), "README's table is stale: paste generator.options.markdown_table() into it"


def test_every_declared_option_is_a_config_field_with_its_default():
    from generator.options import OPTIONS

    cfg = load_config(None, {"preset": "default"})
    for option in OPTIONS:
        section, _, name = option.key.rpartition(".")
        assert getattr(getattr(cfg, section) if section else cfg, name) == option.default, option.key
        assert option.problem(option.default) == "", option.key  # every default is allowed
