"""Issue 31's goals, read from bench/distill.py outputs: one row per set (teacher as is, the
student, the same student from scratch, latency and size) and each goal against the rows, so the
table is never stitched by hand from runs of different defaults.

    python bench/distill_goals.py /tmp/distill40/results-10min.json \
        /tmp/distill40/results-10min-32.json /tmp/distill44-text/results.json

A set's rows come from the last file that has it (so pass a variant's file after the one it
replaces). The from-scratch column is the run of the student's own backbone with the same budget
(`bench/distill.py --scratch-student`); where a file has none it falls back on the CLI's default
from scratch and says so (for texts that is the student's backbone, word vectors, anyway).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

# The goals: the student against its teacher (mean and worst, points), the student
# against the same student from scratch (mean, points), and the exported student's speed and file
# against the teacher's, by modality (at most this share of the teacher's ms and MB).
MEAN_BELOW_TEACHER = -2.0
WORST_BELOW_TEACHER = -5.0
AHEAD_OF_SCRATCH = 10.0
LATENCY_SHARE = {"image": 1 / 5, "text": 1 / 50}
SIZE_SHARE = {"image": 1 / 4, "text": 1 / 10}


def acc10(row: dict) -> float:
    return 100 * row["scores"]["acc@10"][0]


def find(rows: list[dict], prefix: str) -> dict | None:
    return next((r for r in rows if r["name"].startswith(prefix)), None)


def set_rows(paths: list[Path]) -> dict[str, tuple[list[dict], str]]:
    chosen: dict[str, tuple[list[dict], str]] = {}
    for path in paths:
        for name, rows in json.loads(path.read_text()).items():
            chosen[name] = (rows, path.name)
    return chosen


def main() -> None:
    paths = [Path(p) for p in sys.argv[1:]]
    if not paths:
        sys.exit(__doc__)
    print("| set | teacher | distilled | student - teacher | from scratch, same student | "
          "distilled - scratch | steps, resolution | ONNX ms / teacher's | MB / teacher's | file |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    gaps, margins, misses = [], [], []
    for name, (rows, source) in set_rows(paths).items():
        teacher, student = find(rows, "teacher"), find(rows, "distilled")
        if teacher is None or student is None:
            print(f"| {name} | (no {'teacher' if teacher is None else 'distilled'} row in {source}) |")
            continue
        backbone = student["facts"].get("backbone", "")
        own = find(rows, f"from scratch, {backbone}")
        scratch = own or find(rows, "from scratch")
        scratch_note = "" if own else " (CLI default)"
        gap = acc10(student) - acc10(teacher)
        margin = acc10(student) - acc10(scratch) if scratch else float("nan")
        gaps.append(gap)
        margins.append(margin)
        modality = "image" if "px" in str(student["facts"].get("resolution", "")) else "text"
        tf, sf = teacher["facts"], student["facts"]
        cells = {}
        for key, what, share, digits in (("onnx_ms", "ONNX latency", LATENCY_SHARE, 2),
                                         ("size_mb", "file", SIZE_SHARE, 1)):
            if not (sf.get(key) and tf.get(key)):
                cells[key] = "-"
                continue
            cells[key] = f"{sf[key]:.2f} / {tf[key]:.{digits}f}"
            if sf[key] > share[modality] * tf[key]:
                misses.append(f"{name}: {what} {sf[key] / tf[key]:.3f} of the teacher's")
        print(f"| {name} | {acc10(teacher) / 100:.3f} | {acc10(student) / 100:.3f} | {gap:+.1f} | "
              + (f"{acc10(scratch) / 100:.3f}{scratch_note}" if scratch else "-")
              + f" | {margin:+.1f} | {sf.get('steps')}, {sf.get('resolution', '')} | {cells['onnx_ms']} | {cells['size_mb']} | "
              f"{source} |")
    if not gaps:
        return
    worst = min(gaps)
    mean_margin = float(np.nanmean(margins))
    print(f"\n- student - teacher on average: {np.mean(gaps):+.2f} "
          f"(goal at least {MEAN_BELOW_TEACHER:+.0f}): {'met' if np.mean(gaps) >= MEAN_BELOW_TEACHER else 'missed'}")
    print(f"- worst set against its teacher: {worst:+.1f} (goal at least {WORST_BELOW_TEACHER:+.0f}): "
          + ("met" if worst >= WORST_BELOW_TEACHER else f"missed by {WORST_BELOW_TEACHER - worst:.1f}"))
    print(f"- distilled - scratch on average: {mean_margin:+.2f} over {np.sum(~np.isnan(margins))} "
          f"sets (goal at least {AHEAD_OF_SCRATCH:+.0f}): "
          + ("met" if mean_margin >= AHEAD_OF_SCRATCH else f"missed by {AHEAD_OF_SCRATCH - mean_margin:.2f}"))
    print("- latency and size: " + ("met on every set with both figures" if not misses
                                     else "missed: " + "; ".join(misses)))


if __name__ == "__main__":
    main()
