"""Without labels, can the app tell whether continuing a pretrained encoder helped? Each
label-free judge picks between the encoder as it came and the continued one, from their features
alone; its score is the 10-label probe accuracy of the one it picks. The judge is chosen with one
dev set held out (`quality.leave_one_out`).

    python bench/label_free_judge.py /tmp/quality [/tmp/quality-text ...]

Reads bench/quality.py's output folders (results.json, and each row's features beside its run):
the pretrained encoder as it is, read at its own resolution (`pretrained224.npy` for images,
`pretrained.npy` for texts), and continued with no labels (`continued.npy`). Judges: always the
continued encoder (the app's rule without labels until now), always the encoder as it came, and
the one with the higher RankMe (effective rank), the lower uniformity, α-ReQ's exponent nearer 1,
or the lower mean cosine, each on an evenly spread sample of 2,000 items.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from quality import label_free_judges, print_leave_one_out

AS_IT_CAME = {"image": "EfficientNet-Lite0 as is at 224 px", "text": "all-MiniLM-L6-v2 as is"}
FILES = {"image": "pretrained224.npy", "text": "pretrained.npy"}

JUDGES = {
    "continued (no judge)": lambda came, cont: 1,
    "as it came": lambda came, cont: 0,
    "RankMe": lambda came, cont: int(cont["effective_rank"] > came["effective_rank"]),
    "uniformity": lambda came, cont: int(cont["uniformity"] < came["uniformity"]),
    "alpha near 1": lambda came, cont: int(abs(cont["spectrum_alpha"] - 1) < abs(came["spectrum_alpha"] - 1)),
    "mean cosine": lambda came, cont: int(cont["mean_cosine"] < came["mean_cosine"]),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("outs", nargs="+", type=Path, help="bench/quality.py --out folders")
    args = parser.parse_args()
    scores, came_scores, modality_of = {}, {}, {}
    print("| set | as it came | continued, no labels | " + " | ".join(
        f"{k}: came / continued" for k in ("effective_rank", "uniformity", "spectrum_alpha", "mean_cosine")) + " |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for out in args.outs:
        results = json.loads((out / "results.json").read_text())["sets"]
        for name, rows in results.items():
            modality = "text" if any(r["name"] == "TF-IDF" for r in rows) else "image"
            came_row = next((r for r in rows if r["name"] == AS_IT_CAME[modality]), None)
            cont_row = next((r for r in rows if "continued" in r["name"]
                             and "judged" not in r["name"]), None)
            if came_row is None or cont_row is None:
                continue
            came = label_free_judges(np.load(out / name / FILES[modality]))
            cont = label_free_judges(np.load(out / name / "continued.npy"))
            probes = (came_row["scores"]["acc@10"][0], cont_row["scores"]["acc@10"][0])
            scores[name] = {judge: probes[pick(came, cont)] for judge, pick in JUDGES.items()}
            came_scores[name] = probes[0]
            modality_of[name] = modality
            print(f"| {name} | {probes[0]:.3f} | {probes[1]:.3f} | " + " | ".join(
                f"{came[k]:.3g} / {cont[k]:.3g}" for k in came) + " |")
    print("\n### the probe accuracy (10 labels a class) of the encoder each judge keeps; "
          "baseline: as it came")
    print_leave_one_out(scores, came_scores, "continued (no judge)")
    # A modality may have a judge of its own (`LABEL_FREE_JUDGE` is by modality): each chosen
    # with the other sets of that modality held out.
    for modality in sorted(set(modality_of.values())):
        names = [n for n in scores if modality_of[n] == modality]
        if len(names) < 2:
            continue
        print(f"\n### {modality} sets only")
        print_leave_one_out({n: scores[n] for n in names}, {n: came_scores[n] for n in names},
                            "continued (no judge)")


if __name__ == "__main__":
    main()
