"""Images as parameters: a scaled Fourier spectrum in decorrelated colour, through a sigmoid.

Optimizing the spectrum with each frequency scaled by 1/f makes the steps of gradient
ascent roughly whiten the image's natural 1/f statistics, so low frequencies move as
readily as high ones and the result is not high-frequency noise (Olah et al. 2017).
"""

from __future__ import annotations

import math

import torch

# Square root of the colour correlation of ImageNet images (Lucid's `color_correlation_svd_sqrt`).
_COLOR_SQRT = torch.tensor([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]])
_COLOR_SQRT_NORMED = _COLOR_SQRT / _COLOR_SQRT.norm(dim=0).max()


def frequency_scale(size: int, decay_power: float = 1.0) -> torch.Tensor:
    """(size, size // 2 + 1) weights 1 / f, capped at the lowest frequency, times sqrt(pixels)."""
    fy = torch.fft.fftfreq(size)[:, None]
    fx = torch.fft.rfftfreq(size)[None, :]
    freqs = torch.sqrt(fx * fx + fy * fy)
    return math.sqrt(size * size) / torch.clamp(freqs, min=1.0 / size) ** decay_power


class FourierImage(torch.nn.Module):
    """A batch of `count` RGB images of `size` px, parameterized by their spectra."""

    def __init__(self, count: int, size: int, generator: torch.Generator, init_std: float = 0.01):
        super().__init__()
        self.size = size
        shape = (count, 3, size, size // 2 + 1, 2)
        self.spectrum = torch.nn.Parameter(torch.randn(shape, generator=generator) * init_std)
        # The quarter folded into the scale is exact: a power of two, through a linear transform.
        self.register_buffer("scale", frequency_scale(size) / 4.0)
        self.register_buffer("color", _COLOR_SQRT_NORMED.clone())
        # sigmoid(z) = (1 + tanh(z / 2)) / 2: the halving rides in the colour matrix.
        self.register_buffer("color_half", _COLOR_SQRT_NORMED / 2)

    @torch.no_grad()
    def start_from(self, rows: torch.Tensor, images: torch.Tensor) -> None:
        """Set the images at `rows` to `images` (K, 3, S, S) in [0, 1], by running the parameterization backwards."""
        logits = torch.logit(images.float().clamp(1 / 512, 1 - 1 / 512))
        spatial = torch.einsum("ndhw,cd->nchw", logits, torch.linalg.inv(self.color))
        spectrum = torch.fft.rfft2(spatial) / self.scale
        self.spectrum[rows] = torch.view_as_real(spectrum).to(self.spectrum.dtype)

    def _colour(self, matrix: torch.Tensor) -> torch.Tensor:
        spectrum = torch.view_as_complex(self.spectrum) * self.scale
        image = torch.fft.irfft2(spectrum, s=(self.size, self.size))
        # Each pixel's colour times the matrix, as one batched product over flat pixels (einsum copies).
        n, c, h, w = image.shape
        return torch.matmul(matrix, image.reshape(n, c, h * w)).view(n, c, h, w)

    def forward(self) -> torch.Tensor:
        """(count, 3, size, size) in [0, 1]."""
        return torch.sigmoid(self._colour(self.color))

    def signed(self) -> torch.Tensor:
        """The same images mapped to (-1, 1), 2 * forward() - 1, in one op fewer: what the renderer resamples,
        so that the zeros a resample reads outside an image are mid-grey."""
        return torch.tanh(self._colour(self.color_half))
