"""Few-shot linear-probe accuracy of saved features against raw pixels, with the same draws.

    python bench/fewshot.py FEATS.npy [--shots 1 5 10] [--draws 5] [--raw-size 28]

Labels are the first-level subfolder names of the paths in FEATS.paths.txt (the folder's
classes, hidden from pretraining). For each draw, k labelled items per class train a logistic
regression; accuracy is measured on every other item. This is ../shared/datasets.md's protocol.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler


def labels_from_paths(paths: list[str]) -> tuple[np.ndarray, list[str]]:
    root = os.path.commonpath([os.path.dirname(p) for p in paths])
    names = [Path(p).relative_to(root).parts[0] for p in paths]
    classes = sorted(set(names))
    index = {c: i for i, c in enumerate(classes)}
    return np.array([index[n] for n in names]), classes


def raw_pixels(paths: list[str], size: int) -> np.ndarray:
    out = np.empty((len(paths), size * size * 3), np.float32)
    for i, p in enumerate(paths):
        with Image.open(p) as im:
            out[i] = np.asarray(im.convert("RGB").resize((size, size)), np.float32).ravel() / 255
    return out


def draws(labels: np.ndarray, shots: int, count: int, seed: int = 0):
    rng = np.random.default_rng(seed + shots * 1000)
    for _ in range(count):
        train = np.concatenate([rng.choice(np.flatnonzero(labels == c), shots, replace=False)
                                for c in np.unique(labels)])
        yield train


def probe(features: np.ndarray, labels: np.ndarray, train: np.ndarray) -> float:
    x = StandardScaler().fit_transform(features)  # unsupervised statistics of all items
    test = np.setdiff1d(np.arange(len(labels)), train)
    model = LogisticRegression(max_iter=2000, C=1.0)
    model.fit(x[train], labels[train])
    return float((model.predict(x[test]) == labels[test]).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("features")
    parser.add_argument("--shots", type=int, nargs="+", default=[1, 5, 10])
    parser.add_argument("--draws", type=int, default=5)
    parser.add_argument("--raw-size", type=int, default=28)
    parser.add_argument("--no-raw", action="store_true")
    args = parser.parse_args()
    feats = np.load(args.features)
    paths = Path(args.features).with_suffix(".paths.txt").read_text().splitlines()
    labels, classes = labels_from_paths(paths)
    sets = {"features": feats}
    if not args.no_raw:
        sets["raw pixels"] = raw_pixels(paths, args.raw_size)
    print(f"{len(paths)} items, {len(classes)} classes, feature dim {feats.shape[1]}")
    for shots in args.shots:
        row = []
        for name, x in sets.items():
            scores = [probe(x, labels, train) for train in draws(labels, shots, args.draws)]
            row.append(f"{name} {np.mean(scores):.3f} ± {np.std(scores):.3f}")
        print(f"{shots:>3} labels/class: " + " | ".join(row))


if __name__ == "__main__":
    main()
