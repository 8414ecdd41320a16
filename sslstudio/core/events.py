"""The plain events that long jobs yield. Scalars and numpy arrays only, so any consumer
(CLI, GUI worker, test) can read them without knowing about torch."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

NAN = math.nan


@dataclass(frozen=True, eq=False)
class ScanProgress:
    done: int
    total: int
    skipped: int
    current: str
    phase: str = "scanning"  # or, for texts after the scan: "training a tokenizer", "tokenizing"
    noun: str = "texts"  # what the counts count, after the scan


@dataclass(frozen=True, eq=False)
class ScanFinished:
    total_files: int
    usable: int
    skipped: int
    skipped_by_reason: dict
    elapsed_s: float
    # Against the project's last scan of the same folder: items taken as they were, and files
    # found new, changed or gone (all new when there was none).
    reused: int = 0
    new: int = 0
    changed: int = 0
    removed: int = 0
    lazy: bool = False  # listed only: items are decoded when first shown

    def changes_text(self) -> str:
        """What changed since the last scan, in words; empty for a first scan."""
        if not self.reused and not self.changed and not self.removed:
            return ""
        if not (self.new or self.changed or self.removed):
            return f"all {self.reused} items as at the last scan"
        parts = [f"{count} {word}" for count, word in
                 ((self.new, "new"), (self.changed, "changed"), (self.removed, "removed")) if count]
        return f"{', '.join(parts)} since the last scan; {self.reused} taken as they were"


@dataclass(frozen=True, eq=False)
class EmbedProgress:
    done: int
    total: int


@dataclass(frozen=True, eq=False)
class EmbedFinished:
    path: str
    count: int
    dim: int


@dataclass(frozen=True, eq=False)
class RunStarted:
    run_dir: str
    objective: str
    backbone: str
    device: str
    num_items: int
    num_skipped: int
    batch_size: int
    total_steps: int  # -1 when the budget is in minutes
    start_step: int  # > 0 when resuming
    world_size: int
    feature_dim: int
    class_names: tuple = ()
    plan: str = ""  # RunPlan.describe(): the choices made before the first step, and why


@dataclass(frozen=True, eq=False)
class StepMetrics:
    step: int
    epoch: int
    loss: float
    lr: float
    samples_per_s: float
    elapsed_s: float
    progress: float  # 0..1 of the budget
    eta_s: float
    batch_size: int
    gpu_memory_bytes: int = 0  # peak allocated on a CUDA device; 0 elsewhere
    # Monitor fields: NaN except on the steps where the fixed sample was embedded.
    embedding_std: float = NAN  # std of l2-normalised embeddings per dimension, averaged
    embedding_std_reference: float = NAN  # 1/sqrt(d): what non-collapsed features come close to
    effective_rank: float = NAN
    mean_cosine: float = NAN
    uniformity: float = NAN  # log mean exp(-2 |u_i - u_j|^2) of unit features: lower, more spread
    spectrum_alpha: float = NAN  # eigenvalue decay exponent of the features (α-ReQ)
    knn_accuracy: float = NAN
    probe_accuracy: float = NAN  # 10-shot linear probe on the monitor sample's folder labels
    teacher_probe_accuracy: float = NAN  # the same probe on a distillation teacher's features
    extra: dict = field(default_factory=dict)  # objective-specific metrics (e.g. accuracy)


@dataclass(frozen=True, eq=False)
class EmbeddingSnapshot:
    step: int
    indices: np.ndarray  # int64, item indices into the dataset
    coords: np.ndarray  # float32 (n, 2), aligned to the previous snapshot
    labels: np.ndarray  # int64, -1 where unknown


@dataclass(frozen=True, eq=False)
class Checkpointed:
    step: int
    path: str


@dataclass(frozen=True, eq=False)
class RunWarning:
    kind: str  # "collapse", "non_finite", "data", "batch_reduced", "out_of_memory", ...
    message: str
    step: int = -1


# The issue text calls it Warning; the alias keeps that name without shadowing the builtin here.
Warning = RunWarning  # noqa: A001


@dataclass(frozen=True, eq=False)
class RunFinished:
    status: str  # "completed", "cancelled", "failed"
    step: int
    message: str = ""
    checkpoint: str = ""


# -- adaptation (few-shot labels -> a classifier) ----------------------------------------------
@dataclass(frozen=True, eq=False)
class AdaptStarted:
    method: str
    num_labels: int
    class_names: tuple
    scheme: str  # how the estimate is made, e.g. "stratified 5-fold x 10 repeats"
    trainings: int  # model fits the estimate needs (folds x repeats), plus the final one
    trainable_parameters: int
    total_parameters: int


@dataclass(frozen=True, eq=False)
class AdaptProgress:
    method: str
    phase: str  # "features", "estimate", "final", "predict"
    done: int
    total: int
    loss: float = NAN


@dataclass(frozen=True, eq=False)
class AdaptEstimate:
    """Cross-validated accuracy of one method on the labelled items."""

    method: str
    scheme: str
    num_labels: int  # the labelled items scored; 0 when nothing could be (NaN accuracy)
    accuracy: float
    ci_low: float  # 95% Wilson interval over the labelled items
    ci_high: float
    balanced_accuracy: float
    class_names: tuple
    recall: np.ndarray  # per class
    precision: np.ndarray
    support: np.ndarray  # labelled items per class
    confusion: np.ndarray  # (C, C) rows true, columns predicted; mean counts per repeat
    repeat_accuracies: np.ndarray  # one per repeat: the spread the folds give
    epochs: int = 0  # for trained networks: the epochs each fit trained
    caution: str = ""  # the method's own measured reason to doubt this kind of estimate

    @property
    def estimated(self) -> bool:
        return self.num_labels > 0

    @property
    def chance(self) -> float:
        """What always answering the most labelled class would score on the items scored."""
        support = np.asarray(self.support, np.float64)
        return float(support.max() / support.sum()) if support.sum() > 0 else float("nan")

    def chance_words(self) -> str:
        """A warning when the interval reaches down to chance: these labels do not yet show
        that the classifier beats guessing. Empty otherwise."""
        if not self.estimated or self.ci_low > self.chance:
            return ""
        return (f"the interval includes chance ({self.chance:.0%}): these labels do not show yet "
                "that it beats guessing; more labels narrow it")

    def words(self, digits: int = 1) -> str:
        """"83.0% (95% interval 75%-90%)", or why there is no estimate."""
        if not self.estimated:
            return "no estimate (one label a class)"
        return f"{self.accuracy:.{digits}%} ({self.ci_low:.0%}-{self.ci_high:.0%})"


@dataclass(frozen=True, eq=False)
class AdaptPredictions:
    """The adapted model's prediction for every item of the folder."""

    items: np.ndarray  # str, item paths relative to the data folder, aligned with the arrays
    predicted: np.ndarray  # int64 class positions
    confidence: np.ndarray  # float32 top probability
    margin: np.ndarray  # float32 top minus second probability (low: unsure)


