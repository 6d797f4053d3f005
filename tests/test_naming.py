"""Region names on the map: connected regions, names from the classes that stand out, WordNet's synsets."""

from __future__ import annotations

import numpy as np
import pytest

from generator import naming
from generator.grid import Level
from generator.models import imagenet_class_names, imagenet_wnids
from generator.wordnet import ancestry, imagenet_hierarchy, parse_data_noun


def _level(size, profile, count=10):
    """A level of every cell of a `size` grid, cell (x, y) scoring `profile(x, y)` over its classes."""
    cells, scores = [], []
    for y in range(size):
        for x in range(size):
            cells.append({"x": x, "y": y, "count": count, "top": []})
            scores.append(profile(x, y))
    scores = np.array(scores, np.float16)
    return Level(size, cells, np.zeros((len(cells), 4), np.float32), scores)


def _connected(cells):
    seen, todo = {cells[0]}, [cells[0]]
    while todo:
        x, y = todo.pop()
        for dx in (-1, 0, 1):
            for dy in (-1, 0, 1):
                if (x + dx, y + dy) in cells and (x + dx, y + dy) not in seen:
                    seen.add((x + dx, y + dy))
                    todo.append((x + dx, y + dy))
    return len(seen) == len(cells)


def test_regions_follow_the_attribution_and_are_each_one_patch():
    rng = np.random.default_rng(0)
    left, right = np.eye(6)[0] * 4, np.eye(6)[1] * 4
    level = _level(12, lambda x, y: (left if x < 6 else right) + rng.normal(0, 0.1, 6))
    region = naming.regions(level)
    assert len(region) == len(level.cells)
    for r in range(region.max() + 1):
        cells = {(c["x"], c["y"]) for c, g in zip(level.cells, region) if g == r}
        assert _connected(sorted(cells))
        assert len({x < 6 for x, _ in cells}) == 1  # no region crosses the border between the two profiles


def test_a_cluster_in_two_islands_is_two_regions():
    level = _level(8, lambda x, y: np.eye(3)[0] * 2 + np.eye(3)[1] * (x % 2) * 0.01)
    keep = [i for i, c in enumerate(level.cells) if c["x"] < 2 or c["x"] > 5]  # a gap of four empty columns
    level = Level(8, [level.cells[i] for i in keep], level.directions[keep], level.scores[keep])
    region = naming.regions(level)
    for r in range(region.max() + 1):
        sides = {level.cells[i]["x"] < 2 for i in np.flatnonzero(region == r)}
        assert len(sides) == 1


@pytest.fixture(scope="module")
def imagenet():
    return imagenet_class_names(), imagenet_wnids()


def test_the_hierarchy_reaches_every_imagenet_class_from_wordnets_root(imagenet):
    names, wnids = imagenet
    nodes = imagenet_hierarchy()
    for wnid, name in zip(wnids, names):
        assert nodes[wnid][0] == name
        chain = [wnid]
        while nodes[chain[-1]][1]:
            chain.append(nodes[chain[-1]][1])
        assert nodes[chain[-1]][0] == "entity" and len(chain) < 25
    golden = wnids[names.index("golden retriever")]
    assert [nodes[w][0] for w in _up(nodes, golden)][:5] == ["golden retriever", "retriever", "sporting dog",
                                                              "hunting dog", "dog"]


def _up(nodes, wnid):
    while wnid:
        yield wnid
        wnid = nodes[wnid][1]


def test_data_noun_lines_give_each_synset_its_first_hypernym():
    lines = [
        "  1 This software and database is being provided to you, the LICENSEE, by  ",
        "00001740 03 n 01 entity 0 003 ~ 00001930 n 0000 ~ 00002137 n 0000 ~ 04431553 n 0000 | that which exists",
        "02084071 05 n 03 dog 0 domestic_dog 0 Canis_familiaris 0 003 @ 02083346 n 0000 @ 01317541 n 0000 "
        "#m 02083863 n 0000 | a member of the genus Canis",
        "02083346 05 n 01 canine 0 002 @ 00001740 n 0000 ~ 02084071 n 0000 | any of various members",
        "09000000 05 n 01 New_York 0 001 @i 00001740 n 0000 | a city",
    ]
    synsets = parse_data_noun(lines)
    assert synsets["n02084071"] == ("dog", "n02083346")  # the first of its two hypernyms
    assert synsets["n00001740"] == ("entity", None)
    assert synsets["n09000000"] == ("New York", "n00001740")  # an instance's hypernym counts too
    assert ancestry(synsets, ["n02084071"]) == {"n02084071": ["dog", "n02083346"],
                                                 "n02083346": ["canine", "n00001740"],
                                                 "n00001740": ["entity", None]}


def test_a_synset_names_a_region_where_many_of_its_classes_lean_its_way(imagenet):
    names, wnids = imagenet
    namer = naming.Namer(names, wnids)
    nodes = imagenet_hierarchy()
    dogs = [k for k, w in enumerate(wnids) if "n02084071" in set(_up(nodes, w))]
    z = np.zeros(1000)
    z[dogs] = 0.5
    assert namer(z) == "dog"
    z[names.index("tench")] = 8.0  # one class standing far above the rest names the region itself
    assert namer(z) == "tench"
    assert namer(np.zeros(1000)) is None  # nothing stands out: no name
    assert namer(np.full(1000, 0.02)) is None  # "entity" holds everything, and names nothing


def test_without_a_hierarchy_the_leading_classes_name_a_region():
    namer = naming.Namer(["cat", "dog", "boat", "car"])
    assert namer(np.array([0.1, 3.0, 0.0, -1.0])) == "dog"
    assert namer(np.array([2.9, 3.0, 0.0, -1.0])) == "dog / cat"
    assert namer(np.array([0.1, 0.2, 0.0, -1.0])) is None


def test_every_level_names_its_regions_inside_them_largest_first():
    classes = ["cat", "dog", "boat", "car"]
    rng = np.random.default_rng(1)

    def profile(x, y):
        lean = 1 if x < 8 and y < 8 else 2 if x >= 8 else 3
        return np.eye(4)[lean] * 3 + rng.normal(0, 0.05, 4)

    level = _level(16, profile)
    level.cells[0]["count"] = 500  # the top-left region holds the most activations
    names = naming.name_levels([level], naming.Namer(classes))["16"]
    assert [n[3] for n in names][0] == "dog"
    assert {n[3] for n in names} == {"dog", "boat", "car"}
    assert [n[2] for n in names] == sorted((n[2] for n in names), reverse=True)
    for x, y, _, name in names:  # each anchor is a cell centre inside its region
        assert x % 1 == 0.5 and y % 1 == 0.5
        expected = "boat" if x >= 8 else "dog" if y < 8 else "car"
        assert name == expected
