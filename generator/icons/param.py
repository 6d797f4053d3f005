"""Images as parameters: a scaled Fourier spectrum in decorrelated colour, through a sigmoid.

A model with other than 3 input channels (a spectrogram's 1) has no colour to decorrelate:
its images take `colour_basis`'s identity instead, and are otherwise made the same way.

What the render loop asks of a parameterization is `ImageParam`; a new one (MACO, a
single-channel image) subclasses it and joins `PARAMS`, and the loop is unchanged.

Optimizing the spectrum with each frequency scaled by 1/f makes the steps of gradient
ascent roughly whiten the image's natural 1/f statistics, so low frequencies move as
readily as high ones and the result is not high-frequency noise (Olah et al. 2017).
"""

from __future__ import annotations

import math
from typing import Callable

import torch

# Square root of the colour correlation of ImageNet images (Lucid's `color_correlation_svd_sqrt`).
_COLOR_SQRT = torch.tensor([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]])
_COLOR_SQRT_NORMED = _COLOR_SQRT / _COLOR_SQRT.norm(dim=0).max()


def colour_basis(channels: int) -> torch.Tensor:
    """(C, C): what takes the optimized channels to the image's: ImageNet's colour correlation for RGB,
    the identity for any other count of channels (their correlation is unknown)."""
    return _COLOR_SQRT_NORMED.clone() if channels == 3 else torch.eye(channels)


def frequency_scale(size: int, decay_power: float = 1.0) -> torch.Tensor:
    """(size, size // 2 + 1) weights 1 / f, capped at the lowest frequency, times sqrt(pixels)."""
    fy = torch.fft.fftfreq(size)[:, None]
    fx = torch.fft.rfftfreq(size)[None, :]
    freqs = torch.sqrt(fx * fx + fy * fy)
    return math.sqrt(size * size) / torch.clamp(freqs, min=1.0 / size) ** decay_power


class ImageParam(torch.nn.Module):
    """A batch of images whose parameters are this module's; what render.optimize optimizes.

    forward() gives the images (N, C, S, S) in [0, 1]; signed() the same mapped to (-1, 1),
    which is what the loop resamples (outside an image then reads mid-grey); a subclass
    may compute it more cheaply. start_from() sets some images to given ones, for warm
    starts; a parameterization that cannot says so by `can_start = False`.
    """

    can_start = True

    def forward(self) -> torch.Tensor:
        raise NotImplementedError

    def signed(self) -> torch.Tensor:
        return self() * 2 - 1

    def start_from(self, rows: torch.Tensor, images: torch.Tensor) -> None:
        raise NotImplementedError(f"{type(self).__name__} cannot start from given images")


