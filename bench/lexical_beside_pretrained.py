"""Does a pretrained text encoder (MiniLM) read better with the folder's own words beside its
states, and reduced to how many dimensions? Each candidate chosen with one text set held out
(`quality.leave_one_out`), against the encoder as it came.

    python bench/lexical_beside_pretrained.py --quality /tmp/q27-text /tmp/q27-text2 \
        [--sets debates code-by-language ...] [--candidates 0 4096/32 4096/64]

Reads bench/quality.py outputs: a set's folder and its `pretrained` run (MiniLM as it came,
embedded by `sslstudio embed`). The states are the first columns of that run's features (what
MiniLM gives, whether or not the run's version added words beside them); the words are the
folder's lexical part as a run fits it (`LexicalPart.observe_corpus` on every item, the
run's own tokenizer and length), computed by the encoder's own code for each candidate "B/K"
(B hashed buckets reduced to K dimensions; "0": the states alone). It has no trained weights, so
one run serves every candidate. Probed as bench/quality.py probes (10 labels a class, logistic
regression on standardised features, accuracy on the rest, mean of the draws).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np
import torch

from quality import App, labels_of, print_leave_one_out, probe_all, tokenized_items

from sslstudio.core.backbones import build_backbone
from sslstudio.core.preprocess import Preprocess
from sslstudio.core.run.folder import RunFolder

TEXT_SETS = ("rotten-tomatoes", "debates", "wordnet-glosses", "code-by-language", "manpages-de")


def words_beside(preprocess, ids: np.ndarray, buckets: int, dims: int) -> np.ndarray:
    preprocess = dataclasses.replace(preprocess, lexical_buckets=buckets, lexical_dims=dims)
    encoder = build_backbone("pretrained_bert", preprocess.encoder_shape())
    encoder.observe_corpus(ids)
    with torch.no_grad():
        return torch.cat([encoder.lexical_features(torch.from_numpy(ids[i:i + 512]))
                          for i in range(0, len(ids), 512)]).numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quality", nargs="+", type=Path, required=True)
    parser.add_argument("--sets", nargs="+", default=list(TEXT_SETS))
    parser.add_argument("--candidates", nargs="+", default=["0", "4096/32", "4096/64"])
    parser.add_argument("--current", default="0", help="the candidate before the choice")
    parser.add_argument("--draws", type=int, default=10)
    parser.add_argument("--out", type=Path, default=Path("/tmp/lexical-beside-pretrained.json"))
    args = parser.parse_args()
    results = json.loads(args.out.read_text()) if args.out.exists() else {}
    for name in args.sets:
        work = next(q / name for q in args.quality if (q / name / "pretrained").is_dir())
        app = App(work.parent)
        features, paths = app.embed(work / "pretrained", work / "folder")
        preprocess = Preprocess.from_table(RunFolder(work / "pretrained").read_config()[2]).for_features()
        states = features[:, :json.loads(preprocess.bert_config)["hidden_size"]]
        labels = labels_of(paths, work / "folder")
        row = results.setdefault(name, {})
        ids = None
        for candidate in (c for c in args.candidates if c not in row):
            buckets, _, dims = candidate.partition("/")
            if candidate != "0" and ids is None:
                ids = tokenized_items(preprocess, work / "pretrained", work / "folder", paths)
            read = states if candidate == "0" else np.hstack(
                [states, words_beside(preprocess, ids, int(buckets), int(dims or 0))])
            row[candidate] = probe_all(read, labels, args.draws)
            print(name, candidate, f"{row[candidate]['acc@10'][0]:.3f}", flush=True)
        args.out.write_text(json.dumps(results, indent=1))
    for shots in (10, 1):
        metric = f"acc@{shots}"
        scores = {name: {c: results[name][c][metric][0] for c in args.candidates}
                  for name in args.sets}
        baseline = {name: results[name]["0"][metric][0] for name in args.sets}
        print(f"\n### {metric}, baseline: the encoder as it came (its states alone)")
        print_leave_one_out(scores, baseline, args.current, metric)


if __name__ == "__main__":
    main()
