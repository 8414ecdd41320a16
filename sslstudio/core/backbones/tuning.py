"""Where parameter-efficient methods reach into a backbone.

Attention layers derive from `HeadAttention`, which leaves two places free: `key_value_scale`
((IA)^3 rescales keys and values) and `memory` (prefix and prompt tuning add keys and values the
sequence did not have). A backbone lists its places in `TuningSites`; a method that finds none
of the kind it needs does not apply to that backbone. Everything here starts switched off, so an
encoder nobody tunes computes exactly what it did before.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

ExtraAttention = Callable[[torch.Tensor], torch.Tensor]


class TuningModule(nn.Module):
    """A module a tuning method adds to an encoder: its parameters are the method's own, saved
    apart from the encoder's (`own_state`)."""


class HeadAttention(nn.Module):
    """Multi-head attention whose keys and values tuning methods can reach. Subclasses project
    queries, keys and values to (batch, heads, tokens, head width) and call `attend`."""

    heads: int

    def __init__(self) -> None:
        super().__init__()
        self.key_value_scale: nn.Module | None = None
        self.memory: nn.Module | None = None

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, keep: torch.Tensor | None,
               dropout_p: float = 0.0) -> torch.Tensor:
        if self.key_value_scale is not None:
            k, v = self.key_value_scale(k, v)
        extra: ExtraAttention | None = None
        if self.memory is not None:
            k, v, keep, extra = self.memory(k, v, keep)
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=None if keep is None else keep[:, None, None, :], dropout_p=dropout_p)
        if extra is not None:
            out = out + extra(q)
        return out

    def key_value_rows(self) -> tuple[tuple[nn.Linear, slice], tuple[nn.Linear, slice]]:
        """The Linear layers and output rows that make the keys and the values, in head-major
        order as `attend` receives them: what merging a scale of keys or values rewrites."""
        raise NotImplementedError

    @property
    def width(self) -> int:
        layer, rows = self.key_value_rows()[0]
        return len(range(layer.out_features)[rows])


@dataclass(frozen=True)
class Site:
    """A submodule a method wraps or replaces: `parent.<name>`, `width` features (channels for
    a convolution's output)."""

    parent: nn.Module
    name: str
    width: int
    # For a feed-forward activation: the Linear that reads it (a scale of the activation
    # merges into that layer's columns).
    reader: nn.Linear | None = None

    @property
    def module(self) -> nn.Module:
        return getattr(self.parent, self.name)

    def replace(self, module: nn.Module) -> None:
        setattr(self.parent, self.name, module)


@dataclass
class TuningSites:
    attentions: list[HeadAttention] = field(default_factory=list)
    # Outputs an adapter follows: attention and feed-forward sublayers of a transformer block
    # (tokens, before the residual sum) or a convnet's stages (channels).
    sublayers: list[Site] = field(default_factory=list)
    channels: bool = False  # the sublayers are convolution outputs (N, C, H, W)
    activations: list[Site] = field(default_factory=list)  # feed-forward activations
    token_width: int = 0  # width of the token sequence prompts join; 0: no token sequence


class InputPrompt(TuningModule):
    """Learned vectors put before the token sequence (prompt tuning). The backbone strips them
    again before pooling, so they change the features only through attention."""

    def __init__(self, count: int, width: int, scale: float = 0.02):
        super().__init__()
        self.count = count
        self.vectors = nn.Parameter(torch.randn(count, width) * scale)

    def prepend(self, x: torch.Tensor, keep: torch.Tensor | None):
        n = x.shape[0]
        x = torch.cat([self.vectors.to(x.dtype).unsqueeze(0).expand(n, -1, -1), x], 1)
        if keep is not None:
            keep = torch.cat([torch.ones(n, self.count, dtype=keep.dtype, device=keep.device), keep], 1)
        return x, keep

    def strip(self, x: torch.Tensor, keep: torch.Tensor | None):
        return x[:, self.count:], None if keep is None else keep[:, self.count:]


def gated_extra(gate: torch.Tensor, keys: torch.Tensor, values: torch.Tensor) -> ExtraAttention:
    """Attention over extra keys and values, computed apart from the sequence's own and added
    scaled by tanh(gate) (LLaMA-Adapter's zero-init attention, Zhang et al. 2023): a gate that
    starts at 0 leaves the encoder exactly as pretrained, where a joint softmax over the extra
    keys would dilute every token's attention from the first step."""

    def extra(q: torch.Tensor) -> torch.Tensor:
        return torch.tanh(gate) * F.scaled_dot_product_attention(q, keys, values)

    return extra


def sites_of(encoder: nn.Module) -> TuningSites:
    """The places of `encoder` that tuning methods can use; none for an encoder that names none."""
    method = getattr(encoder, "tuning_sites", None)
    return method() if method is not None else TuningSites()


def own_state(encoder: nn.Module) -> dict[str, torch.Tensor]:
    """The parameters and buffers of the tuning modules in `encoder`, by their names in it."""
    state = {}
    for name, module in encoder.named_modules():
        if isinstance(module, TuningModule):
            for key, value in module.state_dict(prefix=f"{name}.").items():
                state.setdefault(key, value.detach().cpu().clone())
    return state
