"""A tiny seeded CNN, loadable as `tests/tiny_model.py:tiny`, for fast tests of every stage."""

import torch
from torch import nn

INPUT_SIZE = 48
MEAN = (0.5, 0.5, 0.5)
STD = (0.25, 0.25, 0.25)
LAYERS = ("features.2", "features.4")
CLASS_NAMES = ["tabby", "<img src=x onerror=alert(1)>", "jack-o'-lantern", "goldfish", "banana", "zebra"]


def tiny() -> nn.Module:
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(1234)
    net = nn.Sequential()
    net.features = nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(16, 24, 3, stride=2, padding=1), nn.ReLU(),
    )
    net.pool = nn.AdaptiveAvgPool2d(1)
    net.flatten = nn.Flatten()
    net.head = nn.Linear(24, len(CLASS_NAMES))
    torch.random.set_rng_state(generator_state)
    return net.eval()


class Residual(nn.Module):
    """A block whose skip connection crosses its inner layer `body.1`."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.body = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1))
        self.head = nn.Linear(8, len(CLASS_NAMES))

    def forward(self, x):
        h = self.stem(x)
        h = h + self.body(h)
        return self.head(h.mean((2, 3)))


def residual() -> nn.Module:
    torch.manual_seed(99)
    return Residual().eval()


class _Swish(torch.autograd.Function):
    """x * sigmoid(x) in the old style of custom functions (no setup_context): forward-mode AD takes it,
    torch.func's transforms do not."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        ctx.save_for_forward(x)
        return x * torch.sigmoid(x)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        s = torch.sigmoid(x)
        return grad * (s + x * s * (1 - s))

    @staticmethod
    def jvp(ctx, tangent):
        (x,) = ctx.saved_tensors
        s = torch.sigmoid(x)
        return tangent * (s + x * s * (1 - s))


class OldFunction(nn.Module):
    """A network with an old-style autograd.Function after its layer `features.2`."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(),
                                      nn.Conv2d(8, 16, 3, stride=2, padding=1))
        self.head = nn.Linear(16, len(CLASS_NAMES))

    def forward(self, x):
        return self.head(_Swish.apply(self.features(x)).mean((2, 3)))


def old_function() -> nn.Module:
    torch.manual_seed(7)
    return OldFunction().eval()
