from __future__ import annotations

import os
from pathlib import Path

import messy
import numpy as np
import pytest

from sslstudio.core.control import Cancelled, RunControl
from sslstudio.core.data import DataError, load_image_folder
from sslstudio.core.data import image_folder as image_folder_module
from sslstudio.core.data import images as images_module
from sslstudio.core.data.images import decode_image
from sslstudio.core.data.row_file import RowFile, RowFileWriter
from sslstudio.core.describe import describe
from sslstudio.core.events import ScanFinished, ScanProgress
from tests.conftest import run_to_end


@pytest.fixture
def unreadable(monkeypatch):
    """Permission denied on files named unreadable.*; chmod alone does not stop root."""
    real_open = images_module.open_image_file

    def fake_open(path):
        if Path(path).stem == "unreadable":
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path)

    monkeypatch.setattr(images_module, "open_image_file", fake_open)


def test_messy_folder_is_scanned_and_every_skip_has_its_reason(tmp_path, unreadable):
    expected = messy.make_messy_folder(tmp_path / "messy")
    data, events = run_to_end(load_image_folder(tmp_path / "messy", 32))
    skipped = dict(data.report.skipped)
    for rel, reason in expected.items():
        if reason is None:
            assert rel not in skipped, f"{rel} was skipped: {skipped.get(rel)}"
        else:
            assert skipped.get(rel, "").startswith(reason), (rel, skipped.get(rel))
    usable = sorted(rel for rel, reason in expected.items() if reason is None)
    assert [p.relative_to(tmp_path / "messy").as_posix() for p in data.paths] == usable
    assert data.images.shape == (len(usable), 32, 32, 3) and data.images.dtype == np.uint8
    assert data.report.ignored == 1  # README.txt; hidden files are not even counted
    finished = [e for e in events if isinstance(e, ScanFinished)][0]
    assert finished.usable == len(usable) and finished.skipped == len(skipped)
    assert isinstance(events[0], ScanProgress)
    summary = data.report.summary()
    assert "skipped" in summary and "too small" in summary


def test_exif_orientation_is_applied(tmp_path):
    path = tmp_path / "rotated.jpg"
    path.write_bytes(messy.exif_rotated_jpeg())
    array, _ = decode_image(path, 24)
    # Rotated 90 clockwise: the red left half is now the top half.
    top, bottom = array[:12].mean((0, 1)), array[12:].mean((0, 1))
    assert top[0] > 200 and top[2] < 60 and bottom[2] > 200


def test_sixteen_bit_uses_its_real_depth(tmp_path):
    from PIL import Image

    values = np.full((20, 20), 4095, np.uint16)  # white in a 12-bit image
    Image.fromarray(values).save(tmp_path / "deep.png")
    array, grey = decode_image(tmp_path / "deep.png", 16)
    assert grey and array.min() == 255


def test_transparency_is_shown_on_white(tmp_path):
    from PIL import Image

    Image.new("RGBA", (20, 20), (0, 0, 0, 0)).save(tmp_path / "clear.png")
    array, _ = decode_image(tmp_path / "clear.png", 16)
    assert array.min() == 255


def test_sorted_order_and_labels_only_when_asked(image_folder):
    data, _ = run_to_end(load_image_folder(image_folder, 16))
    rels = [p.relative_to(image_folder).as_posix() for p in data.paths]
    assert rels == sorted(rels) and (data.labels == -1).all() and data.class_names == ()
    labelled, _ = run_to_end(load_image_folder(image_folder, 16, labels_from_folders=True))
    assert labelled.class_names == ("class_0", "class_1", "class_2")
    assert labelled.labels.tolist() == [0] * 8 + [1] * 8 + [2] * 8


def test_missing_empty_and_imageless_folders_fail_clearly(tmp_path):
    with pytest.raises(DataError, match="not found"):
        run_to_end(load_image_folder(tmp_path / "nope", 16))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no images"):
        run_to_end(load_image_folder(tmp_path / "empty", 16))
    (tmp_path / "texts").mkdir()
    (tmp_path / "texts" / "a.txt").write_text("hi")
    with pytest.raises(DataError, match="other files only"):
        run_to_end(load_image_folder(tmp_path / "texts", 16))
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "a.png").write_bytes(b"")
    with pytest.raises(DataError, match="could be read"):
        run_to_end(load_image_folder(tmp_path / "broken", 16))


