"""Names of the checkpoint files in a run folder, importable without torch (the app's start-up
reads them before the engine is loaded)."""

from __future__ import annotations

from pathlib import Path

CHECKPOINT_DIR = "checkpoints"
LAST = "last.safetensors"
PREVIOUS = "previous.safetensors"


def has_checkpoint(run_dir: Path) -> bool:
    """A run can be resumed, embedded or adapted from: its last or previous checkpoint exists."""
    folder = Path(run_dir) / CHECKPOINT_DIR
    return (folder / LAST).exists() or (folder / PREVIOUS).exists()
