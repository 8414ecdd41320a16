"""Growing numpy buffers of a run's metrics, which the plots read on a timer (no Qt: the
project session holds them, tests use them directly)."""

from __future__ import annotations

import numpy as np

COLUMNS = ("step", "loss", "lr", "samples_per_s", "std_ratio", "effective_rank", "knn_accuracy",
           "probe_accuracy", "teacher_probe_accuracy")


class RunHistory:
    def __init__(self, capacity: int = 1024):
        self._data = np.full((len(COLUMNS), capacity), np.nan)
        self.size = 0
        self.version = 0  # bumped on every change, so a timer redraws only when needed

    def append(self, **values: float) -> None:
        if self.size == self._data.shape[1]:
            grown = np.full((len(COLUMNS), self._data.shape[1] * 2), np.nan)
            grown[:, : self.size] = self._data
            self._data = grown
        for i, name in enumerate(COLUMNS):
            self._data[i, self.size] = values.get(name, np.nan)
        self.size += 1
        self.version += 1

    def column(self, name: str) -> np.ndarray:
        return self._data[COLUMNS.index(name), : self.size]

    def clear(self) -> None:
        self.size = 0
        self.version += 1

    @classmethod
    def from_metrics(cls, metrics: dict[str, np.ndarray]) -> "RunHistory":
        history = cls(max(1024, len(metrics.get("step", []))))
        n = len(metrics.get("step", []))
        std = metrics.get("embedding_std", np.full(n, np.nan))
        ref = metrics.get("embedding_std_reference", np.full(n, np.nan))
        for i in range(n):
            history.append(step=metrics["step"][i], loss=metrics["loss"][i], lr=metrics["lr"][i],
                           samples_per_s=metrics["samples_per_s"][i],
                           std_ratio=std[i] / ref[i] if ref[i] else np.nan,
                           effective_rank=metrics.get("effective_rank", np.full(n, np.nan))[i],
                           knn_accuracy=metrics.get("knn_accuracy", np.full(n, np.nan))[i],
                           probe_accuracy=metrics.get("probe_accuracy", np.full(n, np.nan))[i],
                           teacher_probe_accuracy=metrics.get("teacher_probe_accuracy",
                                                              np.full(n, np.nan))[i])
        return history
