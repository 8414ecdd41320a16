"""Classifiers of the selected run: training one (linear probe, fine-tuning, LoRA, ...),
comparing methods on the same folds, the list of a run's classifiers and the one in use. Part of
LabellingPanels; predictions live in its session's Predictions."""

from __future__ import annotations

import time
from pathlib import Path

from PySide6.QtCore import QObject

from sslstudio.core.describe import describe
from sslstudio.core.run.folder import AdaptedFolder, RunFolder


class ClassifierControls(QObject):
    def __init__(self, panels):
        super().__init__(panels)
        self.panels = panels  # LabellingPanels
        controller = panels.host.controller
        controller.adapt_started.connect(self.adapt_started)
        controller.adapt_progress.connect(self.adapt_progress)
        controller.adapt_estimate.connect(panels.adapt_panel.show_estimate)
        controller.adapt_predictions.connect(self.adapt_predictions)
        controller.adapt_finished.connect(self.adapt_finished)
        panels.adapt_panel.train_requested.connect(self.train_classifier)
        panels.adapt_panel.classifier_chosen.connect(self.choose_classifier)
        panels.adapt_panel.compare_requested.connect(self.compare_methods)

    def train_classifier(self, method: str, overrides: dict) -> None:
        if not self._can_adapt() or self.panels.features_needed(
                lambda: self.train_classifier(method, overrides)):
            return
        self.panels.adapt_panel.clear_results(comparing=False)
        self.panels.host.controller.start_adapt(self._adapt_request(method, overrides))
        self.panels.show_progress(f"{method}: preparing…")

    def compare_methods(self, overrides: dict) -> None:
        if not self._can_adapt() or self.panels.features_needed(lambda: self.compare_methods(overrides)):
            return
        self.panels.adapt_panel.clear_results(comparing=True)
        self.panels.host.controller.start_adapt(self._adapt_request("linear", {}), list(overrides), overrides)
        self.panels.show_progress("comparing methods…")

    def _adapt_request(self, method: str, overrides: dict):
        return self.panels.session.adapt_request(Path(self.panels.project.data_dir), method, overrides)

    def _can_adapt(self) -> bool:
        # Without features yet, _features_needed computes them first.
        return (self.panels.session.labels.store is not None and not self.panels.host.controller.busy()
                and (self.panels.session.can_adapt() or self.panels.can_prepare()))

    def adapt_started(self, event) -> None:
        self.panels.session.predictions.adapt_started(event)
        self.panels.adapt_panel.show_started(event)
        self.panels.host.reveal(self.panels.adapt_panel)

    def adapt_progress(self, event) -> None:
        progress = self.panels.host.progress
        progress.show()
        progress.setRange(0, max(1, event.total))
        progress.setValue(event.done)
        # EmbedProgress, while the features are computed, has neither.
        phase = getattr(event, "phase", "features")
        method = getattr(event, "method", "")
        progress.setFormat(f"{method} {phase} %v / %m".strip())

    def adapt_predictions(self, event) -> None:
        self.panels.session.predictions.predictions_ready(event)
        self.panels.show_predictions()

    def refresh(self) -> None:
        """The Classifier panel's list: every classifier of the selected run, the current one
        marked."""
        run = self.panels.selected_run.path if self.panels.selected_run is not None else self.panels.session.item_map.run
        entries = []
        for model in self.panels.session.classifiers(run):
            when = time.strftime("%d %b %H:%M", time.localtime(model.modified()))
            try:
                e = model.estimate()
                text = f"{e.method} · {e.num_labels} labels · {e.words()} · {when}"
            except (OSError, ValueError, KeyError):
                text = f"{model.path.name} · {when}"
            entries.append((str(model.path), text))
        in_use = self.panels.session.predictions.adapted_path
        current = str(in_use) if in_use is not None else ""
        self.panels.adapt_panel.set_classifiers(entries, current)
        self.panels.adapt_panel.set_unfit(self._unfit_methods(run))

    def _unfit_methods(self, run: Path | None) -> dict[str, str]:
        # Before the engine has loaded (in the background), torch would load here, on the GUI
        # thread; the panel's buttons wait for the engine anyway.
        if run is None or self.panels.host.engine is None or not RunFolder(run).is_run():
            return {}
        from sslstudio.core.adapt.job import unfit_methods_for_run

        try:
            return unfit_methods_for_run(Path(run))
        except (OSError, KeyError, ValueError):
            return {}  # a damaged run: the job itself will say what is wrong

    @staticmethod
    def words(folder: Path | None) -> str:
        """A few words for a classifier where room is short (the flow bar): its method and
        estimate, or its folder's name when the estimate cannot be read."""
        if folder is None:
            return ""
        try:
            e = AdaptedFolder(folder).estimate()
            return f"{e.method}, {e.accuracy:.0%} estimated" if e.estimated else f"{e.method}, no estimate"
        except (OSError, ValueError, KeyError):
            return Path(folder).name

    def choose_classifier(self, folder: str) -> None:
        if self.panels.host.controller.busy():
            return
        self.restore_latest_predictions(AdaptedFolder(Path(folder)))

    def restore_latest_predictions(self, chosen=None) -> None:
        restored = self.panels.session.restore_latest_predictions(chosen)
        self.refresh()
        if restored is None:
            return
        self.panels.show_predictions()
        if restored.estimate is None:
            return
        self.panels.adapt_panel.clear_results(comparing=False)
        self.panels.adapt_panel.show_estimate(restored.estimate)
        self.refresh()
        which = "the classifier chosen" if chosen is not None else "the last classifier"
        self.panels.say(f"Showing the predictions of {restored.folder.path.name}, {which} adapted "
                  f"from {self.panels.session.item_map.run.name}")

    def adapt_finished(self, event) -> None:
        self.panels.host.progress.hide()
        if self.panels.session.predictions.adapt_finished(event):
            self.panels.say(f"Classifier saved in {event.path}; gallery filter 'Least confident first' "
                      "shows what to review")
        else:
            self.panels.say(describe(event).text)
        self.refresh()
        estimates = self.panels.adapt_panel.estimates
        if event.status == "completed" and "," in event.method and estimates:
            # A comparison estimates; it trains nothing to keep. The method box stays as the user
            # set it (it moved to the best unasked); the panel names the best and says which
            # classifier is still the one in use.
            best = max(estimates.values(), key=lambda e: e.accuracy if e.estimated else -1.0)
            in_use = self.panels.session.predictions.adapted_path
            current = (f"the classifier in use is still {in_use.name}" if in_use is not None
                       else "no classifier is trained yet")
            # A cautioned estimate still ranks (on Rotten Tomatoes SetFit was at least as good
            # as the probe on every draw, whatever its estimate said); its caution is repeated.
            caution = f" Its estimate comes with a caution: {best.caution}." if best.caution else ""
            self.panels.adapt_panel.headline.setText(
                f"<b>Compared on the same folds: {best.method} is best, {best.accuracy:.1%}</b> "
                f"(table below).{caution} A comparison keeps no model: {current}. To use "
                f"{best.method}, choose it above and Train classifier. Every method here was "
                "scored on the same folds, so these figures differ a little from the estimate saved "
                "with a classifier, made on folds of its own; both are within their intervals.")
