"""Networks with wide rows, for memory checks at scale: `wide` has the article's 512 channels and
1,000 classes; `many_classes` has 16 channels and 2,000 classes, rows as wide at a sixtieth of the work."""

import torch
from torch import nn

INPUT_SIZE = 32
MEAN = (0.5, 0.5, 0.5)
STD = (0.25, 0.25, 0.25)
LAYERS = ("conv",)


class Wide(nn.Module):
    def __init__(self, channels: int, classes: int):
        super().__init__()
        self.conv = nn.Conv2d(3, channels, 10, stride=10)  # 3 x 3 positions, all taken
        self.head = nn.Linear(channels, classes)

    def forward(self, x):
        return self.head(torch.relu(self.conv(x)).mean((2, 3)))


def wide() -> nn.Module:
    torch.manual_seed(5)
    return Wide(512, 1000).eval()


def many_classes() -> nn.Module:
    torch.manual_seed(5)
    return Wide(16, 2000).eval()
