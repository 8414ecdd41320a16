"""The only code that knows the file names inside a run folder and an adapted model's folder.

Everything else asks these two classes for paths or for typed contents. Importing this module
costs no torch, so the app can list runs before its engine has loaded.

    RUN/
      config.toml            every setting, the objective's knobs, the plan, the preprocessing and
                             the data folder's identity (absolute path, item count, listing hash)
      metrics.csv            one row per logged step
      status.json            how the run ended (absent while it runs, or if it was killed)
      skipped.csv            files of the folder that could not be used, with their reasons
      scan_report.json       the scan's counts
      embedding.npz          the last 2-D map of the monitor's sample
      tokenizer.json         text runs: the tokenizer the encoder reads through
      checkpoints/last.safetensors, checkpoints/previous.safetensors
      checkpoints/best.safetensors   the encoder that scored best on the monitor's labels, when
                             that was not the last one's (embed, adapt and export use it)
      cache/                 features for adaptation and their t-SNE map; decoded images of the data folder when
                             the run is not in a project (a project's runs share PROJECT/cache/)
      adapted/TIME-METHOD/   adapted models (AdaptedFolder)
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sslstudio.core.config import read_toml, write_toml
from sslstudio.core.data import DataError, DataIdentity, absolute_data_path
from sslstudio.core.events import AdaptEstimate, StepMetrics
from sslstudio.core.fileio import atomic_write_bytes, atomic_write_text
from sslstudio.core.labels import read_label_csv

CHECKPOINT_DIR = "checkpoints"
LAST = "last.safetensors"
PREVIOUS = "previous.safetensors"
BEST = "best.safetensors"
TOKENIZER_FILE = "tokenizer.json"
PROJECT_FILE = "sslstudio-project.toml"
PROJECT_CACHE = "cache"


@dataclass(frozen=True)
class RunStatus:
    status: str  # completed, cancelled, failed, interrupted (no status written: killed or running)
    step: int
    message: str = ""


class RunFolder:
    CONFIG = "config.toml"
    METRICS = "metrics.csv"
    STATUS = "status.json"
    SKIPPED = "skipped.csv"
    SCAN_REPORT = "scan_report.json"
    SNAPSHOT = "embedding.npz"
    CACHE = "cache"
    ADAPTED = "adapted"
    FEATURES = "features.npz"
    NEIGHBOUR_MAP = "map-tsne.npz"
    TEACHER = "teacher-features.npz"

    def __init__(self, path: Path):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    # -- paths --------------------------------------------------------------------------------
    @property
    def config_path(self) -> Path:
        return self.path / self.CONFIG

    @property
    def metrics_path(self) -> Path:
        return self.path / self.METRICS

    @property
    def status_path(self) -> Path:
        return self.path / self.STATUS

    @property
    def skipped_path(self) -> Path:
        return self.path / self.SKIPPED

    @property
    def snapshot_path(self) -> Path:
        return self.path / self.SNAPSHOT

    @property
    def tokenizer_path(self) -> Path:
        return self.path / TOKENIZER_FILE

    @property
    def teacher_path(self) -> Path:
        """A distillation's teacher features of the items, computed once."""
        return self.path / self.TEACHER

    @property
    def checkpoint_path(self) -> Path:
        """The last checkpoint; `checkpoint.read_checkpoint` falls back to the previous one."""
        return self.path / CHECKPOINT_DIR / LAST

    @property
    def best_path(self) -> Path:
        return self.path / CHECKPOINT_DIR / BEST

    @property
    def cache_dir(self) -> Path:
        return self.path / self.CACHE

    @property
    def project_dir(self) -> Path | None:
        """The project the run (or the adapted model, one level deeper) lies in, if any."""
        for ancestor in list(Path(os.path.abspath(self.path)).parents)[:4]:
            if (ancestor / PROJECT_FILE).is_file():
                return ancestor
        return None

    @property
    def data_cache_dir(self) -> Path:
        """Where the data folder's decoded items are kept between scans: the project's cache when
        the run lies in a project's runs, so that every run and job of the project reuses one
        scan; else the run's own."""
        project = self.project_dir
        return project / PROJECT_CACHE if project is not None else self.cache_dir

    @property
    def features_cache_path(self) -> Path:
        return self.cache_dir / self.FEATURES

    @property
    def map_cache_path(self) -> Path:
        """The t-SNE map of the features in `features_cache_path`, under the same key."""
        return self.cache_dir / self.NEIGHBOUR_MAP

    @property
    def adapted_dir(self) -> Path:
        return self.path / self.ADAPTED

    # -- what it holds ------------------------------------------------------------------------
    def is_run(self) -> bool:
        return self.config_path.is_file()

    def never_checkpointed(self) -> bool:
        """Holds nothing but a run's own files and no checkpoint: a run stopped (killed) before
        its first one, which can only be started again from the beginning."""
        if not self.path.is_dir() or self.has_checkpoint():
            return False
        names = {p.name for p in self.path.iterdir()}
        return bool(names) and names <= self.own_names()

    @classmethod
    def own_names(cls) -> set[str]:
        """Every name a run writes at its top level (adapted models excepted)."""
        return {cls.CONFIG, cls.METRICS, cls.STATUS, cls.SKIPPED, cls.SCAN_REPORT, cls.SNAPSHOT,
                cls.CACHE, CHECKPOINT_DIR, TOKENIZER_FILE, cls.TEACHER}

    def has_checkpoint(self) -> bool:
        """Resumable, embeddable and adaptable: its last or previous checkpoint exists."""
        folder = self.path / CHECKPOINT_DIR
        return (folder / LAST).exists() or (folder / PREVIOUS).exists()

    def checkpoint_file(self) -> Path:
        """The checkpoint file the run's encoder is read from (for cache keys): the best one,
        else last, else previous."""
        if self.best_path.exists():
            return self.best_path
        last = self.checkpoint_path
        return last if last.exists() else last.with_name(PREVIOUS)

    def settings(self) -> dict:
        """config.toml as plain tables (train, objective, plan, preprocess)."""

        return read_toml(self.config_path)

    def train_settings(self):
        """The run's settings as a TrainConfig (knobs an older run did not save at their
        defaults). Raises ConfigError for a value that is not its knob's kind."""
        from sslstudio.core.config import from_dict
        from sslstudio.core.run.config import TrainConfig

        return from_dict(TrainConfig, self.settings().get("train", {}))

    def preprocess_table(self) -> dict:
        """How the run reads an item, as its `[preprocess]` table (Preprocess.from_table)."""
        return dict(self.settings().get("preprocess", {}))

    def read_config(self):
        """(TrainConfig, objective config, preprocess table) as the run saved them."""
        from sslstudio.core.run.config import load_run_config

        return load_run_config(self.config_path)

    def write_config(self, train, objective, preprocess: dict, plan: dict | None = None,
                     data: DataIdentity | None = None) -> None:
        from sslstudio.core.run.config import save_run_config

        save_run_config(self.config_path, train, objective, preprocess, plan,
                        data.to_table() if data else None)

    def data_identity(self) -> DataIdentity | None:
        """The folder the run was trained on, as it was; None for runs made before it was kept."""
        try:
            table = self.settings().get("data")
        except (OSError, ValueError):
            return None
        return DataIdentity.from_table(table) if isinstance(table, dict) else None

    def check_data_place(self, data_dir: Path, other_data: bool) -> None:
        """Before a scan: `data_dir` is the folder the run was trained on, unless asked. Where
        that folder is gone (moved, renamed), the scan's listing decides (`compare_data`)."""
        known = self.data_identity()
        if known is None or other_data or known.same_place(data_dir):
            return
        if Path(known.path).is_dir():
            raise DataError(f"{self.path} was trained on {known.path}, not on "
                            f"{absolute_data_path(data_dir)}; pass --other-data to use another "
                            "folder all the same")

    def compare_data(self, identity: DataIdentity, other_data: bool) -> str:
        """After a scan: how the folder differs from the one the run knows, as a note ("" when
        it does not), or a DataError when it is another folder and the user did not ask."""
        known = self.data_identity()
        if known is None or known == identity:
            return ""
        if known.same_items(identity):
            return f"the data folder moved from {known.path} to {identity.path}; its items are the same"
        if known.same_place(identity.path):
            return (f"{identity.path} changed since the run read it ({known.items} items then, "
                    f"{identity.items} now); going on with the folder as it is now")
        if not other_data:
            raise DataError(f"{self.path} was trained on {known.path} ({known.items} items), not on "
                            f"{identity.path} ({identity.items} items, other files); pass "
                            "--other-data to use it all the same")
        return (f"using {identity.path} ({identity.items} items), not {known.path} "
                f"({known.items} items) that the run was trained on, as asked")

    def status(self) -> RunStatus:
        if self.status_path.exists():
            try:
                data = json.loads(self.status_path.read_text())
                return RunStatus(data.get("status", "interrupted"), int(data.get("step", 0)),
                                 data.get("message", ""))
            except (OSError, ValueError):
                pass
        steps = self.metrics()["step"]
        return RunStatus("interrupted", int(steps[-1]) if len(steps) else 0)

    def write_status(self, status: str, step: int, message: str = "") -> None:
        atomic_write_text(self.status_path, json.dumps({"status": status, "step": step,
                                                        "message": message}))

    def clear_status(self) -> None:
        """Running again: no longer finished."""
        self.status_path.unlink(missing_ok=True)

    def modified(self) -> float:
        return max((p.stat().st_mtime for p in self.path.iterdir()), default=0.0)

    def metrics(self) -> dict[str, np.ndarray]:
        """metrics.csv as one float array per column (NaN where a row has no value)."""
        columns: dict[str, list[float]] = {}
        if self.metrics_path.exists():
            with open(self.metrics_path, newline="") as f:
                reader = csv.DictReader(f)
                names = reader.fieldnames or []
                columns = {name: [] for name in names}
                for row in reader:
                    for name in names:
                        value = row.get(name) or ""
                        try:
                            columns[name].append(float(value) if value else float("nan"))
                        except ValueError:
                            columns[name].append(float("nan"))
        out = {name: np.asarray(values, dtype=np.float64) for name, values in columns.items()}
        out.setdefault("step", np.zeros(0))
        return out

    def snapshot(self) -> dict[str, np.ndarray] | None:
        """The last 2-D map: step, indices, coords (PCA), labels; the monitor sample's features
        when the run saved them, and neighbour_coords (t-SNE) once computed."""
        if not self.snapshot_path.exists():
            return None
        try:
            with np.load(self.snapshot_path) as data:
                return {key: data[key] for key in data.files}
        except (OSError, ValueError):
            return None

    def write_snapshot(self, step: int, indices: np.ndarray, coords: np.ndarray,
                       labels: np.ndarray, features: np.ndarray | None = None,
                       neighbour_coords: np.ndarray | None = None) -> None:
        extra = {name: value for name, value in (("features", features),
                                                  ("neighbour_coords", neighbour_coords))
                 if value is not None}
        buffer = io.BytesIO()
        np.savez(buffer, step=step, indices=indices, coords=coords, labels=labels, **extra)
        atomic_write_bytes(self.snapshot_path, buffer.getvalue())

    def write_scan_report(self, report) -> None:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(["path", "reason"])
        writer.writerows(report.skipped)
        atomic_write_text(self.skipped_path, buffer.getvalue())
        atomic_write_text(self.path / self.SCAN_REPORT, json.dumps({
            "root": report.root, "total_files": report.total_files, "usable": report.usable,
            "ignored": report.ignored, "skipped": len(report.skipped),
            "skipped_by_reason": report.skipped_by_reason(), "summary": report.summary(),
        }, indent=2))

    def adapted_models(self) -> list["AdaptedFolder"]:
        """Adapted models of this run, oldest first."""
        if not self.adapted_dir.is_dir():
            return []
        found = [AdaptedFolder(p) for p in self.adapted_dir.iterdir()
                 if not p.name.startswith(".") and AdaptedFolder(p).is_adapted()]
        return sorted(found, key=lambda a: a.modified())

    def adapted_folder_names(self, method: str, tries: int = 1000):
        """Names for a new adapted model, in the order to try them: TIME-METHOD, then -2, -3..."""
        stamp = time.strftime("%Y%m%d-%H%M%S")
        yield AdaptedFolder(self.adapted_dir / f"{stamp}-{method}")
        for suffix in range(2, tries + 1):
            yield AdaptedFolder(self.adapted_dir / f"{stamp}-{method}-{suffix}")


