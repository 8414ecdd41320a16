"""A ring buffer of past batches' features, the extra negatives of MoCo's queue and SimCSE's."""

from __future__ import annotations

import torch


@torch.no_grad()
def enqueue(queue: torch.Tensor, pointer: torch.Tensor, keys: torch.Tensor) -> int:
    """Write `keys` into the ring buffer `queue` at `pointer` (advanced in place), oldest rows
    first overwritten; returns how many rows were written."""
    size = queue.shape[0]
    keys = keys[-size:]
    rows = (pointer + torch.arange(keys.shape[0], device=keys.device)) % size
    queue[rows] = keys.to(queue.dtype)
    pointer.copy_((pointer + keys.shape[0]) % size)
    return keys.shape[0]
