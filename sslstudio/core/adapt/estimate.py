"""Honest accuracy for tiny label sets: every labelled item is scored by a model that never saw
it, repeatedly, and the interval reflects how few labels there are.

Stratified k-fold, k the smallest class's label count (5 at most, 2 at least), repeated with
fresh shuffles. Every fold holds out items of every class alike, so each training set keeps the
label set's class balance. Leave-one-out does not: with 2 labels a class, the held-out item's
class has half the labels of the others in its fold, and a classifier leaning on that prior
scored 0% where the truth was 62% (bench/ladder.py, Rotten Tomatoes). A class with a single label
cannot be scored (no fold could learn it without it): it trains in every fold and its item is
left out of the estimate, which says so; with one label in every class there is no estimate.
The interval is Wilson's on the number of items scored (repeats are not independent samples, so
they do not narrow it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from sslstudio.core.events import AdaptEstimate

MAX_FOLDS = 5


@dataclass(frozen=True)
class Scheme:
    description: str
    repeats: list[list[tuple[np.ndarray, np.ndarray]]]  # per repeat, (train, val) item indices

    @property
    def fits(self) -> int:
        return sum(len(r) for r in self.repeats)


def make_scheme(labelled: np.ndarray, targets: np.ndarray, repeats: int, seed: int = 0,
                class_names: tuple[str, ...] = ()) -> Scheme:
    """Splits of the labelled items (indices into the folder) for the estimate."""
    labelled = np.asarray(labelled, np.int64)
    y = targets[labelled]
    counts = np.bincount(y)
    lone = [c for c in np.unique(y) if counts[c] == 1]
    lone_text = ""
    if lone:
        names = ", ".join(class_names[c] if c < len(class_names) else str(c) for c in lone)
        lone_text = f"; {len(lone)} class{'es' * (len(lone) > 1)} with a single label ({names}) not scored"
    scored = labelled[counts[y] >= 2]
    if len(scored) == 0:
        return Scheme("no estimate: every class has a single label (label two or more in a class "
                      "to have it scored)", [])
    always = labelled[counts[y] == 1]
    k = max(2, min(MAX_FOLDS, int(counts[counts >= 2].min())))
    rng = np.random.default_rng(seed)
    y_scored = targets[scored]
    out = []
    for _ in range(max(1, repeats)):
        fold_of = np.empty(len(scored), np.int64)
        for c in np.unique(y_scored):
            members = np.flatnonzero(y_scored == c)
            members = members[rng.permutation(len(members))]
            # Round-robin from a random starting fold: classes with few items do not always
            # land in the first folds.
            fold_of[members] = (np.arange(len(members)) + rng.integers(k)) % k
        out.append([(np.sort(np.concatenate([scored[fold_of != f], always])), scored[fold_of == f])
                    for f in range(k)])
    repeat_text = f" x {len(out)} repeats" if len(out) > 1 else ""
    return Scheme(f"stratified {k}-fold{repeat_text} over {len(labelled)} labels{lone_text}", out)


def wilson_interval(correct: float, n: int, z: float = 1.96) -> tuple[float, float]:
    if n <= 0:
        return 0.0, 1.0
    p = correct / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def summarize(method: str, scheme: Scheme, targets: np.ndarray, class_names: tuple,
              val_proba: list[list[np.ndarray]], epochs: int = 0, caution: str = "") -> AdaptEstimate:
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
    accuracy = float(np.mean(repeat_accuracies)) if repeat_accuracies else float("nan")
    low, high = wilson_interval(accuracy * n, n)
    present = support > 0
    balanced = float(recall[present].mean()) if present.any() else float("nan")
    return AdaptEstimate(method, scheme.description, n, accuracy, low, high, balanced,
                         tuple(class_names), recall, precision, support.round().astype(np.int64),
                         confusion, np.asarray(repeat_accuracies), epochs,
                         caution if repeat_accuracies else "")
