import errno
import json
import os

import numpy as np
import pytest
from PIL import Image

from generator import examples as examples_module
from generator import pipeline
from generator.errors import AtlasError
from generator.icons import render as render_module
from generator.progress import Reporter

from .conftest import TESTS


def _tree(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _cells(site, level):
    from generator.regions import read_cells

    return read_cells(site / "data", level)


def test_build_writes_a_complete_site(tiny_config):
    cfg = tiny_config()
    result = pipeline.build(cfg)
    out = result.out_dir
    manifest = json.loads((out / "data" / "manifest.json").read_text())
    assert [a["layer"] for a in manifest["atlases"]] == ["features.2", "features.4"]
    for atlas in manifest["atlases"]:
        assert set(atlas) >= {"id", "model", "layer", "levels", "level_data", "overview"}
        assert atlas["levels"] == [2, 4]
        for level in atlas["level_data"]:
            assert all((out / "data" / atlas["id"] / f"{level['size']}-{t}.webp").is_file() for t in level["tiles"])
            cells = _cells(out, level)
            assert cells and all(c["count"] >= 1 and len(c["top"]) == 5 for c in cells)
            assert (out / "data" / level["cells_script"]).is_file()
        assert len(atlas["class_scripts"]) == 1  # the tiny model's 6 classes fit one script
        assert (out / "explore" / f"{atlas['id']}.html").is_file()
    assert (out / "index.html").is_file()
    assert set(result.timings) >= {"activations", "layout", "grid", "icons", "site"}


def test_rebuild_skips_every_stage_and_gives_the_same_files(tiny_config, monkeypatch):
    cfg = tiny_config(icons={"batch_size": 0})
    first = _tree(pipeline.build(cfg).out_dir)
    calls = []
    monkeypatch.setattr(render_module, "_render_batch", lambda *a, **k: calls.append(1))
    monkeypatch.setattr(pipeline, "plan_samples", lambda *a, **k: calls.append(1))
    # Preparing the icon network (surgery, tape and their checks) is most of a cached build's time.
    monkeypatch.setattr(render_module, "prepare", lambda *a, **k: calls.append(1))
    monkeypatch.setattr(examples_module, "make_examples", lambda *a, **k: calls.append(1))
    second = _tree(pipeline.build(cfg).out_dir)
    assert calls == []
    assert first == second


def test_adding_a_level_renders_only_its_icons(tiny_config, monkeypatch):
    pipeline.build(tiny_config())
    rendered = []
    original = render_module._render_batch

    def counting(forward, model, layer, directions, *rest):
        rendered.append(len(directions))
        return original(forward, model, layer, directions, *rest)

    monkeypatch.setattr(render_module, "_render_batch", counting)
    result = pipeline.build(tiny_config(grid={"levels": [2, 4, 8]}))
    level8 = sum(a["level_data"][2]["cell_count"] for a in result.manifest["atlases"])
    assert sum(rendered) == level8


def test_a_failed_build_leaves_the_previous_site(tiny_config, monkeypatch):
    cfg = tiny_config()
    before = _tree(pipeline.build(cfg).out_dir)

    def broken(*a, **k):
        raise RuntimeError("disk full")

    import generator.site

    monkeypatch.setattr(generator.site, "render_site", broken)
    with pytest.raises(RuntimeError):
        pipeline.build(tiny_config(seed=1))
    assert _tree(cfg.path(cfg.out)) == before
    assert not list(cfg.path(cfg.out).parent.glob(".site.building-*"))


def test_refuses_to_replace_a_folder_it_did_not_make(tiny_config, tmp_path):
    cfg = tiny_config(out=str(tmp_path / "mine"))
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("precious")
    with pytest.raises(AtlasError, match="did not make"):
        pipeline.build(cfg)
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "precious"


def test_dotfiles_in_the_output_folder_survive(tiny_config):
    cfg = tiny_config()
    out = cfg.path(cfg.out)
    out.mkdir(parents=True)
    (out / ".gitignore").write_text("*\n")
    pipeline.build(cfg)
    assert (out / ".gitignore").read_text() == "*\n"


def test_unknown_layer_fails_before_any_work(tiny_config):
    with pytest.raises(AtlasError, match="closest: features.4"):
        pipeline.build(tiny_config(collect={"layers": ["features.44"]}))


def test_same_seed_same_icons(tiny_config, tmp_path):
    a = pipeline.build(tiny_config())
    b = pipeline.build(tiny_config(out=str(tmp_path / "b"), cache=str(tmp_path / "cache-b")))
    tile = "features-2/4-" + a.manifest["atlases"][0]["level_data"][1]["tiles"][0] + ".webp"
    assert (a.out_dir / "data" / tile).read_bytes() == (b.out_dir / "data" / tile).read_bytes()
    cells_a = [_cells(a.out_dir, lv) for lv in a.manifest["atlases"][1]["level_data"]]
    cells_b = [_cells(b.out_dir, lv) for lv in b.manifest["atlases"][1]["level_data"]]
    assert cells_a == cells_b
    assert np.isfinite([c["fidelity"] for c in cells_a[0]]).all()
    assert _tree(a.out_dir) == _tree(b.out_dir)  # every published file, byte for byte


def test_an_interrupted_build_resumes_where_it_stopped(tiny_config, monkeypatch):
    cfg = tiny_config(icons={"batch_size": 4, "method": "fourier"})  # no probe: every batch is a level's
    original = render_module._render_batch
    done = []

    def dies_on_the_third(*args):
        if len(done) == 2:
            raise KeyboardInterrupt
        done.append(1)
        return original(*args)

    monkeypatch.setattr(render_module, "_render_batch", dies_on_the_third)
    with pytest.raises(KeyboardInterrupt):
        pipeline.build(cfg)
    assert not cfg.path(cfg.out).exists()  # no half-built site
    rendered = []
    monkeypatch.setattr(render_module, "_render_batch", lambda *a: rendered.append(1) or original(*a))
    result = pipeline.build(cfg)
    total_batches = sum(-(-lv["cell_count"] // 4) for a in result.manifest["atlases"] for lv in a["level_data"])
    assert len(rendered) == total_batches - 2  # the two finished batches came from the cache


def test_a_whitened_build_renders_its_own_icons(tiny_config):
    plain = pipeline.build(tiny_config())
    whitened = pipeline.build(tiny_config(icons={"whiten": True}, out=str(plain.out_dir.parent / "w")))
    level = plain.manifest["atlases"][0]["level_data"][0]
    tile = f"features-2/2-{level['tiles'][0]}.webp"
    assert (plain.out_dir / "data" / tile).read_bytes() != (whitened.out_dir / "data" / tile).read_bytes()
    assert whitened.manifest["atlases"][0]["fidelity_mean"] > 0


class _Notes(Reporter):
    def __init__(self):
        self.lines = []

    def note(self, message):
        self.lines.append(message)


def test_a_maco_build_renders_from_the_images_own_spectrum(tiny_config):
    plain = pipeline.build(tiny_config(icons={"method": "fourier"}))
    assert not (plain.out_dir.parent / "cache" / "amplitude").exists()  # a Fourier build does not need it
    maco = pipeline.build(tiny_config(icons={"method": "maco"}, out=str(plain.out_dir.parent / "m")))
    (folder,) = (plain.out_dir.parent / "cache" / "amplitude").iterdir()
    assert np.load(folder / "amplitude.npy").shape == (3, 24, 13)
    level = plain.manifest["atlases"][0]["level_data"][0]
    tile = f"features-2/2-{level['tiles'][0]}.webp"
    assert (plain.out_dir / "data" / tile).read_bytes() != (maco.out_dir / "data" / tile).read_bytes()
    assert maco.manifest["atlases"][0]["fidelity_mean"] > 0
    again = pipeline.build(tiny_config(icons={"method": "maco"}, out=str(plain.out_dir.parent / "m2")))
    assert (again.out_dir / "data" / tile).read_bytes() == (maco.out_dir / "data" / tile).read_bytes()


def test_auto_renders_each_layer_by_the_method_its_probe_chooses(tiny_config, monkeypatch):
    def tile_bytes(result):
        level = result.manifest["atlases"][0]["level_data"][0]
        return (result.out_dir / "data" / f"features-2/2-{level['tiles'][0]}.webp").read_bytes()

    root = tiny_config().out
    built = {m: pipeline.build(tiny_config(icons={"method": m}, out=f"{root}-{m}")) for m in ("fourier", "maco")}
    for tolerance, expected in ((1.0, "maco"), (-1.0, "fourier")):
        monkeypatch.setattr(pipeline, "AUTO_TOLERANCE", tolerance)
        notes = _Notes()
        auto = pipeline.build(tiny_config(icons={"method": "auto"}, out=f"{root}-auto{expected}"), notes)
        assert tile_bytes(auto) == tile_bytes(built[expected])
        assert any(f"features.2: by {expected} (probe of" in line for line in notes.lines)


def _strict_json(text):
    def refuse(name):
        raise ValueError(f"{name} in published JSON")

    return json.loads(text, parse_constant=refuse)


def test_a_readme_in_the_output_folder_survives(tiny_config):
    cfg = tiny_config()
    out = cfg.path(cfg.out)
    (out / ".git").mkdir(parents=True)
    (out / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (out / "README.md").write_text("# my atlas\n")
    pipeline.build(cfg)
    pipeline.build(tiny_config(seed=1))
    assert (out / "README.md").read_text() == "# my atlas\n"
    assert (out / ".git" / "HEAD").read_text() == "ref: refs/heads/main\n"
    assert (out / "index.html").is_file()


def test_damaged_cache_files_are_recomputed_and_named(tiny_config):
    cfg = tiny_config()
    first = _tree(pipeline.build(cfg).out_dir)
    cache = cfg.path(cfg.cache)
    rng = np.random.default_rng(0)
    damaged = []
    # The second layer's activations: recomputed alone, they must still come out as when both layers were.
    for stage, name, how in [("images", "samples.json", "truncate"), ("activations", "activations.npy", "truncate"),
                             ("layout", "layout.npy", "random"), ("grid", "directions.npy", "random")]:
        path = next(p for p in (cache / stage).glob(f"*/{name}")
                    if json.loads((p.parent / "meta.json").read_text()).get("layer", "features.4") == "features.4")
        data = path.read_bytes()
        path.write_bytes(data[:len(data) // 2] if how == "truncate" else rng.bytes(len(data)))
        damaged.append(f"cache: {stage}/{path.parent.name}/{name} is damaged; recomputing")
    batch = sorted((cache / "icons" / "features.2").glob("*.npz"))[0]
    batch.write_bytes(batch.read_bytes()[:100])
    notes = _Notes()
    second = _tree(pipeline.build(cfg, notes).out_dir)
    assert set(damaged) <= set(notes.lines)
    assert f"cache: icons/features.2/{batch.name} is damaged; rendering it again" in notes.lines
    assert second == first
    third = _Notes()
    pipeline.build(cfg, third)
    assert not [line for line in third.lines if "damaged" in line]


def test_a_full_cache_disk_is_one_line(tiny_config, monkeypatch):
    cfg = tiny_config()

    def full(fd, offset, length):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", full)
    with pytest.raises(AtlasError, match=r"activations.*free space"):
        pipeline.build(cfg)
    assert not cfg.path(cfg.out).exists()


def test_unwritable_output_or_cache_fails_before_any_work(tiny_config, tmp_path, monkeypatch):
    import subprocess

    import generator.models

    monkeypatch.setattr(pipeline, "stage_images", lambda *a, **k: pytest.fail("work started"))
    monkeypatch.setattr(generator.models, "load_model", lambda *a, **k: pytest.fail("work started"))
    (tmp_path / "a-file").write_text("not a folder")
    with pytest.raises(AtlasError, match="a-file, a file, not a folder"):  # caught with the config's problems
        pipeline.build(tiny_config(out=str(tmp_path / "a-file" / "site")))
    locked = tmp_path / "locked"  # root writes through file modes, so a read-only disk it is
    locked.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(locked)], capture_output=True).returncode:
        pytest.skip("needs permission to mount a tmpfs")
    try:
        with pytest.raises(AtlasError, match="cannot write in .*--out"):
            pipeline.build(tiny_config(out=str(locked / "site")))
        with pytest.raises(AtlasError, match="cannot write in .*--cache"):
            pipeline.build(tiny_config(cache=str(locked / "cache")))
    finally:
        subprocess.run(["umount", "--lazy", str(locked)])


def test_the_published_site_names_no_path_of_the_build_machine(tiny_config, tmp_path, image_dir):
    result = pipeline.build(tiny_config())
    build = _strict_json((result.out_dir / "data" / "build.json").read_text())
    assert build["config"]["images"]["dir"] == image_dir.name
    assert build["config"]["model"]["name"] == "tiny_model.py:tiny"
    assert "out" not in build["config"] and "cache" not in build["config"]
    for name, data in _tree(result.out_dir).items():
        for path in (str(tmp_path), str(image_dir), str(TESTS)):
            assert path.encode() not in data, (name, path)


HUGE_MODEL = '''
import torch
from torch import nn

INPUT_SIZE = 48
MEAN = (0.5, 0.5, 0.5)
STD = (0.25, 0.25, 0.25)
LAYERS = ("features.1",)
CLASS_NAMES = ["a", "b", "c"]


def huge():
    torch.manual_seed(7)
    net = nn.Sequential()
    net.features = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(),
                                 nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.ReLU())
    with torch.no_grad():
        net.features[0].weight *= 1e6  # activations far past float16's largest value, 65504
        net.features[0].bias *= 1e6
    net.pool = nn.AdaptiveAvgPool2d(1)
    net.flatten = nn.Flatten()
    net.head = nn.Linear(8, 3)
    return net.eval()
'''


def test_activations_past_float16_range_stay_finite(tiny_config, tmp_path):
    (tmp_path / "huge.py").write_text(HUGE_MODEL)
    cfg = tiny_config(model={"name": f"{tmp_path / 'huge.py'}:huge"}, collect={"layers": ["features.1"]})
    result = pipeline.build(cfg)
    folder = next(cfg.path(cfg.cache).glob("activations/*"))
    vectors = np.load(folder / "activations.npy")
    assert vectors.dtype == np.float32 and np.isfinite(vectors).all() and np.abs(vectors).max() > 65504
    assert json.loads((folder / "meta.json").read_text())["activations_dtype"] == "float32"
    for level in result.manifest["atlases"][0]["level_data"]:
        cells = _strict_json((result.out_dir / "data" / level["cells_json"]).read_text())["cells"]
        assert cells and all(np.isfinite(c["fidelity"]) for c in cells)
    _strict_json((result.out_dir / "data" / "manifest.json").read_text())


def test_each_cell_s_examples_name_their_images_inside_the_folder_and_a_class(tiny_config, image_dir):
    from generator.images import find_images

    result = pipeline.build(tiny_config(grid={"levels": [2, 8]}))  # 8 x 8: enough cells for several regions
    data = result.out_dir / "data"
    inside = {p.relative_to(image_dir).as_posix() for p in find_images(image_dir)}
    for atlas in result.manifest["atlases"]:
        assert atlas["examples"] == {"per_cell": 8, "group": 4, "px": 64}
        for level in atlas["level_data"]:
            counts = {(c["x"], c["y"]): c["count"] for c in _cells(result.out_dir, level)}
            seen = {}
            for script in (data / atlas["id"]).glob(f"examples-{level['size']}-*.js"):
                payload = _strict_json(script.read_text().splitlines()[-1].split(" = ", 1)[1].rstrip(";"))
                assert set(payload["names"]) <= inside
                sprite = np.asarray(Image.open(script.with_suffix(".webp")))
                assert sprite.shape == (64 * len(payload["cells"]), 64 * 8, 3)
                for x, y, shown in payload["cells"]:
                    seen[x, y] = shown
                    assert all(0 <= c < 6 and 0 <= p <= 100 for _, c, p in shown)
            assert {k: len(v) for k, v in seen.items()} == {k: min(8, n) for k, n in counts.items()}
        # Region names: the tiny model has no WordNet ids, so its regions are named by its own classes.
        named = _strict_json((data / atlas["names"]).read_text().splitlines()[-1].split(" = ", 1)[1].rstrip(";"))
        classes = set(result.manifest["classes"])
        assert set(named) == {"2", "8"} and named["8"]
        for entries in named.values():
            for x, y, count, name in entries:
                assert set(name.split(" / ")) <= classes and count > 0 and 0 < x < 8 and 0 < y < 8

