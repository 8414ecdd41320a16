"""How fast may a pretrained image encoder move when it is continued with no labels? Most folders
have none, so nothing judges the encoder a run hands back: the encoder's learning rate (a share
of the heads', `backbone_lr_scale`) is what keeps it from losing what it knew. Each candidate is
chosen with one image set held out, by two rules: the best mean rank on the other sets
(`quality.leave_one_out`) and the best worst case there (the change against the encoder as it
came on the set where it does worst: issue 27's goal is a floor, never below the encoder as it
came by more than half a point).

    python bench/continued_lr_scale.py --quality /tmp/q27-img /tmp/q27-img2 \
        [--sets stamps scripts xfig-drawings app-screenshots] [--scales 0.1 0.03 0.01]

Reads bench/quality.py outputs: a set's folder, its `pretrained` run (EfficientNet-Lite0 as it
came, read the app's way) and, with --reuse, its `continued` run as the x0.1 candidate (the
default then) unless `continued-lr0.1` exists. Each other scale trains `continued-lr<S>` through the CLI (`sslstudio train --minutes M
--backbone pretrained_efficientnet_lite0 --weights W --set backbone_lr_scale=S`, no labels) and
embeds it. Probed as bench/quality.py probes (10 labels a class, accuracy on the rest).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from quality import App, labels_of, leave_one_out, probe_all

IMAGE_SETS = ("stamps", "scripts", "xfig-drawings", "app-screenshots")
QUALITY_DEFAULT_SCALE = "0.1"  # what bench/quality.py's `continued` runs were trained with


def worst_case_leave_one_out(changes: dict[str, dict[str, float]]) -> dict[str, str]:
    """For each set, the candidate whose worst change over the other sets is best (ties: the
    higher mean change there)."""
    chosen = {}
    for held_out, row in changes.items():
        others = [changes[name] for name in changes if name != held_out] or [row]
        chosen[held_out] = max(row, key=lambda c: (min(o[c] for o in others),
                                                   np.mean([o[c] for o in others])))
    return chosen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quality", nargs="+", type=Path, required=True)
    parser.add_argument("--models", type=Path, default=Path.home() / "models")
    parser.add_argument("--sets", nargs="+", default=list(IMAGE_SETS))
    parser.add_argument("--scales", nargs="+", default=["0.1", "0.03", "0.01"])
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--draws", type=int, default=10)
    parser.add_argument("--reuse", action="store_true",
                        help="read bench/quality.py's `continued` run as the x0.1 candidate")
    args = parser.parse_args()
    weights = str(args.models / "lite0.pth")
    changes: dict[str, dict[str, float]] = {}
    print("| set | as it came | " + " | ".join(f"x{s} (steps)" for s in args.scales) + " |")
    print("| --- | --- | " + " | ".join("---" for _ in args.scales) + " |")
    for name in args.sets:
        work = next(q / name for q in args.quality if (q / name / "pretrained").is_dir())
        app = App(work.parent)
        folder = work / "folder"
        features, paths = app.embed(work / "pretrained", folder)
        labels = labels_of(paths, folder)
        came = probe_all(features, labels, args.draws)["acc@10"][0]
        cells, changes[name] = [], {}
        for scale in args.scales:
            run = work / f"continued-lr{scale}"
            if args.reuse and scale == QUALITY_DEFAULT_SCALE and not run.exists():
                run = work / "continued"
            facts = app.train(folder, run, "--minutes", str(args.minutes), "--backbone",
                              "pretrained_efficientnet_lite0", "--weights", weights,
                              "--set", f"backbone_lr_scale={scale}")
            continued, run_paths = app.embed(run, folder)
            assert run_paths == paths, f"{run}: item order differs"
            score = probe_all(continued, labels, args.draws)["acc@10"][0]
            changes[name][scale] = 100 * (score - came)
            cells.append(f"{score:.3f} ({changes[name][scale]:+.1f}; {facts.get('steps')} steps "
                         f"of {facts.get('batch')})")
        print(f"| {name} | {came:.3f} | " + " | ".join(cells) + " |", flush=True)
    for rule, chosen in (("mean rank", leave_one_out(changes)),
                         ("worst case", worst_case_leave_one_out(changes))):
        held = [changes[name][chosen[name]] for name in args.sets]
        print(f"\n{rule} on the other sets: " + ", ".join(
            f"{name} held out -> x{chosen[name]} ({changes[name][chosen[name]]:+.1f})"
            for name in args.sets)
            + f"; held-out mean change {np.mean(held):+.1f}, worst {min(held):+.1f}")


if __name__ == "__main__":
    main()
