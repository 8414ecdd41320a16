"""Few-shot linear-probe accuracy of a text run's features against TF-IDF, with the same draws.

    python bench/fewshot_text.py FEATS.npy [FEATS.npy ...] [--shots 1 5 10] [--draws 5]

FEATS.npy and FEATS.paths.txt come from `sslstudio embed` on a text folder of .txt files whose
first-level subfolders are the classes (hidden from pretraining). TF-IDF (scikit-learn, word
unigrams and bigrams, sublinear tf) is fitted on every text, unsupervised, like the features.
Same protocol and draws as bench/fewshot.py.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

from fewshot import draws, labels_from_paths, probe


def tfidf_probe(x, labels: np.ndarray, train: np.ndarray) -> float:
    # Sparse TF-IDF rows are already normalised; standardising would densify them.
    test = np.setdiff1d(np.arange(len(labels)), train)
    model = LogisticRegression(max_iter=2000, C=10.0)
    model.fit(x[train], labels[train])
    return float((model.predict(x[test]) == labels[test]).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("features", nargs="+")
    parser.add_argument("--shots", type=int, nargs="+", default=[1, 5, 10])
    parser.add_argument("--draws", type=int, default=5)
    args = parser.parse_args()
    paths = Path(args.features[0]).with_suffix(".paths.txt").read_text().splitlines()
    labels, classes = labels_from_paths(paths)
    texts = [Path(p.split("#")[0]).read_text(encoding="utf-8", errors="replace") for p in paths]
    tfidf = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2).fit_transform(texts)
    sets = {}
    for feats_path in args.features:
        feats = np.load(feats_path)
        assert Path(feats_path).with_suffix(".paths.txt").read_text().splitlines() == paths
        sets[Path(feats_path).parent.name] = feats
    print(f"{len(paths)} texts, {len(classes)} classes; TF-IDF {tfidf.shape[1]} terms")
    for shots in args.shots:
        row = []
        for name, x in sets.items():
            scores = [probe(x, labels, train) for train in draws(labels, shots, args.draws)]
            row.append(f"{name} {np.mean(scores):.3f} ± {np.std(scores):.3f}")
        scores = [tfidf_probe(tfidf, labels, train) for train in draws(labels, shots, args.draws)]
        row.append(f"TF-IDF {np.mean(scores):.3f} ± {np.std(scores):.3f}")
        print(f"{shots:>3} labels/class: " + " | ".join(row))


if __name__ == "__main__":
    main()
