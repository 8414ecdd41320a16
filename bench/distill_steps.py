"""How many steps should an image student's budget buy before the plan spends it on pixels?
Reads two bench/distill.py outputs of the same sets and budget: one run with the plan's rule as it
was (RESULTS_RULE, the students' resolution chosen for 500 steps) and one at a lower resolution
(RESULTS_CANDIDATE, e.g. `--set image_size=32`, what a larger target picks), or any two variants of
the student. A set the candidate has no run of (native 28 px, where both rules take the same
resolution) is read from the first file for both.

    python bench/distill.py --quality Q --out /tmp/distill40 --minutes 10 --sets S \
        --tag=-10min                                  # the rule as it was
    python bench/distill.py ... --tag=-10min-32 --set image_size=32
    python bench/distill_steps.py /tmp/distill40/results-10min.json \
        /tmp/distill40/results-10min-32.json

Each candidate is chosen with one set held out by two rules: the best mean rank on the other sets
(`quality.leave_one_out`) and the best worst case there against the teacher (issue 31's goal is a
floor: a student never more than 5 points below its teacher).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from continued_lr_scale import worst_case_leave_one_out
from quality import leave_one_out


def acc10(rows: list[dict], prefix: str) -> float:
    return next(r["scores"]["acc@10"][0] for r in rows if r["name"].startswith(prefix))


def student(rows: list[dict]) -> dict:
    return next(r for r in rows if r["name"].startswith("distilled"))


def main() -> None:
    rule_path, candidate_path = Path(sys.argv[1]), Path(sys.argv[2])
    rule, candidate = json.loads(rule_path.read_text()), json.loads(candidate_path.read_text())
    # Any two variants compare the same way (a wider student, another target scaling): each is
    # named by its results file.
    names = (rule_path.stem.removeprefix("results"), candidate_path.stem.removeprefix("results"))
    against_teacher: dict[str, dict[str, float]] = {}
    shared = [name for name in rule if name not in candidate]
    if shared:
        print(f"(one run stands for both on {', '.join(shared)}: {names[1]} has none of its own)")
    print(f"| set | teacher | {names[0]}: acc. (steps, resolution) | {names[1]}: acc. (steps, "
          "resolution) |")
    print("| --- | --- | --- | --- |")
    for name, rows in rule.items():
        teacher = acc10(rows, "teacher")
        runs = [student(rows), student(candidate.get(name, rows))]
        scores = [acc10([run], "distilled") for run in runs]
        against_teacher[name] = {label: 100 * (score - teacher) for label, score in zip(names, scores)}
        cells = [f"{score:.3f} ({run['facts'].get('steps')}, {run['facts'].get('resolution')})"
                 for score, run in zip(scores, runs)]
        print(f"| {name} | {teacher:.3f} | " + " | ".join(cells) + " |")
    for label, chosen in (("mean rank", leave_one_out(against_teacher)),
                          ("worst case", worst_case_leave_one_out(against_teacher))):
        held = [against_teacher[name][chosen[name]] for name in against_teacher]
        print(f"\n{label} on the other sets: " + ", ".join(
            f"{name} held out -> {chosen[name]} ({against_teacher[name][chosen[name]]:+.1f})"
            for name in against_teacher)
            + f"; held-out student - teacher: mean {np.mean(held):+.1f}, worst {min(held):+.1f}")


if __name__ == "__main__":
    main()
