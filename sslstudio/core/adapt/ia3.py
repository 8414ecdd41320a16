"""(IA)^3 (Liu et al. 2022): learned vectors that rescale the keys and values of every attention
layer and the feed-forward activation of every block, starting at one. A rescaled output of a
Linear layer is that layer with its rows rescaled, so the trained vectors are merged into the
key, value and feed-forward weights on save and the exported graph is the base model's."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from sslstudio.core.adapt.base import register_adapter
from sslstudio.core.adapt.tuned import TunedAdapter, TunedConfig
from sslstudio.core.backbones.tuning import HeadAttention, TuningModule, TuningSites, sites_of
from sslstudio.core.config import knob


class KeyValueScale(TuningModule):
    def __init__(self, heads: int, head_width: int):
        super().__init__()
        self.key = nn.Parameter(torch.ones(heads, 1, head_width))
        self.value = nn.Parameter(torch.ones(heads, 1, head_width))

    def forward(self, k: torch.Tensor, v: torch.Tensor):
        return k * self.key.to(k.dtype), v * self.value.to(v.dtype)


class ScaledActivation(TuningModule):
    def __init__(self, activation: nn.Module, width: int):
        super().__init__()
        self.activation = activation
        self.scale = nn.Parameter(torch.ones(width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(x) * self.scale.to(x.dtype)


@dataclass
class IA3Config(TunedConfig):
    lr: float = knob(1e-2, low=1e-7, high=1.0,
                     help="learning rate of the scaling vectors and the head (a few thousand "
                          "weights in all: higher than the other methods')")


def _scale_rows(layer: nn.Linear, rows: slice, scale: torch.Tensor) -> None:
    layer.weight[rows] *= scale[:, None].to(layer.weight.dtype)
    if layer.bias is not None:
        layer.bias[rows] *= scale.to(layer.bias.dtype)


@register_adapter("ia3")
class IA3(TunedAdapter):
    """(IA)^3: scaling vectors on keys, values and feed-forward activations; merged on save."""

    config_cls = IA3Config

    @classmethod
    def unfit_reason(cls, sites: TuningSites) -> str | None:
        if not sites.attentions or not sites.activations:
            return "it has no attention layers with feed-forward blocks to rescale"
        return None

    @classmethod
    def attach(cls, encoder: nn.Module, config) -> None:
        sites = sites_of(encoder)
        for attention in sites.attentions:
            attention.key_value_scale = KeyValueScale(attention.heads, attention.width // attention.heads)
        for site in sites.activations:
            site.replace(ScaledActivation(site.module, site.width))

    @classmethod
    @torch.no_grad()
    def merge(cls, encoder: nn.Module) -> nn.Module:
        sites = sites_of(encoder)
        for attention in sites.attentions:
            scale = attention.key_value_scale
            if isinstance(attention, HeadAttention) and isinstance(scale, KeyValueScale):
                (key_layer, key_rows), (value_layer, value_rows) = attention.key_value_rows()
                _scale_rows(key_layer, key_rows, scale.key.reshape(-1))
                _scale_rows(value_layer, value_rows, scale.value.reshape(-1))
                attention.key_value_scale = None
        for site in sites.activations:
            module = site.module
            if isinstance(module, ScaledActivation) and site.reader is not None:
                # The reader takes the activation in as its columns.
                site.reader.weight *= module.scale[None, :].to(site.reader.weight.dtype)
                site.replace(module.activation)
        return encoder
