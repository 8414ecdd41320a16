"""The adaptation ladder on one labelled folder: zero-shot, then k labels per class for every
method, the same draws for all; the app's cross-validated estimate beside the true accuracy on
every other item.

    python bench/ladder.py --data ~/data/rotten-tomatoes --weights ~/models/all-MiniLM-L6-v2 \\
        --out /tmp/ladder-rt --per-class 1000 \\
        --zeroshot ~/models/all-MiniLM-L6-v2 --classes fresh="a positive review" rotten="a negative review"
    python bench/ladder.py --data ~/data/stamps --weights ~/models/lite0.pth \\
        --backbone pretrained_efficientnet_lite0 --feature-size 96 --out /tmp/ladder-stamps

The encoder is the pretrained one as it is (a run stopped at its first step, at a learning
rate of about zero: see bench/quality.py), so every method starts from the same weights. Each
method runs as `sslstudio adapt` does (its own defaults; `--repeats` sets the estimate's
repeats for all, since the slow methods make the table long on a CPU), then predicts every
item. Classes are the folder's first-level subfolders, hidden from the encoder. Results go to
OUT/results.jsonl as they come; a rerun skips what is there.

`--feature-size` (images) makes the run read items at that side instead of the weights' own
(224 px): five times cheaper at 96 px, which is what makes the network methods fit an hour on
two cores. The table says so when it is used.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import tomllib
from pathlib import Path

import numpy as np
import tomli_w

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality import App, subset_folder  # noqa: E402

from sslstudio.core.adapt.job import AdaptRequest, adapt, unfit_methods_for_run  # noqa: E402

METHODS = ["linear", "finetune", "lora", "adapter", "prefix", "prompt", "ia3", "setfit"]


def class_of(item: str) -> str:
    return item.split("/")[0]


def pretrained_run(args, folder: Path) -> Path:
    run = args.out / "run"
    options = ["--weights", str(args.weights)]
    if args.backbone:
        options += ["--backbone", args.backbone]
    App(args.out).as_is(folder, run, *options)
    if args.feature_size:
        config_path = run / "config.toml"
        config = tomllib.loads(config_path.read_text())
        preprocess = config["preprocess"]
        if preprocess.get("image_size") != args.feature_size:
            preprocess["image_size"] = args.feature_size
            preprocess.pop("feature_size", None)
            config_path.write_text(tomli_w.dumps(config))
    return run


def items_of(run: Path, folder: Path) -> list[str]:
    """The items as the run reads the folder (broken files skipped), in its order."""
    import torch

    from sslstudio.core.control import RunControl, run_to_end
    from sslstudio.core.data import item_keys
    from sslstudio.core.embed import load_encoder

    _, preprocess = load_encoder(run, torch.device("cpu"))
    return item_keys(run_to_end(preprocess.load(folder, run, RunControl())))


def zero_shot_row(args, folder: Path) -> dict:
    from sslstudio.core.zeroshot import ZeroShotRequest, zero_shot

    started = time.monotonic()
    predictions = None
    for event in zero_shot(ZeroShotRequest(args.zeroshot, folder, args.classes, device="cpu")):
        if type(event).__name__ == "ZeroShotPredictions":
            predictions = event
    names = [n.partition("=")[0] for n in args.classes]
    truth = np.array([names.index(class_of(i)) for i in predictions.items])
    return {"method": "zero-shot", "shots": 0, "draw": 0, "truth": float((predictions.predicted == truth).mean()),
            "balanced": balanced(predictions.predicted, truth, len(names)),
            "seconds": round(time.monotonic() - started, 1)}


def balanced(predicted: np.ndarray, truth: np.ndarray, classes: int) -> float:
    recalls = [float((predicted[truth == c] == c).mean()) for c in range(classes) if (truth == c).any()]
    return float(np.mean(recalls))


def one(args, run: Path, folder: Path, items: list[str], classes: list[str], shots: int, draw: int,
        method: str) -> dict:
    targets = np.array([classes.index(class_of(i)) for i in items])
    rng = np.random.default_rng(1000 * shots + draw)
    labelled = np.concatenate([rng.choice(np.flatnonzero(targets == c), shots, replace=False)
                               for c in range(len(classes))])
    labels = {items[i]: classes[targets[i]] for i in labelled}
    overrides = {"repeats": args.repeats} if args.repeats and method != "linear" else {}
    request = AdaptRequest(run, folder, labels, method, overrides, class_order=tuple(classes), seed=draw,
                           out_dir=args.out / "adapted" / f"{shots}-{draw}-{method}", device="cpu",
                           overwrite=True)
    started = time.monotonic()
    estimate = predictions = None
    for event in adapt(request):
        kind = type(event).__name__
        if kind == "AdaptEstimate":
            estimate = event
        elif kind == "AdaptPredictions":
            predictions = event
    position = {k: i for i, k in enumerate(predictions.items)}
    others = np.setdiff1d(np.arange(len(items)), labelled)
    order = np.array([position[items[i]] for i in others])
    predicted = predictions.predicted[order]
    return {"method": method, "shots": shots, "draw": draw,
            "truth": float((predicted == targets[others]).mean()),
            "balanced": balanced(predicted, targets[others], len(classes)),
            "estimate": estimate.accuracy, "ci_low": estimate.ci_low, "ci_high": estimate.ci_high,
            "scheme": estimate.scheme, "seconds": round(time.monotonic() - started, 1)}


def table(rows: list[dict], shots: list[int], note: str) -> str:
    lines = [note, "", "| method | " + " | ".join(f"{k} label{'s' * (k > 1)}/class: true (estimate) [in interval]"
                                             for k in shots) + " |",
             "|---|" + "---|" * len(shots)]
    zero = [r for r in rows if r["method"] == "zero-shot"]
    if zero:
        lines.append(f"| zero-shot (no labels) | {zero[0]['truth']:.3f} (balanced {zero[0]['balanced']:.3f}) |"
                     + " |" * (len(shots) - 1))
    for method in [m for m in METHODS if any(r["method"] == m for r in rows)]:
        cells = []
        for k in shots:
            mine = [r for r in rows if r["method"] == method and r["shots"] == k]
            if not mine:
                cells.append("")
            elif "skipped" in mine[0]:
                cells.append(mine[0]["skipped"])
            else:
                truth = np.mean([r["truth"] for r in mine])
                est = np.mean([r["estimate"] for r in mine])
                inside = sum(r["ci_low"] <= r["truth"] <= r["ci_high"] for r in mine)
                cells.append(f"{truth:.3f} ({est:.3f}) [{inside}/{len(mine)}]")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--weights", type=Path, required=True)
    parser.add_argument("--backbone", default="")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--per-class", type=int, default=0, help="items per class at most (0: all)")
    parser.add_argument("--feature-size", type=int, default=0)
    parser.add_argument("--shots", type=int, nargs="+", default=[1, 5, 10])
    parser.add_argument("--draws", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--methods", nargs="+", default=METHODS)
    parser.add_argument("--zeroshot", type=Path, help="a zero-shot model folder (CLIP, sentence encoder)")
    parser.add_argument("--classes", nargs="+", default=[], help='NAME or NAME="description" per class')
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    folder = subset_folder(args.data, args.out / "folder", args.per_class)
    results_path = args.out / "results.jsonl"
    rows = [json.loads(line) for line in results_path.read_text().splitlines()] if results_path.exists() else []
    done = {(r["method"], r["shots"], r["draw"]) for r in rows}

    def record(row: dict) -> None:
        rows.append(row)
        with open(results_path, "a") as handle:
            handle.write(json.dumps(row) + "\n")
        print(json.dumps(row), flush=True)

    if args.zeroshot and ("zero-shot", 0, 0) not in done:
        record(zero_shot_row(args, folder))
    run = pretrained_run(args, folder)
    unfit = unfit_methods_for_run(run)
    items = items_of(run, folder)
    classes = sorted({class_of(i) for i in items})
    for shots in args.shots:
        for draw in range(args.draws):
            for method in args.methods:
                if (method, shots, draw) in done:
                    continue
                if method in unfit:
                    record({"method": method, "shots": shots, "draw": draw,
                            "skipped": f"not offered: {unfit[method]}"})
                    continue
                record(one(args, run, folder, items, classes, shots, draw, method))
    size = f"items read at {args.feature_size} px (not the weights' 224)" if args.feature_size else ""
    note = (f"{args.data.name}: {len(items)} items, {len(classes)} classes; encoder {args.weights.name} as is"
            f"{'; ' + size if size else ''}; {args.draws} draws per column, estimate repeats {args.repeats}")
    # Only the draws asked for this time: an earlier run with more draws leaves rows that some
    # methods have and others not, and every cell must average the same draws.
    text = table([r for r in rows if r["draw"] < args.draws], args.shots, note)
    (args.out / "table.md").write_text(text + "\n")
    print("\n" + text)


if __name__ == "__main__":
    main()
