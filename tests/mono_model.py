"""A tiny seeded 1-channel CNN, a spectrogram classifier's shape, loadable as `tests/mono_model.py:mono`.

It sets no CHANNELS: atlas reads the count from its first convolution.
"""

import torch
from torch import nn

INPUT_SIZE = 48
LAYERS = ("features.2", "features.4")
CLASS_NAMES = ["speech", "birdsong", "engine", "rain"]


def mono() -> nn.Module:
    state = torch.random.get_rng_state()
    torch.manual_seed(4321)
    net = nn.Sequential()
    net.features = nn.Sequential(
        nn.Conv2d(1, 8, 3, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(16, 24, 3, stride=2, padding=1), nn.ReLU(),
    )
    net.pool = nn.AdaptiveAvgPool2d(1)
    net.flatten = nn.Flatten()
    net.head = nn.Linear(24, len(CLASS_NAMES))
    torch.random.set_rng_state(state)
    return net.eval()