@dataclass(frozen=True)
class SavedPredictions:
    items: list[str]  # item keys (or absolute paths, for `sslstudio predict` files)
    labels: list[str]  # predicted class name per item
    confidence: np.ndarray  # the top probability per item


class AdaptedFolder:
    INFO = "adapted.toml"
    MODEL = "model.safetensors"
    OWN_WEIGHTS = "{method}.safetensors"  # a tuning method's own weights (LoRA, adapters...)
    ESTIMATE = "estimate.json"
    LABELS = "labels.csv"
    PREDICTIONS = "predictions.csv"

    def __init__(self, path: Path):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"AdaptedFolder({str(self.path)!r})"

    @property
    def info_path(self) -> Path:
        return self.path / self.INFO

    @property
    def model_path(self) -> Path:
        return self.path / self.MODEL

    def own_weights_path(self, method: str) -> Path:
        return self.path / self.OWN_WEIGHTS.format(method=method)

    @property
    def estimate_path(self) -> Path:
        return self.path / self.ESTIMATE

    @property
    def labels_path(self) -> Path:
        return self.path / self.LABELS

    @property
    def predictions_path(self) -> Path:
        return self.path / self.PREDICTIONS

    @property
    def tokenizer_path(self) -> Path:
        return self.path / TOKENIZER_FILE

    def is_adapted(self) -> bool:
        return self.info_path.is_file()

    def written_names(self) -> set[str]:
        """The files SSL Studio wrote here: adapted.toml's list, or for a model saved before
        it kept one, every name an adapted model may hold (a method's weights among them)."""
        try:
            listed = self.info().get("files", {}).get("written")
        except (OSError, ValueError, AttributeError):
            listed = None
        if isinstance(listed, list) and all(isinstance(name, str) for name in listed):
            return set(listed)
        return {self.INFO, self.MODEL, self.ESTIMATE, self.LABELS, self.PREDICTIONS,
                TOKENIZER_FILE, *(p.name for p in self.path.glob("*.safetensors"))}

    def is_complete(self) -> bool:
        return self.is_adapted() and self.model_path.is_file()

    def modified(self) -> float:
        target = self.predictions_path if self.predictions_path.exists() else self.info_path
        return target.stat().st_mtime

    def info(self) -> dict:
        return read_toml(self.info_path)

    def write_info(self, tables: dict) -> None:
        write_toml(self.info_path, tables)

    def estimate(self):
        """The saved cross-validated estimate, as the AdaptEstimate event the job yielded."""

        saved = json.loads(self.estimate_path.read_text())
        return AdaptEstimate(
            saved["method"], saved["scheme"], saved["num_labels"], saved["accuracy"],
            saved["ci_low"], saved["ci_high"], saved["balanced_accuracy"],
            tuple(saved["class_names"]), np.array(saved["recall"]), np.array(saved["precision"]),
            np.array(saved["support"]), np.array(saved["confusion"]),
            np.array(saved.get("repeat_accuracies", [])), saved.get("epochs", 0), saved.get("caution", ""))

    def write_estimate(self, estimate) -> None:
        atomic_write_text(self.estimate_path, json.dumps({
            "method": estimate.method, "scheme": estimate.scheme, "num_labels": estimate.num_labels,
            "accuracy": estimate.accuracy, "ci_low": estimate.ci_low, "ci_high": estimate.ci_high,
            "balanced_accuracy": estimate.balanced_accuracy, "epochs": estimate.epochs,
            "caution": estimate.caution,
            "class_names": list(estimate.class_names), "recall": estimate.recall.tolist(),
            "precision": estimate.precision.tolist(), "support": estimate.support.tolist(),
            "confusion": estimate.confusion.tolist(),
            "repeat_accuracies": estimate.repeat_accuracies.tolist()}, indent=1))

    def labels(self) -> dict[str, str]:
        """item -> class name: what the model was trained on."""

        if not self.labels_path.exists():
            return {}
        return {row[0]: row[1] for _, row in read_label_csv(self.labels_path) if len(row) >= 2}

    def write_labels(self, items: list[str], names: list[str]) -> None:
        atomic_write_text(self.labels_path, _csv_text(["path", "label"], zip(items, names)))

    def predictions(self) -> SavedPredictions:
        return read_predictions(self.predictions_path)

    def write_predictions(self, items: list[str], class_names, proba: np.ndarray) -> None:
        write_predictions(self.predictions_path, items, class_names, proba)


