"""Rebuild resources/samples/fashion-mnist from Debian's dataset-fashion-mnist package.

    apt-get download dataset-fashion-mnist && dpkg -x dataset-fashion-mnist_*.deb pkg
    python packaging/make_sample_dataset.py pkg/usr/share/datasets/fashion-mnist

Takes the first 30 test-set images of each class (300 in all), class-per-subfolder, as PNG.
"""

from __future__ import annotations

import gzip
import sys
from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = ["tshirt_top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker",
           "bag", "ankle_boot"]
PER_CLASS = 30


def main(source: Path, out: Path) -> None:
    images = np.frombuffer(gzip.open(source / "t10k-images-idx3-ubyte.gz").read(), np.uint8,
                           offset=16).reshape(-1, 28, 28)
    labels = np.frombuffer(gzip.open(source / "t10k-labels-idx1-ubyte.gz").read(), np.uint8, offset=8)
    for c, name in enumerate(CLASSES):
        folder = out / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in np.flatnonzero(labels == c)[:PER_CLASS]:
            Image.fromarray(images[i]).save(folder / f"test_{i:05d}.png", optimize=True)


if __name__ == "__main__":
    repo = Path(__file__).resolve().parents[1]
    main(Path(sys.argv[1]), repo / "resources" / "samples" / "fashion-mnist")
