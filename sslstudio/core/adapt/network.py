"""The training loop the network methods share: augmented mini-batches of the labelled items,
AdamW with per-group learning rates and a cosine schedule to zero, trained to its end.

There is no early stopping. Choosing the epoch on the folds the estimate reports made that
estimate about 4.5 points too high (bench/adapt_fewshot.py at stop 21); a fixed schedule scored at
its end is what the final fit on every label trains too, so the folds measure the model that
is saved."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from sslstudio.core.adapt.base import AdaptConfig, Adapter, Classifier, Fitted
from sslstudio.core.adapt.linear import folded_head
from sslstudio.core.config import knob
from sslstudio.core.events import AdaptProgress
from sslstudio.core.logistic import fit_logistic

EVAL_BATCH = 256


@dataclass
class NetworkConfig(AdaptConfig):
    epochs: int = knob(30, low=1, high=10000,
                       help="epochs of the schedule; every fit, the estimate's and the final, trains them all")
    batch_size: int = knob(32, low=2, high=4096, help="labelled images per step")
    lr: float = knob(1e-3, low=1e-7, high=1.0, help="learning rate of the head")
    weight_decay: float = knob(1e-4, low=0.0, high=1.0, help="AdamW weight decay")
    augmentation_strength: float = knob(0.5, low=0.0, high=1.0,
                                        help="crop, flip and colour changes of the labelled images")
    label_smoothing: float = knob(0.1, low=0.0, high=0.5, help="softens targets; helps tiny label sets")
    start_from_probe: bool = knob(True, help="start the head from the linear probe's solution "
                                             "(LP-FT: keeps the pretrained features from being wrecked)")
    freeze_batchnorm: bool = knob(True, help="keep BatchNorm statistics from pretraining "
                                             "(batches of a few labels give noisy statistics)")


class NetworkAdapter(Adapter):
    """Subclasses build the model and say which parameters train at which learning rate."""

    config_cls = NetworkConfig
    default_repeats = 2

    def build(self) -> tuple[Classifier, list[dict]]:
        raise NotImplementedError

    def finish(self, model: Classifier) -> tuple[Classifier, dict]:
        """The model to save (LoRA merges here) and tensors to save beside it."""
        return model, {}

    def parameter_counts(self) -> tuple[int, int]:
        model, groups = self.build()
        trainable = sum(p.numel() for g in groups for p in g["params"])
        return trainable, sum(p.numel() for p in model.parameters())

    def fit(self, train, val, control):
        task, config = self.task, self.config
        torch.manual_seed(task.seed)
        model, groups = self.build()
        if config.start_from_probe:
            self._init_head_from_probe(model, train)
        model = task.preprocess.prepare_model(model.to(task.device))
        epochs = config.epochs
        batch_size = min(config.batch_size, len(train))
        steps_per_epoch = max(1, math.ceil(len(train) / batch_size))
        total_steps = epochs * steps_per_epoch
        optimizer = torch.optim.AdamW(groups, weight_decay=config.weight_decay)
        base_lrs = [g["lr"] for g in optimizer.param_groups]
        augment = self._augment()
        rng = np.random.default_rng(task.seed)
        targets = torch.from_numpy(task.targets).to(task.device)
        step = 0
        for epoch in range(epochs):
            self._train_mode(model)
            order = rng.permutation(train)
            loss_sum = 0.0
            for start in range(0, len(order), batch_size):
                indices = order[start:start + batch_size]
                for group, base in zip(optimizer.param_groups, base_lrs):
                    group["lr"] = base * 0.5 * (1 + math.cos(math.pi * step / total_steps))
                views = augment(task.batch(indices))
                logits = model(views)
                loss = nn.functional.cross_entropy(logits, targets[torch.from_numpy(indices).to(task.device)],
                                                   label_smoothing=config.label_smoothing)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                loss_sum += float(loss.detach())
                step += 1
            yield AdaptProgress(self.name, "fit", epoch + 1, epochs, loss_sum / steps_per_epoch)
            control.checkpoint()
        model.eval()
        final, extra = self.finish(model)
        final = final.eval()
        return Fitted(final, predict_proba(final, task, val), lambda idx: predict_proba(final, task, idx),
                      extra)

    def _init_head_from_probe(self, model: Classifier, train: np.ndarray) -> None:
        task = self.task
        x = (task.features[train] - task.feature_mean) / task.feature_std
        weight, bias = fit_logistic(x, task.targets[train], task.num_classes)
        raw_weight, raw_bias = folded_head(weight, bias, task.feature_mean.astype(np.float64),
                                           task.feature_std.astype(np.float64))
        with torch.no_grad():
            model.head.weight.copy_(torch.from_numpy(raw_weight))
            model.head.bias.copy_(torch.from_numpy(raw_bias))

    def _augment(self):
        task = self.task
        return task.preprocess.adaptation_augment(self.config.augmentation_strength,
                                                  bool(getattr(task.data, "grey", False)),
                                                  task.device, task.seed + 991)

    def _train_mode(self, model: nn.Module) -> None:
        model.train()
        if self.config.freeze_batchnorm:
            for module in model.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()


@torch.inference_mode()
def predict_proba(model: nn.Module, task, indices: np.ndarray, batch_size: int = EVAL_BATCH) -> np.ndarray:
    was_training = model.training
    model.eval()
    out = []
    for start in range(0, len(indices), batch_size):
        images = task.normalised(task.batch(indices[start:start + batch_size]))
        out.append(torch.softmax(model(images).float(), 1).cpu().numpy())
    model.train(was_training)
    return np.concatenate(out) if out else np.zeros((0, task.num_classes), np.float32)
