"""Data-parallel helpers. With one process every function is the identity, so objectives call
them unconditionally."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate `tensor` from every rank along dim 0; gradients flow back to each source."""
    if world_size() == 1:
        return tensor
    from torch.distributed.nn.functional import all_gather  # absent from some builds; DDP only

    return torch.cat(all_gather(tensor), 0)


@torch.no_grad()
def gather(tensor: torch.Tensor) -> torch.Tensor:
    if world_size() == 1:
        return tensor
    parts = [torch.empty_like(tensor) for _ in range(world_size())]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts, 0)


def any_rank(flag: bool, device: torch.device) -> bool:
    """True if `flag` is true on any rank; keeps ranks agreeing on when to stop."""
    if world_size() == 1:
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item() > 0)


def from_rank_zero(value: float, device: torch.device) -> float:
    """Rank 0's `value` on every rank: a decision that must not differ between them."""
    if world_size() == 1:
        return value
    tensor = torch.tensor([float(value)], dtype=torch.float64, device=device)
    dist.broadcast(tensor, src=0)
    return float(tensor.item())


def gather_objects(value) -> list:
    """Every rank's `value` (picklable), in rank order."""
    if world_size() == 1:
        return [value]
    gathered = [None] * world_size()
    dist.all_gather_object(gathered, value)
    return gathered
