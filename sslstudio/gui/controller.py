"""Turns a job's events into Qt signals and the history buffers the plots read.

Widgets connect to these signals; they never touch the worker, the thread or the generator.
"""

from __future__ import annotations

import math
from pathlib import Path

from PySide6.QtCore import QObject, Signal

from sslstudio.core.describe import describe
from sslstudio.core.events import (
    AdaptEstimate,
    AdaptFinished,
    AdaptPredictions,
    AdaptProgress,
    AdaptStarted,
    Checkpointed,
    EmbeddingSnapshot,
    EmbedProgress,
    ExportCheck,
    ExportFinished,
    ExportLatency,
    ExportProgress,
    FeaturesReady,
    MapProgress,
    MapReady,
    RunFinished,
    RunStarted,
    RunWarning,
    ScanFinished,
    ScanProgress,
    StepMetrics,
    ZeroShotFinished,
    ZeroShotPredictions,
)
from sslstudio.core.history import RunHistory
from sslstudio.gui.modalities import VIEWS
from sslstudio.gui.worker import JobWorker


# What Stop does to each kind of job, as the log says it (a comparison keeps no checkpoint).
STOPPING_WORDS = {"train": "stopping: finishing the step and saving a checkpoint",
                  "adapt": "stopping the classifier's training: nothing of it is kept",
                  "features": "stopping: the features are not computed",
                  "map": "stopping: the map stays as PCA drew it",
                  "zeroshot": "stopping: no pre-labels are made"}


