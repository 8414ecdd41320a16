"""Features of every item of a folder from a trained run's encoder."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from sslstudio.core.backbones import build_backbone
from sslstudio.core.checkpoint import encoder_state
from sslstudio.core.control import RunControl
from sslstudio.core.data import item_keys, load_image_folder
from sslstudio.core.data.augment import normalize, to_float
from sslstudio.core.data.scan import DataError
from sslstudio.core.devices import resolve_device
from sslstudio.core.events import EmbedFinished, EmbedProgress
from sslstudio.core.fileio import atomic_write_bytes, atomic_write_text, path_line
from sslstudio.core.outputs import check_output_file
from sslstudio.core.run_folder import RunFolder
from sslstudio.core.train import CHECKPOINT_NAME
from sslstudio.core.train_config import load_run_config


def load_encoder(run_dir: Path, device: torch.device):
    """The run's encoder in eval mode, and the preprocessing it was trained with."""
    run_dir = Path(run_dir)
    config_path, checkpoint = run_dir / "config.toml", run_dir / CHECKPOINT_NAME
    if not config_path.exists() or not RunFolder(run_dir).has_checkpoint():
        raise DataError(f"{run_dir} is not a finished or checkpointed run "
                        "(config.toml and checkpoints/last.safetensors are needed)")
    train_config, _, preprocess = load_run_config(config_path)
    encoder = build_backbone(train_config.backbone, encoder_shape(preprocess))
    encoder.load_state_dict(encoder_state(checkpoint))
    return encoder.to(device).eval(), preprocess


def encoder_shape(preprocess: dict):
    """What build_backbone needs to rebuild a run's encoder: the image side, or a TextShape."""
    if preprocess.get("architecture") == "bert":
        from sslstudio.core.backbones.bert import BertShape

        return BertShape(preprocess["bert_config"], int(preprocess["max_length"]))
    if preprocess.get("modality") == "text":
        from sslstudio.core.backbones.text_transformer import TextShape

        return TextShape(int(preprocess["vocab_size"]), int(preprocess["max_length"]),
                         int(preprocess["layers"]), int(preprocess["width"]), int(preprocess["heads"]))
    return int(preprocess["image_size"])


def load_run_data(run_dir: Path, data_dir: Path, preprocess: dict, control: RunControl,
                  labels_from_folders: bool = False) -> Iterator:
    """The folder as the run's encoder reads it: images at its size, or texts through its
    tokenizer. Returns the dataset (use `yield from`)."""
    if preprocess.get("modality") == "text":
        from sslstudio.core.data.text_tokens import load_text_data

        data, _, _ = yield from load_text_data(Path(data_dir), preprocess.get("text_field", "text"),
                                               labels_from_folders, Path(run_dir),
                                               max_length=int(preprocess["max_length"]), control=control)
        return data
    return (yield from load_image_folder(Path(data_dir), int(preprocess["image_size"]),
                                         labels_from_folders, cache_dir=Path(run_dir) / "cache",
                                         control=control))


def model_inputs(batch, preprocess: dict, device):
    """A dataset batch as the encoder takes it in eval: normalised floats, or token ids."""
    if preprocess.get("modality") == "text":
        return batch.to(device)
    mean = torch.tensor(preprocess["mean"], device=device)
    std = torch.tensor(preprocess["std"], device=device)
    return normalize(to_float(batch.to(device)), mean, std).contiguous(memory_format=torch.channels_last)


def encode_items(model, data, preprocess: dict, device, control: RunControl,
                 indices=None, probabilities: bool = False, batch_size: int = 512) -> Iterator:
    """The model's output for items of `data` (all by default), in order, float32: an encoder's
    features, or with `probabilities` a classifier's softmax. Yields EmbedProgress."""
    indices = np.arange(len(data)) if indices is None else np.asarray(indices)
    chunks = []
    model.eval()
    for start in range(0, len(indices), batch_size):
        batch = indices[start:start + batch_size]
        with torch.inference_mode():
            out = model(model_inputs(data.batch(batch), preprocess, device)).float()
            if probabilities:
                out = torch.softmax(out, 1)
            chunks.append(out.cpu().numpy())
        yield EmbedProgress(min(len(indices), start + batch_size), len(indices))
        control.checkpoint()
    return np.concatenate(chunks).astype(np.float32)


def embedding_paths(out_path: Path) -> tuple[Path, Path]:
    """FEATS.npy and FEATS.paths.txt for what the user gave as --out."""
    out_path = Path(out_path)
    if out_path.suffix != ".npy":
        out_path = out_path.with_name(out_path.name + ".npy")
    return out_path, out_path.with_suffix(".paths.txt")


def embed_folder(run_dir: Path, data_dir: Path, out_path: Path, device: str = "auto",
                 batch_size: int = 256, control: RunControl | None = None,
                 overwrite: bool = False) -> Iterator:
    """Write features (N, D) float32 in sorted-path order to `out_path`, paths beside it."""
    control = control or RunControl()
    out_path, paths_file = embedding_paths(out_path)
    for path in (out_path, paths_file):
        check_output_file(path, overwrite=overwrite, data_dirs=[Path(data_dir)], what="--out")
    torch_device = resolve_device(device)
    encoder, preprocess = load_encoder(run_dir, torch_device)
    data = yield from load_run_data(run_dir, data_dir, preprocess, control)
    features = yield from encode_items(encoder, data, preprocess, torch_device, control,
                                       batch_size=batch_size)
    buffer = io.BytesIO()
    np.save(buffer, features)
    # The paths first: features without their paths are worse than none (rows cannot be told apart).
    # One line per item: the file's path, and for records of .jsonl/.csv files, #record.
    atomic_write_text(paths_file, "".join(path_line(str(data.root / key)) + "\n"
                                         for key in item_keys(data)))
    atomic_write_bytes(out_path, buffer.getvalue())
    yield EmbedFinished(str(out_path), len(data), encoder.feature_dim)
