"""Is the few-label probe what keeps text from scratch level with TF-IDF? One logistic regression
on the folder's sparse word TF-IDF (words and word pairs, as bench/quality.py's baseline) beside
the run's dense from-scratch features, against each alone. Nothing trains: it reads the
from-scratch runs of a `bench/quality.py --scratch-only` output.

    python bench/text_sparse_beside.py /tmp/q41-text rotten-tomatoes debates

The dense features are standardised, as the probe standardises them, then divided by the square
root of their width, so that together they weigh about as much as one unit-length TF-IDF row;
`w` scales them further. TF-IDF alone is probed at both penalties it is read with elsewhere."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from sklearn.preprocessing import StandardScaler

from quality import App, labels_of, probe, tfidf

WEIGHTS = (0.5, 1.0, 2.0, 4.0)
PENALTIES = (1.0, 10.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("quality_out", type=Path, help="a bench/quality.py --out folder")
    parser.add_argument("sets", nargs="+")
    args = parser.parse_args()
    print("| set | features | C | acc. at 10 labels a class |\n| --- | --- | --- | --- |")
    for name in args.sets:
        work = args.quality_out / name
        features, paths = App(args.quality_out).embed(work / "scratch", work / "folder")  # read back
        labels = labels_of(paths, work / "folder")
        words = tfidf(paths).tocsr()
        dense = StandardScaler().fit_transform(features) / np.sqrt(features.shape[1])
        rows = [("TF-IDF", words), ("from scratch", dense)]
        rows += [(f"TF-IDF + {w} x from scratch", sp.hstack([words, sp.csr_matrix(dense * w)]).tocsr())
                 for w in WEIGHTS]
        # Already standardised where dense: probed as the sparse rows are, with no scaler of its own.
        for label, values in rows:
            for penalty in PENALTIES:
                score = probe(values, labels, 10, 10, sparse=True, penalty=penalty)["acc@10"][0]
                print(f"| {name} | {label} | {penalty:g} | {score:.3f} |", flush=True)


if __name__ == "__main__":
    main()
