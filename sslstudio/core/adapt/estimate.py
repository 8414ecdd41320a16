"""Honest accuracy for tiny label sets: every labelled item is scored by a model that never saw
it, repeatedly, and the interval reflects how few labels there are.

Stratified k-fold (k = 5 at most) repeated with fresh shuffles; leave-one-out when some class has
fewer than 5 labels and the fits are cheap enough. The interval is Wilson's on the number of
labelled items (repeats are not independent samples, so they do not narrow it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from sslstudio.core.events import AdaptEstimate

MAX_FOLDS = 5
# Leave-one-out costs one fit per label: fine for a logistic regression, too slow for networks
# past this many labels (they fall back to stratified k-fold, which the scheme text says).
MAX_LOO_NETWORK_FITS = 40


@dataclass(frozen=True)
class Scheme:
    description: str
    repeats: list[list[tuple[np.ndarray, np.ndarray]]]  # per repeat, (train, val) item indices

    @property
    def fits(self) -> int:
        return sum(len(r) for r in self.repeats)


def make_scheme(labelled: np.ndarray, targets: np.ndarray, repeats: int, seed: int = 0,
                network: bool = False) -> Scheme:
    """Splits of the labelled items (indices into the folder) for the estimate."""
    labelled = np.asarray(labelled, np.int64)
    y = targets[labelled]
    counts = np.bincount(y)
    smallest = int(counts[counts > 0].min())
    if smallest < MAX_FOLDS and (not network or len(labelled) <= MAX_LOO_NETWORK_FITS):
        folds = [(np.delete(labelled, i), labelled[i:i + 1]) for i in range(len(labelled))]
        return Scheme(f"leave-one-out over {len(labelled)} labels (a class has under "
                      f"{MAX_FOLDS} labels)", [folds])
    k = max(2, min(MAX_FOLDS, smallest))
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(max(1, repeats)):
        fold_of = np.empty(len(labelled), np.int64)
        for c in np.unique(y):
            members = np.flatnonzero(y == c)
            members = members[rng.permutation(len(members))]
            # Round-robin from a random starting fold: classes with few items do not always
            # land in the first folds.
            fold_of[members] = (np.arange(len(members)) + rng.integers(k)) % k
        out.append([(labelled[fold_of != f], labelled[fold_of == f]) for f in range(k)])
    repeat_text = f" x {len(out)} repeats" if len(out) > 1 else ""
    return Scheme(f"stratified {k}-fold{repeat_text} over {len(labelled)} labels", out)


def wilson_interval(correct: float, n: int, z: float = 1.96) -> tuple[float, float]:
    if n <= 0:
        return 0.0, 1.0
    p = correct / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def summarize(method: str, scheme: Scheme, targets: np.ndarray, class_names: tuple,
              val_proba: list[list[np.ndarray]], epochs: int = 0) -> AdaptEstimate:
    """The estimate from each fold's probabilities on its validation items."""
    num_classes = len(class_names)
    confusion = np.zeros((num_classes, num_classes), np.float64)
    repeat_accuracies = []
    for folds, probas in zip(scheme.repeats, val_proba):
        correct = total = 0
        for (_, val), proba in zip(folds, probas):
            predicted = proba.argmax(1)
            truth = targets[val]
            np.add.at(confusion, (truth, predicted), 1)
            correct += int((predicted == truth).sum())
            total += len(val)
        repeat_accuracies.append(correct / max(1, total))
    confusion /= max(1, len(scheme.repeats))
    support = confusion.sum(1)
    recall = np.divide(np.diag(confusion), support, out=np.zeros(num_classes), where=support > 0)
    predicted_totals = confusion.sum(0)
    precision = np.divide(np.diag(confusion), predicted_totals, out=np.zeros(num_classes),
                          where=predicted_totals > 0)
    n = int(round(support.sum()))
    accuracy = float(np.mean(repeat_accuracies))
    low, high = wilson_interval(accuracy * n, n)
    present = support > 0
    balanced = float(recall[present].mean()) if present.any() else 0.0
    return AdaptEstimate(method, scheme.description, n, accuracy, low, high, balanced,
                         tuple(class_names), recall, precision, support.round().astype(np.int64),
                         confusion, np.asarray(repeat_accuracies), epochs)
