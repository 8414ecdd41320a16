"""Which features should a few-label probe see? Every feature variant of every run that
bench/quality.py left behind, probed with quality.py's own protocol, on every image dev set.

    python bench/features_choice.py [--roots /tmp/q-before /tmp/q-before2] [--out /tmp/features_choice]
        [--kinds random scratch pretrained pretrained224 continued] [--draws 10]

Reads <root>/<set>/folder (class-per-subfolder; the classes are the labels) and the run folders
<root>/<set>/<kind>/ that have a status.json (finished or stopped runs; others are still being
produced and are skipped, so run this again later for the rest). Text sets are skipped.

The encoder is loaded as the app loads it (the best checkpoint when the run kept one, else the
last; the preprocessing it reads features through), but without the probe readout that
`load_encoder` now applies (which this script chose: c for EfficientNet, d for small_cnn), items
in the app's order.
Variants, each for every item:

  a  pooled last stage: the encoder's output (what the app uses now)
  b  last two stages, each globally average-pooled, concatenated
  c  last three stages, pooled and concatenated
  d  last stage average-pooled on a 2x2 grid, flattened
  e  the objective's projection head applied to (a) (trained runs only: scratch, continued)
  f  (a), L2-normalised

"Stages" are the feature maps at distinct resolutions. small_cnn/medium_cnn: the three residual
stages (the last is the encoder's final map). timm CNNs (EfficientNet-Lite0): the final map is
what the net pools (for Lite0 the 1x1 conv_head's 1280 channels at stride 32); the earlier ones
are timm's feature_info stages at the next coarser strides (Lite0: blocks.4, 112 ch at /16;
blocks.2, 40 ch at /8).

Probing is quality.py's `probe_all` (StandardScaler on all items, LogisticRegression on 1/5/10
labels per class, 10 draws seeded by the shot count, accuracy on every other item). Features are
cached as .npy under --out/cache and probe scores in --out/results.json, so nothing runs twice.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import tomllib  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import quality  # noqa: E402  (bench/quality.py: the probing protocol and the label reading)

from sslstudio.core.run.checkpoint import read_checkpoint  # noqa: E402
from sslstudio.core.control import RunControl, run_to_end  # noqa: E402
from sslstudio.core.data import item_keys  # noqa: E402
from sslstudio.core.backbones import build_backbone  # noqa: E402
from sslstudio.core.embed import run_encoder_state  # noqa: E402
from sslstudio.core.preprocess import Preprocess  # noqa: E402
from sslstudio.core.objectives.heads import mlp_head  # noqa: E402
from sslstudio.core.run.folder import RunFolder  # noqa: E402

KINDS = ("random", "scratch", "pretrained", "pretrained224", "continued")
VARIANTS = {
    "a": "pooled last stage (now)",
    "b": "last 2 stages pooled",
    "c": "last 3 stages pooled",
    "d": "last stage 2x2 grid",
    "e": "projection head output",
    "f": "(a) L2-normalised",
}
HEAD_KINDS = ("scratch", "continued")
# The as-is Lite0 encoder of the `pretrained` run read at 224 px, for sets whose benchmark has no
# `pretrained224` run (its BatchNorm is frozen and the as-is step is taken at a learning rate of
# ~1e-9, so the weights are those a pretrained224 run holds; only the read size differs).
DERIVED = "pretrained224d"
BATCH = 128


# -- stages -----------------------------------------------------------------------------------
def stage_modules(encoder) -> tuple[list[torch.nn.Module], str]:
    """Modules whose outputs are the stage maps, coarsest last; the last one's output is the
    map the encoder pools (checked against the encoder's output on every batch)."""
    if hasattr(encoder, "stages") and hasattr(encoder, "stem"):  # SmallCNN
        return list(encoder.stages), "small_cnn stages " + ", ".join(
            f"{i}" for i in range(len(encoder.stages)))
    net = getattr(encoder, "net", None)
    if net is None or not hasattr(net, "feature_info"):
        raise ValueError(f"{type(encoder).__name__}: not a CNN backbone this script knows")
    named = dict(net.named_modules())
    info = list(net.feature_info)
    last_reduction = info[-1]["reduction"]
    earlier = []
    seen = {last_reduction}
    for entry in reversed(info):
        if entry["reduction"] not in seen:
            seen.add(entry["reduction"])
            earlier.append(entry["module"])
    earlier = earlier[:2][::-1]
    # The final map is what the net pools: the input of its global pool.
    return [named[m] for m in earlier] + [net.global_pool], \
        "timm " + ", ".join(earlier) + ", input of global_pool"


def encoder_as_trained(run: Path, device):
    """`load_encoder` without the probe readout it now applies (the variants are built here from
    the encoder's plain output and its stages)."""
    folder = RunFolder(run)
    train_config, _, table = folder.read_config()
    preprocess = Preprocess.from_table(table).for_features()
    encoder = build_backbone(train_config.backbone, preprocess.encoder_shape())
    encoder.load_state_dict(run_encoder_state(folder))
    return encoder.to(device).eval(), preprocess


def compute_variants(run: Path, folder: Path, kind: str, read_size: int = 0,
                     scratch_dir: Path | None = None) -> tuple[dict, list[str], dict]:
    """`read_size`: read items at this size instead of the run's (the derived 224 px row), with
    the image cache in `scratch_dir` rather than in the benchmark's run folder."""
    device = torch.device("cpu")
    encoder, preprocess = encoder_as_trained(run, device)
    if read_size:
        preprocess = dataclasses.replace(preprocess, image_size=read_size, feature_size=0)
    control = RunControl()
    data = run_to_end(preprocess.load(folder, scratch_dir or run, control))
    paths = [str(data.root / key) for key in item_keys(data)]
    modules, stages_note = stage_modules(encoder)
    captured: dict[int, torch.Tensor] = {}
    hooks = []
    for index, module in enumerate(modules):
        if index == len(modules) - 1 and not hasattr(encoder, "stages"):
            hooks.append(module.register_forward_pre_hook(
                lambda _m, args, i=index: captured.__setitem__(i, args[0])))
        else:
            hooks.append(module.register_forward_hook(
                lambda _m, _args, out, i=index: captured.__setitem__(i, out)))
    chunks: dict[str, list[np.ndarray]] = {k: [] for k in "abcd"}
    max_gap = 0.0
    shapes = None
    for start in range(0, len(data), BATCH):
        idx = np.arange(start, min(len(data), start + BATCH))
        with torch.inference_mode():
            captured.clear()
            out = encoder(preprocess.model_inputs(data.batch(idx), device)).float()
            maps = [captured[i].float() for i in range(len(modules))]
            pooled = [m.mean((2, 3)) for m in maps]
            max_gap = max(max_gap, float((pooled[-1] - out).abs().max()))
            shapes = [tuple(m.shape[1:]) for m in maps]
            chunks["a"].append(out.numpy())
            chunks["b"].append(torch.cat(pooled[-2:], 1).numpy())
            chunks["c"].append(torch.cat(pooled[-3:], 1).numpy())
            chunks["d"].append(torch.nn.functional.adaptive_avg_pool2d(maps[-1], 2).flatten(1).numpy())
    for hook in hooks:
        hook.remove()
    features = {k: np.concatenate(v).astype(np.float32) for k, v in chunks.items()}
    if len(modules) < 3:
        del features["c"]
    a = features["a"]
    features["f"] = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    notes = {"stages": stages_note, "stage_shapes": [list(s) for s in shapes],
             "pooled_last_vs_output_max_abs": max_gap, "image_size": preprocess.image_size}
    if kind in HEAD_KINDS:
        head = projection_head(run, encoder.feature_dim)
        if head is not None:
            with torch.inference_mode():
                features["e"] = np.concatenate([head(torch.from_numpy(a[s:s + BATCH])).numpy()
                                                for s in range(0, len(a), BATCH)]).astype(np.float32)
        else:
            notes["head"] = "no projector in the checkpoint"
    return features, paths, notes


def projection_head(run: Path, feature_dim: int):
    """The objective's projector, from the same checkpoint file the encoder came from."""
    folder = RunFolder(run)
    path = folder.best_path if folder.best_path.exists() else folder.checkpoint_path
    tensors = read_checkpoint(path).tensors
    prefix = "model.projector."
    state = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    if not state:
        return None
    objective = tomllib.loads((run / "config.toml").read_text()).get("objective", {})
    linear = sorted({int(k.split(".")[0]) for k, v in state.items() if k.endswith("weight") and v.ndim == 2})
    last_bn = any(k.startswith(f"{linear[-1] + 1}.running_mean") for k in state)
    head = mlp_head(feature_dim, int(objective.get("projection_hidden_dim", 512)),
                    int(objective.get("projection_dim", 128)), len(linear), last_batch_norm=last_bn)
    head.load_state_dict(state)
    return head.eval()


# -- runs -------------------------------------------------------------------------------------
def run_features(run: Path, folder: Path, kind: str, cache: Path) -> tuple[dict, list[str], dict]:
    derived = kind == DERIVED
    meta_file = cache / "meta.json"
    if meta_file.exists():
        meta = json.loads(meta_file.read_text())
        features = {k: np.load(cache / f"{k}.npy") for k in meta["variants"]}
        return features, meta["paths"], meta["notes"]
    started = time.monotonic()
    features, paths, notes = compute_variants(run, folder, kind, 224 if derived else 0,
                                              cache / "pseudo-run" if derived else None)
    if derived:
        notes["derived"] = f"{run}'s encoder read at 224 px (no pretrained224 run)"
    notes["embed_s"] = round(time.monotonic() - started, 1)
    bench_npy = run.with_suffix(".npy")  # quality.py's own `sslstudio embed` output, when there
    if bench_npy.exists() and not derived:
        theirs = np.load(bench_npy)
        if theirs.shape == features["a"].shape:
            notes["a_vs_app_embed_max_abs"] = float(np.abs(theirs - features["a"]).max())
    cache.mkdir(parents=True, exist_ok=True)
    for k, v in features.items():
        np.save(cache / f"{k}.npy", v)
    meta_file.write_text(json.dumps({"variants": sorted(features), "paths": paths, "notes": notes}))
    return features, paths, notes


def discover(roots: list[Path], kinds, derive: bool = False) -> list[tuple[str, Path, Path, str]]:
    """(set label, set dir, run dir, kind) for every image set's finished runs."""
    found = []
    names = {}
    for root in roots:
        if not root.is_dir():
            continue
        for set_dir in sorted(p for p in root.iterdir() if (p / "folder").is_dir()):
            names.setdefault(set_dir.name, []).append(set_dir)
    for name, dirs in sorted(names.items()):
        for set_dir in dirs:
            label = name if len(dirs) == 1 else f"{name}@{set_dir.parent.name}"
            try:
                if quality.modality_of(set_dir / "folder") != "image":
                    continue
            except SystemExit:
                continue
            for kind in kinds:
                run = set_dir / kind
                if finished(run):
                    found.append((label, set_dir, run, kind))
            if derive and finished(set_dir / "pretrained") and not finished(set_dir / "pretrained224") \
                    and read_size(set_dir / "pretrained") != 224:
                found.append((label, set_dir, set_dir / "pretrained", DERIVED))
    return found


def read_size(run: Path) -> int:
    """The side the app reads the run's features at."""
    table = tomllib.loads((run / "config.toml").read_text()).get("preprocess", {})
    return int(table.get("feature_size") or table.get("image_size") or 0)


def finished(run: Path) -> bool:
    return (run / "status.json").exists() and (run / "checkpoints" / "last.safetensors").exists()


# -- tables -----------------------------------------------------------------------------------
def ranks_of(values: dict[str, float]) -> dict[str, float]:
    """Rank 1 = best; ties share the mean rank."""
    keys = list(values)
    scores = np.array([values[k] for k in keys])
    out = {}
    for k, s in zip(keys, scores):
        better = float((scores > s + 1e-12).sum())
        equal = float((np.abs(scores - s) <= 1e-12).sum())
        out[k] = better + (equal + 1) / 2
    return out


def kind_table(results: dict, kind: str, metric: str) -> tuple[str, dict]:
    sets = sorted(s for s in results if kind in results[s])
    if not sets:
        return "", {}
    variants = [v for v in VARIANTS if any(v in results[s][kind]["scores"] for s in sets)]
    rank_lists = {v: [] for v in variants}
    deltas = {v: [] for v in variants}
    for s in sets:
        scores = {v: results[s][kind]["scores"][v][metric][0] for v in variants
                  if v in results[s][kind]["scores"]}
        for v, r in ranks_of(scores).items():
            rank_lists[v].append(r)
            deltas[v].append(scores[v] - scores["a"])
    lines = [f"| {kind}: {metric} | dim | " + " | ".join(sets) + " | mean rank | mean Δ vs a |",
             "|---|---:|" + "---:|" * len(sets) + "---:|---:|"]
    summary = {}
    for v in variants:
        dims = sorted({results[s][kind]["dims"][v] for s in sets if v in results[s][kind]["dims"]})
        cells = []
        for s in sets:
            entry = results[s][kind]["scores"].get(v)
            cells.append(f"{entry[metric][0]:.3f}" if entry else "—")
        mean_rank = float(np.mean(rank_lists[v])) if rank_lists[v] else float("nan")
        mean_delta = float(np.mean(deltas[v])) if deltas[v] else float("nan")
        summary[v] = {"mean_rank": mean_rank, "mean_delta_vs_a": mean_delta, "sets": len(rank_lists[v])}
        lines.append(f"| {v}: {VARIANTS[v]} | {'/'.join(map(str, dims))} | " + " | ".join(cells)
                     + f" | {mean_rank:.2f} | {mean_delta:+.3f} |")
    return "\n".join(lines), summary


def group_summary(results: dict, kinds: tuple[str, ...], metric: str) -> dict:
    """Mean rank over every (set, kind) of a group, among the variants all of them have."""
    pairs = [(s, k) for s in results for k in kinds if k in results[s]
             and not (k == DERIVED and "pretrained224" in results[s])]
    if not pairs:
        return {}
    common = [v for v in VARIANTS if all(v in results[s][k]["scores"] for s, k in pairs)]
    ranks = {v: [] for v in common}
    deltas = {v: [] for v in common}
    for s, k in pairs:
        scores = {v: results[s][k]["scores"][v][metric][0] for v in common}
        for v, r in ranks_of(scores).items():
            ranks[v].append(r)
            deltas[v].append(scores[v] - scores["a"])
    return {v: {"mean_rank": float(np.mean(ranks[v])), "mean_delta_vs_a": float(np.mean(deltas[v])),
                "min_delta": float(np.min(deltas[v])), "max_delta": float(np.max(deltas[v])),
                "pairs": len(pairs)} for v in common}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--roots", nargs="+", type=Path,
                        default=[Path("/tmp/q-before"), Path("/tmp/q-before2")])
    parser.add_argument("--out", type=Path, default=Path("/tmp/features_choice"))
    parser.add_argument("--kinds", nargs="+", default=list(KINDS))
    parser.add_argument("--draws", type=int, default=10)
    parser.add_argument("--derive-224", action="store_true",
                        help=f"where a set has no pretrained224 run, add a '{DERIVED}' row: the "
                             "pretrained run's encoder read at 224 px")
    args = parser.parse_args()
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    results_file = args.out / "results.json"
    results = json.loads(results_file.read_text()) if results_file.exists() else {}

    for label, set_dir, run, kind in discover(args.roots, args.kinds, args.derive_224):
        done = results.get(label, {}).get(kind)
        if done and done.get("draws") == args.draws:
            continue
        started = time.monotonic()
        cache = args.out / "cache" / f"{set_dir.parent.name}-{set_dir.name}" / kind
        features, paths, notes = run_features(run, set_dir / "folder", kind, cache)
        labels = quality.labels_of(paths, set_dir / "folder")
        entry = {"run": str(run), "items": len(paths), "classes": int(len(np.unique(labels))),
                 "notes": notes, "draws": args.draws,
                 "dims": {v: int(f.shape[1]) for v, f in features.items()}, "scores": {}}
        for v in VARIANTS:
            if v in features:
                entry["scores"][v] = quality.probe_all(features[v], labels, args.draws)
        results.setdefault(label, {})[kind] = entry
        results_file.write_text(json.dumps(results, indent=1))
        print(f"{label}/{kind}: {len(paths)} items, dims {entry['dims']}, "
              f"acc@10 " + ", ".join(f"{v}={s['acc@10'][0]:.3f}" for v, s in entry["scores"].items())
              + f" ({time.monotonic() - started:.0f} s; {notes})", flush=True)

    summary = {"per_kind": {}, "groups": {}}
    for metric in ("acc@10", "acc@5", "acc@1"):
        print(f"\n# {metric} (mean over {args.draws} draws; accuracy on every other item)\n")
        for kind in [*args.kinds, DERIVED]:
            table, kind_summary = kind_table(results, kind, metric)
            if table:
                print(table + "\n", flush=True)
                summary["per_kind"].setdefault(kind, {})[metric] = kind_summary
        for group, kinds in (("pretrained (pretrained, pretrained224, continued)",
                              ("pretrained", "pretrained224", DERIVED, "continued")),
                             ("from scratch (scratch)", ("scratch",)),
                             ("random init (random)", ("random",))):
            g = group_summary(results, kinds, metric)
            if not g:
                continue
            summary["groups"].setdefault(group, {})[metric] = g
            best = min(g, key=lambda v: g[v]["mean_rank"])
            print(f"{group}, {metric}, over {g[best]['pairs']} (set, run) pairs, variants all have: "
                  + "; ".join(f"{v} rank {s['mean_rank']:.2f} Δ {s['mean_delta_vs_a']:+.3f} "
                              f"[{s['min_delta']:+.3f}, {s['max_delta']:+.3f}]" for v, s in g.items())
                  + f" -> best {best}")
        print()
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
