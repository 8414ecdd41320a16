"""Averaged word-piece vectors (fastText-style): a text is the weighted mean of its tokens' input
vectors. Trained by skip-gram, this learns in minutes on a CPU what a Transformer trained from
scratch there does not; word pieces are already subword units, so this is fastText's idea in the
run tokenizer's terms. Beside the learned mean, the features keep the folder's own words
(`lexical.LexicalPart`)."""

from __future__ import annotations

import torch
from torch import nn

from sslstudio.core.backbones.base import Backbone, register_backbone
from sslstudio.core.backbones.lexical import LexicalPart
from sslstudio.core.backbones.text_transformer import TextShape

WORD_VECTORS = "word_vectors"


class WordVectors(LexicalPart, Backbone):
    modality = "text"

    def __init__(self, shape: TextShape):
        super().__init__()
        self.shape = shape
        self.pad_id = shape.pad_id
        self.token_width = shape.width
        self.token_embedding = nn.Embedding(shape.vocab_size, shape.width)
        # word2vec's start: small input vectors; the objective's output vectors start at zero.
        nn.init.uniform_(self.token_embedding.weight, -0.5 / shape.width, 0.5 / shape.width)
        # Each token's share in the mean. Smooth inverse frequency a / (a + p(w)) once the
        # objective has seen the corpus (Arora et al. 2017): frequent pieces say little about a
        # text. A buffer, so the checkpoint, embed and the ONNX graph carry it.
        weight = torch.ones(shape.vocab_size)
        weight[shape.pad_id] = 0.0
        self.register_buffer("token_weight", weight)
        self.feature_dim = shape.width + self.init_lexical_part(shape.lexical_buckets,
                                                                shape.lexical_dims)

    def token_vectors(self, ids: torch.Tensor) -> torch.Tensor:
        """(B, L, width) input vectors, as skip-gram trains them."""
        return self.token_embedding(ids)

    def counted(self, ids: torch.Tensor) -> torch.Tensor:
        """(B, L) whether a piece counts: not padding, nor a special piece once the corpus is
        seen (their pooling weight is zero then)."""
        return (self.token_weight[ids] > 0) & (ids != self.pad_id)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        # A gather and a sum: exports to ONNX as is (no EmbeddingBag offsets).
        weights = self.token_weight[ids] * (ids != self.pad_id).to(self.token_weight.dtype)
        summed = (self.token_vectors(ids) * weights.unsqueeze(-1)).sum(1)
        mean = summed / weights.sum(1, keepdim=True).clamp(min=1e-6)
        if not self.lexical_buckets:
            return mean
        return torch.cat([mean, self.lexical_features(ids)], dim=1)


@register_backbone(WORD_VECTORS, "averaged word-piece vectors (fastText-style) for skip-gram, with "
                   "hashed TF-IDF of pieces and pairs beside them; width is the knob (128 on a CPU)",
                   modality="text", cpu_friendly=True)
def build_word_vectors(shape: TextShape) -> Backbone:
    return WordVectors(shape)
