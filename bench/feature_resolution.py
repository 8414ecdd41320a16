"""A pretrained image encoder continued on a CPU trains at 96 px while the app reads its
features at the weights' own 224 px. Which pairing of training and reading size pays?

    python bench/feature_resolution.py --out /tmp/quality --sets stamps scripts [--minutes 5]

Reads bench/quality.py's output folders (each set's `folder`, its `pretrained` and `continued`
runs) and adds, per set, the 10-label probe (10 draws, as quality.py) of:
  - the encoder as it came, read at 224 px (today's features) and at 96 px;
  - continued at 96 px for the budget, read at 224 px (today) and at 96 px (where it trained);
  - continued at 224 px for the same budget (fewer, larger steps), read at 224 px.
Reading at another size is the same run with its `feature_size` taken out of config.toml, in a
copy beside it; nothing in the original run changes. Results land in OUT/feature_resolution.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tomllib
from pathlib import Path

from quality import App, label_free_judges, labels_of, probe_all, run_facts


def read_at_training_size(run: Path) -> Path:
    """A copy of `run` whose features are read at the size it trained at."""
    copy = run.parent / f"{run.name}-read-at-trained"
    if copy.exists():
        return copy
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("cache"))
    text = (copy / "config.toml").read_text()
    kept = [line for line in text.splitlines() if not line.startswith("feature_size")]
    (copy / "config.toml").write_text("\n".join(kept) + "\n")
    preprocess = tomllib.loads((copy / "config.toml").read_text()).get("preprocess", {})
    assert "feature_size" not in preprocess, copy
    return copy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--sets", nargs="+", required=True)
    parser.add_argument("--models", type=Path, default=Path.home() / "models")
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--draws", type=int, default=10)
    args = parser.parse_args()
    app = App(args.out)
    pretrained = ("--backbone", "pretrained_efficientnet_lite0",
                  "--weights", str(args.models / "lite0.pth"))
    results_file = args.out / "feature_resolution.json"
    results = json.loads(results_file.read_text()) if results_file.exists() else {}
    print("| set | row | train px | read px | steps | acc@10 | bal@10 | RankMe |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name in args.sets:
        work = args.out / name
        folder = work / "folder"
        trained224 = work / "continued224"
        app.train(folder, trained224, "--minutes", str(args.minutes), *pretrained,
                  "--image-size", "224")
        variants = [("as it came", work / "pretrained", 96, 224),
                    ("as it came", read_at_training_size(work / "pretrained"), 96, 96),
                    ("continued", work / "continued", 96, 224),
                    ("continued", read_at_training_size(work / "continued"), 96, 96),
                    ("continued", trained224, 224, 224)]
        rows = []
        labels = None
        for label, run, train_px, read_px in variants:
            features, paths = app.embed(run, folder)
            labels = labels_of(paths, folder) if labels is None else labels
            scores = probe_all(features, labels, args.draws)
            facts = run_facts(run)
            row = {"row": label, "train_px": train_px, "read_px": read_px,
                   "steps": facts.get("steps"), "acc@10": scores["acc@10"][0],
                   "bal@10": scores["bal@10"][0],
                   "rankme": label_free_judges(features)["effective_rank"]}
            rows.append(row)
            print(f"| {name} | {label} | {train_px} | {read_px} | {row['steps']} | "
                  f"{row['acc@10']:.3f} | {row['bal@10']:.3f} | {row['rankme']:.0f} |", flush=True)
        results[name] = rows
        results_file.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
