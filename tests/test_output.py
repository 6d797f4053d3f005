import os
import subprocess
import sys

import pytest

from generator import output, pipeline


def _dead_pid() -> int:
    """The id of a process that has ended."""
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(done.stdout)


def _site(folder, text):
    (folder / "data").mkdir(parents=True)
    (folder / "data" / "manifest.json").write_text(text)
    (folder / "index.html").write_text(text)


def test_a_site_caught_between_the_swaps_renames_is_restored_with_its_dotfiles(tmp_path):
    pid = _dead_pid()
    out = tmp_path / "site"
    old = tmp_path / f".site.old-{pid}"
    _site(old, "previous")
    building = tmp_path / f".site.building-{pid}"
    _site(building, "new")
    (building / ".git").mkdir()  # moved out of the old site, not yet renamed into place
    (building / ".git" / "HEAD").write_text("ref")
    notes = []
    output.recover(out, notes.append)
    assert (out / "index.html").read_text() == "previous"
    assert (out / ".git" / "HEAD").read_text() == "ref"
    assert not old.exists() and not building.exists()
    assert notes == [f"output: restored {out} from a build killed while swapping it in"]


def test_leftovers_of_killed_builds_go_and_those_of_running_ones_stay(tmp_path):
    out = tmp_path / "site"
    _site(out, "current")
    dead, alive = _dead_pid(), os.getppid()
    for pid in (dead, alive):
        _site(tmp_path / f".site.building-{pid}", "half")
        _site(tmp_path / f".site.old-{pid}", "old")
    output.recover(out)
    assert not (tmp_path / f".site.building-{dead}").exists() and not (tmp_path / f".site.old-{dead}").exists()
    assert (tmp_path / f".site.building-{alive}").is_dir() and (tmp_path / f".site.old-{alive}").is_dir()
    assert (out / "index.html").read_text() == "current"


def test_a_site_caught_while_its_contents_were_replaced_in_place_is_restored(tmp_path):
    out = tmp_path / "site"
    out.mkdir()
    (out / ".git").mkdir()
    (out / "README.md").write_text("mine")
    pid = _dead_pid()
    _site(out / f".atlas-replaced-{pid}", "previous")
    (out / "index.html").write_text("new, half moved in")
    _site(out / f".atlas-building-{pid}", "new")
    notes = []
    output.recover(out, notes.append)
    assert (out / "index.html").read_text() == "previous"
    assert (out / "data" / "manifest.json").read_text() == "previous"
    assert sorted(p.name for p in out.iterdir()) == [".git", "README.md", "data", "index.html"]
    assert len(notes) == 1


def test_a_swap_into_an_output_folder_that_cannot_be_renamed_replaces_its_contents(tmp_path, monkeypatch):
    out = tmp_path / "site"
    _site(out, "previous")
    (out / "stale.html").write_text("gone after the swap")
    (out / ".nojekyll").write_text("")
    (out / "README.md").write_text("mine")
    monkeypatch.setattr(output.os.path, "ismount", lambda p: os.fspath(p) == os.fspath(out))
    new = output.building_dir(out)
    assert new.parent == out
    _site(new, "new")
    output.swap_in(new, out)
    assert (out / "index.html").read_text() == "new"
    assert sorted(p.name for p in out.iterdir()) == [".nojekyll", "README.md", "data", "index.html"]


def test_a_build_into_a_mount_point(tiny_config, tmp_path):
    out = tmp_path / "mounted"
    out.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(out)], capture_output=True).returncode:
        pytest.skip("needs permission to mount a tmpfs")
    try:
        (out / ".git").mkdir()
        (out / "README.md").write_text("mine")
        cfg = tiny_config(out=str(out))
        pipeline.build(cfg)
        pipeline.build(tiny_config(out=str(out), seed=1))
        assert (out / "index.html").is_file() and (out / "README.md").read_text() == "mine"
        assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == [".git"]
    finally:
        subprocess.run(["umount", "--lazy", str(out)])
