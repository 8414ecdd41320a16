"""The File menu's Recent projects and Recent folders, kept in the app's settings."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QMenu

MAX_RECENT = 8
PROJECTS, FOLDERS = "recent/projects", "recent/folders"


class RecentPlaces:
    """Most recent first; a place that no longer exists is not offered."""

    def __init__(self, settings: QSettings, projects_menu: QMenu, folders_menu: QMenu,
                 open_project: Callable[[Path], object], open_folder: Callable[[Path], object]):
        self.settings = settings
        self.menus = ((projects_menu, PROJECTS, open_project), (folders_menu, FOLDERS, open_folder))
        self.refresh()

    def remember(self, key: str, value: str) -> None:
        kept = [v for v in self.entries(key) if v != value]
        self.settings.setValue(key, [value] + kept[: MAX_RECENT - 1])
        self.refresh()

    def entries(self, key: str) -> list[str]:
        # A list of one comes back from some settings formats as a bare string.
        value = self.settings.value(key) or []
        return [value] if isinstance(value, str) else list(value)

    def refresh(self) -> None:
        for menu, key, opener in self.menus:
            menu.clear()
            entries = [p for p in self.entries(key) if Path(p).exists()]
            for path in entries:
                action = menu.addAction(path)
                action.triggered.connect(lambda _=False, p=path, o=opener: o(Path(p)))
            menu.setEnabled(bool(entries))
