"""Feature visualization by inversion: the method, in Lucid's four parts and a loop that receives them.

param       how the image is represented (ImageParam; a Fourier basis in decorrelated colour)
transform   what makes the result robust (pad, jitter, scale, rotate as one resample)
objectives  what is maximized, and which part of the layer it reads (Objective)
render      the loop (optimize), the batched, cached driver (render_icons) and the fidelity check
spec        everything that decides an icon, as one frozen value hashed into the cache key (IconSpec)
worker      what an engine runs for render_icons

How fast a step runs, without changing what it computes, is the engine's: speedups/.
"""

from .render import RenderedIcons, fidelity, optimize, render_icons
from .spec import IconSpec

__all__ = ["IconSpec", "RenderedIcons", "fidelity", "optimize", "render_icons"]
