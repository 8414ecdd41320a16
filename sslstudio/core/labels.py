"""The user's labels, in one SQLite file in the project: every change is its own transaction.

Items are keyed by their path relative to the data folder, so labels survive moving the folder.
With WAL and synchronous=FULL a committed change is on disk before the call returns: a killed
process or a power cut loses none. Undo and redo replay recorded changes in reverse; their
history lives in memory (a new session starts with an empty history, not with lost labels).
"""

from __future__ import annotations

import csv
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

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

    def summary(self) -> str:
        parts = [f"{self.labelled} labels imported"]
        if self.new_classes:
            parts.append(f"new classes: {', '.join(self.new_classes)}")
        if self.unknown_paths:
            parts.append(f"{len(self.unknown_paths)} paths not in the data folder (skipped)")
        if self.bad_rows:
            parts.append(f"{len(self.bad_rows)} rows not of the form path,label (skipped)")
        return "; ".join(parts)


# A change is ("label", item, old_class_id, new_class_id) or ("class", id, old_row, new_row),
# where a row is (name, colour, position) and None means absent. Each is its own inverse when
# old and new swap, which is all undo needs.
Change = tuple


class LabelStore:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # The GUI reads from its thread and jobs read a snapshot (labels()), never the connection.
        self._db = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        self._undo: list[tuple[str, list[Change]]] = []
        self._redo: list[tuple[str, list[Change]]] = []

    @classmethod
    def for_project(cls, project_path: Path) -> "LabelStore":
        return cls(Path(project_path) / LABELS_FILE)

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
        return dict(self._db.execute("SELECT item, class_id FROM labels"))

    def label_names(self) -> dict[str, str]:
        """item -> class name, for every labelled item."""
        return dict(self._db.execute(
            "SELECT labels.item, classes.name FROM labels JOIN classes ON classes.id = labels.class_id"))

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
        existing = self.classes()
        position = max((c.position for c in existing), default=-1) + 1
        if colour is None:
            used = {c.colour for c in existing}
            colour = next((c for c in CLASS_COLOURS if c not in used),
                          CLASS_COLOURS[len(existing) % len(CLASS_COLOURS)])
        class_id = max((c.id for c in existing), default=0) + 1
        self._apply(f"add class {name}", [("class", class_id, None, (name, colour, position))])
        return LabelClass(class_id, name, colour, position)

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
        items = [row[0] for row in self._db.execute(
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
        description, changes = self._undo.pop()
        self._write([_inverse(c) for c in reversed(changes)])
        self._redo.append((description, changes))
        return description

    def redo(self) -> str | None:
        if not self._redo:
            return None
        description, changes = self._redo.pop()
        self._write(changes)
        self._undo.append((description, changes))
        return description

    # -- CSV ----------------------------------------------------------------------------------
    def import_csv(self, csv_path: Path, data_root: Path, known_items: Iterable[str]) -> ImportReport:
        """Read `path,label` rows (a header row is optional; paths absolute or relative to the
        data folder). New class names become classes. One undoable change for the whole file."""
        data_root = Path(data_root).resolve()
        known = set(known_items)
        rows = read_label_csv(csv_path)
        wanted: dict[str, str] = {}
        unknown, bad = [], []
        for line_no, row in rows:
            if len(row) < 2 or not row[0].strip() or not row[1].strip():
                bad.append(f"line {line_no}: {','.join(row)}")
                continue
            item = item_key(row[0].strip(), data_root)
            if item is None or item not in known:
                unknown.append(row[0].strip())
                continue
            wanted[item] = row[1].strip()
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
        if changes:
            self._apply(f"import {labelled} labels from {Path(csv_path).name}", changes)
        return ImportReport(labelled, tuple(new_names), tuple(unknown), tuple(bad))

    def export_csv(self, csv_path: Path, data_root: Path | None = None) -> int:
        """Write `path,label` for every labelled item; paths absolute when `data_root` is given."""
        from sslstudio.core.fileio import atomic_write_text

        import io

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

    def _apply(self, description: str, changes: list[Change]) -> None:
        self._write(changes)
        self._undo.append((description, changes))
        self._redo.clear()

    def _write(self, changes: list[Change]) -> None:
        now = time.time()
        db = self._db
        try:
            db.execute("BEGIN IMMEDIATE")
            for change in changes:
                if change[0] == "class":
                    _, class_id, _old, new = change
                    if new is None:
                        db.execute("DELETE FROM classes WHERE id = ?", (class_id,))
                    else:
                        db.execute("INSERT INTO classes (id, name, colour, position) VALUES (?, ?, ?, ?) "
                                   "ON CONFLICT(id) DO UPDATE SET name = excluded.name, "
                                   "colour = excluded.colour, position = excluded.position",
                                   (class_id, *new))
                else:
                    _, item, _old, new = change
                    if new is None:
                        db.execute("DELETE FROM labels WHERE item = ?", (item,))
                    else:
                        db.execute("INSERT INTO labels (item, class_id, labelled_at) VALUES (?, ?, ?) "
                                   "ON CONFLICT(item) DO UPDATE SET class_id = excluded.class_id, "
                                   "labelled_at = excluded.labelled_at", (item, new, now))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise


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


def read_label_csv(csv_path: Path) -> list[tuple[int, list[str]]]:
    """Rows of a `path,label` file with their line numbers, without a header row if present."""
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as f:
            rows = [(i + 1, row) for i, row in enumerate(csv.reader(f)) if any(c.strip() for c in row)]
    except UnicodeDecodeError:
        raise LabelError(f"{csv_path} is not a UTF-8 text file") from None
    except OSError as error:
        raise LabelError(f"cannot read {csv_path}: {error.strerror or error}") from None
    if rows and [c.strip().lower() for c in rows[0][1][:2]] == ["path", "label"]:
        rows = rows[1:]
    return rows
