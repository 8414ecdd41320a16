"""Checkpoints as one safetensors file: model, optimizer, RNG states and loop position.

Tensors go in as tensors; everything else (param group settings, counters) goes in the
file's string metadata as JSON. Written atomically, so a kill leaves the previous one intact.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save

from sslstudio.core.fileio import atomic_write_bytes

FORMAT = "sslstudio-checkpoint-1"


@dataclass
class LoopState:
    step: int = 0
    epoch: int = 0
    position: int = 0  # samples of this epoch's order already consumed (per rank)
    elapsed_s: float = 0.0
    batch_size: int = 0
    extra: dict = field(default_factory=dict)


def save_checkpoint(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    loop: LoopState, generators: dict[str, torch.Generator]) -> None:
    tensors: dict[str, torch.Tensor] = {}
    for key, value in model.state_dict().items():
        tensors[f"model.{key}"] = value.detach().cpu().contiguous()
    opt_state = optimizer.state_dict()
    scalar_state: dict[str, dict] = {}
    for index, state in opt_state["state"].items():
        for name, value in state.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{index}.{name}"] = value.detach().cpu().contiguous()
            else:
                scalar_state.setdefault(str(index), {})[name] = value
    tensors["rng.torch"] = torch.get_rng_state()
    for name, generator in generators.items():
        tensors[f"rng.{name}"] = generator.get_state()
    metadata = {
        "format": FORMAT,
        "loop": json.dumps(loop.__dict__),
        "param_groups": json.dumps(opt_state["param_groups"]),
        "optim_scalars": json.dumps(scalar_state),
        "generator_devices": json.dumps({k: str(g.device) for k, g in generators.items()}),
    }
    atomic_write_bytes(path, save(tensors, metadata=metadata))


def read_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata() or {}
    if metadata.get("format") != FORMAT:
        raise ValueError(f"{path} is not an SSL Studio checkpoint")
    return load_file(str(path)), metadata


def load_checkpoint(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None,
                    generators: dict[str, torch.Generator]) -> LoopState:
    tensors, metadata = read_checkpoint(path)
    model_state = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    model.load_state_dict(model_state)
    if optimizer is not None:
        state: dict[int, dict] = {}
        for key, value in tensors.items():
            if key.startswith("optim."):
                _, index, name = key.split(".", 2)
                state.setdefault(int(index), {})[name] = value
        for index, scalars in json.loads(metadata["optim_scalars"]).items():
            state.setdefault(int(index), {}).update(scalars)
        optimizer.load_state_dict({"state": state,
                                   "param_groups": json.loads(metadata["param_groups"])})
    torch.set_rng_state(tensors["rng.torch"])
    for name, generator in generators.items():
        if f"rng.{name}" in tensors:
            generator.set_state(tensors[f"rng.{name}"])
    return LoopState(**json.loads(metadata["loop"]))


def encoder_state(path: Path) -> dict[str, torch.Tensor]:
    """The encoder's weights alone, as a backbone's state_dict."""
    tensors, _ = read_checkpoint(path)
    prefix = "model.encoder."
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
