from typer.testing import CliRunner

from generator.cli import app

from .conftest import TINY_SPEC

runner = CliRunner()


def _one_line_error(result, *parts):
    assert result.exit_code == 1
    text = result.output.strip()
    assert "Traceback" not in text
    errors = [line for line in text.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and errors[0].startswith("error: ") and text.endswith(errors[0]), text
    for part in parts:
        assert part in text


def test_layers_lists_shapes_and_defaults():
    result = runner.invoke(app, ["layers", "--model", TINY_SPEC])
    assert result.exit_code == 0
    assert "features.4" in result.output and "24 x 6 x 6  (default)" in result.output


def test_user_mistakes_get_one_line(tmp_path):
    _one_line_error(runner.invoke(app, ["build", "--images", str(tmp_path / "nowhere"), "--model", TINY_SPEC,
                                        "--out", str(tmp_path / "s"), "--cache", str(tmp_path / "c")]),
                    "image folder", "not found")
    _one_line_error(runner.invoke(app, ["build", "--model", TINY_SPEC, "--layers", "features.9x",
                                        "--out", str(tmp_path / "s")]), "unknown layer", "closest")
    _one_line_error(runner.invoke(app, ["build", "--preset", "huge"]), "unknown preset")
    bad = tmp_path / "atlas.toml"
    bad.write_text("[grid]\nlevels = 3\n")
    _one_line_error(runner.invoke(app, ["build", "--config", str(bad)]), "grid.levels = 3")
    _one_line_error(runner.invoke(app, ["layers", "--model", "nonsense"]), "unknown model")


def test_empty_image_folder(tmp_path):
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "a.jpg").write_bytes(b"not a jpeg")
    _one_line_error(runner.invoke(app, ["build", "--images", str(tmp_path / "imgs"), "--model", TINY_SPEC,
                                        "--out", str(tmp_path / "s"), "--cache", str(tmp_path / "c")]),
                    "no usable image")


def test_build_reads_atlas_toml_in_the_current_folder(tmp_path, monkeypatch):
    (tmp_path / "atlas.toml").write_text("[icons]\nsteps = -1\n")
    monkeypatch.chdir(tmp_path)
    _one_line_error(runner.invoke(app, ["build"]), "icons.steps = -1")
