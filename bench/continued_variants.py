"""A pretrained encoder continued with no labels, under a recipe variant, against the encoder as it
came and the default continued run, on bench/quality.py's subsets.

    python bench/continued_variants.py --quality /tmp/q27-text /tmp/q27-text2 --out /tmp/cont \
        --sets debates code-by-language --tag=-q256 --set queue_size=256 [--minutes 5]

For each set the quality run's folder, its `pretrained` (as it came) and `continued` rows are
reused; the variant is `sslstudio train --weights W --minutes M --set ...` with no labels. What is
probed is the encoder the run trained, its last checkpoint: where the label-free rule hands back
the encoder as it came (texts), the run's own answer would hide what the recipe did. Probes as
quality.py does (10 draws of 1, 5 and 10 labels a class, logistic regression, every other item).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from distill import bench_sets, quality_dir, run_minutes  # noqa: E402
from quality import App, Row, labels_of, modality_of, probe_all, report  # noqa: E402


def last_checkpoint_copy(run: Path) -> Path:
    """The run as its last checkpoint, without the encoder a judge kept."""
    copy = run.parent / f"{run.name}-last"
    if not copy.exists():
        shutil.copytree(run, copy, ignore=shutil.ignore_patterns("best.safetensors"))
    return copy


def bench_set(name: str, args, app: App) -> list[Row]:
    base = quality_dir(name, args.quality)
    if base is None:
        raise SystemExit(f"{name}: no quality run under {args.quality}")
    folder = base / "folder"
    modality = modality_of(folder)
    weights = args.models / ("lite0.pth" if modality == "image" else "all-MiniLM-L6-v2")
    pretrained = (("--backbone", "pretrained_efficientnet_lite0", "--weights", str(weights))
                  if modality == "image" else ("--weights", str(weights)))
    work = args.out / name
    work.mkdir(parents=True, exist_ok=True)
    rows: list[Row] = []
    features, paths = app.embed(base / "pretrained", folder)
    labels = labels_of(paths, folder)
    print(f"\n## {name}: {len(paths)} items, {len(np.unique(labels))} classes ({modality})", flush=True)

    def row(label: str, run: Path, facts: dict | None = None) -> None:
        run_features, run_paths = app.embed(run, folder)
        assert run_paths == paths, f"{run}: item order differs"
        rows.append(Row(label, probe_all(run_features, labels, args.draws), facts or {}))
        report(name, rows[-1])

    row("as it came", base / "pretrained")
    if (base / "continued" / "status.json").exists():
        row(f"continued {run_minutes(base / 'continued'):g} min, no labels (default)",
            base / "continued")
    settings = [option for knob in args.set for option in ("--set", knob)]
    run = work / f"continued{args.tag}"
    facts = app.train(folder, run, *pretrained, "--minutes", str(args.minutes), *settings)
    row(f"continued {args.minutes:g} min, no labels, {' '.join(args.set)}", last_checkpoint_copy(run),
        facts)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", type=Path, default=Path.home() / "models")
    parser.add_argument("--quality", nargs="+", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=Path("/tmp/continued-variants"))
    parser.add_argument("--sets", nargs="+", required=True)
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--draws", type=int, default=10)
    parser.add_argument("--tag", required=True, help="names the variant's runs (use --tag=-x)")
    parser.add_argument("--set", action="append", default=[], metavar="KNOB=VALUE")
    args = parser.parse_args()
    bench_sets(args, bench_set)


if __name__ == "__main__":
    main()
