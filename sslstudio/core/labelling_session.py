"""What labelling a project's data folder knows, without Qt, by feature: the labels and the
items they belong to (`LabelBook`: store, undo, CSV), the item map (`ItemMap`: the encoder's
features, the 2-D map, groups, suggestions) and the predictions (`Predictions`: a classifier's,
or zero-shot pre-labels). `LabellingSession` holds one of each for the open project and does
what spans them (opening a project, new items, a classifier's request).

Items are the data set's rows in folder order, keyed by their path relative to the data folder
(the LabelStore's keys). Jobs report features and predictions by those keys, in their own order
and possibly for other items; here they are re-indexed to the items, with gaps where an item has
none. Importing this module loads neither Qt nor torch: the window builds a session before its
engine has loaded, and tests drive one without a window. The few steps that need the adapt
package (which loads torch) import it when they run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from sslstudio.core.events import (
    AdaptEstimate,
    AdaptFinished,
    AdaptPredictions,
    AdaptStarted,
    FeaturesReady,
    MapReady,
    ZeroShotPredictions,
)
from sslstudio.core.labels import ImportReport, LabelClass, LabelError, LabelStore
from sslstudio.core.locks import ProjectLock, ProjectLocked
from sslstudio.core.run.folder import AdaptedFolder, RunFolder

# The labelling map shows every item up to this, then a sample plus every labelled item. The map
# paints 200,000 points in about 20-35 ms a frame (bench/map_frames.py).
MAX_MAP_POINTS = 200_000


@dataclass(frozen=True)
class ProjectOpened:
    read_only_reason: str = ""  # why labels cannot change here; "" when this session writes them
    labels_error: str = ""  # why the labels could not be opened at all; "" when they could


@dataclass(frozen=True)
class RestoredPredictions:
    folder: AdaptedFolder
    estimate: AdaptEstimate | None  # None when its estimate.json cannot be read


class LabelBook:
    """The project's labels, by item: the store (undoable, locked while the project is open
    here), the items in folder order and each one's class position (-1: unlabelled)."""

    def __init__(self) -> None:
        self.store: LabelStore | None = None
        self.item_keys: list[str] = []
        self.item_index: dict[str, int] = {}
        self.label_of = np.zeros(0, np.int64)  # class position per item, -1: unlabelled

    def open(self, project_path: Path, read_only_reason: str) -> str:
        """Open the project's labels; returns why they could not be opened ("" when they were)."""
        self.close()
        try:
            self.store = LabelStore.for_project(Path(project_path), bool(read_only_reason),
                                                read_only_reason)
        except Exception as error:  # noqa: BLE001 - a broken label file must not stop the project
            self.store = None
            return str(error)
        finally:
            self.reload_labels()
        return ""

    def close(self) -> None:
        if self.store is not None:
            self.store.close()
            self.store = None

    @property
    def read_only(self) -> bool:
        return self.store is not None and self.store.read_only

    def set_items(self, keys: Sequence[str]) -> None:
        self.item_keys = list(keys)
        self.item_index = {k: i for i, k in enumerate(self.item_keys)}
        self.reload_labels()

    def reload_labels(self) -> None:
        """Read the label of every item again: after the store was changed directly."""
        if self.store is not None and self.item_keys:
            self.label_of, _ = self.store.label_array(self.item_keys)
        else:
            self.label_of = np.full(len(self.item_keys), -1, np.int64)

    def classes(self) -> list[LabelClass]:
        return self.store.classes() if self.store is not None else []

    def counts(self) -> dict[int, int]:
        return self.store.counts() if self.store is not None else {}

    def class_by_id(self, class_id: int) -> LabelClass | None:
        return next((c for c in self.classes() if c.id == class_id), None)

    def label(self, items: Iterable[int], class_id: int | None) -> int:
        """Give the items (indices) a class, or with None take their labels away. Returns how
        many changed; raises LabelError when the store refuses (read-only, locked)."""
        if self.store is None or not self.item_keys:
            return 0
        keys = [self.item_keys[int(i)] for i in items if 0 <= int(i) < len(self.item_keys)]
        changed = self.store.assign(keys, class_id)
        self.reload_labels()
        return changed

    def add_class(self, name: str) -> LabelClass:
        return self._change(lambda store: store.add_class(name))

    def rename_class(self, class_id: int, name: str) -> None:
        self._change(lambda store: store.rename_class(class_id, name))

    def recolour_class(self, class_id: int, colour: str) -> None:
        self._change(lambda store: store.recolour_class(class_id, colour))

    def delete_class(self, class_id: int) -> int:
        return self._change(lambda store: store.delete_class(class_id))

    def import_csv(self, csv_path: Path, data_root: Path) -> ImportReport:
        return self._change(lambda store: store.import_csv(csv_path, data_root, self.item_keys))

    def export_csv(self, csv_path: Path) -> int:
        return self.open_store().export_csv(csv_path)

    def _change(self, change):
        store = self.open_store()
        try:
            return change(store)
        finally:
            # A refused change may still have met one made elsewhere: show what the file holds.
            self.reload_labels()

    def open_store(self) -> LabelStore:
        if self.store is None:
            raise LabelError("no project's labels are open")
        return self.store

    # -- undo ---------------------------------------------------------------------------------
    def can_undo(self) -> bool:
        return self.store is not None and self.store.can_undo()

    def can_redo(self) -> bool:
        return self.store is not None and self.store.can_redo()

    def undo_text(self) -> str:
        return self.store.undo_text() if self.store is not None else ""

    def redo_text(self) -> str:
        return self.store.redo_text() if self.store is not None else ""

    def undo(self) -> str | None:
        """What was undone, None when nothing was to undo; a refusal raises LabelError and the
        change stays undoable."""
        return self._change(lambda store: store.undo()) if self.can_undo() else None

    def redo(self) -> str | None:
        return self._change(lambda store: store.redo()) if self.can_redo() else None


