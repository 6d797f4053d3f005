from typer.testing import CliRunner

from generator.cli import app

from .conftest import TINY_SPEC

runner = CliRunner()


def _error(result, *parts, lines=1):
    """The command failed with one `error: ` message as its last output, of `lines` lines (the later
    ones indented, one problem each), and no traceback."""
    assert result.exit_code == 1, result.output
    text = result.output.strip()
    assert "Traceback" not in text
    out = text.splitlines()
    starts = [i for i, line in enumerate(out) if line.startswith("error: ")]
    assert len(starts) == 1, text
    message = out[starts[0]:]
    assert len(message) == lines and all(line.startswith("  ") for line in message[1:]), text
    for part in parts:
        assert part in text, part
    return message


def _build(tmp_path, *args):
    return runner.invoke(app, ["build", "--out", str(tmp_path / "s"), "--cache", str(tmp_path / "c"), *args])


def test_layers_lists_shapes_and_defaults():
    result = runner.invoke(app, ["layers", "--model", TINY_SPEC])
    assert result.exit_code == 0
    assert "features.4" in result.output and "24 x 6 x 6  (default)" in result.output


def test_user_mistakes_get_one_line(tmp_path):
    _error(_build(tmp_path, "--images", str(tmp_path / "nowhere"), "--model", TINY_SPEC),
           "image folder not found", lines=2)
    _error(_build(tmp_path, "--model", TINY_SPEC, "--layers", "features.9x"), "unknown layer", "closest")
    _error(runner.invoke(app, ["build", "--preset", "huge"]), "preset = 'huge': must be one of", lines=2)
    bad = tmp_path / "atlas.toml"
    bad.write_text("[grid]\nlevels = 3\n")
    _error(runner.invoke(app, ["build", "--config", str(bad)]), "grid.levels = 3", lines=2)
    _error(runner.invoke(app, ["layers", "--model", "nonsense"]), "unknown model")


def test_config_problems_print_one_a_line(tmp_path):
    config = tmp_path / "atlas.toml"
    config.write_text('preset = "huge"\n[icons]\nsteps = -1\n[grid]\nlevels = [16, 8]\n')
    (tmp_path / "a-file").write_text("not a folder")
    message = _error(_build(tmp_path, "--config", str(config), "--seed", str(2**32),
                            "--cache", str(tmp_path / "a-file")), lines=6)
    assert message[0] == f"error: invalid config in {config}:"
    assert message[1:] == [
        "  preset = 'huge': must be one of quick, default, full",
        "  seed = 4294967296: must be 0 to 4294967295",
        "  grid.levels = [16, 8]: must be increasing, without repeats, e.g. [8, 16, 32]",
        "  icons.steps = -1: must be 1 to 10000",
        f"  cache = '{tmp_path / 'a-file'}': is a file, not a folder: choose another folder",
    ]


def test_every_unknown_layer_is_named(tmp_path):
    message = _error(_build(tmp_path, "--model", TINY_SPEC, "--layers", "featurs.4,features.2,xyz"), lines=3)
    assert message == [f"error: 2 unknown layers for model {TINY_SPEC}:",
                       "  'featurs.4': closest: features.4, features.5, features.3",
                       "  'xyz': see `atlas layers`"]


def test_a_failing_model_file_gets_one_line(tmp_path):
    model = tmp_path / "net.py"
    model.write_text(
        "import torch\n"
        "def needs_size(size):\n    return torch.nn.Linear(size, 2)\n"
        "def broken():\n    raise RuntimeError('weights server down\\nretry later')\n"
    )
    _error(runner.invoke(app, ["layers", "--model", f"{model}:needs_size"]),
           f"{model}:needs_size() failed: TypeError: needs_size() missing 1 required positional argument: 'size'")
    _error(_build(tmp_path, "--model", f"{model}:broken"),
           f"{model}:broken() failed: RuntimeError: weights server down retry later")


def test_missing_images_are_reported_before_the_model_loads(tmp_path):
    model = tmp_path / "net.py"
    model.write_text("def broken():\n    raise RuntimeError('loaded the model')\n")
    message = _error(_build(tmp_path, "--images", str(tmp_path / "photos"), "--model", f"{model}:broken"), lines=2)
    assert "image folder not found" in message[1] and "loaded the model" not in "\n".join(message)


def test_bad_model_metadata_and_checkpoint(tmp_path):
    model = tmp_path / "meta.py"
    model.write_text(
        'import torch\nINPUT_SIZE = "big"\nMEAN = (0.5, 0.5)\nSTD = ("a", "b", "c")\nLAYERS = "features.2"\n'
        "def make():\n    return torch.nn.Conv2d(3, 8, 3)\n"
    )
    message = _error(runner.invoke(app, ["layers", "--model", f"{model}:make"]), lines=5)
    rgb = "red, green, blue; set CHANNELS for a model of other inputs"
    assert message == [f"error: model file {model} sets bad metadata:",
                       "  INPUT_SIZE = 'big': must be a whole number of pixels from 8 to 4096, e.g. 224",
                       f"  MEAN = (0.5, 0.5): must be 3 numbers, one per input channel ({rgb})",
                       f"  STD = ('a', 'b', 'c'): must be 3 numbers, one per input channel ({rgb}), each > 0",
                       "  LAYERS = 'features.2': must be a list of layer names, e.g. [\"layer3\", \"layer4\"]"]
    notes = tmp_path / "notes.txt"
    notes.write_text("hello\n")
    config = tmp_path / "atlas.toml"
    config.write_text(f'[model]\nname = "{TINY_SPEC}"\ncheckpoint = "notes.txt"\n')
    _error(_build(tmp_path, "--config", str(config)), f"checkpoint {notes} is not a PyTorch state dict")


def test_empty_image_folder(tmp_path):
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "a.jpg").write_bytes(b"not a jpeg")
    _error(_build(tmp_path, "--images", str(tmp_path / "imgs"), "--model", TINY_SPEC), "no usable image")


def test_build_reads_atlas_toml_in_the_current_folder(tmp_path, monkeypatch):
    (tmp_path / "atlas.toml").write_text("[icons]\nsteps = -1\n")
    monkeypatch.chdir(tmp_path)
    _error(runner.invoke(app, ["build"]), "icons.steps = -1", lines=2)


def test_help_shows_install_extras_as_written():
    # rich would read `[ray]` as markup and drop it from the help
    result = runner.invoke(app, ["build", "--help"], terminal_width=200)
    assert result.exit_code == 0
    assert 'activation-atlas[ray]' in result.output