def test_cache_goes_to_a_file_when_it_does_not_fit_and_is_reused(image_folder, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    data, _ = run_to_end(load_image_folder(image_folder, 16, cache_dir=cache, memory_budget=0))
    assert isinstance(data.images, RowFile)
    assert len(list(cache.glob("images-*-16px.npy"))) == 1
    first = np.array(data.images)

    def no_decoding(*args):
        raise AssertionError("the cache should have been reused")

    monkeypatch.setattr(image_folder_module, "decode_or_reason", no_decoding)
    again, _ = run_to_end(load_image_folder(image_folder, 16, cache_dir=cache, memory_budget=0))
    assert np.array_equal(np.array(again.images), first)


def test_a_big_folder_is_decoded_into_the_cache_file_not_first_into_memory(image_folder, tmp_path,
                                                                            monkeypatch):
    monkeypatch.setattr(image_folder_module, "IN_MEMORY_DECODE_MAX", 0)
    real_empty = np.empty

    def no_whole_array(shape, *args, **kwargs):
        assert not (isinstance(shape, tuple) and len(shape) == 4), "decoded into memory"
        return real_empty(shape, *args, **kwargs)

    monkeypatch.setattr(image_folder_module.np, "empty", no_whole_array)
    data, _ = run_to_end(load_image_folder(image_folder, 16, cache_dir=tmp_path / "cache"))
    monkeypatch.undo()
    assert isinstance(data.images, RowFile)
    assert np.array_equal(np.asarray(data.images), np.asarray(_fresh(image_folder, 16).images))


def test_a_row_file_reads_what_numpy_would(tmp_path):
    rng = np.random.default_rng(0)
    array = rng.integers(0, 255, (40, 3, 3, 3), dtype=np.uint8)
    writer = RowFileWriter(tmp_path / "rows.npy", 50, (3, 3, 3))
    for row in rng.permutation(40):
        writer[row] = array[row]
    writer.finish(40)  # ten rows never written, as when files were skipped
    assert np.array_equal(np.load(tmp_path / "rows.npy"), array)
    rows = RowFile(tmp_path / "rows.npy")
    picks = [np.array([5, 3, 3, 39, 0, 17, 16, 18]), np.array([], np.int64), np.array([-1, -40]),
             rng.integers(0, 40, 300), np.arange(40) % 3 == 0]
    for pick in picks:
        assert np.array_equal(rows[pick], array[pick])
    for index in (0, 39, -1, slice(None), slice(3, 9), slice(35, 99), slice(2, 30, 7)):
        assert np.array_equal(rows[index], array[index])
    assert rows.shape == array.shape and len(rows.head(7)) == 7 and np.array_equal(rows.head(7)[:], array[:7])
    with pytest.raises(IndexError):
        rows[40]
    with pytest.raises(FileExistsError):
        RowFileWriter(tmp_path / "rows.npy", 1, (3, 3, 3))  # never over a file that exists


def _fresh(folder, size):
    data, finished = run_to_end(load_image_folder(folder, size, labels_from_folders=True))
    return data


def _scan(folder, size, cache):
    """(data, ScanFinished) of a scan that keeps its decoded items in `cache`."""
    events = []
    generator = load_image_folder(folder, size, labels_from_folders=True, cache_dir=cache)
    try:
        while True:
            events.append(next(generator))
    except StopIteration as stop:
        return stop.value, [e for e in events if isinstance(e, ScanFinished)][-1]


def test_a_rescan_decodes_only_what_changed_and_says_so(image_folder, tmp_path, monkeypatch):
    from PIL import Image

    cache = tmp_path / "project-cache"
    data, finished = _scan(image_folder, 16, cache)
    assert (finished.new, finished.reused) == (len(data), 0)
    assert isinstance(data.images, RowFile)

    decoded = []
    real = image_folder_module.decode_or_reason
    monkeypatch.setattr(image_folder_module, "decode_or_reason",
                        lambda path, size: decoded.append(Path(path).name) or real(path, size))
    again, finished = _scan(image_folder, 16, cache)
    assert decoded == [] and finished.changes_text().startswith("all ")
    assert np.array_equal(np.asarray(again.images), np.asarray(data.images))

    # One new file, one rewritten with other pixels, one deleted (in a copy: the data folder is
    # read-only to the app, and the test keeps to that too).
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(image_folder, copy)
    cache = tmp_path / "copy-cache"
    _scan(copy, 16, cache)
    files = sorted(p for p in copy.rglob("*.png"))
    files[0].unlink()
    Image.new("RGB", (20, 20), (250, 10, 10)).save(files[1])
    os.utime(files[1], ns=(1, 1))  # a new time, whatever the clock's resolution
    Image.new("RGB", (20, 20), (10, 250, 10)).save(files[2].with_name("zz-new.png"))
    decoded.clear()
    changed, finished = _scan(copy, 16, cache)
    assert sorted(decoded) == sorted([files[1].name, "zz-new.png"])
    assert (finished.new, finished.changed, finished.removed) == (1, 1, 1)
    assert "1 new, 1 changed, 1 removed since the last scan" in describe(finished).text
    reference = _fresh(copy, 16)
    assert changed.items == reference.items
    assert np.array_equal(np.asarray(changed.images), np.asarray(reference.images))
    assert np.array_equal(changed.labels, reference.labels)


def test_a_file_rewritten_in_place_is_decoded_again_though_no_name_changed(image_folder, tmp_path):
    # The reopen's fast path compares whole lists of names and times; one new time must fall
    # through to the file-by-file comparison.
    import shutil

    from PIL import Image

    copy = tmp_path / "copy"
    shutil.copytree(image_folder, copy)
    cache = tmp_path / "cache"
    _scan(copy, 16, cache)
    target = sorted(copy.rglob("*.png"))[3]
    Image.new("RGB", (20, 20), (250, 10, 10)).save(target)
    os.utime(target, ns=(2, 2))
    again, finished = _scan(copy, 16, cache)
    assert (finished.reused, finished.changed, finished.new, finished.removed) == (len(again) - 1, 1, 0, 0)
    assert np.array_equal(np.asarray(again.images), np.asarray(_fresh(copy, 16).images))


def test_listed_paths_are_made_from_the_relative_names_when_asked_for(image_folder):
    data, _ = run_to_end(load_image_folder(image_folder, 16))
    assert data.paths[2] == image_folder / data.items[2] and len(data.paths) == len(data.items)
    assert list(data.paths)[-1] == image_folder / data.items[-1]
    assert data.paths == [image_folder / item for item in data.items]
    assert list(data.paths[1:3]) == [image_folder / item for item in data.items[1:3]]


def test_an_index_written_by_an_older_version_is_decoded_once_again_and_replaced(image_folder, tmp_path):
    import json

    from sslstudio.core.data.decoded_cache import DecodedImageCache

    cache = tmp_path / "cache"
    _scan(image_folder, 16, cache)
    index_path = DecodedImageCache(cache, image_folder, 16).index_path
    index = json.loads(index_path.read_text())
    files = index["files"]
    # Format 1 kept an object per file: [size, mtime, row, grey, reason].
    index.update(format=1, files={name: [size, mtime, row, grey, reason] for name, size, mtime, row, grey, reason
                                  in zip(*(files[column] for column in ("names", "sizes", "mtimes", "rows",
                                                                        "grey", "reasons")))})
    index_path.write_text(json.dumps(index))
    again, finished = _scan(image_folder, 16, cache)
    assert finished.new == len(again) and finished.reused == 0
    assert json.loads(index_path.read_text())["format"] != 1
    _, finished = _scan(image_folder, 16, cache)
    assert finished.reused == len(again) and finished.new == 0
    assert not list(cache.glob("*.partial"))


def test_a_skipped_file_is_remembered_and_still_reported(image_folder, tmp_path, monkeypatch):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(image_folder, copy)
    (copy / "broken.png").write_bytes(b"not an image")
    cache = tmp_path / "cache"
    first, _ = _scan(copy, 16, cache)
    monkeypatch.setattr(image_folder_module, "decode_or_reason",
                        lambda *a: pytest.fail("nothing changed, nothing to decode"))
    again, finished = _scan(copy, 16, cache)
    assert finished.skipped == 1 and again.report.skipped == first.report.skipped
    assert again.report.skipped[0][0] == "broken.png"


def test_a_cancelled_rescan_keeps_the_last_cache_and_leaves_no_partial_file(image_folder, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(image_folder, copy)
    cache = tmp_path / "cache"
    first, _ = _scan(copy, 16, cache)
    before = {p.name: p.stat().st_mtime_ns for p in cache.iterdir()}
    from PIL import Image

    Image.new("RGB", (20, 20), (1, 2, 3)).save(copy / "new.png")
    control = RunControl()
    control.cancel()
    with pytest.raises(Cancelled):
        run_to_end(load_image_folder(copy, 16, labels_from_folders=True, cache_dir=cache,
                                     memory_budget=0, control=control))
    assert {p.name: p.stat().st_mtime_ns for p in cache.iterdir()} == before
    again, finished = _scan(copy, 16, cache)
    assert finished.new == 1 and len(again) == len(first) + 1


def test_runs_and_adapted_models_of_a_project_share_its_scan(tmp_path):
    from sslstudio.core.project import Project
    from sslstudio.core.run.folder import RunFolder

    project = Project.create(tmp_path / "project")
    run = project.new_run_dir("simclr")
    assert RunFolder(run).data_cache_dir == project.cache_dir
    assert RunFolder(run / "adapted" / "x-linear").data_cache_dir == project.cache_dir
    alone = tmp_path / "alone-run"
    assert RunFolder(alone).data_cache_dir == RunFolder(alone).cache_dir


def test_cache_is_one_byte_per_channel_pixel(image_folder):
    # 100,000 images at 64 px are then 100000 * 64 * 64 * 3 bytes = 1.23 GB.
    data, _ = run_to_end(load_image_folder(image_folder, 64))
    assert data.images.nbytes == len(data) * 64 * 64 * 3


def test_cancel_during_scan(image_folder):
    control = RunControl()
    control.cancel()
    with pytest.raises(Cancelled):
        run_to_end(load_image_folder(image_folder, 16, control=control))


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permissions")
def test_permission_denied_for_real(tmp_path):
    from PIL import Image

    path = tmp_path / "locked.png"
    Image.new("RGB", (20, 20)).save(path)
    path.chmod(0)
    from sslstudio.core.data.images import SkipItem

    with pytest.raises(SkipItem, match="permission"):
        decode_image(path, 16)


def test_the_cache_never_replaces_a_file_it_did_not_write(image_folder, tmp_path):
    from sslstudio.core.data.decoded_cache import DecodedImageCache

    cache = tmp_path / "cache"
    cache.mkdir()
    stranger = DecodedImageCache(cache, image_folder, 16).store_path
    stranger.write_bytes(b"someone else's file")
    data, finished = _scan(image_folder, 16, cache)  # decodes, and keeps nothing
    assert len(data) == 24 and finished.new == 24
    assert stranger.read_bytes() == b"someone else's file"
    assert not list(cache.glob("*.partial"))


def test_a_very_large_folder_is_listed_and_its_thumbnails_made_when_shown(image_folder, tmp_path,
                                                                           monkeypatch):
    import shutil

    from sslstudio.core.data import lazy_images

    copy = tmp_path / "copy"
    shutil.copytree(image_folder, copy)
    (copy / "class_0" / "broken.png").write_bytes(b"not an image")
    cache = tmp_path / "cache"
    made = []
    real = lazy_images.decode_image
    monkeypatch.setattr(lazy_images, "decode_image", lambda path, size: made.append(path.name) or real(path, size))

    def listed():
        data, events = run_to_end(load_image_folder(copy, 16, labels_from_folders=True, cache_dir=cache,
                                                    lazy_from=5))
        return data, [e for e in events if isinstance(e, ScanFinished)][-1]

    data, finished = listed()
    assert finished.lazy and len(data) == 25 and made == []  # listed, nothing decoded
    assert describe(finished).text.startswith("listed 25 files")
    eager = _fresh(copy, 16)
    row = data.items.index(eager.items[3])
    assert np.array_equal(data.images[row], np.asarray(eager.images[3])) and len(made) == 1
    broken = data.items.index("class_0/broken.png")
    assert not data.images[broken].any()  # a blank tile; the run's scan reports why
    assert np.array_equal(data.images[row], np.asarray(eager.images[3])) and len(made) == 2

    # Reopened: what was made is on disk and reused; a file changed since is made again.
    again, _ = listed()
    assert np.array_equal(again.images[row], np.asarray(eager.images[3])) and len(made) == 2
    from PIL import Image

    changed = again.paths[row]
    Image.new("RGB", (20, 20), (9, 200, 9)).save(changed)
    os.utime(changed, ns=(5, 5))
    third, _ = listed()
    assert third.images[row][0, 0].tolist() == [9, 200, 9] and len(made) == 3


def test_channel_stats_are_the_mean_and_std_of_the_sampled_pixels(image_folder):
    data, _ = run_to_end(load_image_folder(image_folder, 16))
    mean, std = data.channel_stats(max_items=10, seed=3)
    pick = np.sort(np.random.default_rng(3).choice(len(data), size=10, replace=False))
    pixels = np.asarray(data.images)[pick].astype(np.float64) / 255.0
    assert mean == pytest.approx(pixels.mean(axis=(0, 1, 2)), abs=1e-5)
    assert std == pytest.approx(pixels.std(axis=(0, 1, 2)), abs=1e-5)
