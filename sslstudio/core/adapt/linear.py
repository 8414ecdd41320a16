"""Linear probe: multinomial logistic regression on the frozen encoder's features.

The objective is scikit-learn's (sum of cross-entropies plus ||W||^2 / 2C, on standardised
features), solved with full-batch L-BFGS: 100 labels fit in tens of milliseconds. The standardisation
is folded into the head afterwards, so the saved model is encoder -> Linear like every other.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from sslstudio.core.adapt.base import (AdaptConfig, Adapter, Classifier, Fitted, register_adapter,
                                       softmax)
from sslstudio.core.config import knob
from sslstudio.core.events import AdaptProgress


@dataclass
class LinearConfig(AdaptConfig):
    regularization: float = knob(1.0, low=1e-6, high=1e6,
                                 help="L2 strength (1/C in scikit-learn); higher for fewer labels")
    max_iterations: int = knob(500, low=10, high=100000, help="L-BFGS iterations at most")


def fit_logistic(x: np.ndarray, y: np.ndarray, num_classes: int, regularization: float = 1.0,
                 max_iterations: int = 500, tolerance: float = 1e-6) -> tuple[np.ndarray, np.ndarray]:
    """Weights (C, D) and bias (C,) minimising mean cross-entropy + reg ||W||^2 / (2 n).

    Plain numpy L-BFGS: torch's would work too, but its thread pool spins against any other
    busy process on tiny matrices (2 s instead of 25 ms for 100 labels on 2 busy cores)."""
    features = np.ascontiguousarray(x, np.float64)
    targets = np.asarray(y, np.int64)
    n, dim = features.shape
    one_hot = np.zeros((n, num_classes))
    one_hot[np.arange(n), targets] = 1.0
    penalty = regularization / n

    def loss_and_grad(params: np.ndarray) -> tuple[float, np.ndarray]:
        weight = params[:num_classes * dim].reshape(num_classes, dim)
        bias = params[num_classes * dim:]
        logits = features @ weight.T + bias
        logits -= logits.max(1, keepdims=True)
        log_norm = np.log(np.exp(logits).sum(1, keepdims=True))
        log_p = logits - log_norm
        loss = -(one_hot * log_p).sum() / n + 0.5 * penalty * (weight ** 2).sum()
        residual = (np.exp(log_p) - one_hot) / n
        grad_w = residual.T @ features + penalty * weight
        return loss, np.concatenate([grad_w.ravel(), residual.sum(0)])

    params = np.zeros(num_classes * (dim + 1))
    loss, grad = loss_and_grad(params)
    history: list[tuple[np.ndarray, np.ndarray, float]] = []
    for _ in range(max_iterations):
        if np.abs(grad).max() <= tolerance:
            break
        # Two-loop recursion: the quasi-Newton direction from the last curvature pairs.
        direction = -grad
        alphas = []
        for s_k, y_k, rho in reversed(history):
            alpha = rho * (s_k @ direction)
            direction = direction - alpha * y_k
            alphas.append(alpha)
        if history:
            s_k, y_k, _ = history[-1]
            direction = direction * (s_k @ y_k) / (y_k @ y_k)
        for (s_k, y_k, rho), alpha in zip(history, reversed(alphas)):
            direction = direction + s_k * (alpha - rho * (y_k @ direction))
        slope = grad @ direction
        if slope >= 0:  # not a descent direction: restart from the gradient
            history.clear()
            direction, slope = -grad, -(grad @ grad)
        step = 1.0 if history else min(1.0, 1.0 / max(np.abs(grad).sum(), 1e-12))
        while True:  # backtracking until the Armijo condition holds
            candidate = params + step * direction
            new_loss, new_grad = loss_and_grad(candidate)
            if new_loss <= loss + 1e-4 * step * slope or step < 1e-12:
                break
            step *= 0.5
        s_new, y_new = candidate - params, new_grad - grad
        curvature = s_new @ y_new
        if curvature > 1e-12:
            history.append((s_new, y_new, 1.0 / curvature))
            if len(history) > 20:
                history.pop(0)
        params, loss, grad = candidate, new_loss, new_grad
    weight = params[:num_classes * dim].reshape(num_classes, dim)
    return weight, params[num_classes * dim:]


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

    def fit(self, train, val, control, epochs=None):
        task = self.task
        weight, bias = fit_logistic(self.standardised(train), task.targets[train], task.num_classes,
                                    self.config.regularization, self.config.max_iterations)
        yield AdaptProgress(self.name, "fit", 1, 1)

        def predict(indices: np.ndarray) -> np.ndarray:
            return softmax(self.standardised(indices) @ weight.T + bias)

        val_proba = predict(val)[None] if len(val) else np.zeros((0, 0, task.num_classes))
        # Only the final fit needs a model to save; folds of the estimate skip building one.
        model = self.classifier(weight, bias) if not len(val) else None
        return Fitted(model, val_proba, predict)

    def classifier(self, weight: np.ndarray, bias: np.ndarray) -> Classifier:
        task = self.task
        model = Classifier(task.new_encoder(), task.num_classes)
        raw_weight, raw_bias = folded_head(weight, bias, task.feature_mean.astype(np.float64),
                                           task.feature_std.astype(np.float64))
        with torch.no_grad():
            model.head.weight.copy_(torch.from_numpy(raw_weight))
            model.head.bias.copy_(torch.from_numpy(raw_bias))
        return model.to(task.device).eval()
