"""Which 2-D map shows groups: PCA against the app's t-SNE (sslstudio.core.projection).

    python bench/map_quality.py --runs /tmp/quality --sets fashion-mnist mnist stamps \
        [--row scratch] [--sizes 10000 70000 200000] [--threads 2]

Quality, per dev set, on the features `bench/quality.py` embedded (RUNS/SET/ROW.npy, its
.paths.txt, and the class-per-subfolder folder RUNS/SET/folder): trustworthiness (scikit-learn's
definition, k = 10: how many of each point's 2-D neighbours are true neighbours in feature space)
and the accuracy of a 10-nearest-neighbour vote in 2-D with the folder's classes (how well a
person could label by regions of the map). Trustworthiness needs every pairwise distance, so
past --trust-items points it is computed on a fixed sample of them (the map itself is of all).

With --uniform, t-SNE is drawn twice per set, once with each kind of affinities the app uses
(perplexity 30; uniform over 15 neighbours, past projection.UNIFORM_FROM points), whatever the
set's size.

Time, per size: PCA and t-SNE of that many points on --threads cores, from features like a
run's (the first set's features repeated with a little noise, so the map has real groups).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from quality import labels_of  # noqa: E402
from sslstudio.core.control import run_to_end  # noqa: E402
from sslstudio.core.monitor import project_2d  # noqa: E402
from sslstudio.core import projection  # noqa: E402
from sslstudio.core.projection import neighbour_map  # noqa: E402


def knn_accuracy_2d(coords: np.ndarray, labels: np.ndarray, k: int = 10) -> float:
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.model_selection import cross_val_predict

    # Leave-one-out is what "the neighbours of each point" means; 10-fold is the same to a few
    # tenths of a point and affordable at 70,000.
    predicted = cross_val_predict(KNeighborsClassifier(k), coords, labels, cv=10)
    return float((predicted == labels).mean())


def trust(features: np.ndarray, coords: np.ndarray, limit: int, k: int = 10) -> float:
    from sklearn.manifold import trustworthiness

    if len(features) > limit:
        pick = np.random.default_rng(0).choice(len(features), limit, replace=False)
        features, coords = features[pick], coords[pick]
    return float(trustworthiness(features, coords, n_neighbors=k))


def maps(features: np.ndarray, threads: int, both_affinities: bool = False) -> dict[str, tuple[np.ndarray, float]]:
    """PCA and the app's t-SNE; with `both_affinities`, t-SNE with each of its two kinds of
    affinities whatever the number of points, in place of the app's choice."""
    started = time.monotonic()
    result = {"PCA": (project_2d(features, None), time.monotonic() - started)}
    variants = {"t-SNE": projection.UNIFORM_FROM}
    if both_affinities:
        variants = {f"t-SNE, perplexity {projection.PERPLEXITY:g}": 1 << 62,
                    f"t-SNE, uniform over {projection.UNIFORM_NEIGHBOURS} neighbours": 0}
    chosen = projection.UNIFORM_FROM
    try:
        for name, uniform_from in variants.items():
            projection.UNIFORM_FROM = uniform_from
            started = time.monotonic()
            result[name] = (run_to_end(neighbour_map(features, threads=threads)), time.monotonic() - started)
    finally:
        projection.UNIFORM_FROM = chosen
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=Path, default=Path("/tmp/quality"))
    parser.add_argument("--sets", nargs="+", default=["fashion-mnist", "mnist", "stamps"])
    parser.add_argument("--row", default="scratch", help="which embedded run of each set")
    parser.add_argument("--sizes", nargs="*", type=int, default=[10_000, 70_000, 200_000])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--trust-items", type=int, default=10_000)
    parser.add_argument("--uniform", action="store_true",
                        help="t-SNE with perplexity affinities and with uniform ones, on each set")
    args = parser.parse_args()

    print("| set | items | map | trustworthiness (k=10) | 10-NN accuracy in 2-D | seconds |")
    print("| --- | --- | --- | --- | --- | --- |")
    first = None
    for name in args.sets:
        folder = args.runs / name
        features = np.load(folder / f"{args.row}.npy").astype(np.float32)
        paths = (folder / f"{args.row}.paths.txt").read_text().splitlines()
        labels = labels_of(paths, folder / "folder")
        first = features if first is None else first
        for method, (coords, seconds) in maps(features, args.threads, args.uniform).items():
            print(f"| {name} | {len(features):,} | {method} | {trust(features, coords, args.trust_items):.3f} "
                  f"| {knn_accuracy_2d(coords, labels):.3f} | {seconds:.1f} |", flush=True)

    if args.sizes and first is not None:
        print("\n| points | PCA seconds | t-SNE seconds |")
        print("| --- | --- | --- |")
        rng = np.random.default_rng(0)
        scale = first.std(0, keepdims=True) * 0.05
        for size in args.sizes:
            rows = rng.integers(0, len(first), size)
            features = first[rows] + rng.normal(size=(size, first.shape[1])).astype(np.float32) * scale
            timings = maps(features, args.threads)
            print(f"| {size:,} | {timings['PCA'][1]:.1f} | {timings['t-SNE'][1]:.1f} |", flush=True)


if __name__ == "__main__":
    main()
