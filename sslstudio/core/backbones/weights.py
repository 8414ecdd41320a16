"""Loading a user's weights file into a backbone, safely and with messages that name the keys."""

from __future__ import annotations

import pickle
from pathlib import Path

import torch
from torch import nn


class WeightsError(ValueError):
    pass


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError) as error:
            raise WeightsError(f"{path.name} is not a readable safetensors file: {error}") from None
    try:
        # weights_only refuses pickles that would import or call anything but tensors.
        data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise WeightsError(
            f"refused {path.name}: it holds Python objects, not only weights, and loading it "
            f"could run code ({str(error).splitlines()[0]}). Save a state_dict or use .safetensors"
        ) from None
    except (RuntimeError, EOFError, OSError) as error:
        raise WeightsError(f"{path.name} is not a readable PyTorch file: {error}") from None
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(data, dict) and isinstance(data.get(key), dict):
            data = data[key]
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise WeightsError(f"{path.name} does not hold a state_dict (a mapping of names to tensors)")
    return {k.removeprefix("module."): v for k, v in data.items()}


def load_weights(model: nn.Module, path: Path) -> None:
    from sslstudio.core.backbones.pretrained import convert_known_format

    state = convert_known_format(read_state_dict(path))
    ignorable = getattr(model, "ignorable_prefixes", ())
    state = {k: v for k, v in state.items() if not k.startswith(ignorable)}
    own = model.state_dict()
    # Compare under the model's own naming (ResNet maps torchvision keys onto net.*).
    if own and all(k.startswith("net.") for k in own) and not any(k.startswith("net.") for k in state):
        state = {f"net.{k}": v for k, v in state.items()}
        ignorable = tuple(f"net.{p}" for p in ignorable)
    unexpected = sorted(set(state) - set(own))
    missing = sorted(set(own) - set(state))
    wrong_shape = sorted(k for k in set(state) & set(own) if state[k].shape != own[k].shape)
    problems = []
    if wrong_shape:
        problems.append("shapes differ for " + ", ".join(
            f"{k} (file {tuple(state[k].shape)}, model {tuple(own[k].shape)})" for k in wrong_shape[:5]))
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys: {', '.join(unexpected[:5])}")
    if missing:
        problems.append(f"{len(missing)} missing keys: {', '.join(missing[:5])}")
    if problems:
        raise WeightsError(f"{Path(path).name} does not fit this backbone: " + "; ".join(problems))
    model.load_state_dict(state, strict=True)
