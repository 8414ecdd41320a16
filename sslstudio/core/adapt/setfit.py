"""SetFit (Tunstall et al. 2022): contrastive fine-tuning of the encoder on pairs made from the
few labels, then a logistic head on the tuned features.

Pairs: for each labelled item, each iteration draws one item of the same class (positive) and
one of another class (negative), as the paper's pair generation does; a class with a single label
pairs it with itself, which still teaches something because the two copies are augmented apart
(images) or pass through different dropout (text, as SimCSE). The body learns to put the cosine
similarity of a pair at 1 (same class) or 0 (different): the paper's cosine-similarity loss.
The head is the linear probe's logistic regression, on the tuned encoder's features of the
training items; it is folded into a Linear so the saved model is encoder -> Linear like the
others.

With one label in every class there are no positive pairs but an item with itself: the pair
stage is skipped and the head fits the untuned features (see `_head_only`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from sslstudio.core.adapt.base import AdaptConfig, Classifier, Fitted, register_adapter
from sslstudio.core.adapt.linear import folded_head
from sslstudio.core.adapt.network import EVAL_BATCH, NetworkAdapter, predict_proba
from sslstudio.core.config import knob
from sslstudio.core.events import AdaptProgress
from sslstudio.core.logistic import fit_logistic


@dataclass
class SetFitConfig(AdaptConfig):
    iterations: int = knob(20, low=1, high=1000,
                           help="pair draws per labelled item (each gives a positive and a negative pair)")
    batch_size: int = knob(16, low=2, high=4096, help="pairs per step")
    lr: float = knob(5e-5, low=1e-7, high=1.0, help="learning rate of the encoder in the pair stage")
    weight_decay: float = knob(1e-4, low=0.0, high=1.0, help="AdamW weight decay")
    augmentation_strength: float = knob(0.5, low=0.0, high=1.0,
                                        help="crop, flip and colour changes of the paired images")
    regularization: float = knob(1.0, low=1e-6, high=1e6, help="L2 strength of the logistic head")
    freeze_batchnorm: bool = knob(True, help="keep BatchNorm statistics from pretraining")


def setfit_pairs(targets: np.ndarray, iterations: int, rng: np.random.Generator):
    """Pairs of positions into `targets`: (first, second, same) with one positive and one
    negative pair per item per iteration. `same` is 1.0 for a positive pair, 0.0 otherwise."""
    targets = np.asarray(targets)
    members = {c: np.flatnonzero(targets == c) for c in np.unique(targets)}
    others = {c: np.flatnonzero(targets != c) for c in members}
    first, second, same = [], [], []
    for _ in range(iterations):
        for i, c in enumerate(targets):
            first += [i, i]
            second.append(int(rng.choice(members[c][members[c] != i])) if len(members[c]) > 1 else i)
            second.append(int(rng.choice(others[c])) if len(others[c]) else i)
            same += [1.0, 0.0 if len(others[c]) else 1.0]
    return np.array(first, np.int64), np.array(second, np.int64), np.array(same, np.float32)


def cosine_pair_loss(first: torch.Tensor, second: torch.Tensor, same: torch.Tensor) -> torch.Tensor:
    """Mean squared gap between each pair's cosine similarity and its target (1 same, 0 not)."""
    return ((nn.functional.cosine_similarity(first, second, dim=1) - same) ** 2).mean()


