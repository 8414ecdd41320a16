"""Loading a user's weights file into a backbone, safely and with messages that name the keys."""

from __future__ import annotations

import pickle
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from sslstudio.core.backbones.pretrained import convert_known_format


class WeightsError(ValueError):
    pass


def weights_format(path: Path) -> str:
    """"safetensors", "torch" (zip or legacy pickle) or "unknown", from the file's first bytes:
    the name's suffix is often wrong and says nothing about what is inside."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(16)
    except OSError as error:
        raise WeightsError(f"cannot read {path}: {error.strerror or error}") from None
    if head[:4] == b"PK\x03\x04" or (len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5):
        return "torch"
    if len(head) >= 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") > 0:
        return "safetensors"
    return "unknown"


def check_weights_file(path: Path) -> None:
    """Fail now, before any long work, if `path` cannot be a weights file."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    if weights_format(path) == "unknown":
        raise WeightsError(f"{path.name} is not a weights file: neither safetensors nor a PyTorch "
                           "checkpoint (.pth/.pt); pick the file the weights were saved to")


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    check_weights_file(path)
    if weights_format(path) == "safetensors":
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
            f"could run code{_refusal_detail(error)}. Save a state_dict or use .safetensors"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as error:
        raise WeightsError(f"{path.name} is not a readable PyTorch file: "
                           f"{str(error).splitlines()[0] if str(error) else type(error).__name__}") from None
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(data, dict) and isinstance(data.get(key), dict):
            data = data[key]
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise WeightsError(f"{path.name} does not hold a state_dict (a mapping of names to tensors)")
    return {k.removeprefix("module."): v for k, v in data.items()}


def _refusal_detail(error: Exception) -> str:
    """What torch's safe loader objected to, without the advice to turn the safety off that its
    message goes on to give."""
    for line in str(error).splitlines():
        if "Unsupported global" in line or "Unsupported operand" in line:
            return f" ({line.strip().removeprefix('WeightsUnpickler error: ').split('. Please')[0]})"
    return ""


def load_weights(model: nn.Module, path: Path) -> None:
    state = convert_known_format(read_state_dict(path))
    ignorable = getattr(model, "ignorable_prefixes", ())
    state = {k: v for k, v in state.items() if not k.startswith(ignorable)}
    own = model.state_dict()
    # Compare under the model's own naming (ResNet maps torchvision keys onto net.*).
    if own and all(k.startswith("net.") for k in own) and not any(k.startswith("net.") for k in state):
        state = {f"net.{k}": v for k, v in state.items()}
        ignorable = tuple(f"net.{p}" for p in ignorable)
    # What the model fits to the user's folder (LexicalPart), which no pretrained file holds.
    state.update({k: v for k, v in own.items()
                  if k not in state and k in getattr(model, "FOLDER_FITTED", ())})
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