class TrainingController(QObject):
    busy_changed = Signal(bool)
    paused_changed = Signal(bool)
    scan_progress = Signal(int, int)  # done, total
    scan_finished = Signal(object)  # ScanFinished
    data_ready = Signal(object)  # the loaded dataset (a scan job's result)
    run_started = Signal(object)  # RunStarted
    metrics = Signal(object)  # StepMetrics
    snapshot = Signal(object)  # EmbeddingSnapshot
    warning = Signal(str, str)  # kind, message
    checkpointed = Signal(object)
    run_finished = Signal(object)  # RunFinished
    failed = Signal(str, str)  # message, traceback
    log = Signal(str)
    features_ready = Signal(object)  # FeaturesReady
    map_ready = Signal(object)  # MapReady
    adapt_started = Signal(object)  # AdaptStarted
    adapt_progress = Signal(object)  # AdaptProgress or EmbedProgress during adaptation
    adapt_estimate = Signal(object)  # AdaptEstimate
    adapt_predictions = Signal(object)  # AdaptPredictions
    adapt_finished = Signal(object)  # AdaptFinished
    zeroshot_ready = Signal(object)  # ZeroShotPredictions
    zeroshot_finished = Signal(object)  # ZeroShotFinished
    result = Signal(str, object)  # a small job's kind and its returned value
    export_event = Signal(object)  # ExportProgress, ExportCheck, ExportLatency, ExportFinished

    def __init__(self, parent=None):
        super().__init__(parent)
        self.worker: JobWorker | None = None
        self.history = RunHistory()
        self.job_kind = ""
        self.run_dir: Path | None = None
        self.training_run: Path | None = None  # the run being trained right now, if any

    # -- jobs ---------------------------------------------------------------------------------
    def busy(self) -> bool:
        # Busy until the GUI thread has handled the worker's end, so every widget sees one state.
        return self.worker is not None

    def start_scan(self, folder: Path, thumbnail_size: int, cache_dir: Path | None,
                   modality: str = "image") -> None:
        load = VIEWS[modality].load

        def job(control):
            data = yield from load(folder, thumbnail_size, cache_dir, control)
            yield _DataLoaded(data)

        self._start("scan", job)
        self.log.emit(f"scanning {folder}")

    def start_training(self, train_config, objective_config, resume: bool = False) -> None:
        def job(control):
            # torch loads here, off the GUI thread
            from sslstudio.core.run.train import train

            yield from train(train_config, objective_config, control, resume=resume)

        self.history = RunHistory()
        self.run_dir = Path(train_config.out)
        self._start("train", job)
        self.training_run = self.run_dir
        verb = "resuming" if resume else "starting"
        self.log.emit(f"{verb} {train_config.objective} in {train_config.out}")

    def start_labelling(self, run_dir: Path, data_dir: Path, device: str = "auto") -> None:
        def job(control):
            from sslstudio.core.adapt.job import prepare_labelling

            yield from prepare_labelling(run_dir, data_dir, device, control)

        self._start("features", job)
        self.log.emit(f"computing features of every item with {Path(run_dir).name}")

    def start_run_map(self, run_dir: Path) -> None:
        """The map where groups stand apart of a run's last snapshot (a few seconds)."""
        def job(control):
            from sslstudio.core.projection import run_neighbour_map

            yield from run_neighbour_map(run_dir, control)

        self._start("map", job)

    def start_adapt(self, request, compare_methods: list[str] | None = None,
                    overrides: dict | None = None) -> None:
        def job(control):
            from sslstudio.core.adapt.job import adapt, compare

            if compare_methods:
                yield from compare(request, compare_methods, overrides, control)
            else:
                yield from adapt(request, control)

        self._start("adapt", job)
        what = " vs ".join(compare_methods) if compare_methods else request.method
        self.log.emit(f"adapting {Path(request.run_dir).name} with {what}")

    def start_zero_shot(self, request) -> None:
        def job(control):
            from sslstudio.core.zeroshot import zero_shot

            yield from zero_shot(request, control)

        self._start("zeroshot", job)
        self.log.emit(f"zero-shot labels from {Path(request.model).name}")

    def start_export(self, request) -> None:
        def job(control):
            from sslstudio.core.export import export_model

            yield from export_model(request, control)

        self._start("export", job)
        self.log.emit(f"exporting {Path(request.source).name} to {request.out}")

    def start_task(self, kind: str, function, *args) -> None:
        """A short computation off the GUI thread; its return value comes back as `result`."""
        def job(control):
            yield _TaskResult(kind, function(*args))

        self._start(kind, job)

    def _start(self, kind: str, job) -> None:
        if self.busy():
            raise RuntimeError("a job is already running")
        self.job_kind = kind
        worker = JobWorker(job, name=f"sslstudio-{kind}")
        worker.event.connect(self._on_event)
        worker.failed.connect(self._on_failed)
        worker.finished.connect(self._on_finished)
        self.worker = worker
        worker.start()
        self.busy_changed.emit(True)

    @property
    def paused(self) -> bool:
        return self.busy() and self.worker.control.paused

    def pause(self) -> None:
        if self.busy():
            self.worker.pause()
            self.paused_changed.emit(True)
            self.log.emit("paused")

    def resume(self) -> None:
        if self.worker is not None:
            self.worker.resume()
            self.paused_changed.emit(False)
            self.log.emit("resumed")

    def stop(self) -> None:
        if self.busy():
            self.worker.cancel()
            self.paused_changed.emit(False)
            self.log.emit(STOPPING_WORDS.get(self.job_kind, "stopping"))

    def shutdown(self, timeout_ms: int = 120000) -> bool:
        """Cancel and join whatever runs. True when no thread is left."""
        if self.worker is None:
            return True
        self.worker.cancel()
        ended = self.worker.wait(timeout_ms)
        if ended:
            self._on_finished()
        return ended

    # -- events -------------------------------------------------------------------------------
    def _on_event(self, event) -> None:
        match event:
            case _DataLoaded():
                self.data_ready.emit(event.data)
                return
            case _TaskResult():
                self.result.emit(event.kind, event.value)
                return
            case ScanProgress():
                self.scan_progress.emit(event.done, event.total)
            case ScanFinished():
                self.scan_finished.emit(event)
            case ExportProgress() | ExportCheck() | ExportLatency() | ExportFinished():
                self.export_event.emit(event)
            case FeaturesReady():
                self.features_ready.emit(event)
            case MapReady():
                self.map_ready.emit(event)
            case MapProgress():
                self.adapt_progress.emit(event)
            case AdaptStarted():
                self.adapt_started.emit(event)
            case AdaptProgress() | EmbedProgress():
                self.adapt_progress.emit(event)
            case AdaptEstimate():
                self.adapt_estimate.emit(event)
            case AdaptPredictions():
                self.adapt_predictions.emit(event)
            case AdaptFinished():
                self.adapt_finished.emit(event)
            case ZeroShotPredictions():
                self.zeroshot_ready.emit(event)
            case ZeroShotFinished():
                self.zeroshot_finished.emit(event)
            case RunStarted():
                self.run_started.emit(event)
            case StepMetrics():
                self._record(event)
                self.metrics.emit(event)
            case EmbeddingSnapshot():
                self.snapshot.emit(event)
            case RunWarning():
                self.warning.emit(event.kind, event.message)
            case Checkpointed():
                self.checkpointed.emit(event)
            case RunFinished():
                self.training_run = None  # ended, with its status on disk, before the thread has
                self.run_finished.emit(event)
        # Widgets show progress and data themselves; the log keeps the lines a reader wants later.
        description = describe(event)
        if description.kind in ("note", "warning", "detail"):
            self.log.emit(description.text)

    def _record(self, event: StepMetrics) -> None:
        ratio = (event.embedding_std / event.embedding_std_reference
                 if event.embedding_std_reference == event.embedding_std_reference else math.nan)
        self.history.append(step=event.step, loss=event.loss, lr=event.lr,
                            samples_per_s=event.samples_per_s, std_ratio=ratio,
                            effective_rank=event.effective_rank, knn_accuracy=event.knn_accuracy,
                            probe_accuracy=event.probe_accuracy,
                            teacher_probe_accuracy=event.teacher_probe_accuracy)

    def _on_failed(self, message: str, details: str) -> None:
        self.log.emit(f"error: {message}")
        self.failed.emit(message, details)

    def _on_finished(self) -> None:
        worker, self.worker = self.worker, None
        self.training_run = None
        if worker is not None:
            worker.deleteLater()
            self.busy_changed.emit(False)


class _DataLoaded:
    """The scan job's last item: the loaded data, handed over in one event."""

    def __init__(self, data):
        self.data = data


class _TaskResult:
    def __init__(self, kind: str, value):
        self.kind = kind
        self.value = value
