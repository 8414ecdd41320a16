"""Averaged word-piece vectors (fastText-style): a text is the weighted mean of its tokens' input
vectors. Trained by skip-gram, this learns in minutes on a CPU what a Transformer trained from
scratch there does not; word pieces are already subword units, so this is fastText's idea in the
run tokenizer's terms.

Beside the learned mean, the features can keep a hashed lexical part: the text's word pieces and
piece pairs counted into a fixed number of buckets, weighted as TF-IDF weights them. The mean of
vectors blurs what a rare word or a pair of words says about a text, which is what TF-IDF's
probe lives on; the bucket counts keep it, and cost no training. As raw buckets they lost with
each text set held out (bench/text_lexical.py: 1,024 buckets lifted source code by language from
0.783 to 0.855 and cost 1-6 points elsewhere), since a standardised probe weighs thousands of rare,
mostly empty buckets as much as the dense vectors. Reduced to a few dimensions by an SVD of the
folder's own bucket weights (latent semantic analysis, `lexical_dims`), they are dense, and lifted
every text set (bench/text_lexical.py)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from sslstudio.core.backbones.base import Backbone, register_backbone
from sslstudio.core.backbones.text_transformer import TextShape

WORD_VECTORS = "word_vectors"

# Multiplicative hashing (Knuth): ids and pairs spread over the buckets. Both products stay below
# 2^63, so the graph computes them in int64 as torch does.
_HASH = 2654435761
_PAIR = 1000003
_PAIR_MODULUS = 2147483647
# Texts whose bucket weights the lexical SVD reads (their Gram matrix is this square).
LEXICAL_SAMPLE = 2000


def lexical_buckets_of(ids: torch.Tensor, buckets: int) -> torch.Tensor:
    """(B, 2L - 1) bucket of each piece, then of each pair of neighbouring pieces."""
    single = ids * _HASH % buckets
    pairs = (ids[:, :-1] * _PAIR + ids[:, 1:]) % _PAIR_MODULUS * _HASH % buckets
    return torch.cat([single, pairs], dim=1)


class WordVectors(Backbone):
    modality = "text"

    def __init__(self, shape: TextShape):
        super().__init__()
        self.shape = shape
        self.pad_id = shape.pad_id
        self.token_width = shape.width
        self.lexical_buckets = shape.lexical_buckets
        self.lexical_dims = shape.lexical_dims if shape.lexical_buckets else 0
        self.feature_dim = shape.width + (self.lexical_dims or shape.lexical_buckets)
        self.token_embedding = nn.Embedding(shape.vocab_size, shape.width)
        # word2vec's start: small input vectors; the objective's output vectors start at zero.
        nn.init.uniform_(self.token_embedding.weight, -0.5 / shape.width, 0.5 / shape.width)
        # Each token's share in the mean. Smooth inverse frequency a / (a + p(w)) once the
        # objective has seen the corpus (Arora et al. 2017): frequent pieces say little about a
        # text. A buffer, so the checkpoint, embed and the ONNX graph carry it.
        weight = torch.ones(shape.vocab_size)
        weight[shape.pad_id] = 0.0
        self.register_buffer("token_weight", weight)
        if self.lexical_buckets:
            # Inverse document frequency of each bucket, from the corpus (`observe_corpus`).
            self.register_buffer("bucket_weight", torch.ones(self.lexical_buckets))
        if self.lexical_dims:
            # The folder's mean bucket weights and the SVD's leading directions of them.
            self.register_buffer("lexical_centre", torch.zeros(self.lexical_buckets))
            self.register_buffer("lexical_basis", torch.zeros(self.lexical_buckets, self.lexical_dims))

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
        lexical = self.lexical(ids)
        if self.lexical_dims:
            lexical = (lexical - self.lexical_centre) @ self.lexical_basis
        return torch.cat([mean, lexical], dim=1)

    def lexical(self, ids: torch.Tensor) -> torch.Tensor:
        """TF-IDF of the hashed pieces and pairs: sublinear counts (1 + log tf) times the
        bucket's idf, unit length. A scatter-add, which ONNX has from opset 16."""
        counts = self.bucket_counts(ids)
        tf = torch.where(counts > 0, 1.0 + torch.log(counts.clamp(min=1.0)), torch.zeros_like(counts))
        weighted = tf * self.bucket_weight
        return weighted / weighted.norm(dim=1, keepdim=True).clamp(min=1e-6)

    def bucket_counts(self, ids: torch.Tensor) -> torch.Tensor:
        counted = self.counted(ids)
        both = counted[:, :-1] & counted[:, 1:]
        present = torch.cat([counted, both], dim=1).to(self.token_weight.dtype)
        buckets = lexical_buckets_of(ids, self.lexical_buckets)
        counts = torch.zeros(ids.shape[0], self.lexical_buckets, dtype=present.dtype,
                             device=ids.device)
        return counts.scatter_add(1, buckets, present)

    @torch.no_grad()
    def observe_corpus(self, ids: np.ndarray, chunk: int = 1024) -> None:
        """The buckets' smooth idf, log((1 + n) / (1 + df)) + 1 as scikit-learn's TF-IDF, from
        the tokenized corpus (N, L). Call after the pooling weights are set, so special pieces
        are left out."""
        if not self.lexical_buckets:
            return
        device = self.bucket_weight.device
        documents = torch.zeros(self.lexical_buckets, dtype=torch.float64, device=device)
        for start in range(0, len(ids), chunk):
            block = torch.as_tensor(np.asarray(ids[start:start + chunk], np.int64), device=device)
            documents += (self.bucket_counts(block) > 0).sum(0).to(torch.float64)
        n = float(len(ids))
        idf = torch.log((1.0 + n) / (1.0 + documents)) + 1.0
        self.bucket_weight.copy_(idf.to(self.bucket_weight.dtype))
        if self.lexical_dims:
            self._fit_lexical_basis(ids, chunk)

    def _fit_lexical_basis(self, ids: np.ndarray, chunk: int) -> None:
        """The leading right singular vectors of the centred bucket weights of an even spread of
        at most LEXICAL_SAMPLE texts (a randomized SVD, seeded on its own, so every run of the
        same folder gets the same basis and the global random state is left as it was)."""
        device = self.bucket_weight.device
        rows = np.unique(np.linspace(0, len(ids) - 1, min(len(ids), LEXICAL_SAMPLE)).astype(np.int64))
        weights = torch.cat([self.lexical(torch.as_tensor(np.asarray(ids[rows[start:start + chunk]],
                                                                     np.int64), device=device))
                             for start in range(0, len(rows), chunk)])
        centre = weights.mean(0)
        kept = min(self.lexical_dims, len(rows))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            _, values, vectors = torch.svd_lowrank(weights - centre, q=min(kept + 10, len(rows)),
                                                   niter=8)
        basis = torch.zeros(self.lexical_buckets, self.lexical_dims, device=device)
        # Directions the sample does not span (fewer distinct texts than dimensions) stay zero.
        spanned = values[:kept] > 1e-6 * values[:1].clamp(min=1e-30)
        basis[:, :kept] = vectors[:, :kept] * spanned
        self.lexical_centre.copy_(centre)
        self.lexical_basis.copy_(basis)


@register_backbone(WORD_VECTORS, "averaged word-piece vectors (fastText-style) for skip-gram, with "
                   "hashed TF-IDF of pieces and pairs beside them; width is the knob (128 on a CPU)",
                   modality="text", cpu_friendly=True)
def build_word_vectors(shape: TextShape) -> Backbone:
    return WordVectors(shape)
