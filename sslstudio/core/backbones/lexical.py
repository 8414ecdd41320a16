"""The folder's own words beside a text encoder's features: the text's word pieces and pairs of
neighbouring pieces counted into a fixed number of hashed buckets, weighted as TF-IDF weights
them, and reduced to a few dimensions by an SVD of the folder's own bucket weights (latent
semantic analysis). It costs no training, only a pass over the corpus at run start.

A pooled encoder blurs what a rare word or a pair of words says about a text, which is what
TF-IDF's probe lives on. As raw buckets they lost with each text set held out (bench/
text_lexical.py: 1,024 buckets lifted source code by language from 0.783 to 0.855 and cost 1-6
points elsewhere), since a standardised probe weighs thousands of rare, mostly empty buckets as
much as the dense features; reduced by the SVD (`lexical_dims`) they are dense, and lifted every
text set beside word vectors (bench/text_lexical.py) and beside a pretrained MiniLM as it came
(64 dimensions: source code 0.703 to 0.805, the other four text sets +0.8 to +2.6)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

# Multiplicative hashing (Knuth): ids and pairs spread over the buckets. Both products stay below
# 2^63, so the graph computes them in int64 as torch does.
_HASH = 2654435761
_PAIR = 1000003
_PAIR_MODULUS = 2147483647
# Texts whose bucket weights the lexical SVD reads (their Gram matrix is this square).
LEXICAL_SAMPLE = 2000
# Dimensions kept by the SVD unless a run asks for others, each chosen with one text set held
# out: beside skip-gram's word vectors 32 (as good as 64 at 10 labels a class, 0.572 against
# 0.570, ahead with every set held out at 1 label; bench/text_lexical.py), beside a pretrained
# MiniLM 64 (ahead of 32 and of 16,384 buckets on all five sets, 0.592 against 0.586 on average;
# bench/lexical_beside_pretrained.py).
DIMS_BESIDE_WORD_VECTORS = 32
DIMS_BESIDE_PRETRAINED = 64


def lexical_buckets_of(ids: torch.Tensor, buckets: int) -> torch.Tensor:
    """(B, 2L - 1) bucket of each piece, then of each pair of neighbouring pieces."""
    single = ids * _HASH % buckets
    pairs = (ids[:, :-1] * _PAIR + ids[:, 1:]) % _PAIR_MODULUS * _HASH % buckets
    return torch.cat([single, pairs], dim=1)


class LexicalPart:
    """Mixed into a text backbone (an nn.Module with `counted(ids)`, the pieces that count): its
    buffers live on the backbone under these names, so runs saved before the part moved here
    load as they were."""

    # Read only through a gather and a cast (`projected`): an export may store it in half.
    HALF_BUFFERS = ("lexical_basis",)
    # What no pretrained weights file holds: fitted to the folder at run start.
    FOLDER_FITTED = ("bucket_weight", "lexical_centre", "lexical_basis")

    def init_lexical_part(self, buckets: int, dims: int) -> int:
        """Registers the part's buffers; returns the width it adds to the features."""
        self.lexical_buckets = buckets
        self.lexical_dims = dims if buckets else 0
        if self.lexical_buckets:
            # Inverse document frequency of each bucket, from the corpus (`observe_corpus`).
            self.register_buffer("bucket_weight", torch.ones(self.lexical_buckets))
        if self.lexical_dims:
            # The folder's mean bucket weights and the SVD's leading directions of them.
            self.register_buffer("lexical_centre", torch.zeros(self.lexical_buckets))
            self.register_buffer("lexical_basis", torch.zeros(self.lexical_buckets, self.lexical_dims))
            # centre @ basis, kept beside them (not saved: derived on fit and on load) so that
            # nothing reads the whole basis at run time and an export can keep it in half.
            self.register_buffer("lexical_offset", torch.zeros(self.lexical_dims), persistent=False)
            self.register_load_state_dict_post_hook(_derive_lexical_offset)
        return self.lexical_dims or self.lexical_buckets

    def lexical_features(self, ids: torch.Tensor) -> torch.Tensor:
        """(B, lexical_dims) or, unreduced, (B, buckets): what the part adds to the features."""
        buckets = lexical_buckets_of(ids, self.lexical_buckets)
        present = self.pieces_and_pairs_counted(ids)
        counts = self.bucket_counts(buckets, present)
        lexical = self.tfidf(counts)
        if self.lexical_dims:
            lexical = self.projected(buckets, present, counts, lexical)
        return lexical

    def projected(self, buckets: torch.Tensor, present: torch.Tensor, counts: torch.Tensor,
                  lexical: torch.Tensor) -> torch.Tensor:
        """(lexical - centre) @ basis, summed over the text's own buckets rather than all of
        them: each counted piece and pair adds its bucket's basis row, weighted by its share of
        the bucket's weight. A gather of the rows a text touches, not a product over every
        bucket; and the basis is read only through a cast that depends on the input, so an export
        can store it in half precision (`HALF_BUFFERS`) without the exporter folding it back."""
        share = lexical.gather(1, buckets) / counts.gather(1, buckets).clamp(min=1.0) * present
        rows = nn.functional.embedding(buckets, self.lexical_basis).to(lexical.dtype)
        return (rows * share.unsqueeze(-1)).sum(1) - self.lexical_offset

    def lexical(self, ids: torch.Tensor) -> torch.Tensor:
        """(B, buckets) TF-IDF of the hashed pieces and pairs of `ids`."""
        buckets = lexical_buckets_of(ids, self.lexical_buckets)
        return self.tfidf(self.bucket_counts(buckets, self.pieces_and_pairs_counted(ids)))

    def tfidf(self, counts: torch.Tensor) -> torch.Tensor:
        """Sublinear counts (1 + log tf) times the bucket's idf, unit length."""
        tf = torch.where(counts > 0, 1.0 + torch.log(counts.clamp(min=1.0)), torch.zeros_like(counts))
        weighted = tf * self.bucket_weight
        return weighted / weighted.norm(dim=1, keepdim=True).clamp(min=1e-6)

    def pieces_and_pairs_counted(self, ids: torch.Tensor) -> torch.Tensor:
        """(B, 2L - 1) 1.0 where a piece, then a pair of neighbouring pieces, counts."""
        counted = self.counted(ids)
        both = counted[:, :-1] & counted[:, 1:]
        return torch.cat([counted, both], dim=1).to(self.bucket_weight.dtype)

    def bucket_counts(self, buckets: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        """(B, buckets) how many counted pieces and pairs fall in each bucket: a scatter-add,
        which ONNX has from opset 16."""
        counts = torch.zeros(buckets.shape[0], self.lexical_buckets, dtype=present.dtype,
                             device=buckets.device)
        return counts.scatter_add(1, buckets, present)

    @torch.no_grad()
    def observe_corpus(self, ids: np.ndarray, chunk: int = 1024) -> None:
        """The buckets' smooth idf, log((1 + n) / (1 + df)) + 1 as scikit-learn's TF-IDF, from
        the tokenized corpus (N, L), then the SVD's basis. Call once the pieces that count are
        known (word vectors: after skip-gram sets the pooling weights, so special pieces are
        left out)."""
        if not self.lexical_buckets:
            return
        device = self.bucket_weight.device
        documents = torch.zeros(self.lexical_buckets, dtype=torch.float64, device=device)
        for start in range(0, len(ids), chunk):
            block = torch.as_tensor(np.asarray(ids[start:start + chunk], np.int64), device=device)
            counts = self.bucket_counts(lexical_buckets_of(block, self.lexical_buckets),
                                        self.pieces_and_pairs_counted(block))
            documents += (counts > 0).sum(0).to(torch.float64)
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
        _derive_lexical_offset(self)


def _derive_lexical_offset(encoder: LexicalPart, _incompatible_keys=None) -> None:
    with torch.no_grad():
        encoder.lexical_offset.copy_(encoder.lexical_centre @ encoder.lexical_basis.float())

