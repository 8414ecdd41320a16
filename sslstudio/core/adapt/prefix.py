"""Prefix tuning (Li and Liang 2021): learned key and value vectors put before the sequence's own
in every attention layer, trained through a small MLP (reparameterised, which the authors found
steadier than training the prefixes directly) and kept as plain vectors once trained. Attention
over the prefixes is added to the sequence's own through a gate that starts at zero (see
`gated_extra`), so the encoder starts exactly as pretrained."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from sslstudio.core.adapt.base import register_adapter
from sslstudio.core.adapt.tuned import TunedAdapter, TunedConfig
from sslstudio.core.backbones.tuning import TuningModule, TuningSites, gated_extra, sites_of
from sslstudio.core.config import knob


class PrefixMemory(TuningModule):
    """Prefixes of one attention layer as they train: embeddings through an MLP."""

    def __init__(self, heads: int, width: int, count: int, hidden: int):
        super().__init__()
        self.heads, self.width, self.count = heads, width, count
        self.embedding = nn.Parameter(torch.randn(count, width) * 0.02)
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.Tanh(), nn.Linear(hidden, 2 * width))
        self.gate = nn.Parameter(torch.zeros(()))

    def keys_values(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(heads, count, head width) each."""
        both = self.mlp(self.embedding).view(self.count, 2, self.heads, self.width // self.heads)
        keys, values = both.permute(1, 2, 0, 3)
        return keys, values

    def forward(self, k, v, keep):
        keys, values = self.keys_values()
        return k, v, keep, _extra(self.gate, keys, values, k)


class Prefixes(TuningModule):
    """Prefixes of one attention layer once trained: the MLP's output, kept."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, gate: torch.Tensor):
        super().__init__()
        self.keys = nn.Parameter(keys.detach().clone())
        self.values = nn.Parameter(values.detach().clone())
        self.gate = nn.Parameter(gate.detach().clone())

    def forward(self, k, v, keep):
        return k, v, keep, _extra(self.gate, self.keys, self.values, k)


def _extra(gate, keys, values, like: torch.Tensor):
    n = like.shape[0]
    return gated_extra(gate, keys.to(like.dtype).unsqueeze(0).expand(n, -1, -1, -1),
                       values.to(like.dtype).unsqueeze(0).expand(n, -1, -1, -1))


@dataclass
class PrefixConfig(TunedConfig):
    prefix_length: int = knob(10, low=1, high=512, help="key/value prefixes per attention layer")
    hidden: int = knob(64, low=1, high=4096, help="width of the MLP the prefixes train through")


@register_adapter("prefix")
class PrefixTuning(TunedAdapter):
    """Prefix tuning: learned keys and values in every attention layer; base frozen."""

    config_cls = PrefixConfig

    @classmethod
    def unfit_reason(cls, sites: TuningSites) -> str | None:
        return None if sites.attentions else "it has no attention layers to put prefixes in"

    @classmethod
    def attach(cls, encoder: nn.Module, config: PrefixConfig) -> None:
        for attention in sites_of(encoder).attentions:
            attention.memory = PrefixMemory(attention.heads, attention.width, config.prefix_length,
                                            config.hidden)

    @classmethod
    @torch.no_grad()
    def settle(cls, encoder: nn.Module) -> nn.Module:
        for attention in sites_of(encoder).attentions:
            memory = attention.memory
            if isinstance(memory, PrefixMemory):
                keys, values = memory.keys_values()
                attention.memory = Prefixes(keys, values, memory.gate)
        return encoder