@register_adapter("setfit")
class SetFit(NetworkAdapter):
    """Contrastive pair tuning of the encoder, then logistic regression on its features."""

    config_cls = SetFitConfig
    # bench/ladder.py, Rotten Tomatoes, 8 draws each: at 10 labels a class the linear probe's
    # estimate held the truth in 8 and followed it (correlation +0.33); SetFit's held it in 4
    # and ran against it (-0.86: its highest estimates came with its lowest true accuracies).
    # At 5 labels a class both held it in 8 (SetFit +0.69); so did both on MNIST at 10 labels a
    # class (bench/adapt_fewshot.py, 100 labels). Its folds misjudge the labels they hold out in
    # a way fits on other items do not (stop 25's note).
    estimate_caution = ("SetFit's cross-validated estimate can run opposite to its true accuracy: on "
                        "Rotten Tomatoes at 10 labels a class the truth fell inside the interval in 4 "
                        "of 8 draws (at 5 labels 8 of 8, and 8 of 8 on MNIST at 10); check it on items you "
                        "label next")

    def build(self):
        model = Classifier(self.task.new_encoder(), self.task.num_classes)
        return model, [{"params": list(model.parameters()), "lr": self.config.lr}]

    def fit(self, train, val, control):
        task, config = self.task, self.config
        torch.manual_seed(task.seed)
        rng = np.random.default_rng(task.seed)
        model, _ = self.build()
        model = task.preprocess.prepare_model(model.to(task.device))
        encoder = model.encoder
        if np.bincount(task.targets[train]).max() < 2:
            return (yield from self._head_only(model, train, val))
        optimizer = torch.optim.AdamW(encoder.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        first, second, same = setfit_pairs(task.targets[train], config.iterations, rng)
        order = rng.permutation(len(first))
        batch = min(config.batch_size, len(order))
        total_steps = max(1, math.ceil(len(order) / batch))
        augment = self._augment()
        report_every = max(1, total_steps // 20)
        loss_sum = 0.0
        self._train_mode(model)
        for step, start in enumerate(range(0, len(order), batch)):
            pairs = order[start:start + batch]
            for group in optimizer.param_groups:  # linear decay, as the paper's trainer
                group["lr"] = config.lr * (1 - step / total_steps)
            items = np.concatenate([train[first[pairs]], train[second[pairs]]])
            features = encoder(augment(task.batch(items)))
            loss = cosine_pair_loss(features[:len(pairs)], features[len(pairs):],
                                    torch.from_numpy(same[pairs]).to(features.device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += float(loss.detach())
            if (step + 1) % report_every == 0 or step + 1 == total_steps:
                yield AdaptProgress(self.name, "fit", step + 1, total_steps, loss_sum / (step + 1))
                control.checkpoint()
        model.eval()
        train_features = encode(encoder, task, train)
        mean = train_features.mean(0)
        std = np.maximum(train_features.std(0), 1e-6)
        self._fit_head(model, train_features, task.targets[train], mean, std)
        return Fitted(model, predict_proba(model, task, val), lambda idx: predict_proba(model, task, idx))

    def _head_only(self, model: Classifier, train: np.ndarray, val: np.ndarray):
        """With one label in every class there is no pair of one class to learn from: the pair
        stage could only push the labelled items apart, and measured worse than no tuning at all
        (1 label a class, bench/ladder.py: stamps 0.229 against the probe's 0.404, Rotten
        Tomatoes 0.480 against 0.517). The untuned encoder's features then go to the head,
        standardised as the linear probe does it: SetFit becomes the probe."""
        task = self.task
        self._fit_head(model, task.features[train], task.targets[train], task.feature_mean, task.feature_std)
        model.eval()
        yield AdaptProgress(self.name, "fit", 1, 1)
        return Fitted(model, predict_proba(model, task, val), lambda idx: predict_proba(model, task, idx))

    def _fit_head(self, model: Classifier, features: np.ndarray, targets: np.ndarray,
                  mean: np.ndarray, std: np.ndarray) -> None:
        """Logistic regression on standardised features, folded into the model's Linear head."""
        weight, bias = fit_logistic((features - mean) / std, targets, self.task.num_classes,
                                    self.config.regularization)
        raw_weight, raw_bias = folded_head(weight, bias, mean.astype(np.float64), std.astype(np.float64))
        with torch.no_grad():
            model.head.weight.copy_(torch.from_numpy(raw_weight))
            model.head.bias.copy_(torch.from_numpy(raw_bias))


@torch.inference_mode()
def encode(encoder: nn.Module, task, indices: np.ndarray) -> np.ndarray:
    out = [encoder(task.normalised(task.batch(indices[s:s + EVAL_BATCH]))).float().cpu().numpy()
           for s in range(0, len(indices), EVAL_BATCH)]
    return np.concatenate(out).astype(np.float64)
