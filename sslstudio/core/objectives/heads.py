"""Projection and prediction heads: small MLPs whose sizes are knobs."""

from __future__ import annotations

from torch import nn


def mlp_head(in_dim: int, hidden_dim: int, out_dim: int, layers: int = 2,
             last_batch_norm: bool = False) -> nn.Sequential:
    """Linear-BN-ReLU blocks then a Linear; `layers` counts the Linear layers (>= 1)."""
    modules: list[nn.Module] = []
    dim = in_dim
    for _ in range(layers - 1):
        modules += [nn.Linear(dim, hidden_dim, bias=False), nn.BatchNorm1d(hidden_dim),
                    nn.ReLU(inplace=True)]
        dim = hidden_dim
    modules.append(nn.Linear(dim, out_dim, bias=not last_batch_norm))
    if last_batch_norm:
        # SimSiam's projector ends in BN without affine parameters.
        modules.append(nn.BatchNorm1d(out_dim, affine=False))
    return nn.Sequential(*modules)
