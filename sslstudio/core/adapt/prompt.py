"""Prompt tuning (Lester et al. 2021): learned vectors put before the token sequence (word
pieces, or a ViT's patches), everything else frozen. The prompts pass through every layer with
the sequence; each layer adds the sequence's attention to them through a gate that starts at zero
(see `gated_extra`), so the encoder starts exactly as pretrained, and pooling reads the
sequence's own tokens only."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from sslstudio.core.adapt.base import register_adapter
from sslstudio.core.adapt.tuned import TunedAdapter, TunedConfig
from sslstudio.core.backbones.tuning import InputPrompt, TuningModule, TuningSites, gated_extra, sites_of
from sslstudio.core.config import knob


class PromptMemory(TuningModule):
    """In one attention layer, the prompts' keys and values taken out of the sequence's softmax
    and attended to through the gate."""

    def __init__(self, count: int):
        super().__init__()
        self.count = count
        self.gate = nn.Parameter(torch.zeros(()))

    def forward(self, k, v, keep):
        count = self.count
        extra = gated_extra(self.gate, k[:, :, :count], v[:, :, :count])
        return k[:, :, count:], v[:, :, count:], None if keep is None else keep[:, count:], extra


@dataclass
class PromptConfig(TunedConfig):
    prompt_length: int = knob(10, low=1, high=512, help="learned vectors put before the sequence")


@register_adapter("prompt")
class PromptTuning(TunedAdapter):
    """Prompt tuning: learned vectors before the tokens or patches; base frozen."""

    config_cls = PromptConfig

    @classmethod
    def unfit_reason(cls, sites: TuningSites) -> str | None:
        if not sites.attentions or not sites.token_width:
            return "it reads no token or patch sequence to put prompts before"
        return None

    @classmethod
    def attach(cls, encoder: nn.Module, config: PromptConfig) -> None:
        sites = sites_of(encoder)
        encoder.input_prompt = InputPrompt(config.prompt_length, sites.token_width)
        for attention in sites.attentions:
            attention.memory = PromptMemory(config.prompt_length)