class ItemMap:
    """The items as the labelling run's encoder sees them: features, map positions, groups and
    the items suggested to label next."""

    def __init__(self, labels: LabelBook) -> None:
        self.labels = labels
        self.run: Path | None = None  # the run whose encoder embedded the items
        self.features: np.ndarray | None = None  # (items, D); NaN rows: items the run did not embed
        self.coords: np.ndarray | None = None  # (items, 2) map positions; zeros where not embedded
        self.map_method = ""
        self.groups: np.ndarray | None = None  # k-means group per item, -1 where not embedded
        self.suggestions: np.ndarray | None = None  # items to label next, best first

    def clear(self) -> None:
        self.features = self.coords = self.groups = self.suggestions = None
        self.map_method = ""

    def forget_features(self) -> None:
        """A new training run makes the embedded map stale; labels and predictions stay."""
        self.features = self.coords = self.groups = None

    def features_ready(self, event: FeaturesReady) -> None:
        n = len(self.labels.item_keys)
        rows = np.array([self.labels.item_index.get(str(k), -1) for k in event.items], np.int64)
        found = rows >= 0
        if len(rows) == n and np.array_equal(rows, np.arange(n)):
            # The same items in the same order, as when the folder has not changed: the job's
            # array is used as it is (at 200,000 items a copy is 400 MB; both sides only read it).
            features = np.asarray(event.features, np.float32)
        else:
            features = np.full((n, event.features.shape[1]), np.nan, np.float32)
            features[rows[found]] = event.features[found]
        coords = np.zeros((n, 2), np.float32)
        coords[rows[found]] = event.coords[found]
        self.features, self.coords = features, coords
        self.map_method = "PCA"
        self.groups = self.suggestions = None

    def map_ready(self, event: MapReady) -> None:
        """A better map of the same items replaces the first one."""
        if self.coords is None:
            return
        rows = np.array([self.labels.item_index.get(str(k), -1) for k in event.items], np.int64)
        found = rows >= 0
        self.coords[rows[found]] = event.coords[found]
        self.map_method = event.method

    def embedded_items(self) -> np.ndarray:
        return np.flatnonzero(~np.isnan(self.features[:, 0]))

    def map_items(self, limit: int = MAX_MAP_POINTS) -> np.ndarray:
        """The embedded items the map draws: all up to `limit`, past it a fixed sample plus every
        labelled item, so what was labelled stays in sight."""
        shown = self.embedded_items()
        if len(shown) > limit:
            sample = np.random.default_rng(0).choice(shown, limit, replace=False)
            shown = np.union1d(sample, np.flatnonzero(self.labels.label_of >= 0))
        return shown

    def groups_job(self, k: int) -> Callable[[], tuple[np.ndarray, int, np.ndarray]]:
        """k-means over the embedded items (k 0: the best k by silhouette), as a function to run
        off the GUI thread; hand what it returns to `groups_found`."""
        rows = self.embedded_items()
        features = self.features[rows]

        def discover():
            from sslstudio.core.adapt.selection import kmeans, suggest_k  # loads torch

            chosen = k or suggest_k(features)
            return rows, chosen, kmeans(features, chosen)[0]

        return discover

    def groups_found(self, result: tuple[np.ndarray, int, np.ndarray]) -> int:
        """Takes the groups `groups_job` found; returns their number."""
        rows, k, clusters = result
        groups = np.full(len(self.labels.item_keys), -1, np.int64)
        groups[rows] = clusters
        self.groups = groups
        return int(k)

    def unlabelled_in_group_of(self, item: int) -> np.ndarray | None:
        """The unlabelled items of `item`'s group (labels given one by one stay); None when the
        item belongs to no group."""
        group = self.groups[item]
        if group < 0:
            return None
        return np.flatnonzero((self.groups == group) & (self.labels.label_of < 0))

    def suggestion_job(self, count: int) -> Callable[[], np.ndarray]:
        """Before a classifier: typical items of regions no label covers yet, as a function to
        run off the GUI thread; hand what it returns to `suggestions_found`."""
        rows = self.embedded_items()
        position = np.full(len(self.labels.item_keys), -1)
        position[rows] = np.arange(len(rows))
        labelled_rows = position[np.flatnonzero(self.labels.label_of >= 0)]
        labelled_rows = labelled_rows[labelled_rows >= 0]
        features = self.features[rows]

        def pick():
            from sslstudio.core.adapt.selection import suggest_to_label  # loads torch

            return rows[suggest_to_label(features, labelled_rows, count)]

        return pick

    def suggestions_found(self, items: np.ndarray) -> None:
        self.suggestions = np.asarray(items, np.int64)


