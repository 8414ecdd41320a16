"""The 2-D map where groups stand apart: t-SNE through openTSNE.

PCA (`monitor.project_2d`) keeps a map's large-scale layout and is instant, which is what the
live glide during training wants; but on 70,000 Fashion-MNIST items it draws one blob where the
classes overlap. t-SNE keeps each item's neighbours beside it, which is what a person labelling
by groups needs. openTSNE (Policar et al., JSS 2024) is chosen over UMAP: its FFT-accelerated
gradients (FIt-SNE) scale to millions of points on a few cores, it is compiled ahead (umap-learn
compiles through numba on first use, tens of seconds on a laptop), and its optimisation can be
run a few iterations at a time, which is where this generator yields, so progress shows and
cancel takes effect within a second or so.
"""

from __future__ import annotations

import os
import time
from typing import Iterator

import numpy as np

from sslstudio.core.control import RunControl
from sslstudio.core.events import EmbeddingSnapshot, MapProgress
from sslstudio.core.run.folder import RunFolder

PCA_DIMENSIONS = 50  # features are reduced first: neighbours are found faster, and no less well
PERPLEXITY = 30.0
# Past UNIFORM_FROM points, each point's 15 nearest neighbours weigh alike instead of the
# 90 a perplexity of 30 weighs (Kobak & Berens 2019: the maps look alike). The neighbour search
# and the affinities then take a quarter of the memory (200,000 points: +350 MB against +1.2 GB,
# which took the app past 3 GB) and a third of the time. Below it perplexity stays: it placed
# neighbours a little better on every set (bench/map_quality.py --uniform: 10-NN accuracy in 2-D
# 0.828 against 0.821 on all 70,000 Fashion-MNIST images, 0.953/0.947 MNIST, 0.517/0.504 stamps;
# trustworthiness the same to 0.001 but stamps, where uniform was 0.007 better).
UNIFORM_FROM = 100_000
UNIFORM_NEIGHBOURS = 15
EXAGGERATION_ITERATIONS = 250  # openTSNE's defaults: early exaggeration 12, then plain t-SNE
OPTIMISE_ITERATIONS = 500
CHUNK_ITERATIONS = 25
BARNES_HUT_BELOW = 20_000
NEIGHBOUR_MAP_MIN_ITEMS = 50  # below it t-SNE has too few neighbours to go on: PCA is the map


def neighbour_map(features: np.ndarray, control: RunControl | None = None, seed: int = 0,
                  threads: int | None = None) -> Iterator[MapProgress]:
    """t-SNE coordinates of `features` (use `yield from`; it yields MapProgress), float32 (N, 2),
    centred and scaled to a unit root-mean-square radius like the PCA map."""
    from openTSNE import TSNEEmbedding, affinity, initialization
    from sslstudio.core.monitor import project_2d

    control = control or RunControl()
    x = np.asarray(features, np.float32)
    finite = all(np.isfinite(x[start:start + 8192]).all() for start in range(0, len(x), 8192))
    if len(x) < NEIGHBOUR_MAP_MIN_ITEMS or not finite:
        return project_2d(x, None)
    # One core is left to the window: openTSNE's threads wait on each other when any is
    # descheduled (2 threads on 2 busy cores: 2,000 points in 16 s, against 6 s with 1).
    threads = threads or max(1, (os.cpu_count() or 2) - 1)
    total = EXAGGERATION_ITERATIONS + OPTIMISE_ITERATIONS
    started = time.monotonic()
    yield MapProgress(0, total, "finding neighbours", 0.0)
    reduced = _pca(x, PCA_DIMENSIONS)
    control.checkpoint()
    if len(x) >= UNIFORM_FROM:
        built = affinity.Uniform(reduced, k_neighbors=UNIFORM_NEIGHBOURS, n_jobs=threads,
                                 random_state=seed)
    else:
        perplexity = min(PERPLEXITY, (len(x) - 1) / 3.0)
        built = affinity.PerplexityBasedNN(reduced, perplexity=perplexity, n_jobs=threads,
                                           random_state=seed)
    # Only the affinity matrix is needed from here on: the neighbour lists and the search index
    # (hundreds of MB at 200,000 points) are let go before the optimisation.
    affinities = affinity.PrecomputedAffinities(built.P, normalize=False)
    del built
    control.checkpoint()
    start = initialization.pca(reduced, random_state=seed)
    del reduced
    # Barnes-Hut below 20,000 points, where the FFT grid's fixed cost per iteration dominates
    # (two cores: 10,000 points 21.8 s against 32.6 s; 30,000 75.0 s against 53.6 s).
    method = "bh" if len(x) < BARNES_HUT_BELOW else "fft"
    embedding = TSNEEmbedding(start, affinities, negative_gradient_method=method, n_jobs=threads,
                              random_state=seed)
    done = 0
    for iterations, exaggeration, momentum in ((EXAGGERATION_ITERATIONS, 12.0, 0.5),
                                               (OPTIMISE_ITERATIONS, None, 0.8)):
        for _ in range(0, iterations, CHUNK_ITERATIONS):
            # The optimiser keeps its gains between calls, so chunks add up to one run.
            embedding.optimize(CHUNK_ITERATIONS, exaggeration=exaggeration, momentum=momentum,
                               inplace=True)
            done += CHUNK_ITERATIONS
            yield MapProgress(done, total, "arranging the map", time.monotonic() - started)
            control.checkpoint()
    coords = np.asarray(embedding, np.float64)
    coords -= coords.mean(0)
    coords /= np.sqrt((coords ** 2).sum(1).mean()) or 1.0
    return coords.astype(np.float32)


def _pca(x: np.ndarray, dimensions: int) -> np.ndarray:
    """Exact PCA from the covariance, a chunk of rows at a time (`monitor.principal_axes`):
    scikit-learn's centred copy and its workspace took gigabytes at 200,000 points. `x` is
    finite (the caller checked)."""
    from sslstudio.core.monitor import principal_axes, project_onto

    if x.shape[1] <= dimensions:
        return x.astype(np.float32)
    return project_onto(x, *principal_axes(x, dimensions)).astype(np.float32)


def aligned(coords: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """`coords` rotated or reflected onto `reference` (orthogonal Procrustes), so that a map
    replacing another glides into place instead of arriving mirrored."""
    if coords.shape != reference.shape or len(coords) < 2:
        return coords
    u, _, vt = np.linalg.svd(coords.astype(np.float64).T @ reference.astype(np.float64))
    return (coords @ (u @ vt)).astype(np.float32)


def run_neighbour_map(run_dir, control: RunControl | None = None):
    """The t-SNE map of a run's last snapshot (the monitor's sample, from the features the run
    saved with it), kept in the snapshot file; yields MapProgress, then the map as an
    EmbeddingSnapshot. Nothing for a run whose snapshot has no features (made before they were
    saved, or with no snapshot at all)."""
    folder = RunFolder(run_dir)
    snapshot = folder.snapshot()
    if snapshot is None or "features" not in snapshot:
        return
    step, indices, labels = int(snapshot["step"]), snapshot["indices"], snapshot["labels"]
    coords = snapshot.get("neighbour_coords")
    if coords is None:
        coords = yield from neighbour_map(snapshot["features"].astype(np.float32), control)
        coords = aligned(coords, snapshot["coords"])
        folder.write_snapshot(step, indices, snapshot["coords"], labels, snapshot["features"], coords)
    yield EmbeddingSnapshot(step, indices, coords, labels)
