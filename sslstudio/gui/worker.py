"""Run a core job (a generator of events) on a QThread and hand its events to the GUI thread.

The generator never sees Qt: pause and cancel go through its RunControl, which it consults at
each yield, and cancel makes it return normally (so its `finally:` blocks run on time).
"""

from __future__ import annotations

import traceback
import weakref
from typing import Callable, Iterator

from PySide6.QtCore import QObject, Qt, QThread, Signal, Slot

from sslstudio.core.control import Cancelled, RunControl
from sslstudio.core.memory import release_free_memory


class _GeneratorRunner(QObject):
    event = Signal(object)
    failed = Signal(str, str)  # one-line message, full traceback
    finished = Signal()

    def __init__(self, factory: Callable[[RunControl], Iterator], control: RunControl):
        super().__init__()
        self._factory = factory
        self._control = control

    @Slot()
    def run(self) -> None:
        try:
            for item in self._factory(self._control):
                self.event.emit(item)
        except Cancelled:
            pass
        except Exception as error:  # noqa: BLE001 - every failure becomes a dialog, never a crash
            self.failed.emit(_one_line(error), traceback.format_exc())
        finally:
            release_free_memory()  # what the job freed, back to the system, not kept by its thread
            self.finished.emit()


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


class JobWorker(QObject):
    """One background job. `start()` once; `cancel()` and `wait()` from the GUI thread."""

    # Every worker ever made, weakly: tests check that none is left running.
    instances: "weakref.WeakSet[JobWorker]" = weakref.WeakSet()

    event = Signal(object)
    failed = Signal(str, str)
    finished = Signal()

    def __init__(self, factory: Callable[[RunControl], Iterator], name: str = "job", parent=None):
        super().__init__(parent)
        self.control = RunControl()
        self._thread = QThread()
        self._thread.setObjectName(name)
        self._runner = _GeneratorRunner(factory, self.control)
        self._runner.moveToThread(self._thread)
        JobWorker.instances.add(self)
        self._thread.started.connect(self._runner.run)
        self._runner.event.connect(self.event)
        self._runner.failed.connect(self.failed)
        # Direct: quit from the worker thread itself, so wait() in the GUI thread cannot deadlock
        # on a queued quit that only the (blocked) GUI event loop would deliver.
        self._runner.finished.connect(self._thread.quit, Qt.ConnectionType.DirectConnection)
        self._thread.finished.connect(self.finished)

    def start(self) -> None:
        self._thread.start()

    def is_running(self) -> bool:
        return self._thread.isRunning()

    def pause(self) -> None:
        self.control.pause()

    def resume(self) -> None:
        self.control.resume()

    def cancel(self) -> None:
        self.control.cancel()

    def wait(self, timeout_ms: int = 60000) -> bool:
        """Block until the thread has ended; True if it did within the timeout."""
        return self._thread.wait(timeout_ms) if self._thread.isRunning() else True
