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
from sslstudio.core.events import ScanFinished, ScanProgress
from tests.conftest import run_to_end


@pytest.fixture
def unreadable(monkeypatch):
    """Permission denied on files named unreadable.*; chmod alone does not stop root."""
    real_open = images_module._open_file

    def fake_open(path):
        if Path(path).stem == "unreadable":
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path)

    monkeypatch.setattr(images_module, "_open_file", fake_open)


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


def test_cache_goes_to_a_memory_map_when_it_does_not_fit_and_is_reused(image_folder, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    data, _ = run_to_end(load_image_folder(image_folder, 16, cache_dir=cache, memory_budget=0))
    assert isinstance(data.images, np.memmap) or isinstance(getattr(data.images, "base", None), np.memmap)
    assert (cache / "images_16px.npy").exists()
    first = np.array(data.images)

    def no_decoding(*args):
        raise AssertionError("the cache should have been reused")

    monkeypatch.setattr(image_folder_module, "_decode_or_reason", no_decoding)
    again, _ = run_to_end(load_image_folder(image_folder, 16, cache_dir=cache, memory_budget=0))
    assert np.array_equal(np.array(again.images), first)


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
