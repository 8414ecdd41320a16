"""Which label-free judge ranks a continued encoder's checkpoints as a few-label probe does?
Chosen with one dev set held out (`quality.leave_one_out`).

    python bench/label_free_judge.py --data ~/data --models ~/models --out /tmp/judge \
        [--sets stamps rotten-tomatoes ...] [--minutes 5] [--per-class 300]

Per set: the pretrained encoder (EfficientNet-Lite0 for images, all-MiniLM-L6-v2 for texts)
continued for M minutes through the CLI with `--labels-from-folders`, so that the monitor's
few-label probe (10 labels a class, tested on the rest of its 2,000-item sample, at the feature
resolution) scores every snapshot; the label-free judges are logged at the same snapshots
(metrics.csv). Each judge picks one snapshot (step 0, the encoder as it came, included); its score
is that snapshot's probe accuracy. Candidates: the last encoder (the rule without labels before),
the encoder as it came, and the snapshot with the highest RankMe (effective rank), the lowest
uniformity, α-ReQ's exponent nearest 1, or the lowest mean cosine.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np

from quality import App, modality_of, print_leave_one_out, subset_folder


def snapshots(run: Path) -> list[dict]:
    with open(run / "metrics.csv", newline="") as handle:
        rows = [{k: float(v) if v else float("nan") for k, v in row.items()}
                for row in csv.DictReader(handle)]
    return [row for row in rows if np.isfinite(row.get("probe_accuracy", float("nan")))]


JUDGES = {
    "last": lambda rows: len(rows) - 1,
    "as it came": lambda rows: 0,
    "RankMe": lambda rows: int(np.nanargmax([r["effective_rank"] for r in rows])),
    "uniformity": lambda rows: int(np.nanargmin([r["uniformity"] for r in rows])),
    "alpha near 1": lambda rows: int(np.nanargmin([abs(r["spectrum_alpha"] - 1.0) for r in rows])),
    "mean cosine": lambda rows: int(np.nanargmin([r["mean_cosine"] for r in rows])),
}


def spearman(a, b) -> float:
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    if np.std(ra) == 0 or np.std(rb) == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path.home() / "data")
    parser.add_argument("--models", type=Path, default=Path.home() / "models")
    parser.add_argument("--out", type=Path, default=Path("/tmp/judge"))
    parser.add_argument("--sets", nargs="+", required=True)
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--per-class", type=int, default=300)
    args = parser.parse_args()
    app = App(args.out)
    scores, first, correlations = {}, {}, {}
    for name in args.sets:
        work = args.out / name
        folder = subset_folder(args.data / name, work / "folder", args.per_class)
        if modality_of(folder) == "image":
            options = ("--backbone", "pretrained_efficientnet_lite0",
                       "--weights", str(args.models / "lite0.pth"))
        else:
            options = ("--weights", str(args.models / "all-MiniLM-L6-v2"))
        app.train(folder, work / "continued", "--minutes", str(args.minutes), *options,
                  "--labels-from-folders")
        rows = snapshots(work / "continued")
        if len(rows) < 2:
            print(f"{name}: {len(rows)} probed snapshots, nothing to judge")
            continue
        probe = [r["probe_accuracy"] for r in rows]
        scores[name] = {judge: probe[pick(rows)] for judge, pick in JUDGES.items()}
        first[name] = probe[0]
        correlations[name] = {column: spearman([r[column] for r in rows], probe)
                              for column in ("effective_rank", "uniformity", "spectrum_alpha",
                                             "mean_cosine")}
        print(f"{name}: {len(rows)} snapshots, steps {int(rows[0]['step'])}..{int(rows[-1]['step'])}, "
              f"probe {min(probe):.3f}..{max(probe):.3f}; "
              + ", ".join(f"{j} {s:.3f}" for j, s in scores[name].items()), flush=True)
    (args.out / "judges.json").write_text(json.dumps({"scores": scores,
                                                      "correlations": correlations}, indent=1))
    print("\n### the probe accuracy of the snapshot each judge keeps (baseline: as it came)")
    print_leave_one_out(scores, first, "last")
    print("\n### Spearman correlation of each quantity with the probe, over a run's snapshots")
    print("| set | effective rank | uniformity | alpha | mean cosine |")
    print("| --- | --- | --- | --- | --- |")
    for name, row in correlations.items():
        print(f"| {name} | " + " | ".join(f"{v:+.2f}" for v in row.values()) + " |")


if __name__ == "__main__":
    main()
