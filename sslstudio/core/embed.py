"""Features of every item of a folder from a trained run's encoder."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from sslstudio.core.backbones import build_backbone
from sslstudio.core.checkpoint import encoder_state
from sslstudio.core.control import RunControl
from sslstudio.core.data import load_image_folder
from sslstudio.core.data.augment import normalize, to_float
from sslstudio.core.data.scan import DataError
from sslstudio.core.devices import resolve_device
from sslstudio.core.events import EmbedFinished, EmbedProgress
from sslstudio.core.fileio import atomic_write_bytes, atomic_write_text
from sslstudio.core.train import CHECKPOINT_NAME
from sslstudio.core.train_config import load_run_config


def load_encoder(run_dir: Path, device: torch.device):
    """The run's encoder in eval mode, and the preprocessing it was trained with."""
    run_dir = Path(run_dir)
    config_path, checkpoint = run_dir / "config.toml", run_dir / CHECKPOINT_NAME
    if not config_path.exists() or not checkpoint.exists():
        raise DataError(f"{run_dir} is not a finished or checkpointed run "
                        "(config.toml and checkpoints/last.safetensors are needed)")
    train_config, _, preprocess = load_run_config(config_path)
    encoder = build_backbone(train_config.backbone, int(preprocess["image_size"]))
    encoder.load_state_dict(encoder_state(checkpoint))
    return encoder.to(device).eval(), preprocess


def embed_folder(run_dir: Path, data_dir: Path, out_path: Path, device: str = "auto",
                 batch_size: int = 256, control: RunControl | None = None) -> Iterator:
    """Write features (N, D) float32 in sorted-path order to `out_path`, paths beside it."""
    control = control or RunControl()
    torch_device = resolve_device(device)
    encoder, preprocess = load_encoder(run_dir, torch_device)
    size = int(preprocess["image_size"])
    data = yield from load_image_folder(Path(data_dir), size, cache_dir=Path(run_dir) / "cache",
                                        control=control)
    mean = torch.tensor(preprocess["mean"], device=torch_device)
    std = torch.tensor(preprocess["std"], device=torch_device)
    features = np.empty((len(data), encoder.feature_dim), np.float32)
    with torch.inference_mode():
        for start in range(0, len(data), batch_size):
            indices = np.arange(start, min(len(data), start + batch_size))
            x = normalize(to_float(data.batch(indices).to(torch_device)), mean, std)
            features[indices] = encoder(x).float().cpu().numpy()
            yield EmbedProgress(int(indices[-1]) + 1, len(data))
            control.checkpoint()
    out_path = Path(out_path)
    if out_path.suffix != ".npy":
        out_path = out_path.with_name(out_path.name + ".npy")
    import io

    buffer = io.BytesIO()
    np.save(buffer, features)
    atomic_write_bytes(out_path, buffer.getvalue())
    paths_file = out_path.with_suffix(".paths.txt")
    atomic_write_text(paths_file, "".join(f"{p}\n" for p in data.paths))
    yield EmbedFinished(str(out_path), len(data), encoder.feature_dim)
