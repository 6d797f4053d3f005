"""Feature visualization by inversion, in Lucid's four parts.

param       how the image is represented (Fourier basis, decorrelated colour)
transform   what makes the result robust (pad, jitter, scale, rotate; one fused resample)
objectives  what is maximized (dot(a, v) * cossim(a, v) ** p at the centre)
render      the optimization loop, batched across cells, and the fidelity check

and what makes a step fast without changing it: network (the net cut at the layer,
channels-last, in a chosen precision), fold (batch norms into convolutions), padding
(TensorFlow's "SAME" padding in one pass), fuse (convolutions as oneDNN kernels, clipping
activations inside them), input_grad (a convolution's input gradient with forward
kernels), tape (the cut network as one autograd node), memory (batch size, malloc).
"""

from .render import RenderedIcons, RenderSettings, fidelity, render_icons

__all__ = ["RenderedIcons", "RenderSettings", "fidelity", "render_icons"]
