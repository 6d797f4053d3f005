"""The engine under the icon renderer: what makes a step fast without changing the method.

icons/ holds the method (how an image is represented, transformed and scored, and the
loop); this package builds the forward pass it optimizes through, behind one options
object and one function:

    forward = build_forward(model, layer, device, SpeedOptions(precision="bfloat16"), reads="centre")
    forward.signed(images)  # (N, 3, H, W) in (-1, 1) -> the layer's activations

network     the net cut at the layer, channels-last, in a chosen precision (SpeedOptions, build_forward)
fold        batch norms folded into the convolutions before them
padding     TensorFlow's "SAME" padding in one pass
fuse        convolutions and their clips as oneDNN kernels both ways (CPU)
input_grad  a convolution's input gradient with forward kernels
tape        the cut network as one autograd node; only the layer's centre where the objective reads no more
memory      how many icons a batch holds, and malloc kept from returning freed memory
surgery     replacing modules by name, and checking the layer's output is unchanged

Each part is checked against the network as loaded (or exact by construction) and
dropped where it does not hold, so an unfamiliar model renders, only slower.
"""

from .memory import auto_batch_size, bytes_per_icon, keep_freed_memory, total_memory
from .network import READS, LayerFn, SpeedOptions, build_forward, pick_precision

__all__ = ["READS", "LayerFn", "SpeedOptions", "auto_batch_size", "build_forward", "bytes_per_icon",
           "keep_freed_memory", "pick_precision", "total_memory"]
