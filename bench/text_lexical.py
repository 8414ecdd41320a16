"""Should the word-vector encoder keep a hashed TF-IDF part beside its learned mean, how many
buckets, and reduced to how many dimensions by the folder's SVD? Each candidate chosen with one
text set held out (`quality.leave_one_out`).

    python bench/text_lexical.py --data ~/data --out /tmp/lexical \
        [--sets rotten-tomatoes debates wordnet-glosses ...] [--minutes 5] [--per-class 1000] \
        [--quality /tmp/q27-text ...] [--candidates 0 16384/32 ...]

Candidates: "B" keeps B raw buckets, "B/K" reduces them to K dimensions (`lexical_dims`),
"rpK" projects 16,384 at random to K. With --quality, a set's skip-gram run from scratch and its
folder are a bench/quality.py run's (`scratch`, trained without a lexical part), not trained again.

Per set: `sslstudio train --minutes M --set lexical_buckets=0` (the default objective, skip-gram,
from scratch), then the run's encoder read with each bucket count: the learned part is the same
run's, the lexical part has no trained weights (its idf comes from the folder, as a run computes
it), so one run serves every candidate. Probed as bench/quality.py probes (10 labels a class,
logistic regression on standardised features, accuracy on the rest, mean of the draws), beside
TF-IDF on words and word pairs.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from quality import (App, labels_of, print_leave_one_out, probe_all, subset_folder, tfidf,
                     tokenized_items)

CANDIDATES = ("0", "256", "1024", "4096", "rp256", "4096/32", "4096/64", "16384/32", "16384/64")
PROJECTED_BUCKETS = 16384


def projected(features: np.ndarray, width: int, dense: int, seed: int = 0) -> np.ndarray:
    """The learned part, then the lexical part times a random ±1/sqrt(K) matrix (Achlioptas):
    K dense columns whose dot products keep the TF-IDF vectors' (Johnson-Lindenstrauss), so that
    standardising them does not blow up rare buckets as it does the sparse counts."""
    rng = np.random.default_rng(seed)
    lexical = features[:, dense:]
    matrix = rng.choice(np.float32([-1.0, 1.0]), size=(lexical.shape[1], width)) / np.sqrt(width)
    return np.hstack([features[:, :dense], lexical @ matrix])


def features_with_buckets(run: Path, folder: Path, paths: list[str], buckets: int,
                          dims: int = 0) -> np.ndarray:
    import dataclasses

    from sslstudio.core.backbones import build_backbone
    from sslstudio.core.embed import load_encoder

    trained, preprocess = load_encoder(run, torch.device("cpu"))
    preprocess = dataclasses.replace(preprocess, lexical_buckets=buckets, lexical_dims=dims)
    encoder = build_backbone("word_vectors", preprocess.encoder_shape())
    state = {k: v for k, v in trained.state_dict().items()
             if k not in ("bucket_weight", "lexical_centre", "lexical_basis")}
    encoder.load_state_dict(state, strict=False)
    ids = tokenized_items(preprocess, run, folder, paths)
    encoder.observe_corpus(ids)  # as a run does, on every item of the folder
    with torch.no_grad():
        return torch.cat([encoder(torch.from_numpy(ids[i:i + 512]))
                          for i in range(0, len(ids), 512)]).numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path.home() / "data")
    parser.add_argument("--out", type=Path, default=Path("/tmp/lexical"))
    parser.add_argument("--sets", nargs="+", default=["rotten-tomatoes", "debates", "wordnet-glosses"])
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--per-class", type=int, default=1000)
    parser.add_argument("--draws", type=int, default=10)
    parser.add_argument("--current", default="0", help="the candidate before the choice")
    parser.add_argument("--quality", nargs="*", type=Path, default=[],
                        help="bench/quality.py outputs whose skip-gram runs to read")
    parser.add_argument("--candidates", nargs="+", default=list(CANDIDATES))
    args = parser.parse_args()
    candidates = args.candidates
    app = App(args.out)
    results_file = args.out / "lexical.json"
    results = json.loads(results_file.read_text()) if results_file.exists() else {}
    for name in args.sets:
        if name in results and all(c in results[name] for c in candidates):
            continue
        work = next((q / name for q in args.quality if (q / name / "scratch").is_dir()), None)
        if work is not None:
            folder, facts = work / "folder", {}
            _, paths = app.embed(work / "scratch", folder)
        else:
            work = args.out / name
            folder = subset_folder(args.data / name, work / "folder", args.per_class)
            facts = app.train(folder, work / "scratch", "--minutes", str(args.minutes),
                              "--set", "lexical_buckets=0")
            _, paths = app.embed(work / "scratch", folder)
        labels = labels_of(paths, folder)
        row = results.get(name) or {"TF-IDF": probe_all(tfidf(paths), labels, args.draws, sparse=True),
                                    "facts": facts, "items": len(paths)}
        for candidate in (c for c in candidates if c not in row):
            if candidate.startswith("rp"):
                features = features_with_buckets(work / "scratch", folder, paths, PROJECTED_BUCKETS)
                dense = features.shape[1] - PROJECTED_BUCKETS
                features = projected(features, int(candidate[2:]), dense)
            else:
                buckets, _, dims = candidate.partition("/")
                features = features_with_buckets(work / "scratch", folder, paths, int(buckets),
                                                 int(dims or 0))
            row[candidate] = probe_all(features, labels, args.draws)
            print(name, candidate, f"{row[candidate]['acc@10'][0]:.3f}", flush=True)
        results[name] = row
        results_file.write_text(json.dumps(results, indent=1))
    for shots in (10, 5, 1):
        metric = f"acc@{shots}"
        scores = {name: {f"{b} buckets": results[name][b][metric][0] for b in candidates
                         if b in results[name]} for name in args.sets}
        baseline = {name: results[name]["TF-IDF"][metric][0] for name in args.sets}
        print(f"\n### {metric}, baseline TF-IDF")
        print_leave_one_out(scores, baseline, f"{args.current} buckets", metric)
    print("\n| set | items | skip-gram run |")
    print("| --- | --- | --- |")
    for name in args.sets:
        facts = results[name]["facts"]
        print(f"| {name} | {results[name]['items']} | {facts.get('steps')} steps of {facts.get('batch')}, "
              f"{facts.get('resolution', '')}, trained {facts.get('train_s', 0):.0f} s |")


if __name__ == "__main__":
    main()