@dataclass(frozen=True, eq=False)
class AdaptFinished:
    status: str  # "completed", "cancelled"
    method: str
    path: str = ""  # the adapted model's folder
    message: str = ""


@dataclass(frozen=True, eq=False)
class ZeroShotPredictions:
    """A class for every item without labels: nearest class description in a shared space."""

    items: np.ndarray  # str, item keys (paths relative to the data folder), in folder order
    class_names: tuple[str, ...]
    descriptions: tuple[str, ...]  # what was embedded for each class
    proba: np.ndarray  # float32 (N, C)
    predicted: np.ndarray  # int64 (N,)
    confidence: np.ndarray  # float32 (N,), the top class's probability


@dataclass(frozen=True, eq=False)
class ZeroShotFinished:
    status: str  # "completed", "cancelled"
    model: str  # the model folder or run used
    path: str = ""  # the CSV written, if any
    message: str = ""


@dataclass(frozen=True, eq=False)
class FeaturesReady:
    """A run's encoder applied to every item: what labelling, groups and suggestions work on."""

    items: np.ndarray  # str, item paths relative to the data folder, in folder order
    features: np.ndarray  # float32 (N, D)
    coords: np.ndarray  # float32 (N, 2), a 2-D map of every item


@dataclass(frozen=True, eq=False)
class MapProgress:
    done: int  # optimisation iterations
    total: int
    phase: str  # "finding neighbours", "arranging the map"
    elapsed_s: float


@dataclass(frozen=True, eq=False)
class MapReady:
    """A map where groups stand apart (t-SNE) for the items of a FeaturesReady, replacing its
    PCA map."""

    items: np.ndarray  # str, as in FeaturesReady
    coords: np.ndarray  # float32 (N, 2)
    method: str
    elapsed_s: float  # 0 when it came from the run's cache


# -- export -----------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class ExportProgress:
    phase: str  # "exporting", "quantizing", "checking", "timing"
    message: str = ""


@dataclass(frozen=True, eq=False)
class ExportCheck:
    """PyTorch against onnxruntime on real items of the folder."""

    variant: str  # "float" or "int8"
    items: int
    max_abs_diff: float
    mean_cosine: float
    min_cosine: float
    top1_agreement: float  # NaN for an encoder
    passed: bool
    tolerance: str  # what `passed` was judged against
    labelled_items: int = 0
    labelled_accuracy_torch: float = NAN  # accuracy on the labelled items (classifiers)
    labelled_accuracy_onnx: float = NAN


@dataclass(frozen=True, eq=False)
class ExportLatency:
    variant: str
    batch: int
    torch_ms: float  # median per batch, eager PyTorch on the CPU
    onnx_ms: float  # median per batch, onnxruntime on the CPU


@dataclass(frozen=True, eq=False)
class ExportFinished:
    status: str  # "completed", "failed", "cancelled"
    path: str  # the .onnx file (float)
    message: str = ""
    files: tuple = ()  # every file written
