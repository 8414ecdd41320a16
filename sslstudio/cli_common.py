"""What every command of the CLI shares: its usage error and its progress printer."""

from __future__ import annotations

import os
import sys
import time

from sslstudio.core.describe import describe
from sslstudio.core.events import RunStarted


class UsageError(Exception):
    """A problem the user can fix; printed as one line, exit code 2."""


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


class ProgressPrinter:
    """One updating line on a terminal; a line every few seconds when output is a file."""

    def __init__(self, enabled: bool = True, stream=None):
        self.enabled = enabled
        self.stream = stream or sys.stdout
        self.tty = self.stream.isatty()
        self.last_print = 0.0
        self.line_open = False
        self.total_steps = -1

    def _line(self, text: str, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if self.tty:
            if force or now - self.last_print >= 0.1:
                self.stream.write("\r\033[K" + text)
                self.stream.flush()
                self.line_open = True
                self.last_print = now
        elif force or now - self.last_print >= 10.0:
            self.stream.write(text + "\n")
            self.stream.flush()
            self.last_print = now

    def note(self, text: str, error: bool = False) -> None:
        if self.line_open:
            self.stream.write("\n")
            self.line_open = False
        print(text, file=sys.stderr if error else self.stream, flush=True)

    def show(self, event) -> None:
        if isinstance(event, RunStarted):
            self.total_steps = event.total_steps
        description = describe(event, self.total_steps)
        # A terminal keeps to progress, notes and warnings; details and data are for the app.
        match description.kind:
            case "progress":
                self._line(description.text)
            case "note":
                self.note(description.text)
            case "warning":
                self.note(description.text, error=True)
