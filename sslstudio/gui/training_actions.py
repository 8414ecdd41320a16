"""Start, pause, resume and stop a run, and what the window shows while one trains (progress,
the status line, the live map, the runs list)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from PySide6.QtCore import QObject, Qt
from PySide6.QtWidgets import QMessageBox

from sslstudio.core.config import ConfigError
from sslstudio.core.describe import status_word
from sslstudio.core.history import RunHistory
from sslstudio.core.text import counted, format_duration, format_loss
from sslstudio.gui import APP_NAME

# Jobs the Pause and Stop buttons act on; scans and small computations just finish.
STOPPABLE_JOBS = ("train", "adapt", "features", "map", "zeroshot")


class TrainingActions(QObject):
    def __init__(self, host):
        super().__init__(host)
        self.host = host  # the main window
        self.start_when_ready = False  # Start was pressed before the engine loaded
        controller = host.controller
        controller.paused_changed.connect(self._paused_changed)
        controller.run_started.connect(self._run_started)
        controller.metrics.connect(self._metrics)
        controller.snapshot.connect(self._snapshot)
        controller.run_finished.connect(self._run_finished)

    def start(self) -> None:
        if self.host.engine is None and not self.host.controller.busy():
            # A click in the first seconds, before torch has loaded, is kept, not lost.
            self.start_when_ready = True
            self.host.status_text.setText("Starting training as soon as the training engine has "
                                     "loaded (a few seconds)…")
            return
        if self.host.controller.busy():
            return
        if self.host.session.data_set is None or self.host.session.project is None:
            QMessageBox.information(self.host, APP_NAME, "Open a folder of images first "
                                    "(or Help > Open sample dataset).")
            return

        project = self.host.session.project
        try:
            train_config, objective_config = self.host.setup.build_configs(
                project.data_dir, str(project.new_run_dir(self.host.setup.objective.currentText())))
        except ConfigError as error:
            QMessageBox.warning(self.host, APP_NAME, f"A setting is not valid: {error}")
            return
        if self.host.labelling.session.labels.store.labels():
            # The user's labels judge the encoder as it trains: the probe on the curves, and the
            # run keeps the encoder that scored best.
            train_config = dataclasses.replace(train_config,
                                               labels=str(self.host.labelling.session.labels.store.path))
        self.host.settings.setValue("run/choices", json.dumps(self.host.setup.choices()))
        self.host.dismiss_banner()
        self.host.map.clear()
        self.host.labelling.clear_map()
        self.host.controller.start_training(train_config, objective_config)
        self.host.session.history = self.host.controller.history
        self.host.curves.set_history(self.host.session.history)
        self.host.tabs.setCurrentWidget(self.host.curves)

    def resume_selected_run(self) -> None:
        item = self.host.runs.list.currentItem()
        if item is None or self.host.controller.busy():
            return
        summary = item.data(Qt.ItemDataRole.UserRole)
        if not summary.resumable:
            QMessageBox.information(self.host, APP_NAME, f"Run {summary.name} is {status_word(summary.status)}; "
                                    "only stopped or interrupted runs can be resumed.")
            return

        train_config, objective_config, _ = summary.folder.read_config()
        history = RunHistory.from_metrics(summary.folder.metrics())
        self.host.dismiss_banner()
        self.host.controller.start_training(train_config, objective_config, resume=True)
        # A resume goes on with the run's own settings, whatever the form shows now (it showed
        # "1 epoch" while a 5-minute run went on for its 5 minutes, saying nothing).
        budget = (counted(train_config.epochs, "epoch") if train_config.epochs
                  else counted(train_config.minutes, "minute"))
        note = (f"Resuming {summary.name} with its own settings ({budget} in all, "
                f"{train_config.objective}); the Run setup form is for new runs")
        self.host.status_text.setText(note)
        self.host.log.add(note)
        self.host.controller.history = history  # keep the curve drawn so far; new points append to it
        self.host.session.history = history
        self.host.curves.set_history(history)

    def toggle_pause(self) -> None:
        if not self.host.controller.busy() or self.host.controller.job_kind not in STOPPABLE_JOBS:
            return
        if self.host.controller.worker.control.paused:
            self.host.controller.resume()
        else:
            self.host.controller.pause()

    def stop(self) -> None:
        self.host.controller.stop()

    def _run_started(self, event) -> None:
        self.host.map.class_names = event.class_names
        if not self.host.setup.batch_size.value():
            # The form says what "auto" came to, in the log's words.
            self.host.setup.batch_size.setSpecialValueText(f"auto ({event.batch_size} this run)")
        self.host.progress.setRange(0, 1000)
        self.host.progress.setValue(0)
        self.host.progress.setFormat("starting…")
        self.host.progress.show()
        self.host.runs.refresh(select_path=Path(event.run_dir))

    def _metrics(self, event) -> None:
        self.host.progress.setValue(int(event.progress * 1000))
        self.host.progress.setFormat(f"{event.progress * 100:.0f}%  ETA {format_duration(event.eta_s)}")
        memory = (f" | GPU {event.gpu_memory_bytes / 2**30:.1f} GiB" if event.gpu_memory_bytes else "")
        self.host.status_text.setText(f"step {event.step} | epoch {event.epoch} | loss {format_loss(event.loss)} | "
                                 f"{event.samples_per_s:,.0f} images/s{memory}")

    def _snapshot(self, event) -> None:
        if self.host._closing or self.host.labelling.session.item_map.features is not None:
            return  # the map shows every item for labelling; a run's snapshot would replace it
        self.host.map.show_snapshot(event.indices, event.coords, event.labels, event.step)

    def _run_finished(self, event) -> None:
        self.host.progress.hide()
        if event.status == "completed" and self.host.controller.run_dir is not None:
            self.host.session.run_completed(Path(self.host.controller.run_dir))
        self.host.status_text.setText(f"Run {status_word(event.status)} at step {event.step}"
                                 + (f": {event.message}" if event.message else ""))
        if not self.host._closing:
            self.host.runs.refresh(select_path=self.host.controller.run_dir)

    def show_pause_words(self, paused: bool) -> None:
        self.host.pause_action.setText("&Resume" if paused else "&Pause")
        self.host.pause_button.setText("Resume" if paused else "Pause")

    def _paused_changed(self, paused: bool) -> None:
        self.show_pause_words(paused)
        if paused:
            self.host.status_text.setText("Paused")
        # Every place that shows the run's state says paused, not running.
        live = self.host.controller.training_run
        self.host.runs.refresh(select_path=Path(live) if live else None)
        self.host.flow.refresh()
