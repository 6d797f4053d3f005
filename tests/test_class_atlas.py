"""Class activation atlases and two classes compared: which activations they take, and the comparison's axis."""

import numpy as np
import pytest

from generator import class_atlas
from generator.class_atlas import ClassView
from generator.config import load_config
from generator.errors import AtlasError


def _attributions():
    # rows 0-2 won by class 0, rows 3-5 by class 1, row 6 by class 2 with class 0 second
    return np.array([[3.0, 0.1, 0.0], [1.0, 0.5, 0.0], [2.0, 0.0, 0.1],
                     [0.2, 1.0, 0.0], [-0.5, 2.0, 0.0], [0.0, 3.0, 1.0],
                     [0.9, 0.0, 4.0], [-1.0, -1.0, -0.5]], np.float16)


def test_a_class_takes_the_activations_it_wins_most_attributed_first_then_the_most_attributed():
    a = _attributions()
    won = class_atlas.winners(a)
    assert won.tolist() == [0, 0, 0, 1, 1, 1, 2, 2]
    assert class_atlas.class_rows(a, won, 0, 2).tolist() == [0, 2]  # its wins, strongest first: 3.0, 2.0
    assert class_atlas.class_rows(a, won, 0, 4).tolist() == [0, 1, 2, 6]  # then the strongest it did not win
    # never an activation attributed against it, however many are asked for
    assert class_atlas.class_rows(a, won, 0, 100).tolist() == [0, 1, 2, 3, 6]
    assert class_atlas.class_rows(a, won, 1, 100).tolist() == [0, 1, 3, 4, 5]


def test_a_pair_takes_half_the_rows_for_each_class():
    a = _attributions()
    won = class_atlas.winners(a)
    assert class_atlas.pair_rows(a, won, 0, 1, 4).tolist() == [0, 2, 4, 5]


def test_winners_read_a_large_memmap_in_chunks(tmp_path, monkeypatch):
    monkeypatch.setattr(class_atlas, "READ_ROWS", 3)
    a = np.random.default_rng(0).normal(size=(10, 5)).astype(np.float16)
    np.save(tmp_path / "a.npy", a)
    assert np.array_equal(class_atlas.winners(np.load(tmp_path / "a.npy", mmap_mode="r")), a.astype(np.float32).argmax(1))


def test_the_difference_axis_points_at_the_first_class_and_clips_at_the_99th_percentile():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(1000, 3)).astype(np.float32)
    a[0, 0], a[0, 1] = 500.0, 0.0  # one extreme activation must not squeeze the rest into the middle
    x = class_atlas.difference_axis(a, 0, 1)
    diff = a[:, 0] - a[:, 1]
    clip = np.percentile(np.abs(diff), 99)
    assert x[0] == 1.0 and x.min() >= 0.0
    assert np.allclose(x[1:], np.clip(0.5 + 0.5 * diff[1:] / clip, 0, 1), atol=1e-6)
    assert (x[diff > 0] > 0.5).all() and (x[diff < 0] < 0.5).all()
    assert (np.abs(x - 0.5) > 0.25).mean() > 0.15  # spread over the axis, not piled at its centre
    assert np.array_equal(class_atlas.difference_axis(np.ones((5, 3), np.float32), 0, 1), np.full(5, 0.5, np.float32))


def test_a_comparison_layout_is_the_difference_across_and_an_embedding_down_and_seeded():
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(60, 8)).astype(np.float32)
    attributions = rng.normal(size=(60, 4)).astype(np.float32)
    xy = class_atlas.compare_layout(vectors, attributions, 2, 0, "tsne", 15, 0.1, seed=3, clip_percentile=1.0)
    assert xy.shape == (60, 2) and xy.dtype == np.float32
    assert np.array_equal(xy[:, 0], class_atlas.difference_axis(attributions, 2, 0))
    assert 0.0 <= xy[:, 1].min() and xy[:, 1].max() <= 1.0 and xy[:, 1].std() > 0.1
    assert np.array_equal(xy, class_atlas.compare_layout(vectors, attributions, 2, 0, "tsne", 15, 0.1, 3, 1.0))


def test_a_selection_keeps_the_grid_levels_it_can_fill():
    assert class_atlas.levels_for((4, 8, 16), 100) == (4, 8)
    assert class_atlas.levels_for((4, 8, 16), 5) == (4,)
    assert class_atlas.row_limit(2000, 600) == 150 and class_atlas.row_limit(100, 10**6) == 100


