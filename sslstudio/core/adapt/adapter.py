"""Bottleneck adapters (Houlsby et al. 2019): down-projection, nonlinearity, up-projection
initialised to zero, and a residual, after every attention and feed-forward sublayer of a
transformer and after every stage of a convnet. The up-projection starting at zero makes the
adapted encoder the pretrained one at step 0."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from sslstudio.core.adapt.base import register_adapter
from sslstudio.core.adapt.tuned import TunedAdapter, TunedConfig
from sslstudio.core.backbones.tuning import TuningModule, TuningSites, sites_of
from sslstudio.core.config import knob


class Bottleneck(TuningModule):
    def __init__(self, width: int, hidden: int, channels: bool):
        super().__init__()
        if channels:
            self.down, self.up = nn.Conv2d(width, hidden, 1), nn.Conv2d(hidden, width, 1)
        else:
            self.down, self.up = nn.Linear(width, hidden), nn.Linear(hidden, width)
        self.act = nn.GELU()
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.up(self.act(self.down(x)))


class AfterSublayer(nn.Module):
    """A sublayer, then its adapter: the sublayer's own arguments pass through."""

    def __init__(self, sublayer: nn.Module, adapter: Bottleneck):
        super().__init__()
        self.sublayer = sublayer
        self.adapter = adapter

    def forward(self, *args):
        return self.adapter(self.sublayer(*args))


@dataclass
class AdapterConfig(TunedConfig):
    reduction: int = knob(8, low=1, high=1024,
                          help="each adapter's bottleneck is the layer's width divided by this")


@register_adapter("adapter")
class BottleneckAdapters(TunedAdapter):
    """Bottleneck adapters after each sublayer (transformers) or stage (convnets); base frozen."""

    config_cls = AdapterConfig

    @classmethod
    def unfit_reason(cls, sites: TuningSites) -> str | None:
        return None if sites.sublayers else "it names no sublayers or stages to put adapters after"

    @classmethod
    def attach(cls, encoder: nn.Module, config: AdapterConfig) -> None:
        sites = sites_of(encoder)
        for site in sites.sublayers:
            hidden = max(1, site.width // config.reduction)
            site.replace(AfterSublayer(site.module, Bottleneck(site.width, hidden, sites.channels)))
