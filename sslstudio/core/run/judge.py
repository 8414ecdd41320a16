"""The judge of a run as it trains: the monitor (map, collapse meter, kNN and few-label probe on
a fixed sample) and the best-encoder rule, which keeps the encoder that scored best.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch

from sslstudio.core.backbones.base import folded_for_inference
from sslstudio.core.events import (
    EmbeddingSnapshot,
    RunWarning,
)
from sslstudio.core.monitor import (
    collapse_metrics,
    knn_accuracy,
    probe_accuracy,
    project_2d,
)
from sslstudio.core.preprocess import Preprocess
from sslstudio.core.run.checkpoint import (
    encoder_info,
    save_encoder,
)
from sslstudio.core.run.config import TrainConfig
from sslstudio.core.run.folder import RunFolder


# Without labels, a continued pretrained encoder is judged by one label-free score of the
# monitor's sample (higher is better), chosen per modality with each dev set of that modality
# held out (bench/label_free_judge.py); a modality not named judges nothing, and the last
# encoder is the run's.
# Texts: all-MiniLM-L6-v2 continued 5 minutes with SimCSE and no labels lost 2.2 to 15.3 points
# of 10-label accuracy on four of the five text dev sets and gained 0.3 on the fifth, and no
# score (RankMe, uniformity, the mean cosine) told the fifth apart; keeping the encoder as it came
# won with every text set held out (bench/label_free_judge.py, issue 27). Images: no judge held
# up yet; they continue slowly instead, so as not to lose what they knew
# (`ImagePreprocess.continuing_lr_scale`).
LABEL_FREE_JUDGE: dict[str, str] = {"text": "as_it_came"}
# What continuing without labels cost on the dev sets, where the judge keeps the encoder as it
# came (said in the run's note).
AS_IT_CAME_EVIDENCE: dict[str, str] = {
    "text": "2 to 15 points of 10-label accuracy on four of five text folders (and gained 0.3 "
            "on the fifth)"}


def continuing_cost(modality: str) -> str:
    """The evidence for keeping the encoder as it came, as the plan and the closing note say it."""
    return (f"on the dev sets, continuing a pretrained {modality} encoder without labels lost "
            f"{AS_IT_CAME_EVIDENCE.get(modality, '')}")


def kept_without_labels(modality: str) -> str:
    """What a run continuing a pretrained encoder of `modality` with no labels will hand over, in
    the plan's words, where that is decided before its first step ("": judged as it goes)."""
    if LABEL_FREE_JUDGE.get(modality) != "as_it_came":
        return ""
    return (f"without labels, the encoder as it came is what this run hands over: "
            f"{continuing_cost(modality)}; label a few items a class (or use the folder's "
            "classes) to have continuing judged, or stop the run now")


# name -> (words, score of the monitor's fields at a step)
LABEL_FREE_SCORES = {
    "effective_rank": ("RankMe (the features' effective rank)", lambda f, step: f["effective_rank"]),
    "uniformity": ("uniformity (how evenly the features spread)", lambda f, step: -f["uniformity"]),
    "spectrum_alpha": ("α-ReQ (eigenvalue decay nearest 1)",
                       lambda f, step: -abs(f["spectrum_alpha"] - 1.0)),
    # No score at all: the encoder as it came is kept, where continuing without labels lost on
    # nearly every dev set and no score told when it did not.
    "as_it_came": ("the encoder as it came", lambda f, step: 1.0 if step == 0 else 0.0),
}


