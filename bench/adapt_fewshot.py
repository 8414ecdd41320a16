"""Few-shot adaptation on a labelled folder: the app's estimate against the truth.

    python bench/adapt_fewshot.py --run RUN --data DIR [--shots 10] [--draws 3]
        [--methods linear finetune lora] [--out /tmp/adapt-bench]

For each draw, `shots` items per class (the folder's first-level subfolders, hidden from
pretraining) are labelled at random. Each method runs exactly as `sslstudio adapt` does: its
cross-validated estimate on those labels, then a fit on all of them and a prediction for every
item; the true accuracy is measured on every other item. The raw-pixel baseline is the same
logistic regression on standardised pixels, with the same labels and the same folds.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from sslstudio.core.adapt.base import softmax
from sslstudio.core.adapt.estimate import make_scheme, summarize
from sslstudio.core.adapt.job import AdaptRequest, adapt
from sslstudio.core.control import run_to_end
from sslstudio.core.data import item_keys, load_image_folder
from sslstudio.core.logistic import fit_logistic


def raw_pixel_baseline(pixels, targets, labelled, seed):
    """Estimate (same scheme as the linear probe) and true accuracy of logistic regression on pixels."""
    mean, std = pixels.mean(0), np.maximum(pixels.std(0), 1e-6)
    partial = np.full(len(targets), -1)
    partial[labelled] = targets[labelled]
    scheme = make_scheme(labelled, partial, repeats=10, seed=seed)
    names = tuple(str(i) for i in range(int(targets.max()) + 1))
    probas = []
    for folds in scheme.repeats:
        per_fold = []
        for train, val in folds:
            w, b = fit_logistic((pixels[train] - mean) / std, partial[train], len(names))
            per_fold.append(softmax((pixels[val] - mean) / std @ w.T + b))
        probas.append(per_fold)
    estimate = summarize("raw", scheme, partial, names, probas)
    w, b = fit_logistic((pixels[labelled] - mean) / std, partial[labelled], len(names))
    others = np.setdiff1d(np.arange(len(targets)), labelled)
    truth = float((((pixels[others] - mean) / std @ w.T + b).argmax(1) == targets[others]).mean())
    return estimate, truth


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--shots", type=int, default=10)
    parser.add_argument("--draws", type=int, default=3)
    parser.add_argument("--methods", nargs="+", default=["linear", "finetune", "lora"])
    parser.add_argument("--out", default="/tmp/adapt-bench")
    args = parser.parse_args()

    data = run_to_end(load_image_folder(Path(args.data), 28, labels_from_folders=True))
    keys = item_keys(data)
    targets = np.asarray(data.labels)
    class_names = list(data.class_names)
    pixels = data.images.reshape(len(data), -1).astype(np.float32) / 255.0
    rows = []
    for draw in range(args.draws):
        rng = np.random.default_rng(1000 + draw)
        labelled = np.concatenate([rng.choice(np.flatnonzero(targets == c), args.shots, replace=False)
                                   for c in range(len(class_names))])
        labels = {keys[i]: class_names[targets[i]] for i in labelled}
        others = np.setdiff1d(np.arange(len(keys)), labelled)
        estimate, truth = raw_pixel_baseline(pixels, targets, labelled, seed=draw)
        rows.append({"draw": draw, "method": "raw pixels", "estimate": estimate.accuracy,
                     "ci_low": estimate.ci_low, "ci_high": estimate.ci_high, "truth": truth,
                     "scheme": estimate.scheme, "seconds": 0.0})
        print(json.dumps(rows[-1]), flush=True)
        for method in args.methods:
            started = time.monotonic()
            request = AdaptRequest(Path(args.run), Path(args.data), labels, method,
                                   class_order=tuple(class_names), seed=draw,
                                   out_dir=Path(args.out) / f"draw{draw}-{method}")
            result = predictions = None
            for event in adapt(request):
                kind = type(event).__name__
                if kind == "AdaptEstimate":
                    result = event
                elif kind == "AdaptPredictions":
                    predictions = event
            position = {k: i for i, k in enumerate(predictions.items)}
            order = np.array([position[keys[i]] for i in others])
            truth = float((predictions.predicted[order] == targets[others]).mean())
            rows.append({"draw": draw, "method": method, "estimate": result.accuracy,
                         "ci_low": result.ci_low, "ci_high": result.ci_high, "truth": truth,
                         "scheme": result.scheme, "epochs": result.epochs,
                         "seconds": round(time.monotonic() - started, 1)})
            print(json.dumps(rows[-1]), flush=True)
    print("\nmethod        estimate (mean of draws)   true accuracy on the other items   "
          "estimate - truth   truth inside the 95% interval")
    for method in ["raw pixels"] + args.methods:
        mine = [r for r in rows if r["method"] == method]
        est = np.array([r["estimate"] for r in mine])
        tru = np.array([r["truth"] for r in mine])
        inside = sum(r["ci_low"] <= r["truth"] <= r["ci_high"] for r in mine)
        print(f"{method:<12}  {est.mean():.3f} ± {est.std():.3f}            {tru.mean():.3f} ± {tru.std():.3f}"
              f"                      {np.mean(est - tru):+.3f}             {inside} of {len(mine)}")


if __name__ == "__main__":
    main()
