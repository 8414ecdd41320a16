"""Where the program may write: checked once, before any long work, for every command and the app.

The rule the whole program keeps: the user's data folder is read-only to us, and nothing is
deleted or overwritten that this program did not create in the same operation. An existing
file is replaced only when the user said so (`--overwrite`, or yes in the app's save dialog);
an existing folder only when it is one of ours of the same kind and the user said so.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Iterable

from sslstudio.core.fileio import FOLDER_MODE


class OutputError(ValueError):
    """An output path that cannot or must not be written; the message says what to do."""


def _resolved(path: Path) -> Path:
    return Path(os.path.abspath(Path(path).expanduser()))


def _real(path: Path) -> Path:
    # realpath sees through symlinks, so a link into the data folder is caught too.
    return Path(os.path.realpath(Path(path).expanduser()))


def is_within(path: Path, folder: Path) -> bool:
    """True when `path` is `folder` or lies below it (through links too)."""
    path, folder = _real(path), _real(folder)
    return path == folder or folder in path.parents


def check_outside_data(path: Path, data_dirs: Iterable[Path], what: str) -> None:
    for data in data_dirs:
        if data is None:
            continue
        if is_within(path, data):
            raise OutputError(f"{what} {path} is inside the data folder {data}, which SSL Studio "
                              "never writes to; choose a place outside it")


def check_writable_place(path: Path, what: str) -> None:
    """The folder that would hold `path` exists (or can be made) and may be written."""
    path = _resolved(path)
    ancestor = path.parent
    while not ancestor.exists():
        if ancestor.parent == ancestor:
            break
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise OutputError(f"cannot write {what} {path}: {ancestor} is a file, not a folder")
    # access() honours read-only mounts and, for root, ignores mode bits as root's writes do.
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write {what} {path}: {ancestor} is not writable; choose "
                          "another place")
    # access() says yes to root in places no file can be made (/proc, /sys, some network
    # mounts): a file of our own, made and removed now, is the only sure test.
    try:
        fd, probe = tempfile.mkstemp(prefix=".sslstudio-probe-", dir=ancestor)
    except OSError as error:
        raise OutputError(f"cannot write {what} {path}: no file can be made in {ancestor} "
                          f"({error.strerror or error}); choose another place") from None
    os.close(fd)
    os.unlink(probe)


def check_output_file(path: Path, *, overwrite: bool = False, data_dirs: Iterable[Path] = (),
                      what: str = "output") -> Path:
    """A file the command will write: never a folder, never inside the data folder, never an
    existing file unless `overwrite`."""
    path = Path(path).expanduser()
    if path.name in ("", ".", ".."):
        raise OutputError(f"{what} {path} names a folder; give a file name")
    check_outside_data(path, data_dirs, what)
    if path.is_dir():
        raise OutputError(f"{what} {path} is a folder; give a file name")
    if path.exists() or path.is_symlink():
        if not overwrite:
            raise OutputError(f"{what} {path} already exists; pass --overwrite to replace it, or "
                              "choose another name")
        if not path.is_file():
            raise OutputError(f"{what} {path} exists and is not a regular file; choose another name")
    check_writable_place(path, what)
    return path


def check_output_folder(path: Path, *, ours: Callable[[Path], bool], kind: str,
                        overwrite: bool = False, data_dirs: Iterable[Path] = (),
                        what: str = "output folder") -> Path:
    """A folder the command will create whole. It may exist only empty, or as one of ours of
    this `kind` when `overwrite` is given; anything else is refused, never emptied."""
    path = Path(path).expanduser()
    if _resolved(path).name in ("",) or path.name in (".", "..") or _resolved(path) == _resolved(Path.cwd()):
        raise OutputError(f"{what} {path} is the current folder or above it; name a new folder")
    check_outside_data(path, data_dirs, what)
    for data in data_dirs:
        if data is not None and is_within(data, path):
            raise OutputError(f"{what} {path} holds the data folder {data}; name a new folder")
    if path.exists() or path.is_symlink():
        if not path.is_dir() or path.is_symlink():
            raise OutputError(f"{what} {path} exists and is not a folder; choose another name")
        if any(path.iterdir()):
            if not ours(path):
                raise OutputError(f"{what} {path} already exists and is not {kind}; SSL Studio never "
                                  "replaces a folder it did not make: choose a new name")
            if not overwrite:
                raise OutputError(f"{what} {path} already holds {kind}; pass --overwrite to replace "
                                  "it, or choose a new name")
    check_writable_place(path, what)
    return path


def new_sibling_folder(path: Path) -> Path:
    """A fresh hidden folder beside `path` for building it: made by us now, so ours to remove.
    It gets an ordinary folder's mode (mkdtemp's is the owner's alone), since it becomes `path`."""
    path = _resolved(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    built = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent))
    built.chmod(FOLDER_MODE)
    return built


def move_into_place(built: Path, target: Path, *, ours: Callable[[Path], bool],
                    own_names: Callable[[Path], set[str]], marker: str) -> list[str]:
    """Move a completely built folder to `target`, and return the names of the user's files
    left in it.

    A new `target` is one rename. An existing one must be ours (the caller checked it and had
    the user's yes): only the files this program wrote there (`own_names(target)`) are replaced,
    and anything the user added stays where it is. `marker` (the file that makes the folder
    whole) goes first and comes back last, so that no reader takes a folder of old and new
    files for a whole one; the old files are removed only once the new ones are in."""
    target = _resolved(target)
    if not target.exists():
        os.replace(built, target)
        return []
    if not ours(target):
        raise OutputError(f"{target} appeared while working and is not ours; the result is left "
                          f"in {built}")
    old = own_names(target) | {marker}
    new = sorted(p.name for p in built.iterdir())
    theirs = [name for name in new if name not in old and _exists(target / name)]
    if theirs:
        raise OutputError(f"{target} holds {', '.join(theirs)}, which SSL Studio did not write and "
                          f"will not replace; move it away or choose another name (the result is "
                          f"left in {built})")
    set_aside = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
    for name in [marker, *sorted(old - {marker})]:
        if _exists(target / name):
            os.replace(target / name, set_aside / name)
    for name in [*(n for n in new if n != marker), marker]:
        if _exists(built / name):
            os.replace(built / name, target / name)
    built.rmdir()
    shutil.rmtree(set_aside, ignore_errors=True)
    return sorted(p.name for p in target.iterdir() if p.name not in new)


def _exists(path: Path) -> bool:
    return path.exists() or path.is_symlink()