def test_views_are_the_named_classes_or_the_leading_ones_and_a_pair_of_them():
    names = ["tabby", "fireboat", "streetcar", "<b>x</b>"]
    views = class_atlas.chosen_views(("Fireboat", "streetcar", "fireboat"), 2, (), names, [0, 3])
    assert [v.classes for v in views] == [(1,), (2,), (1, 2)]
    views = class_atlas.chosen_views((), 2, (("tabby", "streetcar"),), names, [3, 0, 1])
    assert [v.classes for v in views] == [(3,), (0,), (0, 2)]
    assert [v.classes for v in class_atlas.chosen_views((), 1, (), names, [3, 0])] == [(3,)]  # no pair of one
    assert ClassView((1, 2)).atlas_id(names) == "compare-fireboat-streetcar"
    about = ClassView((3,)).about(names, "blocks.5", 40, 7)
    assert about["kind"] == "class" and about["label"] == "<b>x</b>" and about["rows"] == 40 and about["won"] == 7
    assert about["title"] == "Class activation atlas of <b>x</b> (layer blocks.5)"
    assert ClassView((1, 2)).about(names, "b", 4, 1)["title"] == "fireboat against streetcar (layer b)"


def test_an_unknown_class_names_the_closest():
    assert class_atlas.find_class(["tabby", "white wolf"], "White_Wolf", "classes.names") == 1
    with pytest.raises(AtlasError, match=r"classes.names: the model has no class named 'firebot' \(closest: fireboat\)"):
        class_atlas.find_class(["tabby", "fireboat"], "firebot", "classes.names")


def test_class_settings_are_checked_with_the_config():
    cfg = load_config(None, {"classes": {"names": ["a", "b"], "compare": [["a", "b"]], "auto": 3}})
    assert cfg.classes.names == ("a", "b") and cfg.classes.compare == (("a", "b"),) and cfg.classes.auto == 3
    for bad, message in [({"compare": [["a"]]}, "must be pairs of two different class names"),
                         ({"compare": [["a", "A"]]}, "must be pairs of two different class names"),
                         ({"names": ["a", "A"]}, "must be class names, each once"),
                         ({"auto": 50}, "classes.auto")]:
        with pytest.raises(AtlasError, match=message):
            load_config(None, {"classes": bad})


def test_a_build_makes_the_named_class_atlases_and_comparisons_from_the_layer_s_activations(tiny_config):
    from generator import pipeline

    from .test_pipeline import _tree

    cfg = tiny_config(classes={"names": ["Zebra", "goldfish"], "compare": [["goldfish", "tabby"]]})
    result = pipeline.build(cfg)
    out, manifest = result.out_dir, result.manifest
    views = {a["id"]: a for a in manifest["class_atlases"]}
    assert list(views) == ["class-zebra", "class-goldfish", "compare-goldfish-tabby"]
    layer = manifest["atlases"][-1]
    assert all(v["layer"] == layer["layer"] == "features.4" for v in views.values())
    for view in views.values():
        assert 4 <= view["rows"] <= layer["activations"] // 4 and view["activations"] == view["rows"]
        assert view["levels"] == [lv for lv in (2, 4) if lv * lv <= view["rows"]] or view["levels"] == [2]
        assert (out / "explore" / f"{view['id']}.html").is_file()
        assert (out / "data" / view["overview"]).is_file()
    assert views["class-zebra"]["class_names"] == ["zebra"] and views["class-zebra"]["kind"] == "class"
    assert views["compare-goldfish-tabby"]["classes"] == [3, 0]
    # the activations of a class atlas are rows of its layer's, picked by class_rows
    cache = cfg.path(cfg.cache)
    layers = [np.load(f) for f in (cache / "activations").glob("*/activations.npy")]
    picked = [f for f in (cache / "classes").iterdir() if f.is_dir()]
    assert len(picked) == 3
    for folder in picked:
        rows, mine = np.load(folder / "rows.npy"), np.load(folder / "activations.npy")
        assert any(len(c) > rows.max() and np.array_equal(c[rows], mine) for c in layers)
    index = (out / "index.html").read_text()
    assert 'href="explore/compare-goldfish-tabby.html"' in index and "goldfish against tabby" in index
    compare_page = (out / "explore" / "compare-goldfish-tabby.html").read_text()
    assert "← more tabby" in compare_page and "more goldfish →" in compare_page
    # a second build reuses every stage, class atlases included
    first = _tree(out)
    assert _tree(pipeline.build(cfg).out_dir) == first


def test_an_unknown_class_or_unmapped_class_layer_fails_before_any_work(tiny_config, monkeypatch):
    from generator import pipeline

    monkeypatch.setattr(pipeline, "plan_samples", lambda *a, **k: pytest.fail("work started"))
    with pytest.raises(AtlasError, match=r"classes.compare: the model has no class named 'zebr' \(closest: zebra\)"):
        pipeline.build(tiny_config(classes={"compare": [["zebr", "tabby"]]}))
    with pytest.raises(AtlasError, match=r"classes.layer is 'features.9', which is not mapped"):
        pipeline.build(tiny_config(classes={"layer": "features.9", "auto": 1}))
