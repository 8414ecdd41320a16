"""A Transformer encoder for text: token and position embeddings, pre-norm blocks, and the mean
of the non-padding tokens as the representation (as sentence-transformers pool)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from sslstudio.core.backbones.base import Backbone, register_backbone
from sslstudio.core.backbones.tuning import HeadAttention, InputPrompt, Site, TuningSites


@dataclass(frozen=True)
class TextShape:
    vocab_size: int
    max_length: int
    layers: int = 4
    width: int = 256
    heads: int = 4
    dropout: float = 0.1
    pad_id: int = 0
    lexical_buckets: int = 0  # word vectors: hashed TF-IDF buckets beside the mean
    lexical_dims: int = 0  # and those reduced to this many by an SVD of the folder's (0: raw)


class SelfAttention(HeadAttention):
    def __init__(self, width: int, heads: int, dropout: float):
        super().__init__()
        self.heads = heads
        self.dropout = dropout
        # Separate query, key and value Linear layers, so LoRA can wrap each (PEFT's q/k/v).
        self.query = nn.Linear(width, width)
        self.key = nn.Linear(width, width)
        self.value = nn.Linear(width, width)
        self.out = nn.Linear(width, width)

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        n, t, d = x.shape

        def split(layer):
            return layer(x).view(n, t, self.heads, d // self.heads).transpose(1, 2)

        out = self.attend(split(self.query), split(self.key), split(self.value), keep,
                          self.dropout if self.training else 0.0)
        return self.out(out.transpose(1, 2).reshape(n, t, d))

    def key_value_rows(self):
        return (self.key, slice(None)), (self.value, slice(None))


class EncoderBlock(nn.Module):
    def __init__(self, width: int, heads: int, dropout: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(width)
        self.attention = SelfAttention(width, heads, dropout)
        self.norm2 = nn.LayerNorm(width)
        self.feed_forward = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(),
                                          nn.Linear(4 * width, width))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        x = x + self.drop(self.attention(self.norm1(x), keep))
        return x + self.drop(self.feed_forward(self.norm2(x)))


class TextTransformer(Backbone):
    modality = "text"

    def __init__(self, shape: TextShape):
        super().__init__()
        if shape.width % shape.heads:
            raise ValueError(f"width {shape.width} must be a multiple of heads {shape.heads}")
        self.shape = shape
        self.pad_id = shape.pad_id
        self.token_embedding = nn.Embedding(shape.vocab_size, shape.width, padding_idx=shape.pad_id)
        self.position_embedding = nn.Embedding(shape.max_length, shape.width)
        self.embedding_norm = nn.LayerNorm(shape.width)
        self.drop = nn.Dropout(shape.dropout)
        self.blocks = nn.ModuleList(EncoderBlock(shape.width, shape.heads, shape.dropout)
                                    for _ in range(shape.layers))
        self.norm = nn.LayerNorm(shape.width)
        self.feature_dim = shape.width
        self.input_prompt: InputPrompt | None = None  # prompt tuning's, when a method sets one
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.trunc_normal_(module.weight, std=0.02)
            if isinstance(module, nn.Linear):
                nn.init.zeros_(module.bias)
        with torch.no_grad():
            self.token_embedding.weight[shape.pad_id].zero_()

    def token_states(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, L, width) states and the (B, L) mask of real (non-padding) tokens."""
        keep = ids != self.pad_id
        positions = torch.arange(ids.shape[1], device=ids.device)
        x = self.token_embedding(ids) + self.position_embedding(positions)[None]
        x = self.drop(self.embedding_norm(x))
        if self.input_prompt is not None:
            x, keep = self.input_prompt.prepend(x, keep)
        for block in self.blocks:
            x = block(x, keep)
        if self.input_prompt is not None:
            x, keep = self.input_prompt.strip(x, keep)
        return self.norm(x), keep

    def tuning_sites(self) -> TuningSites:
        width = self.shape.width
        return TuningSites(
            attentions=[block.attention for block in self.blocks],
            sublayers=[Site(block, name, width) for block in self.blocks
                       for name in ("attention", "feed_forward")],
            activations=[Site(block.feed_forward, "1", 4 * width, reader=block.feed_forward[2])
                         for block in self.blocks],
            token_width=width)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        states, keep = self.token_states(ids)
        weights = keep.unsqueeze(-1).to(states.dtype)
        return (states * weights).sum(1) / weights.sum(1).clamp(min=1.0)


@register_backbone("text_transformer", "Transformer encoder for text; layers, width, heads and "
                   "max length are knobs (2 x 128 on a CPU)", modality="text", cpu_friendly=True)
def build_text_transformer(shape: TextShape) -> Backbone:
    return TextTransformer(shape)