class FourierImage(ImageParam):
    """A batch of `count` images of `size` px with `channels` channels, parameterized by their spectra."""

    def __init__(self, count: int, size: int, generator: torch.Generator, init_std: float = 0.01, channels: int = 3):
        super().__init__()
        self.size = size
        shape = (count, channels, size, size // 2 + 1, 2)
        self.spectrum = torch.nn.Parameter(torch.randn(shape, generator=generator) * init_std)
        # The quarter folded into the scale is exact: a power of two, through a linear transform.
        self.register_buffer("scale", frequency_scale(size) / 4.0)
        self.register_buffer("color", colour_basis(channels))
        # sigmoid(z) = (1 + tanh(z / 2)) / 2: the halving rides in the colour matrix.
        self.register_buffer("color_half", colour_basis(channels) / 2)

    @torch.no_grad()
    def start_from(self, rows: torch.Tensor, images: torch.Tensor) -> None:
        """Set the images at `rows` to `images` (K, C, S, S) in [0, 1], by running the parameterization backwards."""
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
        """(count, C, size, size) in [0, 1]."""
        return torch.sigmoid(self._colour(self.color))

    def signed(self) -> torch.Tensor:
        """The same images mapped to (-1, 1), 2 * forward() - 1, in one op fewer: what the renderer resamples,
        so that the zeros a resample reads outside an image are mid-grey."""
        return torch.tanh(self._colour(self.color_half))


def _standardized(x: torch.Tensor) -> torch.Tensor:
    """Each image (N, ...) to mean 0 and standard deviation 1."""
    flat = x.flatten(1)
    return ((flat - flat.mean(1, keepdim=True)) / (flat.std(1, keepdim=True) + 1e-4)).view_as(x)


def natural_amplitude(images: torch.Tensor, size: int) -> torch.Tensor:
    """(C, size, size // 2 + 1): the mean amplitude spectrum of `images` (N, C, H, W) in [0, 1], in decorrelated colour.

    MACO's magnitude, from the build's own images, so nothing is downloaded: each image is
    resized to the icon's size, taken back through the sigmoid and the colour
    correlation (as FourierImage.start_from does), and its spectrum's amplitude averaged.
    """
    small = torch.nn.functional.interpolate(images.float(), size=(size, size), mode="bilinear", antialias=True,
                                            align_corners=False)
    logits = torch.logit(small.clamp(1 / 512, 1 - 1 / 512))
    spatial = torch.einsum("ndhw,cd->nchw", logits, torch.linalg.inv(colour_basis(images.shape[1])))
    mean = torch.fft.rfft2(spatial - spatial.mean((2, 3), keepdim=True)).abs().mean(0)
    # Averaged over orientations, ring by ring of frequency: a plain mean keeps peaks (JPEG's 8-px blocks,
    # the crops' straight edges) that MACO turns into a grid across every icon.
    fy, fx = torch.fft.fftfreq(size)[:, None], torch.fft.rfftfreq(size)[None, :]
    ring = (torch.sqrt(fx * fx + fy * fy) * size).round().long().flatten()
    count = torch.zeros(int(ring.max()) + 1).index_add_(0, ring, torch.ones(ring.numel()))
    rings = torch.stack([torch.zeros(len(count)).index_add_(0, ring, c.flatten()) for c in mean]) / count
    return rings[:, ring].view_as(mean)


# The standardized image's spread before the colour and the sigmoid. At 1, icons read grey, with half the
# contrast of Fourier ones after the same steps; at 2, alike (BENCHMARKS.md's contact sheets).
MACO_CONTRAST = 2.0


class MacoImage(ImageParam):
    """A batch of images whose Fourier amplitude is fixed to natural images' and whose phase is optimized.

    MACO (Fel et al., NeurIPS 2023): with the magnitude of natural images, an image cannot
    drift into the high-frequency patterns that deep layers reward, so only where things
    are (the phase) is free. The spatial image is standardized per image, scaled by
    MACO_CONTRAST, recorrelated in colour and put through a sigmoid. The phase is used as it is (Horama standardizes it
    too), so an image started from another's phase keeps it.
    """

    def __init__(self, count: int, size: int, generator: torch.Generator, amplitude: torch.Tensor):
        super().__init__()
        channels = amplitude.shape[0]  # the images', whose spectrum it is
        if amplitude.shape != (channels, size, size // 2 + 1):
            raise ValueError(f"an amplitude of shape {(channels, size, size // 2 + 1)} is needed, "
                             f"not {tuple(amplitude.shape)}")
        self.size = size
        self.phase = torch.nn.Parameter(torch.randn((count, channels, size, size // 2 + 1), generator=generator))
        self.register_buffer("amplitude", amplitude.float().clone())
        self.register_buffer("color", colour_basis(channels))
        self.register_buffer("color_half", colour_basis(channels) / 2)

    def _colour(self, matrix: torch.Tensor) -> torch.Tensor:
        spectrum = torch.polar(self.amplitude.expand_as(self.phase), self.phase)
        image = _standardized(torch.fft.irfft2(spectrum, s=(self.size, self.size))) * MACO_CONTRAST
        n, c, h, w = image.shape
        return torch.matmul(matrix, image.reshape(n, c, h * w)).view(n, c, h, w)

    def forward(self) -> torch.Tensor:
        return torch.sigmoid(self._colour(self.color))

    def signed(self) -> torch.Tensor:
        return torch.tanh(self._colour(self.color_half))

    @torch.no_grad()
    def start_from(self, rows: torch.Tensor, images: torch.Tensor) -> None:
        """Give the images at `rows` the phase of `images` (K, C, S, S) in [0, 1]; the amplitude stays natural."""
        logits = torch.logit(images.float().clamp(1 / 512, 1 - 1 / 512))
        spatial = torch.einsum("ndhw,cd->nchw", logits, torch.linalg.inv(self.color))
        self.phase[rows] = torch.angle(torch.fft.rfft2(spatial)).to(self.phase.dtype)


def _fourier(count: int, size: int, generator: torch.Generator, amplitude: torch.Tensor | None,
             channels: int = 3) -> ImageParam:
    return FourierImage(count, size, generator, channels=channels)


def _maco(count: int, size: int, generator: torch.Generator, amplitude: torch.Tensor | None,
          channels: int = 3) -> ImageParam:
    if amplitude is None:
        raise ValueError("MACO needs the amplitude spectrum of the build's images (natural_amplitude)")
    if amplitude.shape[0] != channels:
        raise ValueError(f"an amplitude spectrum of {amplitude.shape[0]} channels cannot make {channels}-channel images")
    return MacoImage(count, size, generator, amplitude)


# IconSpec.param -> (count, size_px, generator, amplitude or None, channels) -> the images to optimize.
PARAMS: dict[str, Callable[..., ImageParam]] = {"fourier": _fourier, "maco": _maco}
# Which parameterizations read natural images' amplitude spectrum.
NEEDS_AMPLITUDE = {"maco"}
