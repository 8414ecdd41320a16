"""Which items to look at: groups found without labels, and what to label next.

Before a classifier exists, the best next labels are typical items of regions no label covers
yet (TypiClust, Hacohen et al. 2022: with very few labels, typical beats uncertain). Once a
classifier exists, its least sure items (smallest margin between the top two classes).
"""

from __future__ import annotations

import numpy as np

MAX_SAMPLE = 20000  # k-means and the k suggestion look at this many items at most


def _normalised(features: np.ndarray) -> np.ndarray:
    x = features.astype(np.float32)
    x = x - x.mean(0)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-8)


def _squared_distances(x: np.ndarray, centres: np.ndarray) -> np.ndarray:
    return np.maximum((x * x).sum(1)[:, None] - 2 * x @ centres.T + (centres * centres).sum(1)[None], 0)


def kmeans(features: np.ndarray, k: int, iterations: int = 30, seed: int = 0,
           normalise: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Cluster of each item and the centres; k-means++ starts, fitted on at most MAX_SAMPLE items
    and then applied to all. Features are centred and l2-normalised (cosine geometry) first."""
    rng = np.random.default_rng(seed)
    x = _normalised(features) if normalise else features.astype(np.float32)
    n = len(x)
    k = int(max(1, min(k, n)))
    fit = x if n <= MAX_SAMPLE else x[rng.choice(n, MAX_SAMPLE, replace=False)]
    centres = np.empty((k, x.shape[1]), np.float32)
    centres[0] = fit[rng.integers(len(fit))]
    closest = _squared_distances(fit, centres[:1])[:, 0]
    for c in range(1, k):
        total = closest.sum()
        pick = rng.choice(len(fit), p=closest / total) if total > 0 else rng.integers(len(fit))
        centres[c] = fit[pick]
        closest = np.minimum(closest, _squared_distances(fit, centres[c:c + 1])[:, 0])
    for _ in range(iterations):
        assignment = _squared_distances(fit, centres).argmin(1)
        moved = 0.0
        for c in range(k):
            members = fit[assignment == c]
            if len(members):
                new = members.mean(0)
                moved = max(moved, float(np.abs(new - centres[c]).max()))
                centres[c] = new
        if moved < 1e-5:
            break
    labels = np.concatenate([_squared_distances(x[s:s + 8192], centres).argmin(1)
                             for s in range(0, n, 8192)])
    return labels.astype(np.int64), centres


def suggest_k(features: np.ndarray, k_range=range(2, 16), seed: int = 0, sample: int = 2000) -> int:
    """The k with the best silhouette score on a sample of the items."""
    rng = np.random.default_rng(seed)
    x = _normalised(features)
    if len(x) > sample:
        x = x[rng.choice(len(x), sample, replace=False)]
    distances = np.sqrt(_squared_distances(x, x))
    best_k, best_score = 2, -2.0
    for k in k_range:
        if k >= len(x):
            break
        labels, _ = kmeans(x, k, seed=seed, normalise=False)
        score = silhouette(distances, labels)
        if score > best_score:
            best_k, best_score = k, score
    return best_k


def silhouette(distances: np.ndarray, labels: np.ndarray) -> float:
    clusters = np.unique(labels)
    if len(clusters) < 2:
        return -1.0
    mean_to = np.stack([distances[:, labels == c].mean(1) for c in clusters], 1)
    own = np.searchsorted(clusters, labels)
    sizes = np.bincount(own, minlength=len(clusters))
    # a: mean distance to the others of one's own cluster (excluding oneself).
    a = mean_to[np.arange(len(labels)), own] * sizes[own] / np.maximum(sizes[own] - 1, 1)
    mean_to[np.arange(len(labels)), own] = np.inf
    b = mean_to.min(1)
    s = (b - a) / np.maximum(np.maximum(a, b), 1e-12)
    s[sizes[own] == 1] = 0.0
    return float(s.mean())


def typicality(x: np.ndarray, neighbours: int = 20) -> np.ndarray:
    """Inverse mean distance to the nearest neighbours (within the given items)."""
    if len(x) <= 1:
        return np.ones(len(x))
    k = min(neighbours, len(x) - 1)
    out = np.empty(len(x))
    for s in range(0, len(x), 2048):
        d = np.sqrt(_squared_distances(x[s:s + 2048], x))
        nearest = np.partition(d, k, axis=1)[:, 1:k + 1]
        out[s:s + 2048] = 1.0 / (nearest.mean(1) + 1e-8)
    return out


def suggest_to_label(features: np.ndarray, labelled: np.ndarray, count: int,
                     seed: int = 0) -> np.ndarray:
    """`count` unlabelled items to label next: the most typical item of each of the largest
    clusters that hold no label yet (clusters: one per existing label plus `count`)."""
    n = len(features)
    labelled_mask = np.zeros(n, bool)
    labelled_mask[np.asarray(labelled, np.int64)] = True
    k = min(n, int(labelled_mask.sum()) + count)
    clusters, _ = kmeans(features, k, seed=seed)
    x = _normalised(features)
    covered = set(clusters[labelled_mask].tolist())
    sizes = np.bincount(clusters, minlength=k)
    picks = []
    for c in np.argsort(-sizes, kind="stable"):
        if len(picks) >= count:
            break
        if c in covered or sizes[c] == 0:
            continue
        members = np.flatnonzero((clusters == c) & ~labelled_mask)
        if len(members) == 0:
            continue
        # Typicality within the cluster, on a bounded sample for speed.
        rng = np.random.default_rng(seed + int(c))
        if len(members) > 2000:
            members = members[rng.choice(len(members), 2000, replace=False)]
        picks.append(int(members[typicality(x[members]).argmax()]))
    if len(picks) < count:
        # Every cluster is covered: fill with the unlabelled items farthest from any label.
        picks.extend(k_center_greedy(x, np.concatenate([np.flatnonzero(labelled_mask),
                                                        np.array(picks, np.int64)]),
                                     count - len(picks)).tolist())
    return np.array(picks, np.int64)


def k_center_greedy(x: np.ndarray, chosen: np.ndarray, count: int) -> np.ndarray:
    """Items that each lie farthest from everything chosen so far (Sener & Savarese 2018)."""
    n = len(x)
    if n == 0 or count <= 0:
        return np.zeros(0, np.int64)
    chosen = np.asarray(chosen, np.int64)
    if len(chosen):
        nearest = np.full(n, np.inf)
        for s in range(0, len(chosen), 1024):
            nearest = np.minimum(nearest, _squared_distances(x, x[chosen[s:s + 1024]]).min(1))
    else:
        nearest = _squared_distances(x, x.mean(0, keepdims=True))[:, 0]
    picks = []
    for _ in range(min(count, n - len(chosen))):
        best = int(nearest.argmax())
        if nearest[best] <= 0:
            break
        picks.append(best)
        nearest = np.minimum(nearest, _squared_distances(x, x[best:best + 1])[:, 0])
    return np.array(picks, np.int64)


def least_confident(margin: np.ndarray, labelled: np.ndarray, count: int) -> np.ndarray:
    """Unlabelled items whose top two class probabilities are closest."""
    mask = np.ones(len(margin), bool)
    mask[np.asarray(labelled, np.int64)] = False
    candidates = np.flatnonzero(mask)
    order = np.argsort(margin[candidates], kind="stable")
    return candidates[order[:count]]
