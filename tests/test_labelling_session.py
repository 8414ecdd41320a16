"""The labelling session without Qt: labels, undo, read-only projects, features, groups,
suggestions and predictions, all re-indexed to the data folder's items by key."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

from sslstudio.core.adapt.job import AdaptRequest, adapt
from sslstudio.core.events import (AdaptEstimate, AdaptFinished, AdaptPredictions, AdaptStarted,
                                   FeaturesReady)
from sslstudio.core.labelling_session import LabellingSession
from sslstudio.core.labels import LabelError
from sslstudio.core.locks import ProjectLock, ProjectLocked
from sslstudio.core.run.folder import AdaptedFolder, RunFolder
from sslstudio.core.run.train import train
from sslstudio.core.run.config import TrainConfig
from tests.conftest import make_image_folder

KEYS = [f"group_{g}/{i:02d}.png" for g in range(3) for i in range(10)]


def opened_session(tmp_path, keys=KEYS) -> LabellingSession:
    project = tmp_path / "project"
    project.mkdir(exist_ok=True)
    session = LabellingSession()
    assert session.open_project(project).read_only_reason == ""
    session.set_items(keys)
    return session


def test_the_module_loads_neither_qt_nor_torch():
    code = ("import sys, sslstudio.core.labelling_session; "
            "assert 'torch' not in sys.modules and 'PySide6' not in sys.modules, "
            "[m for m in sys.modules if m.startswith(('torch', 'PySide6'))][:5]")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_label_unlabel_undo_and_redo(tmp_path):
    session = opened_session(tmp_path)
    assert session.labels.label_of.tolist() == [-1] * 30
    cat, dog = session.labels.add_class("cat"), session.labels.add_class("dog")
    assert session.labels.label([0, 1, 99, -1], cat.id) == 2  # indices outside the items are ignored
    assert session.labels.label([1, 2], dog.id) == 2
    assert session.labels.label_of[:4].tolist() == [0, 1, 1, -1]
    assert session.labels.counts() == {cat.id: 1, dog.id: 2}
    assert session.labels.label([2], None) == 1
    assert session.labels.label_of[2] == -1 and session.labels.undo_text() == "label 1 item no label"

    assert session.labels.undo() == "label 1 item no label"
    assert session.labels.label_of[:3].tolist() == [0, 1, 1]
    assert session.labels.undo() == "label 2 items dog"
    assert session.labels.label_of[:3].tolist() == [0, 0, -1]
    assert session.labels.redo() == "label 2 items dog" and session.labels.label_of[:3].tolist() == [0, 1, 1]
    assert session.labels.can_redo() and session.labels.redo_text() == "label 1 item no label"

    assert session.labels.delete_class(cat.id) == 1
    assert session.labels.label_of[:3].tolist() == [-1, 0, 0]  # dog moved up to position 0
    session.labels.undo()
    assert session.labels.label_of[:3].tolist() == [0, 1, 1]
    while session.labels.can_undo():
        session.labels.undo()
    assert session.labels.undo() is None and session.labels.classes() == []
    assert session.labels.label_of.tolist() == [-1] * 30


def test_labels_are_read_through_the_store_of_the_project(tmp_path):
    session = opened_session(tmp_path)
    bag = session.labels.add_class("bag")
    session.labels.label([3], bag.id)
    session.close_project()
    assert session.labels.store is None and session.labels.classes() == [] and session.labels.label([4], bag.id) == 0

    again = opened_session(tmp_path, keys=KEYS[3:])  # the items are keyed by path, not by index
    assert again.labels.label_of[0] == 0 and again.labels.store.label_names() == {KEYS[3]: "bag"}
    again.labels.store.assign([KEYS[5]], bag.id)  # changed directly, as scripts do
    assert again.labels.label_of[2] == -1
    again.labels.reload_labels()
    assert again.labels.label_of[2] == 0
    again.close_project()


def test_a_project_held_elsewhere_opens_read_only_and_refuses_changes(tmp_path):
    writer = opened_session(tmp_path)
    bag = writer.labels.add_class("bag")
    writer.labels.label([0], bag.id)
    writer.close_project()

    holder = ProjectLock.acquire(tmp_path / "project", holder="sslstudio adapt")
    try:
        reader = LabellingSession()
        opened = reader.open_project(tmp_path / "project")
        assert "sslstudio adapt (process" in opened.read_only_reason and opened.labels_error == ""
        reader.set_items(KEYS)
        assert reader.labels.read_only and reader.labels.label_of[0] == 0  # labels are still shown
        with pytest.raises(LabelError, match="read-only"):
            reader.labels.label([1], bag.id)
        with pytest.raises(LabelError, match="read-only"):
            reader.labels.add_class("shoe")
        assert reader.labels.label_of[1] == -1 and not reader.labels.can_undo() and reader.labels.undo() is None
        reader.close_project()
    finally:
        holder.release()

    writer = LabellingSession()
    assert writer.open_project(tmp_path / "project").read_only_reason == ""
    assert not writer.labels.read_only
    with pytest.raises(ProjectLocked):
        ProjectLock.acquire(tmp_path / "project")  # the session holds it now...
    writer.close_project()
    ProjectLock.acquire(tmp_path / "project").release()  # ...and lets go on close


def test_an_unreadable_labels_file_leaves_the_project_without_labels(tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    (project / "labels.sqlite").write_bytes(b"this is not a database " * 100)
    session = LabellingSession()
    opened = session.open_project(project)
    assert "cannot open the labels file" in opened.labels_error and session.labels.store is None
    session.set_items(KEYS)
    assert session.labels.label([0], 1) == 0 and session.labels.label_of.tolist() == [-1] * 30
    with pytest.raises(LabelError):
        session.labels.add_class("cat")
    session.close_project()


def test_csv_import_and_export_go_through_the_items(tmp_path):
    session = opened_session(tmp_path)
    source = tmp_path / "in.csv"
    source.write_text(f"path,label\n{KEYS[0]},cat\n{KEYS[11]},dog\nnot/there.png,cat\n")
    report = session.labels.import_csv(source, tmp_path / "data")
    assert report.labelled == 2 and report.unknown_paths == ("not/there.png",)
    assert session.labels.label_of[[0, 11]].tolist() == [0, 1]
    assert session.labels.export_csv(tmp_path / "out.csv") == 2
    written = (tmp_path / "out.csv").read_text().splitlines()
    assert written[1:] == [f"{KEYS[0]},cat", f"{KEYS[11]},dog"]
    session.close_project()


def clustered_features(seed=0):
    """Three well-separated groups, one per `group_N/` folder of KEYS."""
    rng = np.random.default_rng(seed)
    truth = np.repeat(np.arange(3), 10)
    centres = rng.normal(0, 8, (3, 6))
    return truth, (centres[truth] + rng.normal(0, 0.3, (len(KEYS), 6))).astype(np.float32)


def test_features_groups_and_suggestions_are_kept_per_item(tmp_path):
    session = opened_session(tmp_path)
    # The job embeds the folder as it is on disk: one item is gone, one is new.
    truth, features = clustered_features()
    kept = [i for i in range(30) if i != 5]
    event_keys = [KEYS[i] for i in kept] + ["group_9/new.png"]
    features = np.concatenate([features[kept], np.ones((1, 6), np.float32)])
    coords = np.arange(2 * len(event_keys), dtype=np.float32).reshape(-1, 2)
    session.item_map.features_ready(FeaturesReady(np.array(event_keys), features, coords))
    assert session.item_map.features.shape == (30, 6) and np.isnan(session.item_map.features[5]).all()
    assert (session.item_map.coords[5] == 0).all() and (session.item_map.coords[6] == coords[5]).all()
    assert 5 not in session.item_map.embedded_items() and len(session.item_map.embedded_items()) == 29

    k = session.item_map.groups_found(session.item_map.groups_job(0)())  # 0: the best k by silhouette
    assert k == 3 and session.item_map.groups[5] == -1
    for g in range(3):
        embedded = np.setdiff1d(np.flatnonzero(truth == g), [5])
        assert len(set(session.item_map.groups[embedded].tolist())) == 1

    cat = session.labels.add_class("cat")
    session.labels.label([0, 1], cat.id)
    assert session.item_map.unlabelled_in_group_of(0).tolist() == [2, 3, 4, 6, 7, 8, 9]
    assert session.item_map.unlabelled_in_group_of(5) is None  # not embedded: in no group

    picks = session.item_map.suggestion_job(2)()
    session.item_map.suggestions_found(picks)
    assert sorted(truth[session.item_map.suggestions].tolist()) == [1, 2]  # the regions without labels

    session.labels.label([25], cat.id)
    shown = session.item_map.map_items(limit=4)
    assert {0, 1, 25} <= set(shown.tolist()) and 5 not in shown and len(shown) <= 4 + 3
    assert len(session.item_map.map_items()) == 29

    session.set_items(KEYS[::-1])  # another scan: what was computed for the old items goes
    assert session.item_map.features is None and session.item_map.groups is None and session.item_map.suggestions is None
    assert session.labels.label_of[[-1, -2, -26]].tolist() == [0, 0, 0]
    session.close_project()


def test_predictions_land_on_items_by_key_and_class_name(tmp_path):
    session = opened_session(tmp_path)
    session.labels.add_class("cat")
    dog = session.labels.add_class("dog")
    session.predictions.adapt_started(AdaptStarted("linear", 4, ("dog", "cat"), "loo", 5, 10, 100))
    # Classes in the job's order (dog first); an item the folder lacks; KEYS[1:] not predicted.
    session.predictions.predictions_ready(AdaptPredictions(np.array([KEYS[2], "gone.png", KEYS[0]]),
                                               np.array([0, 1, 1]),
                                               np.array([0.9, 0.8, 0.6], np.float32),
                                               np.array([0.8, 0.6, 0.2], np.float32)))
    assert session.predictions.predicted[:3].tolist() == [0, -1, 1]  # cat is class 0 here, dog class 1
    assert (session.predictions.predicted[3:] == -1).all()
    np.testing.assert_allclose(session.predictions.confidence[:3], [0.6, 0.0, 0.9])
    np.testing.assert_allclose(session.predictions.margin[:3], [0.2, 1.0, 0.8])  # unpredicted: never unsure

    session.labels.label([2], dog.id)
    assert session.least_confident(2).tolist() == [0, 1]  # item 2 is labelled now

    assert not session.predictions.adapt_finished(AdaptFinished("cancelled", "linear"))
    assert session.predictions.adapted_path is None
    assert session.predictions.adapt_finished(AdaptFinished("completed", "linear", str(tmp_path / "m")))
    assert session.predictions.adapted_path == tmp_path / "m"

    session.start_labelling(tmp_path / "another-run")  # another encoder: old predictions go
    assert session.predictions.predicted is None and session.predictions.margin is None
    assert session.predictions.adapted_path == tmp_path / "m"
    session.close_project()


def test_a_classifier_needs_features_and_two_labelled_classes(tmp_path):
    session = opened_session(tmp_path)
    assert session.adapt_blocker().startswith("Select a run") and not session.can_adapt()
    # When the window computes the features on demand, only the labels can stand in the way.
    assert session.adapt_blocker(features_on_demand=True) == "Label items of at least two classes"
    session.start_labelling(tmp_path / "run")
    _, features = clustered_features()
    session.item_map.features_ready(FeaturesReady(np.array(KEYS), features, np.zeros((30, 2), np.float32)))
    cat, dog = session.labels.add_class("cat"), session.labels.add_class("dog")
    session.labels.label([0, 1], dog.id)
    assert session.adapt_blocker() == "Label items of at least two classes"
    session.labels.label([20], cat.id)
    assert session.adapt_blocker() == "" and session.can_adapt()
    request = session.adapt_request(tmp_path / "data", "lora", {"epochs": 3})
    assert request.run_dir == tmp_path / "run" and request.data_dir == tmp_path / "data"
    assert request.labels == {KEYS[0]: "dog", KEYS[1]: "dog", KEYS[20]: "cat"}
    assert request.class_order == ("cat", "dog") and request.overrides == {"epochs": 3}
    session.item_map.forget_features()  # a new training run: the map goes, labels and the run stay
    assert session.item_map.features is None and session.item_map.run == tmp_path / "run"
    session.close_project()


@pytest.fixture(scope="module")
def adapted_run(tmp_path_factory):
    """A tiny trained run with one linear classifier adapted from it, as the app saves them."""
    root = tmp_path_factory.mktemp("session")
    folder = make_image_folder(root / "images", classes=2, per_class=6, size=16)
    run = root / "run"
    list(train(TrainConfig(data=str(folder), out=str(run), epochs=1, batch_size=6, image_size=16,
                           monitor_items=16)))
    labels = {f"class_{c}/{i:03d}.png": f"class_{c}" for c in range(2) for i in range(3)}
    events = list(adapt(AdaptRequest(run, folder, labels, "linear")))
    assert events[-1].status == "completed", events[-1]
    return run, events


def test_the_latest_classifier_of_the_run_comes_back_with_its_estimate(adapted_run, tmp_path):
    run, events = adapted_run
    started = next(e for e in events if isinstance(e, AdaptStarted))
    live = next(e for e in events if isinstance(e, AdaptPredictions))
    estimate = next(e for e in events if isinstance(e, AdaptEstimate))
    finished = events[-1]
    # One item of the folder is missing here, one is not in the folder.
    keys = [str(k) for k in live.items][1:] + ["class_9/new.png"]

    shown = opened_session(tmp_path, keys)
    for name in ("class_1", "class_0"):  # the app's order, not the classifier's
        shown.labels.add_class(name)
    shown.predictions.adapt_started(started)
    shown.predictions.predictions_ready(live)
    shown.close_project()

    session = opened_session(tmp_path, keys)
    assert session.restore_latest_predictions() is None  # no labelling run yet
    session.start_labelling(tmp_path / "no-such-run")
    assert session.restore_latest_predictions() is None  # nothing adapted from it

    session.start_labelling(run)
    restored = session.restore_latest_predictions()
    assert restored.folder.path == run / "adapted" / restored.folder.path.name
    assert str(restored.folder.path) == finished.path == str(session.predictions.adapted_path)
    assert restored.estimate.accuracy == estimate.accuracy
    assert restored.estimate.class_names == estimate.class_names
    np.testing.assert_array_equal(session.predictions.predicted, shown.predictions.predicted)  # as when it was trained
    np.testing.assert_allclose(session.predictions.confidence, shown.predictions.confidence, atol=1e-4)
    assert session.predictions.predicted[-1] == -1 and session.predictions.confidence[-1] == 0 and session.predictions.margin[-1] == 1
    # The file keeps the top probability only, which stands in for the margin.
    np.testing.assert_array_equal(session.predictions.margin[:-1], session.predictions.confidence[:-1])

    # A newer classifier of the run wins; one whose estimate cannot be read still shows its
    # predictions but does not become the current classifier.
    newer = AdaptedFolder(run / "adapted" / "newer-linear")
    shutil.copytree(restored.folder.path, newer.path)
    try:
        newer.write_predictions(list(live.items), ("class_0", "class_1"),
                                np.tile([[0.3, 0.7]], (len(live.items), 1)))
        later = time.time() + 60
        os.utime(newer.predictions_path, (later, later))
        assert RunFolder(run).adapted_models()[-1].path == newer.path
        newer.estimate_path.write_text("{not json")
        session.start_labelling(run)
        again = session.restore_latest_predictions()
        assert again.folder.path == newer.path and again.estimate is None
        assert set(session.predictions.predicted[:-1].tolist()) == {0}  # class_1 is the app's class 0
        assert session.predictions.adapted_path == restored.folder.path
    finally:
        shutil.rmtree(newer.path)
    session.close_project()
