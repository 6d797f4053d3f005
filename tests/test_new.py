import re
from dataclasses import fields

from typer.testing import CliRunner

from generator.cli import app
from generator.config import Config, describe, load_config
from generator.options import OPTIONS
from generator.site import resource_dir

runner = CliRunner()


def test_new_makes_a_project(tmp_path):
    project = tmp_path / "my-atlas"
    result = runner.invoke(app, ["new", str(project)])
    assert result.exit_code == 0, result.output
    assert "atlas build && atlas serve" in result.output
    for name in ("atlas.toml", "content/index.md", "templates/README.md", ".gitignore"):
        assert (project / name).is_file(), name
    packaged = resource_dir("content")
    for path in packaged.rglob("*"):
        if path.is_file():
            assert (project / "content" / path.relative_to(packaged)).read_bytes() == path.read_bytes()
    assert (project / ".gitignore").read_text().split() == ["site/", ".atlas-cache/"]
    assert "resource_dir(\"templates\")" in (project / "templates" / "README.md").read_text()

    cfg = load_config(project / "atlas.toml")
    assert cfg.preset == "default" and cfg.images.dir == ""  # the embedded photographs
    assert cfg.path(cfg.site.content).resolve() == (project / "content").resolve()
    assert cfg.path(cfg.site.templates).resolve() == (project / "templates").resolve()
    assert cfg.path(cfg.out).resolve() == (project / "site").resolve()


def test_every_key_is_documented_with_its_default(tmp_path):
    runner.invoke(app, ["new", str(tmp_path / "p")])
    text = (tmp_path / "p" / "atlas.toml").read_text()
    # uncomment every `# key = value` line but those that are examples, not defaults
    examples = "|".join(o.name for o in OPTIONS if o.example is not None)
    opened = re.sub(rf"^# (?!(?:{examples}) )(\w+ = .*)$", r"\1", text, flags=re.M)
    (tmp_path / "p" / "all.toml").write_text(opened)
    assert describe(load_config(tmp_path / "p" / "all.toml")) == describe(load_config(None))
    keys = set(re.findall(r"^(?:# )?(\w+) = ", text, flags=re.M))
    for f in fields(Config):
        if f.name == "base_dir":
            continue
        section = getattr(Config(), f.name)
        names = [g.name for g in fields(section)] if hasattr(section, "__dataclass_fields__") else [f.name]
        assert set(names) <= keys, f.name


def test_new_refuses_a_folder_with_files(tmp_path):
    (tmp_path / "keep.txt").write_text("mine")
    result = runner.invoke(app, ["new", str(tmp_path)])
    assert result.exit_code == 1
    text = result.output.strip()
    assert "Traceback" not in text and len(text.splitlines()) == 1
    assert text.startswith("error: ") and "not empty" in text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]


def test_new_accepts_an_empty_folder(tmp_path):
    assert runner.invoke(app, ["new", str(tmp_path)]).exit_code == 0
    assert (tmp_path / "atlas.toml").is_file()
