"""Features of every item of a folder from a trained run's encoder."""

from __future__ import annotations

import io
import sys
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from sslstudio.core.backbones import build_backbone
from sslstudio.core.run.checkpoint import CheckpointError, encoder_state
from sslstudio.core.control import RunControl
from sslstudio.core.data import DataIdentity, item_keys
from sslstudio.core.data.scan import DataError
from sslstudio.core.devices import resolve_device
from sslstudio.core.events import EmbedFinished, EmbedProgress, RunWarning
from sslstudio.core.fileio import atomic_write_bytes, atomic_write_text, path_line
from sslstudio.core.locks import OutputLock
from sslstudio.core.objectives import OBJECTIVES
from sslstudio.core.outputs import check_output_file
from sslstudio.core.preprocess import Preprocess
from sslstudio.core.run.folder import RunFolder


def load_encoder(run_dir: Path, device: torch.device, as_trained: bool = False):
    """The run's encoder in eval mode, and the Preprocess it reads items through. Read as a
    probe reads it (as its objective says), or `as_trained`: the space the objective trained."""
    folder = RunFolder(run_dir)
    if not folder.is_run() or not folder.has_checkpoint():
        raise DataError(f"{run_dir} is not a finished or checkpointed run "
                        f"({RunFolder.CONFIG} and a checkpoint are needed)")
    train_config, _, table = folder.read_config()
    preprocess = Preprocess.from_table(table).for_features()
    encoder = build_backbone(train_config.backbone, preprocess.encoder_shape())
    encoder.load_state_dict(run_encoder_state(folder))
    if features_read_for_probe(train_config) and not as_trained:
        encoder.read_for_probe()
    return encoder.to(device).eval(), preprocess


def features_read_for_probe(train_config) -> bool:
    """Whether the run's features are the backbone's probe readout (as its objective says)."""
    return OBJECTIVES.get(train_config.objective).reads_features_for_probe


def run_encoder_state(folder: RunFolder) -> dict:
    """The encoder the run hands over: the one that scored best on the monitor's labels when it
    kept one (a damaged file falls back to the last checkpoint, saying so), else the last."""
    if folder.best_path.exists():
        try:
            return encoder_state(folder.best_path, fallback=False)
        except CheckpointError as error:
            print(f"warning: {folder.best_path} is unusable ({error}); using the last checkpoint",
                  file=sys.stderr)
    return encoder_state(folder.checkpoint_path)


def encode_items(model, data, preprocess: Preprocess, device, control: RunControl,
                 indices=None, probabilities: bool = False, batch_size: int = 512) -> Iterator:
    """The model's output for items of `data` (all by default), in order, float32: an encoder's
    features, or with `probabilities` a classifier's softmax. Yields EmbedProgress."""
    indices = np.arange(len(data)) if indices is None else np.asarray(indices)
    batch_size = preprocess.inference_batch(device, batch_size)
    output: np.ndarray | None = None  # filled in place: no list of chunks and no second copy
    model.eval()
    for start in range(0, len(indices), batch_size):
        batch = indices[start:start + batch_size]
        with torch.inference_mode():
            out = model(preprocess.model_inputs(data.batch(batch), device)).float()
            if probabilities:
                out = torch.softmax(out, 1)
            if output is None:
                output = np.empty((len(indices), *out.shape[1:]), np.float32)
            output[start:start + len(batch)] = out.cpu().numpy()
        yield EmbedProgress(min(len(indices), start + batch_size), len(indices))
        control.checkpoint()
    return output if output is not None else np.zeros((0, 0), np.float32)


def embedding_paths(out_path: Path) -> tuple[Path, Path]:
    """FEATS.npy and FEATS.paths.txt for what the user gave as --out."""
    out_path = Path(out_path)
    if out_path.suffix != ".npy":
        out_path = out_path.with_name(out_path.name + ".npy")
    return out_path, out_path.with_suffix(".paths.txt")


def embed_folder(run_dir: Path, data_dir: Path, out_path: Path, device: str = "auto",
                 batch_size: int = 256, control: RunControl | None = None,
                 overwrite: bool = False, other_data: bool = False) -> Iterator:
    """Write features (N, D) float32 in sorted-path order to `out_path`, paths beside it. The
    folder must be the one the run was trained on, unless `other_data`."""
    control = control or RunControl()
    out_path, paths_file = embedding_paths(out_path)
    # One lock for the pair: features and paths from two processes would not match row for row.
    with OutputLock.acquire(out_path, "the features file") as lock:
        if lock.taken_over_from:
            yield RunWarning("lock", lock.note(f"features file {out_path}"))
        for path in (out_path, paths_file):
            check_output_file(path, overwrite=overwrite, data_dirs=[Path(data_dir)], what="--out")
        folder = RunFolder(run_dir)
        folder.check_data_place(Path(data_dir), other_data)
        torch_device = resolve_device(device)
        encoder, preprocess = load_encoder(run_dir, torch_device)
        data = yield from preprocess.load(data_dir, run_dir, control)
        note = folder.compare_data(DataIdentity.of(data_dir, item_keys(data)), other_data)
        if note:
            yield RunWarning("data", note)
        features = yield from encode_items(encoder, data, preprocess, torch_device, control,
                                           batch_size=batch_size)
        yield from _write_features(out_path, paths_file, data, features, encoder.feature_dim)


def _write_features(out_path: Path, paths_file: Path, data, features: np.ndarray,
                    feature_dim: int) -> Iterator:
    buffer = io.BytesIO()
    np.save(buffer, features)
    # The paths first: features without their paths are worse than none (rows cannot be told apart).
    # One line per item: the file's path, and for records of .jsonl/.csv files, #record.
    atomic_write_text(paths_file, "".join(path_line(str(data.root / key)) + "\n"
                                         for key in item_keys(data)))
    atomic_write_bytes(out_path, buffer.getvalue())
    yield EmbedFinished(str(out_path), len(data), feature_dim)
