"""The map where groups stand apart: t-SNE keeps neighbours together where PCA overlaps them,
yields progress, stops on cancel, and is kept in the run folder beside the features."""

from __future__ import annotations

import numpy as np
import pytest

from sslstudio.core.control import Cancelled, RunControl
from sslstudio.core.events import MapProgress
from sslstudio.core.monitor import project_2d
from sslstudio.core.projection import aligned, neighbour_map
from tests.conftest import run_to_end


def clusters(count=20, per_cluster=30, dimensions=50, seed=0):
    """Clusters spread along many directions at once: two PCA axes cannot hold them apart."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(count, dimensions)) * 3.0
    labels = np.repeat(np.arange(count), per_cluster)
    return (centres[labels] + rng.normal(size=(len(labels), dimensions))).astype(np.float32), labels


def knn_accuracy_2d(coords, labels, k=10):
    distances = ((coords[:, None, :] - coords[None]) ** 2).sum(-1)
    np.fill_diagonal(distances, np.inf)
    neighbours = np.argsort(distances, 1)[:, :k]
    votes = labels[neighbours]
    predicted = np.array([np.bincount(v, minlength=labels.max() + 1).argmax() for v in votes])
    return float((predicted == labels).mean())


def test_tsne_keeps_groups_apart_where_pca_overlaps_them():
    features, labels = clusters()
    coords, events = run_to_end(neighbour_map(features, threads=1))
    assert coords.shape == (len(features), 2) and coords.dtype == np.float32
    assert np.sqrt((coords ** 2).sum(1).mean()) == pytest.approx(1.0, rel=1e-3)
    progress = [e for e in events if isinstance(e, MapProgress)]
    assert progress[0].done == 0 and progress[-1].done == progress[-1].total
    assert all(a.done <= b.done for a, b in zip(progress, progress[1:]))
    pca = knn_accuracy_2d(project_2d(features, None), labels)
    tsne = knn_accuracy_2d(coords, labels)
    assert tsne > 0.95 and tsne > pca + 0.1, (pca, tsne)


def test_past_uniform_from_points_uniform_affinities_keep_the_groups_apart_too(monkeypatch):
    from openTSNE import affinity

    from sslstudio.core import projection

    features, labels = clusters()
    monkeypatch.setattr(projection, "UNIFORM_FROM", len(features))
    made = []
    monkeypatch.setattr(affinity, "Uniform", lambda *a, _real=affinity.Uniform, **k: made.append(k) or _real(*a, **k))
    coords, _ = run_to_end(neighbour_map(features, threads=1))
    assert made and made[0]["k_neighbors"] == projection.UNIFORM_NEIGHBOURS
    assert knn_accuracy_2d(coords, labels) > 0.95


def test_cancel_stops_the_map_within_a_chunk():
    features, _ = clusters()
    control = RunControl()
    generator = neighbour_map(features, control, threads=1)
    seen = 0
    with pytest.raises(Cancelled):
        for event in generator:
            seen += 1
            if event.done >= 50:
                control.cancel()
    assert seen <= 5


def test_tiny_sets_get_the_pca_map():
    features, _ = clusters(count=2, per_cluster=5)
    coords, events = run_to_end(neighbour_map(features, threads=1))
    assert events == [] and np.allclose(coords, project_2d(features, None))


def test_aligned_undoes_a_rotation_and_a_mirror():
    rng = np.random.default_rng(1)
    reference = rng.normal(size=(100, 2)).astype(np.float32)
    turned = reference @ np.array([[0.0, 1.0], [1.0, 0.0]], np.float32)  # a reflection
    assert np.allclose(aligned(turned, reference), reference, atol=1e-5)


def test_labelling_gets_the_pca_map_at_once_then_the_tsne_map_kept_in_the_run(image_folder, tmp_path):
    from sslstudio.core.adapt.job import prepare_labelling
    from sslstudio.core.events import FeaturesReady, MapReady
    from sslstudio.core.run.folder import RunFolder
    from sslstudio.core.run.train import train
    from test_train import config_for

    run = tmp_path / "run"
    list(train(config_for(image_folder, run, epochs=1)))
    events = list(prepare_labelling(run, image_folder, "cpu"))
    kinds = [type(e) for e in events if isinstance(e, (FeaturesReady, MapReady))]
    assert kinds == [FeaturesReady, MapReady]
    features = next(e for e in events if isinstance(e, FeaturesReady))
    first = next(e for e in events if isinstance(e, MapReady))
    assert list(first.items) == list(features.items) and first.coords.shape == features.coords.shape
    assert first.method == "t-SNE" and first.elapsed_s > 0
    assert RunFolder(run).map_cache_path.exists()
    again = next(e for e in prepare_labelling(run, image_folder, "cpu") if isinstance(e, MapReady))
    assert again.elapsed_s == 0.0 and np.allclose(again.coords, first.coords)


def test_a_completed_runs_map_is_made_from_its_saved_sample_and_kept(tmp_path):
    from conftest import make_image_folder
    from sslstudio.core.events import EmbeddingSnapshot
    from sslstudio.core.projection import run_neighbour_map
    from sslstudio.core.run.folder import RunFolder
    from sslstudio.core.run.train import train
    from test_train import config_for

    folder = make_image_folder(tmp_path / "images", classes=3, per_class=20)
    run = tmp_path / "run"
    list(train(config_for(folder, run, epochs=1, monitor_items=60, labels_from_folders=True)))
    saved = RunFolder(run).snapshot()
    assert saved["features"].shape[0] == 60 and saved["features"].dtype == np.float16
    events = list(run_neighbour_map(run))
    assert isinstance(events[-1], EmbeddingSnapshot) and isinstance(events[0], MapProgress)
    coords = events[-1].coords
    assert coords.shape == (60, 2) and np.array_equal(events[-1].indices, saved["indices"])
    kept = RunFolder(run).snapshot()
    assert np.allclose(kept["neighbour_coords"], coords) and np.allclose(kept["coords"], saved["coords"])
    again = list(run_neighbour_map(run))
    assert len(again) == 1 and np.allclose(again[0].coords, coords)  # from the run, not recomputed


def test_a_run_without_saved_features_gets_no_map(tmp_path):
    from sslstudio.core.projection import run_neighbour_map
    from sslstudio.core.run.folder import RunFolder

    run = tmp_path / "old-run"
    run.mkdir()
    RunFolder(run).write_snapshot(3, np.arange(4), np.zeros((4, 2), np.float32), np.zeros(4, np.int64))
    assert list(run_neighbour_map(run)) == []
    assert list(run_neighbour_map(tmp_path / "no-run")) == []