class BestEncoder:
    """The encoder that scored best on the monitor's labelled sample, step 0 included: a
    pretrained encoder is never handed back worse than it came. Kept in memory, written as the
    run's best checkpoint at each checkpoint and at the end. Without labels there is nothing to
    judge by, and the last encoder is the run's."""

    def __init__(self, run: RunFolder, monitor: "Monitor", step: int = -1,
                 score: float = float("nan")):
        self.run, self.monitor = run, monitor
        self.step, self.score = step, score
        self.latest_step, self.latest_score = -1, float("nan")
        self.weights: dict | None = None

    @classmethod
    def of(cls, run: RunFolder, monitor: "Monitor") -> "BestEncoder":
        """A resumed run goes on comparing with the best it had kept."""
        info = encoder_info(run.best_path) if run.best_path.exists() else None
        if info and "step" in info:
            return cls(run, monitor, int(info["step"]), float(info["score"]))
        return cls(run, monitor)

    def consider(self, step: int, objective) -> None:
        score = self.monitor.score()
        if math.isnan(score):
            return
        self.latest_step, self.latest_score = step, score
        # A later encoder replaces the kept one only when it scores better by more than the
        # judge's own noise: on 120 labelled items stamps' last continued encoder scored best of
        # its run, and on every item it was 1.7 points worse than it came (bench/quality.py).
        if math.isnan(self.score) or score > self.score + self.monitor.score_margin(self.score):
            self.step, self.score = step, score
            self.weights = {k: v.detach().cpu().clone()
                            for k, v in objective.encoder.state_dict().items()}

    def write(self) -> None:
        if self.weights is not None:
            save_encoder(self.run.best_path, self.weights,
                         {"step": self.step, "score": self.score, "metric": self.monitor.metric()})
            self.weights = None

    def note(self, pretrained: bool) -> str:
        if pretrained and self.step < 0 and math.isnan(self.latest_score):
            # Nothing judged: say so, since continuing can cost as much as it gives.
            return ("nothing judged whether continuing helped (no labels, and no label-free "
                    "score that held up across data sets yet): on the image dev sets, 5 minutes "
                    "continued without labels at the default encoder learning rate moved 10-label "
                    "accuracy by 0 to +11 points, none below the encoder as it came; label "
                    "a few items a class (or use the folder's classes) and train again, and the "
                    "run keeps whichever encoder, the one it came with included, scores best")
        if pretrained and self.monitor.label_free == "as_it_came" and self.step == 0:
            return ("without labels the encoder as it came is kept: "
                    f"{continuing_cost(self.monitor.preprocess.modality)}, and no "
                    "label-free score told when it helped; the continued encoder stays in the "
                    "run's last checkpoint. Label a few items a class and train again to have "
                    "continuing judged")
        if self.step < 0 or self.latest_step == self.step or math.isnan(self.latest_score):
            return ""
        metric = self.monitor.metric()
        if self.step == 0 and pretrained:
            within = (f", not better by more than the {self.monitor.score_margin(self.score):.3f} "
                      "that so few labelled items can tell apart"
                      if self.latest_score > self.score else "")
            return (f"continuing did not help: the pretrained encoder as it came scored "
                    f"{self.score:.3f} ({metric}), the last step {self.latest_score:.3f}{within}; "
                    "embed, adapt and export use the encoder as it came")
        # The words say the rule: a later encoder must beat the kept one by more than the judge's
        # noise, so "scored best" beside a higher last score read as a contradiction.
        margin = self.monitor.score_margin(self.score)
        compared = (f"the last step's {self.latest_score:.3f} is not better by more than the "
                    f"{margin:.3f} that so few labelled items can tell apart"
                    if self.latest_score > self.score else
                    f"better than the last step's {self.latest_score:.3f}")
        return (f"the encoder of step {self.step} is kept ({metric} {self.score:.3f}; {compared}): "
                "embed, adapt and export use it, and the last checkpoint stays for resuming")



# Of the run's wall time, at most, for the monitor's snapshots after the first: a twentieth held
# training at 0.92 of a bare loop's pace at 64 px on two cores (bench/throughput.py).
WALL_SHARE = 1.0 / 40.0


