"""Everything that decides an icon, besides its direction and its start, as one frozen value.

The cache key of a batch of icons is this value hashed whole (with the model, layer,
directions and starts), so a new setting changes the key by being a field here, not by
being remembered at each call site. Defaults are the config's (options.py).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from ..options import BY_KEY


def _default(key: str):
    return BY_KEY[key].default


@dataclass(frozen=True)
class IconSpec:
    size_px: int = _default("icons.size_px")
    steps: int = _default("icons.steps")
    tries: int = _default("icons.tries")
    learning_rate: float = _default("icons.learning_rate")
    cossim_power: float = _default("icons.cossim_power")
    batch_size: int = _default("icons.batch_size")  # 0: from the device's memory, decided before any key
    precision: str = _default("icons.precision")  # while optimizing; "auto" is decided before any key
    param: str = "fourier"  # how the image is represented (param.PARAMS); the config's "auto" is decided per layer
    objective: str = "direction"  # what is maximized (objectives.OBJECTIVES)
    transforms: str = "lucid"  # what makes it robust (transform.TRANSFORMS)
    mask: bool = _default("icons.mask")  # also the importance mask (render.importance_mask)
    # Icons started from their parent cell's icon reach the fidelity of a cold start in
    # about three quarters of the steps (BENCHMARKS.md), so they run that many.
    warm_fraction: float = 0.75

    @classmethod
    def from_config(cls, icons) -> "IconSpec":
        """The spec of a config's `icons` section; precision and batch size may still be "auto" and 0, and a
        method of "auto" is Fourier until the pipeline has chosen for the layer (pipeline.choose_method)."""
        return cls(size_px=icons.size_px, steps=icons.steps, tries=icons.tries, learning_rate=icons.learning_rate,
                   cossim_power=icons.cossim_power, batch_size=icons.batch_size, precision=icons.precision,
                   param="fourier" if icons.method == "auto" else icons.method, mask=icons.mask)

    def warm_steps(self) -> int:
        return max(1, round(self.steps * self.warm_fraction))

    def with_(self, **changes) -> "IconSpec":
        return replace(self, **changes)

    def key_parts(self) -> dict:
        """The spec as the cache key reads it: every field, once decided."""
        if self.precision == "auto" or not self.batch_size:
            raise ValueError("precision and batch size are decided before an icon's key is made")
        parts = asdict(self)
        if not self.mask:
            del parts["mask"]  # icons without a mask keep the keys they had before masks existed
        return parts
