"""A small residual CNN that trains at useful speed on a laptop CPU at 32-64 px."""

from __future__ import annotations

import torch
from torch import nn

from sslstudio.core.backbones.base import Backbone, init_weights, register_backbone
from sslstudio.core.backbones.tuning import Site, TuningSites


def _conv_bn(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


def _conv_bn_1x1(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class _ResidualStage(nn.Module):
    """Downsample, then one residual 3x3 pair (ResNet's basic block, kept to one per stage)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.down = _conv_bn(cin, cout, 2)
        self.conv1 = _conv_bn(cout, cout, 1)
        self.conv2 = nn.Sequential(nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout))
        nn.init.zeros_(self.conv2[1].weight)  # each block starts as the identity
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.down(x)
        return self.relu(x + self.conv2(self.conv1(x)))


class SmallCNN(Backbone):
    def __init__(self, image_size: int, widths=(32, 64, 128, 256), expanded: int = 0):
        super().__init__()
        # At 32-64 px every pixel matters: no stride in the stem. Larger inputs are halved first.
        stem_stride = 1 if image_size <= 64 else 2
        self.stem = _conv_bn(3, widths[0], stem_stride)
        self.stages = nn.Sequential(*[_ResidualStage(a, b) for a, b in zip(widths[:-1], widths[1:])])
        # MobileNet's last layer: a 1x1 convolution widens the last stage before pooling, so the
        # pooled vector is not held to the last stage's width.
        self.expand = _conv_bn_1x1(widths[-1], expanded) if expanded else nn.Identity()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.feature_dim = self.last_width = expanded or widths[-1]
        init_weights(self)
        for stage in self.stages:
            nn.init.zeros_(stage.conv2[1].weight)

    def read_for_probe(self) -> None:
        # The last stage pooled on a 2x2 grid: at 10 labels a class +3.5 points on average over
        # the pooled vector for encoders trained 5 minutes (fashion-mnist 0.681 -> 0.710, mnist
        # 0.799 -> 0.874; bench/features_choice.py), best by mean rank on every shot count.
        self.grid = 2
        self.feature_dim = self.grid * self.grid * self.last_width

    def tuning_sites(self) -> TuningSites:
        return TuningSites(sublayers=[Site(self.stages, str(i), stage.down[0].out_channels)
                                      for i, stage in enumerate(self.stages)], channels=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.expand(self.stages(self.stem(x)))
        if not getattr(self, "grid", 0):
            return self.pool(features).flatten(1)
        return grid_pool(features, self.grid)


def grid_pool(features: torch.Tensor, cells: int) -> torch.Tensor:
    """Mean of each cell of a cells x cells grid, the cells overlapping by a row where the side
    is odd (as adaptive pooling does), flattened; written with slices so that the ONNX export
    traces it at any size."""
    height, width = int(features.shape[-2]), int(features.shape[-1])
    pooled = []
    for row in range(cells):
        top, bottom = row * height // cells, -(-(row + 1) * height // cells)
        for column in range(cells):
            left, right = column * width // cells, -(-(column + 1) * width // cells)
            pooled.append(features[..., top:bottom, left:right].mean((-2, -1)))
    return torch.cat(pooled, 1)


@register_backbone("small_cnn", "residual CNN, 4 stages 16-128 wide (0.49 M params): fastest on a CPU",
                   cpu_friendly=True)
def build_small_cnn(image_size: int) -> Backbone:
    return SmallCNN(image_size, widths=(16, 32, 64, 128))


@register_backbone("medium_cnn", "residual CNN, 4 stages 32-256 wide (1.9 M params): a CPU with time",
                   cpu_friendly=True)
def build_medium_cnn(image_size: int) -> Backbone:
    return SmallCNN(image_size, widths=(32, 64, 128, 256))


@register_backbone("small_cnn_expanded", "small_cnn whose last stage a 1x1 convolution widens to 512 "
                   "before pooling (0.55 M params): a student for a teacher's wide features",
                   cpu_friendly=True)
def build_small_cnn_expanded(image_size: int) -> Backbone:
    return SmallCNN(image_size, widths=(16, 32, 64, 128), expanded=512)