class Monitor:
    """Embeds a fixed sample now and then: collapse meter, kNN accuracy, the 2-D map.

    It runs in eval mode and draws no random numbers, so it never changes the training itself;
    its cost is kept under a fortieth of the wall time (`WALL_SHARE`).
    """

    def __init__(self, data, config: TrainConfig, device, objective, preprocess: Preprocess,
                 run: RunFolder, chunk: int = 512, items: int = 2000,
                 labels: np.ndarray | None = None, judge_without_labels: bool = False):
        rng = np.random.default_rng(config.seed)
        count = min(len(data), items)
        labels = data.labels if labels is None else labels
        labelled = np.flatnonzero(labels >= 0)
        if 0 < len(labelled) < len(data):
            # A few labels among many items: all of them join the sample (up to half of it), so
            # the probe has something to judge by; the rest is drawn as usual.
            chosen = rng.choice(labelled, size=min(len(labelled), count // 2), replace=False)
            others = np.setdiff1d(np.arange(len(data)), chosen)
            rest = rng.choice(others, size=count - len(chosen), replace=False)
            self.indices = np.sort(np.concatenate([chosen, rest]))
        else:
            self.indices = np.sort(rng.choice(len(data), size=count, replace=False))
        self.labels = labels[self.indices]
        self.data, self.device, self.objective = data, device, objective
        self.preprocess, self.run_folder, self.chunk = preprocess, run, chunk
        # The probe and the best-encoder rule judge what the run hands over: a pretrained
        # encoder trained at 96 px is read at its own 224 px, where continuing can lose while it
        # gains at 96 (fashion-mnist: +2.5 points at 96 px, -2.3 at 224; bench/quality.py).
        self.features_preprocess = preprocess.for_features()
        self.features_chunk = max(1, int(chunk / preprocess.features_cost()))
        self.judged_items = None  # the labelled items of the sample, decoded at the feature size
        # Judged without labels when none are known (a continued pretrained encoder), and only
        # where the sample is read as the run's features are: an image encoder trained at 96 px
        # and read at 224 px looked better at 96 px by every label-free score on stamps while it
        # lost 3 points at 224 px (bench/label_free_judge.py).
        read_as_trained = self.features_preprocess is self.preprocess
        judge = LABEL_FREE_JUDGE.get(preprocess.modality, "")
        self.label_free = (judge if judge_without_labels and (read_as_trained or judge == "as_it_came")
                           and not (self.labels >= 0).any() else "")
        self.interval = config.monitor_seconds
        self.next_due = 0.0
        self.last_snapshot: EmbeddingSnapshot | None = None
        self.last_features: np.ndarray | None = None
        self.fields: dict = {}
        self.warned_collapse = False
        self.took = 0.0  # seconds the last snapshot took
        self.folds: bool | None = None  # whether the encoder's BatchNorms fold (not known yet)
        self.reference_probe = float("nan")
        # 10 labels a class, as a user would have; half of each class when the user's labels are
        # fewer, so the other half can be tested on.
        counts = np.bincount(self.labels[self.labels >= 0]) if (self.labels >= 0).any() else []
        smallest = int(min((c for c in counts if c), default=0))
        self.probe_labels = max(1, min(10, smallest // 2))

    def due(self) -> bool:
        return time.monotonic() >= self.next_due

    def judge_reference(self, features: np.ndarray) -> None:
        """The same probe on a reference's features of the sample (a teacher's; NaN rows where
        it has none), reported beside the encoder's at every snapshot."""
        known = ~np.isnan(features).any(1)
        self.reference_probe = probe_accuracy(features[known], self.labels[known],
                                              per_class=self.probe_labels)

    def latest_fields(self) -> dict:
        return self.fields

    @torch.no_grad()
    def run(self, step: int, progress: float):
        started = time.monotonic()
        was_training = self.objective.training
        self.objective.eval()
        encoder = self._encoder_for_snapshot()
        features, projections = [], []
        for start in range(0, len(self.indices), self.chunk):
            x = self.preprocess.model_inputs(self.data.batch(self.indices[start:start + self.chunk]),
                                             self.device)
            f = encoder(x).float()
            h = self.objective.head_outputs(f)
            features.append(f.cpu())
            if h is not None:
                projections.append(h.float().cpu())
        features_t = torch.cat(features)
        self.last_features = features_t.numpy().astype(np.float16)
        projections_t = torch.cat(projections) if projections else None
        metrics = collapse_metrics(features_t, projections_t)
        labelled = self.labels >= 0
        judged_t, judged_labels = features_t, self.labels
        if self.features_preprocess is not self.preprocess and labelled.sum() > 1:
            judged_t, judged_labels = self._judged_features(encoder, labelled), self.labels[labelled]
        self.objective.train(was_training)
        labels = torch.from_numpy(judged_labels)
        metrics["knn_accuracy"] = knn_accuracy(judged_t, labels) if (labels >= 0).sum() > 1 else float("nan")
        # With folder labels, the few-shot probe a user would get now: before training (the
        # pretrained encoder as it is) and as training goes, so one sees whether it helps.
        metrics["probe_accuracy"] = probe_accuracy(judged_t.numpy(), judged_labels,
                                                   per_class=self.probe_labels)
        metrics["teacher_probe_accuracy"] = self.reference_probe
        self.fields = metrics
        previous = self.last_snapshot.coords if self.last_snapshot is not None else None
        coords = project_2d(features_t.numpy(), previous)
        self.last_snapshot = EmbeddingSnapshot(step, self.indices.copy(), coords, self.labels.copy())
        took = self.took = time.monotonic() - started
        self.next_due = time.monotonic() + max(self.interval, (1.0 / WALL_SHARE - 1.0) * took)
        yield self.last_snapshot
        warning = self._collapse_warning(metrics, step, progress)
        if warning is not None:
            yield warning

    def _encoder_for_snapshot(self) -> torch.nn.Module:
        """The encoder with its BatchNorms folded into its convolutions, where they fold (a
        snapshot is a quarter cheaper for small_cnn); whether they do is learnt once."""
        if self.folds is not False:
            folded = folded_for_inference(self.objective.encoder)
            self.folds = folded is not None
            if folded is not None:
                return folded
        return self.objective.encoder

    def _judged_features(self, encoder: torch.nn.Module, labelled: np.ndarray) -> torch.Tensor:
        """The encoder's features of the labelled items of the sample, read as the run's
        features are read (embed, adapt, export), not as training reads them."""
        if self.judged_items is None:
            self.judged_items = self.preprocess.feature_items(self.data, self.indices[labelled])
        chunks = []
        for start in range(0, len(self.judged_items), self.features_chunk):
            x = self.features_preprocess.model_inputs(
                self.judged_items[start:start + self.features_chunk], self.device)
            chunks.append(encoder(x).float().cpu())
        return torch.cat(chunks)

    def _collapse_warning(self, metrics: dict, step: int, progress: float):
        if self.warned_collapse or progress < 0.05 or not self.objective.can_collapse:
            return None
        ratio = metrics["embedding_std"] / metrics["embedding_std_reference"]
        if ratio >= 0.1 and metrics["effective_rank"] >= 1.5:
            return None
        self.warned_collapse = True
        return RunWarning("collapse", (
            f"embeddings look collapsed (std {metrics['embedding_std']:.4f} against "
            f"{metrics['embedding_std_reference']:.4f} when healthy, effective rank "
            f"{metrics['effective_rank']:.1f}): {self.objective.collapse_hint}"), step)

    def score(self) -> float:
        """What the best-encoder rule compares: the few-label probe on the sample's labels, or
        kNN where too few items per class leave the probe undefined; NaN without labels."""
        probe = self.fields.get("probe_accuracy", float("nan"))
        if not math.isnan(probe):
            return probe
        knn = self.fields.get("knn_accuracy", float("nan"))
        if not math.isnan(knn) or not self.label_free or "effective_rank" not in self.fields:
            return knn
        step = self.last_snapshot.step if self.last_snapshot is not None else 0
        return float(LABEL_FREE_SCORES[self.label_free][1](self.fields, step))

    def score_margin(self, score: float) -> float:
        """How much better a score must be to be told apart from `score` on this many labelled
        items: the standard error of the difference of two accuracies measured on them."""
        judged = int((self.labels >= 0).sum())
        if judged < 2 or math.isnan(score):
            return 0.0
        return math.sqrt(2.0 * score * (1.0 - score) / judged)

    def metric(self) -> str:
        probe = self.fields.get("probe_accuracy", float("nan"))
        if not math.isnan(probe):
            return "10-label probe on the monitor's sample"
        if self.label_free and math.isnan(self.fields.get("knn_accuracy", float("nan"))):
            return f"{LABEL_FREE_SCORES[self.label_free][0]} on the monitor's sample, without labels"
        return "kNN accuracy on the monitor's sample"

    def save_snapshot(self) -> None:
        snap = self.last_snapshot
        if snap is not None:
            # The features go along, half precision, so the run's map where groups stand apart
            # (t-SNE) can be made after the run without its encoder.
            self.run_folder.write_snapshot(snap.step, snap.indices, snap.coords, snap.labels,
                                           features=self.last_features)


TEMPERATURE_LADDER = (0.1, 0.2, 0.5, 1.0)
# Shares of a contrastive loss's chance level, log(batch): under TRIVIAL_SHARE on the first batch
# the task is already solved (all-MiniLM-L6-v2 with SimCSE at 0.05 on 8 debate statements:
# 0.0015 of 2.08, and 1e-5 a few steps later), and a temperature is informative from
# INFORMATIVE_SHARE (there: 0.1 gave 0.068, 0.2 gave 0.37, 0.5 gave 1.17).
TRIVIAL_SHARE = 0.05
INFORMATIVE_SHARE = 0.1


def informative_temperature(loss_at, current: float, floor: float) -> tuple[float, float]:
    """The lowest temperature of the ladder above `current` whose loss (`loss_at(t)`) reaches
    `floor`, or the ladder's top; returns it with its loss."""
    loss = math.nan
    chosen = current
    for temperature in (t for t in TEMPERATURE_LADDER if t > current):
        chosen, loss = temperature, loss_at(temperature)
        if loss >= floor:
            break
    return chosen, loss


class FlatLoss:
    """A loss that sits at zero informs nothing: the objective's task has become trivial, its
    gradient is all but noise, and AdamW still takes steps of about lr whatever the gradient's
    scale. Measured on Rotten Tomatoes with all-MiniLM-L6-v2 and SimCSE at its temperature 0.05
    (issue 27): the loss fell to 1e-6 within a few steps at batch 8, 32 and 128 alike, gradients
    of different batches were uncorrelated (cosine -0.06 to 0.02), and with the encoder at the
    heads' learning rate the 10-label probe lost 6 points; at temperature 0.2 the loss stayed
    near 0.08. Said once a run, after LOGS such logs in a row (a 15-step run logs 15)."""

    LIMIT = 1e-3
    LOGS = 8

    def __init__(self) -> None:
        self.low_logs = 0
        self.since = -1
        self.warned = False

    def sat_at_zero(self, loss: float, step: int) -> bool:
        if self.warned or not math.isfinite(loss):
            return False
        if loss >= self.LIMIT:
            self.low_logs = 0
            return False
        if self.low_logs == 0:
            self.since = step
        self.low_logs += 1
        self.warned = self.low_logs >= self.LOGS
        return self.warned

    def message(self, batch_size: int, objective) -> str:
        return (f"the loss has sat under {self.LIMIT:g} since step {self.since}: the objective's "
                f"task is too easy here (a batch of {batch_size} gives {objective.name} few items "
                "to tell apart), so its gradient is mostly noise and the encoder may drift rather "
                "than learn; a higher temperature (contrastive methods), a larger batch or "
                "another objective gives the loss something to say")
