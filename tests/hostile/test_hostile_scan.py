"""Hostile data folders: pipes, devices, sockets, link loops, undecodable names, permission
problems and warning-spewing files. The folder is read-only to us; each such file is skipped with
a reason, never fatal and never a hang."""

from __future__ import annotations

import builtins
import errno
import hashlib
import io
import os
import socket
import stat
import struct
import subprocess
import sys
import threading
import warnings
from pathlib import Path

import pytest
from PIL import Image

import messy
from conftest import make_image_folder
from sslstudio.core.data import DataError, load_image_folder
from sslstudio.core.data import images as images_module
from sslstudio.core.data.image_folder import typical_side
from sslstudio.core.data.images import IMAGE_EXTENSIONS, SkipItem, decode_image
from sslstudio.core.data.scan import list_folder
from sslstudio.core.data.text_folder import TEXT_EXTENSIONS

GUARD_S = 20.0


def run_to_end(generator):
    while True:
        try:
            next(generator)
        except StopIteration as stop:
            return stop.value


def finishes(call, fifos=()):
    """call() in a daemon thread; a regression that blocks on a pipe fails here instead of
    hanging the test run. On a timeout the pipes get a writer, so the stuck reader returns."""
    outcome: dict = {}

    def target():
        try:
            outcome["value"] = call()
        except BaseException as error:  # noqa: BLE001 - handed to the test thread
            outcome["error"] = error

    thread = threading.Thread(target=target, daemon=True, name="hostile-scan")
    thread.start()
    thread.join(GUARD_S)
    if thread.is_alive():
        for fifo in fifos:
            try:
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:
                pass
        thread.join(5)
        pytest.fail(f"did not finish within {GUARD_S:.0f} s (blocked opening a pipe?)")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def png_bytes(width=40, height=30, colour=(10, 200, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buffer, "PNG")
    return buffer.getvalue()


def invalid_apng() -> bytes:
    """A usable PNG on which Pillow warns "Invalid APNG" (an animation chunk claiming 0 frames)."""
    png = png_bytes()
    after_ihdr = 8 + 4 + 4 + 13 + 4
    return png[:after_ihdr] + messy._png_chunk(b"acTL", struct.pack(">II", 0, 0)) + png[after_ihdr:]


def write_bytes_name(folder: Path, name: bytes, data: bytes) -> None:
    # Through bytes: such a name cannot be spelled as a normal str.
    fd = os.open(os.fsencode(folder) + b"/" + name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def make_socket(path: Path, monkeypatch) -> None:
    # A relative name: AF_UNIX paths are limited to ~107 bytes and tmp_path can be longer.
    with monkeypatch.context() as patch, socket.socket(socket.AF_UNIX) as server:
        patch.chdir(path.parent)
        server.bind(path.name)


LONG_NAME = "x" * 251 + ".png"  # 255 bytes, the usual limit for one name


def make_hostile_folder(root: Path, monkeypatch) -> tuple[dict[str, str | None], list[Path]]:
    """Every hostile entry beside a few good images; returns ({relative path: expected reason
    prefix, or None if usable}, the named pipes)."""
    root.mkdir(parents=True, exist_ok=True)
    good = png_bytes()
    expected: dict[str, str | None] = {}
    for name in ("a.png", "b.png"):
        (root / name).write_bytes(good)
        expected[name] = None
    os.mkfifo(root / "pipe.png")
    expected["pipe.png"] = "not a regular file (named pipe)"
    os.symlink("/dev/null", root / "null.png")
    expected["null.png"] = "not a regular file (character device)"
    make_socket(root / "sock.png", monkeypatch)
    expected["sock.png"] = "not a regular file (socket)"
    os.symlink("loop_b.png", root / "loop_a.png")
    os.symlink("loop_a.png", root / "loop_b.png")
    expected["loop_a.png"] = expected["loop_b.png"] = "broken link or link loop"
    os.symlink("no-such-file.png", root / "dangling.png")
    expected["dangling.png"] = "file vanished or is a broken link"
    (root / "sub").mkdir()
    (root / "sub" / "c.png").write_bytes(good)
    expected["sub/c.png"] = None
    os.symlink("..", root / "sub" / "up")  # a linked folder pointing back at its ancestor
    os.symlink(".", root / "self")
    write_bytes_name(root, b"bad\xff.png", good)
    expected[os.fsdecode(b"bad\xff.png")] = None
    write_bytes_name(root, b"junk\xfe.png", b"not a picture at all" * 5)
    expected[os.fsdecode(b"junk\xfe.png")] = "not an image"
    for name in ("new\nline.png", "-dash.png", "--.png", LONG_NAME):
        (root / name).write_bytes(good)
        expected[name] = None
    (root / "apng.png").write_bytes(invalid_apng())
    expected["apng.png"] = None
    (root / "big_claim.png").write_bytes(messy.bomb_png(11000, 10000))
    expected["big_claim.png"] = "decompression bomb"
    return expected, [root / "pipe.png"]


def assert_reasons(report, expected: dict[str, str | None]) -> None:
    skipped = dict(report.skipped)
    for rel, reason in expected.items():
        if reason is None:
            assert rel not in skipped, f"{rel!r} was skipped: {skipped.get(rel)}"
        else:
            assert skipped.get(rel, "").startswith(reason), (rel, skipped.get(rel))


# 1. Pipes, devices and sockets are never opened.

def test_a_pipe_named_like_an_image_never_hangs_the_size_probe_or_the_scan(tmp_path):
    root = make_image_folder(tmp_path / "images", classes=1, per_class=4, size=24)
    os.mkfifo(root / "class_0" / "pipe.png")
    fifos = [root / "class_0" / "pipe.png"]
    assert finishes(lambda: typical_side(root), fifos) == 24
    data = finishes(lambda: run_to_end(load_image_folder(root, 16)), fifos)
    assert dict(data.report.skipped) == {"class_0/pipe.png": "not a regular file (named pipe)"}
    assert len(data) == 4 and data.report.total_files == 5
    assert "1 not a regular file" in data.report.summary()


def test_special_files_are_skipped_from_the_listing_without_being_opened(tmp_path, monkeypatch):
    root = tmp_path / "special"
    root.mkdir()
    (root / "ok.png").write_bytes(png_bytes())
    os.mkfifo(root / "pipe.png")
    os.symlink("/dev/null", root / "null.png")
    make_socket(root / "sock.png", monkeypatch)
    special = {"pipe.png", "null.png", "sock.png"}
    opened: list[str] = []
    real_os_open, real_open = os.open, builtins.open

    def spy_os_open(path, *args, **kwargs):
        opened.append(os.fsdecode(path))
        return real_os_open(path, *args, **kwargs)

    def spy_open(file, *args, **kwargs):
        if isinstance(file, (str, bytes, os.PathLike)):
            opened.append(os.fsdecode(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(os, "open", spy_os_open)
    monkeypatch.setattr(builtins, "open", spy_open)
    fifos = [root / "pipe.png"]
    listing = finishes(lambda: list_folder(root, IMAGE_EXTENSIONS, False), fifos)
    assert [p.name for p in listing.paths] == ["ok.png"]
    assert listing.skipped == [("null.png", "not a regular file (character device)"),
                               ("pipe.png", "not a regular file (named pipe)"),
                               ("sock.png", "not a regular file (socket)")]
    finishes(lambda: typical_side(root), fifos)
    data = finishes(lambda: run_to_end(load_image_folder(root, 16)), fifos)
    assert sorted(rel for rel, _ in data.report.skipped) == sorted(special)
    assert not [p for p in opened if Path(p).name in special], opened
    # The text loader lists through the same function.
    os.mkfifo(root / "pipe.txt")
    text_listing = finishes(lambda: list_folder(root, TEXT_EXTENSIONS, False), [root / "pipe.txt"])
    assert text_listing.skipped == [("pipe.txt", "not a regular file (named pipe)")]


def test_decode_image_refuses_a_pipe_even_when_called_directly(tmp_path, monkeypatch):
    os.mkfifo(tmp_path / "pipe.png")
    fifos = [tmp_path / "pipe.png"]
    with pytest.raises(SkipItem, match=r"^not a regular file \(named pipe\)$"):
        finishes(lambda: decode_image(tmp_path / "pipe.png", 16), fifos)
    # A regular file swapped for a pipe between the stat and the open: caught on the descriptor.
    (tmp_path / "ok.png").write_bytes(png_bytes())
    real_open_file = images_module.open_image_file
    monkeypatch.setattr(images_module, "open_image_file", lambda path: real_open_file(tmp_path / "pipe.png"))
    with pytest.raises(SkipItem, match=r"^not a regular file \(named pipe\)$"):
        finishes(lambda: decode_image(tmp_path / "ok.png", 16), fifos)


def test_a_folder_of_nothing_but_pipes_fails_with_the_reason(tmp_path):
    root = tmp_path / "pipes"
    root.mkdir()
    os.mkfifo(root / "a.png")
    os.mkfifo(root / "b.png")
    with pytest.raises(DataError, match=r"none of the 2 image files.*2 not a regular file"):
        finishes(lambda: run_to_end(load_image_folder(root, 16)), [root / "a.png", root / "b.png"])


# 2. Links.

def test_link_loops_and_dangling_links_say_what_they_are(tmp_path):
    root = tmp_path / "links"
    root.mkdir()
    (root / "ok.png").write_bytes(png_bytes())
    os.symlink("b.png", root / "a.png")
    os.symlink("a.png", root / "b.png")
    os.symlink("gone.png", root / "dangling.png")
    data = run_to_end(load_image_folder(root, 16))
    assert dict(data.report.skipped) == {"a.png": "broken link or link loop",
                                         "b.png": "broken link or link loop",
                                         "dangling.png": "file vanished or is a broken link"}
    with pytest.raises(SkipItem, match="^broken link or link loop$"):
        decode_image(root / "a.png", 16)
    assert typical_side(root) == 30


def test_linked_folders_looping_back_are_not_walked(tmp_path):
    root = make_image_folder(tmp_path / "images", classes=2, per_class=3, size=24)
    os.symlink("..", root / "class_0" / "up")
    os.symlink(".", root / "class_1" / "self")
    os.symlink(str(root), root / "absolute_loop")
    listing = finishes(lambda: list_folder(root, IMAGE_EXTENSIONS, True))
    assert len(listing.paths) == 6 and listing.class_names == ("class_0", "class_1")
    data = finishes(lambda: run_to_end(load_image_folder(root, 16)))
    assert len(data) == 6 and data.report.skipped == []


# 3. Pillow's warnings.

def _pillow_warnings(records) -> list[str]:
    return [f"{w.category.__name__}: {w.message}" for w in records
            if "PIL" in w.filename or issubclass(w.category, Image.DecompressionBombWarning)]


def test_no_pillow_warning_escapes_a_probe_scan_or_decode(tmp_path, recwarn):
    root = tmp_path / "noisy"
    root.mkdir()
    for i in range(24):  # enough for several decoder threads at once
        (root / f"apng_{i:02d}.png").write_bytes(invalid_apng())
        (root / f"claim_{i:02d}.png").write_bytes(messy.bomb_png(11000, 10000))
    filters_before = list(warnings.filters)
    side = typical_side(root)
    assert _pillow_warnings(recwarn) == []
    assert side == 30  # the claimed 10000 px must not vote either
    data = run_to_end(load_image_folder(root, 16, workers=8))
    assert len(data) == 24 and data.report.skipped_by_reason() == {"decompression bomb": 24}
    decode_image(root / "apng_00.png", 16)
    with pytest.raises(SkipItem, match="decompression bomb"):
        decode_image(root / "claim_00.png", 16)
    assert _pillow_warnings(recwarn) == []
    # Silencing is scoped: nothing is left in the process-wide filter list.
    assert warnings.filters == filters_before


def test_no_pillow_warning_reaches_stderr(tmp_path):
    root = tmp_path / "noisy"
    root.mkdir()
    (root / "ok.png").write_bytes(png_bytes())
    (root / "apng.png").write_bytes(invalid_apng())
    (root / "claim.png").write_bytes(messy.bomb_png(11000, 10000))
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from sslstudio.core.data import load_image_folder\n"
        "from sslstudio.core.data.image_folder import typical_side\n"
        "root = Path(sys.argv[1])\n"
        "print(typical_side(root))\n"
        "for _ in load_image_folder(root, 16): pass\n"
    )
    # -W default shows each warning once, as a user's interpreter would.
    done = subprocess.run([sys.executable, "-W", "default", "-c", script, str(root)],
                          capture_output=True, text=True, timeout=60,
                          cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "30"
    assert done.stderr == ""


# 4. Names.

def test_names_that_are_not_utf8_or_otherwise_odd_are_listed_and_decoded(tmp_path):
    root = tmp_path / "names"
    root.mkdir()
    good = png_bytes()
    write_bytes_name(root, b"bad\xff.png", good)
    write_bytes_name(root, b"junk\xfe.png", b"no picture here" * 4)
    os.symlink(b"loop\xfd.png", os.fsencode(root) + b"/loop\xfd.png")
    for name in ("new\nline.png", "-dash.png", "--.png", LONG_NAME):
        (root / name).write_bytes(good)
    usable = sorted([os.fsdecode(b"bad\xff.png"), "new\nline.png", "-dash.png", "--.png", LONG_NAME])
    # memory_budget=0 takes the on-disk cache, whose key and index hold every name.
    for attempt in range(2):  # the second run reuses the cache
        data = run_to_end(load_image_folder(root, 16, cache_dir=tmp_path / "cache", memory_budget=0))
        assert sorted(p.relative_to(root).as_posix() for p in data.paths) == usable
        assert dict(data.report.skipped) == {
            os.fsdecode(b"junk\xfe.png"): "not an image, or a format Pillow cannot read",
            os.fsdecode(b"loop\xfd.png"): "broken link or link loop"}
    for path in data.paths:
        assert os.path.exists(os.fsencode(path))  # the name still leads to the file
    assert data.report.summary()
    assert typical_side(root) == 30
    assert len(run_to_end(load_image_folder(root, 16))) == len(usable)


# 5. Permissions; tests may run as root, which ignores modes, so the refusal is simulated too.

def _deny(monkeypatch, denied: Path) -> None:
    real_os_open, real_open = os.open, builtins.open

    def check(path):
        if isinstance(path, (str, bytes, os.PathLike)) and os.fsdecode(path) == str(denied):
            raise PermissionError(errno.EACCES, "Permission denied", str(denied))

    def fake_os_open(path, *args, **kwargs):
        check(path)
        return real_os_open(path, *args, **kwargs)

    def fake_open(file, *args, **kwargs):
        check(file)
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(os, "open", fake_os_open)
    monkeypatch.setattr(builtins, "open", fake_open)


def test_a_file_with_mode_000_is_skipped_as_unreadable(tmp_path, monkeypatch):
    root = tmp_path / "perm"
    root.mkdir()
    (root / "ok.png").write_bytes(png_bytes())
    locked = root / "locked.png"
    locked.write_bytes(png_bytes(64, 64))
    locked.chmod(0)
    _deny(monkeypatch, locked)
    with pytest.raises(SkipItem, match="^unreadable: permission denied$"):
        decode_image(locked, 16)
    assert typical_side(root) == 30  # the locked file does not vote; the probe does not crash
    data = run_to_end(load_image_folder(root, 16))
    assert dict(data.report.skipped) == {"locked.png": "unreadable: permission denied"}


def _deny_listing(monkeypatch, denied: Path) -> None:
    real_scandir = os.scandir

    def fake_scandir(path="."):
        if os.fsdecode(path) == str(denied):
            raise PermissionError(errno.EACCES, "Permission denied", os.fsdecode(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", fake_scandir)


def test_an_unreadable_subfolder_is_reported_not_dropped(tmp_path, monkeypatch):
    root = make_image_folder(tmp_path / "images", classes=2, per_class=3, size=24)
    locked = root / "class_1"
    locked.chmod(0)
    try:
        _deny_listing(monkeypatch, locked)
        data = run_to_end(load_image_folder(root, 16, labels_from_folders=True))
    finally:
        locked.chmod(0o755)
    assert len(data) == 3
    assert data.report.skipped == [("class_1", "folder unreadable: permission denied")]
    assert "1 folder unreadable" in data.report.summary()


def test_an_unreadable_data_folder_fails_clearly(tmp_path, monkeypatch):
    root = make_image_folder(tmp_path / "images", classes=1, per_class=2, size=24)
    _deny_listing(monkeypatch, root)
    with pytest.raises(DataError, match="cannot read folder .*: permission denied"):
        run_to_end(load_image_folder(root, 16))


# The golden rule: the data folder is read-only to us.

def _snapshot(root: Path) -> dict:
    """Every entry's type, size, mtime, ctime, inode and content or link target. No atime:
    reading may update it, and that is the filesystem's doing, not a write of ours."""
    top = os.fsencode(root)
    paths = [top]
    for directory, subdirs, files in os.walk(top):
        paths += [os.path.join(directory, name) for name in subdirs + files]
    state = {}
    for path in paths:
        info = os.lstat(path)
        entry = [info.st_mode, info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino]
        if stat.S_ISLNK(info.st_mode):
            entry.append(os.readlink(path))
        elif stat.S_ISREG(info.st_mode):
            try:
                with builtins.open(path, "rb") as handle:
                    entry.append(hashlib.sha256(handle.read()).hexdigest())
            except PermissionError:  # mode 000 when not root
                entry.append("unreadable")
        state[path] = tuple(entry)
    return state


def test_the_data_folder_is_byte_identical_after_scan_and_decode(tmp_path, monkeypatch):
    root = tmp_path / "data"
    expected = messy.make_messy_folder(root)
    hostile, fifos = make_hostile_folder(root / "hostile", monkeypatch)
    expected.update({f"hostile/{rel}": reason for rel, reason in hostile.items()})
    locked = root / "hostile" / "locked.png"
    locked.write_bytes(png_bytes())
    locked.chmod(0)
    expected["hostile/locked.png"] = None if os.geteuid() == 0 else "unreadable"
    expected["bad/unreadable.png"] = None  # messy's name only; nothing denies it here
    before = _snapshot(root)

    def scan_everything():
        side = typical_side(root)
        data = run_to_end(load_image_folder(root, 16, cache_dir=tmp_path / "cache", memory_budget=0))
        for path in list_folder(root, IMAGE_EXTENSIONS, True).paths:
            try:
                decode_image(path, 16)
            except SkipItem:
                pass
        return side, data

    side, data = finishes(scan_everything, fifos)
    assert _snapshot(root) == before
    assert isinstance(side, int)
    assert_reasons(data.report, expected)
    assert ({p.relative_to(root).as_posix() for p in data.paths}
            == {rel for rel, reason in expected.items() if reason is None})
