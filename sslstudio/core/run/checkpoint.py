"""Checkpoints as one safetensors file: model, optimizer, RNG states and loop position.

Tensors go in as tensors; everything else (param group settings, counters) goes in the
file's string metadata as JSON, with a checksum of every tensor. A new checkpoint is written
beside the old one, read back and verified, and only then takes the name `last.safetensors`;
the one it replaces stays as `previous.safetensors`. Loading verifies every tensor and falls
back to the previous checkpoint, saying so, when the last one is damaged.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load, save

from sslstudio.core.fileio import fsync_dir, write_durably
from sslstudio.core.run.folder import PREVIOUS

FORMAT = "sslstudio-checkpoint-1"
_PARTIAL = ".last.safetensors.partial"


class CheckpointError(ValueError):
    """No usable checkpoint; the message says which files were tried and what is wrong."""


@dataclass(frozen=True)
class LoadedCheckpoint:
    tensors: dict
    metadata: dict
    path: Path  # the file actually used
    fallback_note: str  # why the previous checkpoint was used instead of the last, or ""


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
        "checksums": json.dumps({name: _checksum(t) for name, t in tensors.items()}),
    }
    write_verified(Path(path), save(tensors, metadata=metadata))


def save_encoder(path: Path, weights: dict[str, torch.Tensor], info: dict) -> None:
    """An encoder's weights alone (keys as in a full checkpoint, so `encoder_state` reads
    both), checksummed, with `info` as JSON; replaces the file at `path` once verified."""
    tensors = {f"model.encoder.{k}": v.detach().cpu().contiguous() for k, v in weights.items()}
    metadata = {"format": FORMAT, "info": json.dumps(info),
                "checksums": json.dumps({name: _checksum(t) for name, t in tensors.items()})}
    write_verified(Path(path), save(tensors, metadata=metadata), keep_previous=False)


def encoder_info(path: Path) -> dict | None:
    """The info saved with `save_encoder`, or None when the file is missing or damaged."""
    try:
        _, metadata = _verify(read_checkpoint_file(path), path)
        return json.loads(metadata.get("info", "{}"))
    except (CheckpointError, ValueError):
        return None


def write_verified(path: Path, data: bytes, keep_previous: bool = True) -> None:
    """Write `data` as `path` so that a verified checkpoint exists at every moment: the new file
    is written and read back under a temporary name, the current one becomes PREVIOUS (when it
    verifies: a damaged file never displaces a good one), then the new one takes the name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(_PARTIAL)
    write_durably(partial, data)
    try:
        _verify(read_checkpoint_file(partial), partial)
    except CheckpointError as error:
        partial.unlink(missing_ok=True)
        raise OSError(f"the checkpoint written to {partial} does not read back intact ({error}); "
                      "the disk may be failing") from None
    if path.exists() and keep_previous:
        try:
            if not _known_good(path):  # a file this process verified is not read again
                _verify(read_checkpoint_file(path), path)
            os.replace(path, path.with_name(PREVIOUS))
        except CheckpointError:
            pass
    os.replace(partial, path)
    fsync_dir(path.parent)
    _remember_good(path)


# Checkpoints verified by this process, by (size, modification time): a run's next save then
# promotes its last checkpoint without reading and hashing it all again.
_good_files: dict[str, tuple[int, int]] = {}


def _stat_key(path: Path) -> tuple[int, int]:
    stat = Path(path).stat()
    return stat.st_size, stat.st_mtime_ns


def _remember_good(path: Path) -> None:
    _good_files[str(Path(path).resolve())] = _stat_key(path)


def _known_good(path: Path) -> bool:
    return _good_files.get(str(Path(path).resolve())) == _stat_key(path)


def _checksum(tensor: torch.Tensor) -> str:
    flat = tensor.detach().cpu().contiguous().reshape(-1)
    data = flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def read_checkpoint_file(path: Path) -> tuple[dict, dict]:
    """A checkpoint file's tensors and metadata, as stored: every read of one goes through here."""
    try:
        raw = Path(path).read_bytes()
    except OSError as error:
        raise CheckpointError(f"cannot read it: {error.strerror or error}") from None
    try:
        tensors = load(raw)
        header_len = int.from_bytes(raw[:8], "little")
        metadata = json.loads(raw[8:8 + header_len]).get("__metadata__") or {}
    except Exception as error:  # noqa: BLE001 - safetensors raises its own error types
        raise CheckpointError(f"it is truncated or corrupt ({type(error).__name__}: {error})") from None
    return tensors, metadata


def _verify(loaded: tuple[dict, dict], path: Path) -> tuple[dict, dict]:
    tensors, metadata = loaded
    if metadata.get("format") != FORMAT:
        raise CheckpointError("it is not an SSL Studio checkpoint")
    sums = metadata.get("checksums")
    if sums is not None:
        expected = json.loads(sums)
        if set(expected) != set(tensors):
            raise CheckpointError("its tensors do not match its table of contents")
        damaged = [name for name, tensor in tensors.items() if _checksum(tensor) != expected[name]]
        if damaged:
            raise CheckpointError(f"{len(damaged)} tensors fail their checksum (first: {damaged[0]})")
    # Files from before checksums, and a model that went bad before it was saved.
    for name, tensor in tensors.items():
        if name.startswith("model.") and tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise CheckpointError(f"tensor {name} holds NaN or infinite values")
    return tensors, metadata


def read_checkpoint(path: Path) -> LoadedCheckpoint:
    """The checkpoint at `path`, verified; when it is missing or damaged, the previous one
    beside it, with a note that says so. Raises CheckpointError when neither is usable."""
    path = Path(path)
    previous = path.with_name(PREVIOUS)
    problems = []
    for candidate in (path, previous):
        if not candidate.exists():
            problems.append(f"{candidate.name}: missing")
            continue
        try:
            tensors, metadata = _verify(read_checkpoint_file(candidate), candidate)
        except CheckpointError as error:
            problems.append(f"{candidate.name}: {error}")
            continue
        if candidate == path:
            _remember_good(candidate)
        note = ""
        if candidate != path:
            step = json.loads(metadata.get("loop", "{}")).get("step", "?")
            note = (f"{path} is unusable ({problems[0].split(': ', 1)[1]}); using the previous "
                    f"checkpoint instead, from step {step}")
        return LoadedCheckpoint(tensors, metadata, candidate, note)
    raise CheckpointError(f"no usable checkpoint in {path.parent}: " + "; ".join(problems)
                          + ". Start a new run (the data and other runs are unaffected)")


def load_checkpoint(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None,
                    generators: dict[str, torch.Generator]) -> tuple[LoopState, str]:
    """Restore model, optimizer and RNG states; returns the loop state and a fallback note."""
    loaded = read_checkpoint(path)
    tensors, metadata = loaded.tensors, loaded.metadata
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
    return LoopState(**json.loads(metadata["loop"])), loaded.fallback_note


def encoder_state(path: Path, fallback: bool = True) -> dict[str, torch.Tensor]:
    """The encoder's weights alone, as a backbone's state_dict (from the previous checkpoint
    when the last one is damaged and `fallback` allows: the note goes to standard error)."""
    if fallback:
        loaded = read_checkpoint(path)
        if loaded.fallback_note:
            print(f"warning: {loaded.fallback_note}", file=sys.stderr)
        tensors = loaded.tensors
    else:
        tensors, _ = _verify(read_checkpoint_file(path), path)
    prefix = "model.encoder."
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