class Predictions:
    """What a classifier (or a zero-shot model, as pre-labels) says of each item, in the label
    book's class order, and which classifier is in use."""

    def __init__(self, labels: LabelBook) -> None:
        self.labels = labels
        self.predicted: np.ndarray | None = None  # class position per item, -1: no prediction
        self.confidence: np.ndarray | None = None
        self.margin: np.ndarray | None = None  # top minus second probability; low: unsure
        self.adapted_path: Path | None = None  # the classifier the predictions came from
        self.adapt_classes: tuple[str, ...] = ()  # class names in the running adaptation's order
        # Zero-shot suggestions: class position per item (-1: none) and its probability. Shown
        # as predictions; accepted ones become labels.
        self.pre_labels: np.ndarray | None = None
        self.pre_confidence: np.ndarray | None = None
        self.pre_label_names: list[str] = []

    def forget(self) -> None:
        self.predicted = self.confidence = self.margin = None
        self.pre_labels = self.pre_confidence = None

    def adapt_started(self, event: AdaptStarted) -> None:
        self.adapt_classes = tuple(event.class_names)

    def predictions_ready(self, event: AdaptPredictions) -> None:
        names = [self.adapt_classes[p] for p in event.predicted]
        self.set_predictions(event.items, names, event.confidence, event.margin)

    def adapt_finished(self, event: AdaptFinished) -> bool:
        """True when the adaptation saved a classifier, which is now the current one."""
        if event.status == "completed" and event.path:
            self.adapted_path = Path(event.path)
            return True
        return False

    def set_predictions(self, items: Sequence[str], names: Sequence[str], confidence,
                        margin) -> None:
        """Predictions by item key and class name, onto the items in the store's class order.
        Items without one get class -1, confidence 0 and margin 1 (never "least sure")."""
        position = {c.name: i for i, c in enumerate(self.labels.classes())}
        n = len(self.labels.item_keys)
        predicted = np.full(n, -1, np.int64)
        confidence_by_item = np.zeros(n, np.float32)
        margin_by_item = np.ones(n, np.float32)
        for key, name, conf, marg in zip(items, names, confidence, margin):
            row = self.labels.item_index.get(str(key), -1)
            if row >= 0:
                predicted[row] = position.get(name, -1)
                confidence_by_item[row] = conf
                margin_by_item[row] = marg
        self.predicted, self.confidence, self.margin = predicted, confidence_by_item, margin_by_item

    def zero_shot_ready(self, event: ZeroShotPredictions) -> int:
        """Take the zero-shot labels as pre-labels (and as the predictions shown). Returns how
        many items got one."""
        names = [event.class_names[p] for p in event.predicted]
        top2 = np.sort(event.proba, 1)[:, -2:]
        self.set_predictions(event.items, names, event.confidence, top2[:, 1] - top2[:, 0])
        self.pre_labels, self.pre_confidence = self.predicted.copy(), self.confidence.copy()
        # By name: a class renamed or deleted before accepting is not mistaken for another.
        self.pre_label_names = [c.name for c in self.labels.classes()]
        return int((self.pre_labels >= 0).sum())

    def pre_label_summary(self, min_confidence: float) -> str:
        if self.pre_labels is None:
            return ""
        open_ = (self.pre_labels >= 0) & (self.labels.label_of < 0)
        counts = np.bincount(self.pre_labels[open_], minlength=len(self.pre_label_names))
        above = int((open_ & (self.pre_confidence >= min_confidence)).sum())
        per_class = ", ".join(f"{name} {n}" for name, n in zip(self.pre_label_names, counts))
        return (f"{int(open_.sum())} unlabelled items have a pre-label ({per_class}); "
                f"{above} at {min_confidence:.0%} or more")

    def accept_pre_labels(self, min_confidence: float = 0.0, items: Iterable[int] | None = None) -> int:
        """Unlabelled items (all, or those given) whose pre-label is at least that sure become
        labelled with it, in one undoable step. Labels already given are never changed."""
        if self.pre_labels is None or self.labels.store is None:
            return 0
        chosen = np.zeros(len(self.labels.item_keys), bool)
        if items is None:
            chosen[:] = True
        else:
            indices = np.asarray(list(items), np.int64)
            chosen[indices[(indices >= 0) & (indices < len(chosen))]] = True
        chosen &= (self.pre_labels >= 0) & (self.labels.label_of < 0) & (self.pre_confidence >= min_confidence)
        ids = {c.name: c.id for c in self.labels.classes()}
        now = [ids.get(name, -1) for name in self.pre_label_names]
        assignment = {self.labels.item_keys[i]: now[self.pre_labels[i]] for i in np.flatnonzero(chosen)
                      if now[self.pre_labels[i]] >= 0}
        try:
            return self.labels.store.assign_many(assignment, "accept zero-shot labels")
        finally:
            self.labels.reload_labels()


