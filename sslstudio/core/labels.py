"""The user's labels, in one SQLite file in the project: every change is its own transaction.

Items are keyed by their path relative to the data folder, so labels survive moving the folder.
With WAL and synchronous=FULL a committed change is on disk before the call returns: a killed
process or a power cut loses none. Undo and redo replay recorded changes in reverse; their
history lives in memory (a new session starts with an empty history, not with lost labels).
"""

from __future__ import annotations

import csv
import io
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from sslstudio.core.fileio import atomic_write_text

LABELS_FILE = "labels.sqlite"

# Distinct colours for classes (Tableau 10, then a few more), assigned in order.
CLASS_COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
                 "#7f7f7f", "#bcbd22", "#17becf", "#393b79", "#ad494a", "#637939", "#ce6dbd",
                 "#5254a3", "#8ca252", "#bd9e39", "#843c39", "#7b4173", "#3182bd"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS classes (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    colour TEXT NOT NULL,
    position INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS labels (
    item TEXT PRIMARY KEY,
    class_id INTEGER NOT NULL REFERENCES classes(id),
    labelled_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS labels_by_class ON labels(class_id);
"""


class LabelError(ValueError):
    """A label operation the user asked for that cannot be done; the message says why."""


@dataclass(frozen=True)
class LabelClass:
    id: int
    name: str
    colour: str
    position: int


@dataclass(frozen=True)
class ImportReport:
    labelled: int
    new_classes: tuple[str, ...]
    unknown_paths: tuple[str, ...]  # rows whose file is not in the data folder
    bad_rows: tuple[str, ...]  # rows that are not `path,label`
    conflicts: tuple[str, ...] = ()  # items labelled twice with different classes: left out

    def summary(self) -> str:
        parts = [f"{self.labelled} labels imported"]
        if self.new_classes:
            parts.append(f"new classes: {', '.join(self.new_classes)}")
        if self.unknown_paths:
            parts.append(f"{len(self.unknown_paths)} paths not in the data folder (skipped)")
        if self.bad_rows:
            parts.append(f"{len(self.bad_rows)} rows not of the form path,label (skipped)")
        if self.conflicts:
            parts.append(f"{len(self.conflicts)} files labelled twice with different classes, left "
                         f"out (first: {self.conflicts[0]})")
        return "; ".join(parts)


# A change is ("label", item, old_class_id, new_class_id) or ("class", id, old_row, new_row),
# where a row is (name, colour, position) and None means absent. Each is its own inverse when
# old and new swap, which is all undo needs.
Change = tuple


# How long a write waits for another connection's transaction before it reports the lock.
BUSY_TIMEOUT_MS = 3000


class LabelStore:
    """`read_only` opens the file without ever writing it: for a project another window or
    process holds (`read_only_reason` says who), where labels can be seen but not changed."""

    def __init__(self, path: Path, read_only: bool = False, read_only_reason: str = ""):
        self.path = Path(path)
        self.read_only = read_only
        self.read_only_reason = read_only_reason
        try:
            if read_only:
                if not self.path.exists():
                    # Nothing labelled yet: an empty in-memory store reads the same.
                    self._db = sqlite3.connect(":memory:", isolation_level=None,
                                               check_same_thread=False)
                    self._db.executescript(_SCHEMA)
                else:
                    self._db = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True,
                                               isolation_level=None, check_same_thread=False)
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                # The GUI reads from its thread and jobs read a snapshot (labels()), never the
                # connection itself.
                self._db = sqlite3.connect(str(self.path), isolation_level=None,
                                           check_same_thread=False)
                self._db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=FULL")
                self._db.executescript(_SCHEMA)
        except sqlite3.Error as error:
            raise LabelError(f"cannot open the labels file {self.path}: {error}") from None
        self._undo: list[tuple[str, list[Change]]] = []
        self._redo: list[tuple[str, list[Change]]] = []

    @classmethod
    def for_project(cls, project_path: Path, read_only: bool = False,
                    read_only_reason: str = "") -> "LabelStore":
        return cls(Path(project_path) / LABELS_FILE, read_only, read_only_reason)

    def close(self) -> None:
        self._db.close()

    # -- reading ------------------------------------------------------------------------------
    def classes(self) -> list[LabelClass]:
        rows = self._db.execute("SELECT id, name, colour, position FROM classes ORDER BY position, id")
        return [LabelClass(*row) for row in rows]

    def class_by_name(self, name: str) -> LabelClass | None:
        row = self._db.execute("SELECT id, name, colour, position FROM classes WHERE name = ?",
                               (name,)).fetchone()
        return LabelClass(*row) if row else None

    def labels(self) -> dict[str, int]:
        """item -> class id, for every labelled item."""
        return {_item_from_db(item): class_id
                for item, class_id in self._db.execute("SELECT item, class_id FROM labels")}

    def label_names(self) -> dict[str, str]:
        """item -> class name, for every labelled item."""
        return {_item_from_db(item): name for item, name in self._db.execute(
            "SELECT labels.item, classes.name FROM labels JOIN classes ON classes.id = labels.class_id")}

    def counts(self) -> dict[int, int]:
        return dict(self._db.execute("SELECT class_id, COUNT(*) FROM labels GROUP BY class_id"))

    def label_array(self, items: Sequence[str]) -> tuple[np.ndarray, list[LabelClass]]:
        """Class positions (0..C-1 in class order) aligned to `items`, -1 where unlabelled."""
        classes = self.classes()
        position = {c.id: i for i, c in enumerate(classes)}
        labels = self.labels()
        out = np.full(len(items), -1, np.int64)
        for i, item in enumerate(items):
            class_id = labels.get(item)
            if class_id is not None:
                out[i] = position[class_id]
        return out, classes

    # -- changes ------------------------------------------------------------------------------
    def add_class(self, name: str, colour: str | None = None) -> LabelClass:
        name = self._check_name(name)
        chosen: list[LabelClass] = []

        def new_class() -> list[Change]:
            # Id, position and colour are read inside the write transaction, so a class another
            # writer added a moment ago is seen and never overwritten.
            existing = self.classes()
            if any(c.name == name for c in existing):
                raise LabelError(f"there is already a class called {name!r}")
            position = max((c.position for c in existing), default=-1) + 1
            used = {c.colour for c in existing}
            picked = colour or next((c for c in CLASS_COLOURS if c not in used),
                                    CLASS_COLOURS[len(existing) % len(CLASS_COLOURS)])
            class_id = max((c.id for c in existing), default=0) + 1
            chosen.append(LabelClass(class_id, name, picked, position))
            return [("class", class_id, None, (name, picked, position))]

        self._apply(f"add class {name}", new_class)
        return chosen[0]

    def rename_class(self, class_id: int, name: str) -> None:
        old = self._class_row(class_id)
        if old[0] == name.strip():
            return
        name = self._check_name(name)
        self._apply(f"rename {old[0]} to {name}", [("class", class_id, old, (name, old[1], old[2]))])

    def recolour_class(self, class_id: int, colour: str) -> None:
        old = self._class_row(class_id)
        self._apply(f"recolour {old[0]}", [("class", class_id, old, (old[0], colour, old[2]))])

    def delete_class(self, class_id: int) -> int:
        """Delete a class and unlabel its items (undo brings both back). Returns items unlabelled."""
        old = self._class_row(class_id)
        items = [_item_from_db(row[0]) for row in self._db.execute(
            "SELECT item FROM labels WHERE class_id = ?", (class_id,))]
        changes: list[Change] = [("label", item, class_id, None) for item in items]
        changes.append(("class", class_id, old, None))
        self._apply(f"delete class {old[0]}", changes)
        return len(items)

    def assign(self, items: Iterable[str], class_id: int | None) -> int:
        """Label `items` with `class_id` (None removes their labels). Returns how many changed."""
        if class_id is not None:
            self._class_row(class_id)
        current = self.labels()
        changes = [("label", item, current.get(item), class_id) for item in dict.fromkeys(items)
                   if current.get(item) != class_id]
        if changes:
            target = self._class_row(class_id)[0] if class_id is not None else "no label"
            self._apply(f"label {len(changes)} item{'s' * (len(changes) != 1)} {target}", changes)
        return len(changes)

    def assign_many(self, assignment: dict[str, int], description: str) -> int:
        """Label each item with its own class in one undoable step (accepting pre-labels).
        Returns how many changed."""
        for class_id in set(assignment.values()):
            self._class_row(class_id)
        current = self.labels()
        changes = [("label", item, current.get(item), class_id) for item, class_id in assignment.items()
                   if current.get(item) != class_id]
        if changes:
            self._apply(f"{description} ({len(changes)} item{'s' * (len(changes) != 1)})", changes)
        return len(changes)

    # -- undo ---------------------------------------------------------------------------------
    def can_undo(self) -> bool:
        return bool(self._undo)

    def can_redo(self) -> bool:
        return bool(self._redo)

    def undo_text(self) -> str:
        return self._undo[-1][0] if self._undo else ""

    def redo_text(self) -> str:
        return self._redo[-1][0] if self._redo else ""

    def undo(self) -> str | None:
        if not self._undo:
            return None
        description, changes = self._undo[-1]
        self._write([_inverse(c) for c in reversed(changes)])
        self._undo.pop()  # only once written: a refused undo can be tried again
        self._redo.append((description, changes))
        return description

    def redo(self) -> str | None:
        if not self._redo:
            return None
        description, changes = self._redo[-1]
        self._write(changes)
        self._redo.pop()
        self._undo.append((description, changes))
        return description

    # -- CSV ----------------------------------------------------------------------------------
    def import_csv(self, csv_path: Path, data_root: Path, known_items: Iterable[str]) -> ImportReport:
        """Read `path,label` rows (a header row is optional; paths absolute or relative to the
        data folder). New class names become classes. One undoable change for the whole file."""
        parsed = parse_label_csv(csv_path, data_root, set(known_items))
        wanted = parsed.labels
        counted: dict[str, object] = {}

        def import_changes() -> list[Change]:
            # Ids are chosen inside the write transaction, as in add_class.
            classes = {c.name: c for c in self.classes()}
            new_names = sorted({name for name in wanted.values() if name not in classes})
            changes: list[Change] = []
            next_id = max((c.id for c in classes.values()), default=0) + 1
            next_position = max((c.position for c in classes.values()), default=-1) + 1
            used = {c.colour for c in classes.values()}
            ids = {name: c.id for name, c in classes.items()}
            for name in new_names:
                colour = next((c for c in CLASS_COLOURS if c not in used), CLASS_COLOURS[next_id % 20])
                used.add(colour)
                changes.append(("class", next_id, None, (name, colour, next_position)))
                ids[name] = next_id
                next_id += 1
                next_position += 1
            current = self.labels()
            labelled = 0
            for item, name in wanted.items():
                if current.get(item) != ids[name]:
                    changes.append(("label", item, current.get(item), ids[name]))
                    labelled += 1
            counted.update(labelled=labelled, new_names=new_names)
            return changes

        self._apply(lambda: f"import {counted['labelled']} labels from {Path(csv_path).name}",
                    import_changes)
        return ImportReport(counted["labelled"], tuple(counted["new_names"]), parsed.unknown,
                            parsed.bad, parsed.conflicts)

    def export_csv(self, csv_path: Path, data_root: Path | None = None) -> int:
        """Write `path,label` for every labelled item; paths absolute when `data_root` is given."""
        rows = sorted(self.label_names().items())
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["path", "label"])
        for item, name in rows:
            writer.writerow([str(Path(data_root) / item) if data_root else item, name])
        atomic_write_text(Path(csv_path), buffer.getvalue())
        return len(rows)

    # -- internals ----------------------------------------------------------------------------
    def _check_name(self, name: str) -> str:
        name = name.strip()
        if not name:
            raise LabelError("a class needs a name")
        if "," in name or "\n" in name:
            raise LabelError(f"class name {name!r} may not contain a comma or a line break")
        if self.class_by_name(name) is not None:
            raise LabelError(f"there is already a class called {name!r}")
        return name

    def _class_row(self, class_id: int) -> tuple:
        row = self._db.execute("SELECT name, colour, position FROM classes WHERE id = ?",
                               (class_id,)).fetchone()
        if row is None:
            raise LabelError(f"no class with id {class_id}")
        return tuple(row)

    def _apply(self, description, changes) -> None:
        """Write `changes` (a list, or a function that makes it inside the transaction) and
        record them as one undo step; a description may be a function, read after the write.
        Nothing changed: no undo step, and the redo history stays."""
        written = self._write(changes)
        if written:
            self._undo.append((description() if callable(description) else description, written))
            self._redo.clear()

    def _write(self, changes) -> list[Change]:
        if self.read_only:
            raise LabelError("labels are read-only here: " + (self.read_only_reason or
                             "the project is open elsewhere"))
        now = time.time()
        db = self._db
        try:
            db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as error:
            # No transaction began, so there is nothing to roll back; say what is in the way.
            if "locked" in str(error) or "busy" in str(error):
                raise LabelError("the labels file is being changed by another SSL Studio window or "
                                 "program; nothing was changed, try again in a moment") from None
            raise LabelError(f"cannot change the labels file {self.path}: {error}") from None
        try:
            if callable(changes):
                changes = changes()
            for change in changes:
                if change[0] == "class":
                    _, class_id, _old, new = change
                    if new is None:
                        db.execute("DELETE FROM classes WHERE id = ?", (class_id,))
                    elif _old is None:
                        # A new class: a plain insert, which fails rather than replace a class.
                        db.execute("INSERT INTO classes (id, name, colour, position) VALUES (?, ?, ?, ?)",
                                   (class_id, *new))
                    else:
                        db.execute("INSERT INTO classes (id, name, colour, position) VALUES (?, ?, ?, ?) "
                                   "ON CONFLICT(id) DO UPDATE SET name = excluded.name, "
                                   "colour = excluded.colour, position = excluded.position",
                                   (class_id, *new))
                else:
                    _, item, _old, new = change
                    key = _item_to_db(item)
                    if new is None:
                        db.execute("DELETE FROM labels WHERE item = ?", (key,))
                    else:
                        db.execute("INSERT INTO labels (item, class_id, labelled_at) VALUES (?, ?, ?) "
                                   "ON CONFLICT(item) DO UPDATE SET class_id = excluded.class_id, "
                                   "labelled_at = excluded.labelled_at", (key, new, now))
            db.execute("COMMIT")
        except sqlite3.IntegrityError as error:
            db.execute("ROLLBACK")
            raise LabelError(f"the labels changed elsewhere meanwhile ({error}); nothing was "
                             "changed") from None
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        return changes


def _item_to_db(item: str):
    """A file name that is not valid UTF-8 (lone surrogates in Python) is kept as its exact
    bytes, a BLOB; every other key stays TEXT, as files written before this read."""
    return item.encode("utf-8", "surrogateescape") if _has_surrogates(item) else item


def _item_from_db(value) -> str:
    return value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else value


def _inverse(change: Change) -> Change:
    kind, key, old, new = change
    return (kind, key, new, old)


def item_key(path: str, data_root: Path) -> str | None:
    """The project's key for a file: its path relative to the data folder, with '/'."""
    candidate = Path(path)
    if not candidate.is_absolute():
        candidate = data_root / candidate
    try:
        return Path(os.path.normpath(candidate)).relative_to(data_root).as_posix()
    except ValueError:
        return None


@dataclass(frozen=True)
class ParsedLabels:
    labels: dict[str, str]  # item key -> class name
    unknown: tuple[str, ...]  # paths outside the data folder, or not among the known items
    bad: tuple[str, ...]  # rows that are not path,label
    conflicts: tuple[str, ...]  # "item: a, b" for items given two different classes


def parse_label_csv(csv_path: Path, data_root: Path, known: set[str] | None = None) -> ParsedLabels:
    """The `path,label` rows of a file as item keys of `data_root`. A file labelled twice with
    the same class counts once; with different classes it is left out and reported, since
    keeping either would be a guess."""
    data_root = Path(data_root).resolve()
    given: dict[str, set[str]] = {}
    unknown, bad = [], []
    for line_no, row in read_label_csv(csv_path):
        if len(row) < 2 or not row[0].strip() or not row[1].strip():
            bad.append(f"line {line_no}: {','.join(row)}")
            continue
        name = row[1].strip()
        if _has_surrogates(name):
            bad.append(f"line {line_no}: the label is not UTF-8 text")
            continue
        item = item_key(row[0].strip(), data_root)
        if item is None or (known is not None and item not in known):
            unknown.append(row[0].strip())
            continue
        given.setdefault(item, set()).add(name)
    labels = {item: next(iter(names)) for item, names in given.items() if len(names) == 1}
    conflicts = tuple(f"{item}: {', '.join(sorted(names))}" for item, names in given.items()
                      if len(names) > 1)
    return ParsedLabels(labels, tuple(unknown), tuple(bad), conflicts)


def _has_surrogates(text: str) -> bool:
    try:
        text.encode("utf-8")
        return False
    except UnicodeEncodeError:
        return True


def read_label_csv(csv_path: Path) -> list[tuple[int, list[str]]]:
    """Rows of a `path,label` file with their line numbers, without a header row if present.
    Bytes that are not UTF-8 are kept as surrogates: in a path they name the file exactly."""
    try:
        raw = Path(csv_path).read_bytes()
    except OSError as error:
        raise LabelError(f"cannot read {csv_path}: {error.strerror or error}") from None
    if b"\x00" in raw:
        raise LabelError(f"{csv_path} is not a UTF-8 text file (it holds binary data)")
    text = raw.decode("utf-8-sig", "surrogateescape")
    try:
        rows = [(i + 1, row) for i, row in enumerate(csv.reader(io.StringIO(text, newline="")))
                if any(c.strip() for c in row)]
    except csv.Error as error:
        raise LabelError(f"{csv_path} is not a CSV file of path,label rows: {error}") from None
    if rows and [c.strip().lower() for c in rows[0][1][:2]] == ["path", "label"]:
        rows = rows[1:]
    return rows
