"""Is the app's estimate honest? Its cross-validated accuracy and 95% interval on k labels per
class, against the true accuracy on every other item, over many random draws.

    python bench/estimate_coverage.py FEATS.npy [--shots 10] [--draws 20]

FEATS.npy and FEATS.paths.txt come from `sslstudio embed`; classes are the first-level
subfolders (hidden from pretraining). Each draw runs the linear probe's estimate exactly as
`sslstudio adapt` does (same folds, same solver, same interval).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

from sslstudio.core.adapt.base import softmax
from sslstudio.core.adapt.estimate import make_scheme, summarize
from sslstudio.core.logistic import fit_logistic


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("features")
    parser.add_argument("--shots", type=int, default=10)
    parser.add_argument("--draws", type=int, default=20)
    args = parser.parse_args()
    features = np.load(args.features)
    paths = Path(args.features).with_suffix(".paths.txt").read_text().splitlines()
    root = os.path.commonpath([os.path.dirname(p) for p in paths])
    names = [Path(p).relative_to(root).parts[0] for p in paths]
    classes = sorted(set(names))
    targets = np.array([classes.index(n) for n in names])
    x = (features - features.mean(0)) / np.maximum(features.std(0), 1e-6)
    gaps, covered = [], 0
    print("draw  estimate  interval       truth")
    for draw in range(args.draws):
        rng = np.random.default_rng(5000 + draw)
        labelled = np.concatenate([rng.choice(np.flatnonzero(targets == c), args.shots, replace=False)
                                   for c in range(len(classes))])
        partial = np.full(len(targets), -1)
        partial[labelled] = targets[labelled]
        scheme = make_scheme(labelled, partial, 10, seed=draw)
        probas = []
        for folds in scheme.repeats:
            per_fold = []
            for train, val in folds:
                weight, bias = fit_logistic(x[train], partial[train], len(classes))
                per_fold.append(softmax(x[val] @ weight.T + bias))
            probas.append(per_fold)
        estimate = summarize("linear", scheme, partial, tuple(classes), probas)
        weight, bias = fit_logistic(x[labelled], targets[labelled], len(classes))
        others = np.setdiff1d(np.arange(len(targets)), labelled)
        truth = float(((x[others] @ weight.T + bias).argmax(1) == targets[others]).mean())
        inside = estimate.ci_low <= truth <= estimate.ci_high
        covered += inside
        gaps.append(estimate.accuracy - truth)
        print(f"{draw:>4}  {estimate.accuracy:.3f}     {estimate.ci_low:.3f}-{estimate.ci_high:.3f}  "
              f"{truth:.3f}{'' if inside else '  (outside)'}")
    print(f"\nestimate - truth: mean {np.mean(gaps):+.3f}, sd {np.std(gaps):.3f}; "
          f"the 95% interval held the truth in {covered} of {args.draws} draws")


if __name__ == "__main__":
    main()
