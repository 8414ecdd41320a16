"""Linear probe: multinomial logistic regression on the frozen encoder's features.

The objective is scikit-learn's (sum of cross-entropies plus ||W||^2 / 2C, on standardised
features), solved with full-batch L-BFGS: 100 labels fit in tens of milliseconds. The standardisation
is folded into the head afterwards, so the saved model is encoder -> Linear like every other.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from sslstudio.core.adapt.base import (
    AdaptConfig,
    Adapter,
    Classifier,
    Fitted,
    register_adapter,
    softmax,
)
from sslstudio.core.config import knob
from sslstudio.core.events import AdaptProgress
from sslstudio.core.logistic import fit_logistic


@dataclass
class LinearConfig(AdaptConfig):
    regularization: float = knob(1.0, low=1e-6, high=1e6,
                                 help="L2 strength (1/C in scikit-learn); higher for fewer labels")
    max_iterations: int = knob(500, low=10, high=100000, help="L-BFGS iterations at most")


def folded_head(weight: np.ndarray, bias: np.ndarray, mean: np.ndarray, std: np.ndarray):
    """A head on raw features equal to (weight, bias) on standardised ones."""
    scaled = weight / std[None, :]
    return scaled, bias - scaled @ mean


@register_adapter("linear")
class LinearProbe(Adapter):
    """Logistic regression on the frozen encoder's features (fast; best with very few labels)."""

    config_cls = LinearConfig
    default_repeats = 10
    trains_network = False

    def parameter_counts(self) -> tuple[int, int]:
        dim = self.task.features.shape[1]
        head = self.task.num_classes * (dim + 1)
        encoder = sum(p.numel() for p in self.task.encoder_state.values() if p.is_floating_point())
        return head, head + encoder

    def standardised(self, indices: np.ndarray) -> np.ndarray:
        task = self.task
        return (task.features[indices] - task.feature_mean) / task.feature_std

    def fit(self, train, val, control):
        task = self.task
        weight, bias = fit_logistic(self.standardised(train), task.targets[train], task.num_classes,
                                    self.config.regularization, self.config.max_iterations)
        yield AdaptProgress(self.name, "fit", 1, 1)

        def predict(indices: np.ndarray) -> np.ndarray:
            return softmax(self.standardised(indices) @ weight.T + bias)

        # Only the final fit needs a model to save; folds of the estimate skip building one.
        model = self.classifier(weight, bias) if not len(val) else None
        return Fitted(model, predict(val), predict)

    def classifier(self, weight: np.ndarray, bias: np.ndarray) -> Classifier:
        task = self.task
        model = Classifier(task.new_encoder(), task.num_classes)
        raw_weight, raw_bias = folded_head(weight, bias, task.feature_mean.astype(np.float64),
                                           task.feature_std.astype(np.float64))
        with torch.no_grad():
            model.head.weight.copy_(torch.from_numpy(raw_weight))
            model.head.bias.copy_(torch.from_numpy(raw_bias))
        return model.to(task.device).eval()
