"""Where the files that ship with the app are: resources/ beside the package, in a checkout, an
editable install and the bundle alike."""

from __future__ import annotations

from pathlib import Path

RESOURCES = Path(__file__).resolve().parents[1] / "resources"


def sample_dataset_path() -> Path:
    """The bundled sample dataset (300 Fashion-MNIST images in class folders)."""
    return RESOURCES / "samples" / "fashion-mnist"
