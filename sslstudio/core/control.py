"""Pause, resume and cancel for a job that runs as a generator.

The generator calls `checkpoint()` right after each yield; that is the only place where a pause
blocks or a cancel is noticed, so compute code never has to poll anything.
"""

from __future__ import annotations

import threading
import time


class Cancelled(Exception):
    """Raised inside a job by `checkpoint()`; jobs catch it and return normally."""


class RunControl:
    def __init__(self) -> None:
        self._running = threading.Event()
        self._running.set()
        self._cancel = threading.Event()
        self.paused_seconds = 0.0

    def pause(self) -> None:
        self._running.clear()

    def resume(self) -> None:
        self._running.set()

    def cancel(self) -> None:
        self._cancel.set()
        self._running.set()  # a paused job must wake up to see the cancel

    @property
    def paused(self) -> bool:
        return not self._running.is_set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def checkpoint(self) -> None:
        """Block while paused; raise Cancelled once cancel was asked for."""
        if not self._running.is_set():
            started = time.monotonic()
            self._running.wait()
            self.paused_seconds += time.monotonic() - started
        if self._cancel.is_set():
            raise Cancelled()


def run_to_end(job):
    """Run a job (a generator of events) for its return value alone, dropping its events:
    for callers that want a scan's dataset or a fit's result without its progress."""
    try:
        while True:
            next(job)
    except StopIteration as stop:
        return stop.value
