"""Distillation on the dev sets: the student beside its teacher as is, from scratch and continued.

    python bench/distill.py --quality /tmp/q27-img /tmp/q27-text ... --out /tmp/distill \
        [--sets stamps debates ...] [--minutes 5] [--tag=NAME --set KNOB=VALUE ...] \
        [--scratch-student]

For each set, the items are bench/quality.py's (the same subset folder, reused from a quality run
under --quality when there is one, so its rows are read back rather than trained again):
  - the teacher as is: EfficientNet-Lite0 at its own 224 px for images (the quality run's
    `pretrained224`), all-MiniLM-L6-v2 for texts (`pretrained`);
  - from scratch with the CLI's defaults and the same budget (the quality run's `scratch`);
  - continued without labels (the quality run's `continued`);
  - `sslstudio train --teacher T --minutes M` (distill, the student on auto: small_cnn_expanded
    for images, word vectors for texts), then `sslstudio embed`;
  - with --scratch-student, the student's backbone from scratch with the same minutes (the
    modality's default objective);
and probes each with 1, 5 and 10 labels a class as quality.py does. The teacher and the student
are exported with `sslstudio export` (encoder, verified with onnxruntime), and their ONNX
latency at batch 1 and file sizes are read from the export's JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import tomllib
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality import (  # noqa: E402
    App,
    Row,
    labels_of,
    modality_of,
    probe_all,
    report,
    subset_folder,
)


def quality_dir(name: str, quality: list[Path]) -> Path | None:
    for root in quality:
        if (root / name / "folder").is_dir():
            return root / name
    return None


def run_minutes(run: Path) -> float:
    with open(run / "config.toml", "rb") as f:
        return float(tomllib.load(f)["train"]["minutes"])


def exported(app: App, run: Path, folder: Path, out: Path) -> dict:
    """ONNX latency at batch 1 (ms, onnxruntime) and the file's size (MB) of a run's encoder."""
    model = out / f"{run.name}.onnx"
    if not model.exists():
        app.cli("export", str(run), "--out", str(model), "--data", str(folder))
    info = json.loads(model.with_suffix(".json").read_text())
    latency = info.get("latency", {}).get("float_batch1", {})
    return {"onnx_ms": latency.get("onnx_ms"), "torch_ms": latency.get("torch_ms"),
            "size_mb": model.stat().st_size / 1e6}


def bench_set(name: str, args, app: App) -> list[Row]:
    reuse = quality_dir(name, args.quality)
    work = args.out / name
    work.mkdir(parents=True, exist_ok=True)
    folder = reuse / "folder" if reuse else subset_folder(args.data / name, work / "folder",
                                                          args.per_class)
    modality = modality_of(folder)
    rows: list[Row] = []
    minutes = str(args.minutes)
    teacher_run = "pretrained224" if modality == "image" else "pretrained"
    teacher = str(args.models / ("lite0.pth" if modality == "image" else "all-MiniLM-L6-v2"))
    base = reuse or work
    if not (base / "scratch" / "status.json").exists():
        app.train(folder, base / "scratch", "--minutes", minutes)
    scratch, paths = app.embed(base / "scratch", folder)
    labels = labels_of(paths, folder)
    print(f"\n## {name}: {len(paths)} items, {len(np.unique(labels))} classes ({modality})", flush=True)

    def row(label: str, run: Path, facts: dict | None = None) -> Row:
        features, run_paths = app.embed(run, folder)
        assert run_paths == paths, f"{run}: item order differs"
        result = Row(label, probe_all(features, labels, args.draws), facts or {})
        rows.append(result)
        report(name, result)
        return result

    if not (base / teacher_run / "status.json").exists():
        pretrained = (("--backbone", "pretrained_efficientnet_lite0", "--weights", teacher,
                       "--image-size", "224") if modality == "image" else ("--weights", teacher))
        app.as_is(folder, base / teacher_run, *pretrained)
    teacher_row = row("teacher as is" + (" (Lite0, 224 px)" if modality == "image" else
                                         " (all-MiniLM-L6-v2)"), base / teacher_run)
    teacher_row.facts.update(exported(app, base / teacher_run, folder, work))
    # Reused runs keep the budget they were trained with, which need not be this call's.
    rows.append(Row(f"from scratch, {run_minutes(base / 'scratch'):g} min",
                    probe_all(scratch, labels, args.draws), {"objective": "default"}))
    report(name, rows[-1])
    if (base / "continued" / "status.json").exists():
        row(f"continued {run_minutes(base / 'continued'):g} min, no labels", base / "continued")
    settings = [option for knob in args.set for option in ("--set", knob)]
    run = work / f"distill{args.tag}"
    facts = app.train(folder, run, "--teacher", teacher, "--minutes", minutes, *settings)
    config = (run / "config.toml").read_text()
    facts["plan"] = [line.strip() for line in config.splitlines() if "teacher" in line and "its features" in line][:1]
    student = row(f"distilled{args.tag}, {args.minutes:g} min", run, facts)
    student.facts.update(exported(app, run, folder, work))
    if args.scratch_student:
        # The comparison: the same student and budget, trained from scratch with the
        # CLI's objective for the modality (its own plan, not the distilled run's settings).
        with open(run / "config.toml", "rb") as f:
            backbone = tomllib.load(f)["train"]["backbone"]
        own = work / f"scratch-{backbone}-{args.minutes:g}min"
        own_facts = app.train(folder, own, "--minutes", minutes, "--backbone", backbone)
        row(f"from scratch, {backbone}, {args.minutes:g} min", own, own_facts)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=Path.home() / "data")
    parser.add_argument("--models", type=Path, default=Path.home() / "models")
    parser.add_argument("--quality", nargs="*", type=Path, default=[],
                        help="quality.py output folders whose subsets and rows to reuse")
    parser.add_argument("--out", type=Path, default=Path("/tmp/distill"))
    parser.add_argument("--sets", nargs="+", required=True)
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--per-class", type=int, default=300)
    parser.add_argument("--draws", type=int, default=10)
    parser.add_argument("--tag", default="", help="names the distilled run (for recipe variants)")
    parser.add_argument("--set", action="append", default=[], metavar="KNOB=VALUE")
    parser.add_argument("--scratch-student", action="store_true",
                        help="also train the student's backbone from scratch with the same budget")
    args = parser.parse_args()
    bench_sets(args, bench_set)


def bench_sets(args, bench_set) -> None:
    """`bench_set(name, args, app)` for each of `args.sets`, its rows kept in
    OUT/results<TAG>.json after each set (with the sets of earlier calls), then one table."""
    app = App(args.out)
    results_path = args.out / f"results{args.tag}.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    for name in args.sets:
        results[name] = [row.__dict__ for row in bench_set(name, args, app)]
        results_path.write_text(json.dumps(results, indent=1))
    print("\n| set | row | acc 1 | acc 5 | acc 10 | bal 10 | facts |")
    for name, rows in results.items():
        for row in rows:
            report(name, Row(**row))


if __name__ == "__main__":
    main()
