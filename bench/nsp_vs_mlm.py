"""Does next-sentence prediction add anything over masked language modelling alone? The same
encoder trained from scratch for the same minutes with `--objective mlm` and with
`--objective nsp` (NSP + MLM on the same pairs, as BERT), then probed like bench/quality.py:
logistic regression on 1, 5 and 10 labels per class, accuracy on every other item, mean of the
draws (the same draws for both rows), beside TF-IDF with the same labels.

    python bench/nsp_vs_mlm.py --data ~/data --sets rotten-tomatoes debates --minutes 5 \\
        --out /tmp/nsp [--per-class 0] [--draws 10]

RoBERTa (Liu et al. 2019) found NSP adds little or hurts; the table says whether that holds here.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality import SHOTS, App, labels_of, probe_all, subset_folder, tfidf  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path.home() / "data")
    parser.add_argument("--sets", nargs="+", default=["rotten-tomatoes", "debates"])
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--per-class", type=int, default=0)
    parser.add_argument("--draws", type=int, default=10)
    parser.add_argument("--out", type=Path, default=Path("/tmp/nsp"))
    args = parser.parse_args()
    app = App(args.out)
    results = {}
    for name in args.sets:
        work = args.out / name
        folder = subset_folder(args.data / name, work / "folder", args.per_class)
        rows = {}
        paths = labels = None
        for objective in ("mlm", "nsp"):
            run = work / objective
            facts = app.train(folder, run, "--objective", objective, "--minutes", str(args.minutes))
            features, run_paths = app.embed(run, folder)
            if paths is None:
                paths, labels = run_paths, labels_of(run_paths, folder)
                rows["TF-IDF"] = {"scores": probe_all(tfidf(paths), labels, args.draws, sparse=True), "facts": {}}
            assert run_paths == paths, "item order differs between the runs"
            rows[objective] = {"scores": probe_all(features, labels, args.draws), "facts": facts}
            print(name, objective, json.dumps(rows[objective]), flush=True)
        results[name] = rows
        (args.out / "results.json").write_text(json.dumps(results, indent=1))
    for name, rows in results.items():
        print(f"\n{name} ({args.minutes:g} min each from scratch, {args.draws} draws; accuracy, balanced)")
        print("| row | " + " | ".join(f"{k} labels/class" for k in SHOTS) + " | steps | batch |")
        print("|---|" + "---|" * (len(SHOTS) + 2))
        for row, data in rows.items():
            cells = [f"{data['scores'][f'acc@{k}'][0]:.3f} ({data['scores'][f'bal@{k}'][0]:.3f})" for k in SHOTS]
            facts = data["facts"]
            print(f"| {row} | " + " | ".join(cells) + f" | {facts.get('steps', '')} | {facts.get('batch', '')} |")
    print()
    for name, rows in results.items():
        gaps = [rows["nsp"]["scores"][f"acc@{k}"][0] - rows["mlm"]["scores"][f"acc@{k}"][0] for k in SHOTS]
        print(f"{name}: NSP+MLM minus MLM alone: " + ", ".join(f"{g:+.3f} at {k}" for g, k in zip(gaps, SHOTS))
              + f" (mean {np.mean(gaps):+.3f})")


if __name__ == "__main__":
    main()