class LabellingSession:
    """The open project's labelling: `labels`, `item_map` and `predictions`, and what spans
    them."""

    def __init__(self) -> None:
        self.labels = LabelBook()
        self.item_map = ItemMap(self.labels)
        self.predictions = Predictions(self.labels)
        self._lock: ProjectLock | None = None

    # -- project ------------------------------------------------------------------------------
    def open_project(self, project_path: Path) -> ProjectOpened:
        """Take the project's lock and open its labels; read-only when someone else holds it."""
        self.close_project()
        read_only_reason = ""
        try:
            self._lock = ProjectLock.acquire(Path(project_path))
        except ProjectLocked as locked:
            read_only_reason = str(locked)
        except OSError as error:
            read_only_reason = f"the project folder cannot be written ({error.strerror or error})"
        labels_error = self.labels.open(Path(project_path), read_only_reason)
        self.item_map.run = None
        self.item_map.clear()
        self.predictions.forget()
        self.predictions.adapted_path = None  # a classifier of another project is not in use here
        return ProjectOpened(read_only_reason, labels_error)

    def close_project(self) -> None:
        """Close the labels and let another window have the project."""
        self.labels.close()
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def set_items(self, keys: Sequence[str]) -> None:
        """The items of a newly loaded data set; what was computed for the old ones is dropped."""
        self.item_map.clear()
        self.predictions.forget()
        self.labels.set_items(keys)

    def start_labelling(self, run: Path) -> None:
        """Labelling moves to another run's encoder: the old classifier's predictions go."""
        self.item_map.run = Path(run)
        self.predictions.forget()

    def least_confident(self, count: int) -> np.ndarray:
        """With a classifier's predictions: the unlabelled items it is least sure of."""
        from sslstudio.core.adapt.selection import least_confident  # loads torch

        self.item_map.suggestions = least_confident(self.predictions.margin, np.flatnonzero(self.labels.label_of >= 0), count)
        return self.item_map.suggestions

    # -- classifier ---------------------------------------------------------------------------
    def adapt_blocker(self, features_on_demand: bool = False) -> str:
        """Why a classifier cannot be trained yet; "" when it can. With `features_on_demand`
        the window computes the features itself when they are needed."""
        if self.item_map.features is None and not features_on_demand:
            return "Select a run with a checkpoint in the Runs list"
        labelled = self.labels.label_of[self.labels.label_of >= 0]
        if int((np.bincount(labelled) > 0).sum()) < 2:
            return "Label items of at least two classes"
        return ""

    def can_adapt(self) -> bool:
        return self.item_map.run is not None and self.labels.store is not None

    def adapt_request(self, data_dir: Path, method: str, overrides: dict):
        """The AdaptRequest for the labels as they are now, classes in the store's order."""
        from sslstudio.core.adapt.job import AdaptRequest  # loads torch

        store = self.labels.open_store()
        return AdaptRequest(self.item_map.run, Path(data_dir), store.label_names(), method, overrides,
                            class_order=tuple(c.name for c in store.classes()))

    # -- zero-shot pre-labels -----------------------------------------------------------------
    def zero_shot_request(self, model: Path, data_dir: Path, descriptions: dict[str, str],
                          template: str = ""):
        """The ZeroShotRequest for the project's classes, each with its description (empty: the
        class name through the model's template)."""
        from sslstudio.core.zeroshot import ZeroShotRequest  # loads torch

        classes = [c.name if not descriptions.get(c.name, "").strip()
                   else f"{c.name}={descriptions[c.name].strip()}" for c in self.labels.classes()]
        return ZeroShotRequest(Path(model), Path(data_dir), classes, template or None)

    def classifiers(self, run: Path | None = None) -> list[AdaptedFolder]:
        """Every classifier adapted from `run` (by default the labelling run) that can show
        predictions, oldest first."""
        run = run if run is not None else self.item_map.run
        if run is None:
            return []
        return [m for m in RunFolder(run).adapted_models() if m.predictions_path.exists()]

    def restore_latest_predictions(self, chosen: AdaptedFolder | None = None) -> RestoredPredictions | None:
        """The predictions of a classifier adapted from the labelling run, by default the last
        one: nothing is lost on close. It becomes the current classifier only when its estimate
        reads too."""
        models = self.classifiers()
        if not models:
            return None
        latest = chosen if chosen is not None else models[-1]
        try:
            saved = latest.predictions()
            # The file keeps the top probability only; it orders "least confident" as well.
            self.predictions.set_predictions(saved.items, saved.labels, saved.confidence, saved.confidence)
        except (OSError, ValueError, KeyError):
            return None
        try:
            estimate = latest.estimate()
        except (OSError, ValueError, KeyError):
            return RestoredPredictions(latest, None)
        self.predictions.adapted_path = latest.path
        return RestoredPredictions(latest, estimate)