def predictions_csv(items: list[str], class_names, proba: np.ndarray) -> str:
    predicted = proba.argmax(1)
    return _csv_text(["path", "label", "confidence"],
                     ([item, class_names[p], f"{row[p]:.4f}"]
                      for item, p, row in zip(items, predicted, proba)))


def write_predictions(path: Path, items: list[str], class_names, proba: np.ndarray) -> None:
    """path,label,confidence: the top class and its probability per item."""
    atomic_write_text(Path(path), predictions_csv(items, class_names, proba))


def read_predictions(path: Path) -> SavedPredictions:
    with open(path, newline="", encoding="utf-8", errors="surrogateescape") as f:
        rows = list(csv.DictReader(f))
    return SavedPredictions([r["path"] for r in rows], [r["label"] for r in rows],
                            np.array([float(r["confidence"]) for r in rows], np.float32))


def _csv_text(header: list[str], rows) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


METRIC_COLUMNS = ["step", "epoch", "loss", "lr", "samples_per_s", "elapsed_s", "batch_size",
                  "embedding_std", "embedding_std_reference", "effective_rank", "mean_cosine",
                  "knn_accuracy", "probe_accuracy", "uniformity", "spectrum_alpha",
                  "teacher_probe_accuracy"]


class MetricsLog:
    def __init__(self, path: Path, resume_step: int | None):
        self.path = path
        if resume_step is not None and path.exists():
            # Steps after the checkpoint will run again; drop their rows so the curve stays clean.
            with open(path, newline="") as f:
                rows = [r for r in csv.DictReader(f) if int(r["step"]) <= resume_step]
            text_rows = [",".join(str(r.get(c, "")) for c in METRIC_COLUMNS) for r in rows]
            atomic_write_text(path, "\n".join([",".join(METRIC_COLUMNS)] + text_rows) + "\n")
        elif not path.exists() or resume_step is None:
            atomic_write_text(path, ",".join(METRIC_COLUMNS) + "\n")
        self.handle = open(path, "a", newline="")

    def write(self, event: StepMetrics) -> None:
        values = [getattr(event, c) for c in METRIC_COLUMNS]
        self.handle.write(",".join(_csv_number(v) for v in values) + "\n")
        self.handle.flush()

    def close(self) -> None:
        self.handle.close()


def _csv_number(value) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.6g}"
    return str(value)
