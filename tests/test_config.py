import subprocess
import sys
import tomllib

import pytest

from generator.config import PRESETS, load_config
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


def test_every_problem_is_reported_at_once(tmp_path):
    path = tmp_path / "atlas.toml"
    path.write_text('[icons]\nsteps = -1\nsize_px = "big"\ncolour = 1\n[layout]\nmethod = "pca"\n')
    with pytest.raises(AtlasError) as err:
        load_config(path)
    message = str(err.value)
    for part in ("icons.steps = -1", "icons.size_px = 'big'", "icons.colour: unknown key", "layout.method = 'pca'"):
        assert part in message
    assert "\n" not in message


def test_unknown_preset_and_missing_file(tmp_path):
    with pytest.raises(AtlasError, match="unknown preset 'fast'"):
        load_config(None, {"preset": "fast"})
    with pytest.raises(AtlasError, match="not found"):
        load_config(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("seed = [")
    with pytest.raises(AtlasError, match="not valid TOML"):
        load_config(bad)


def test_grid_levels_up_to_160_are_valid():
    cfg = load_config(None, {"preset": "full"})
    assert cfg.grid.levels == (20, 40, 80, 160)
    with pytest.raises(AtlasError, match="grid.levels"):
        load_config(None, {"grid": {"levels": [0, 8]}})


def test_reads_toml_with_tomli_where_tomllib_is_missing(tmp_path):
    """Python 3.10 has no tomllib: the config module falls back to tomli, which pyproject.toml installs there."""
    script = (
        "import sys, tomllib\n"
        "sys.modules['tomli'] = tomllib\n"  # tomli and tomllib share an API; only 3.11+ is here to run on
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
