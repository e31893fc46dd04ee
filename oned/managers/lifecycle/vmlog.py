"""The VM log ``var/vms/<id>/vm.log`` (mirrors ``VirtualMachine::log`` and the
``vm.log`` file logger): ``<ctime> [Z<zone>][TAG][L]: text`` lines, written in order by
one worker thread once the LifeCycleManager runs (file system calls cost more than the
rest of a VM allocation on slow disks), synchronously before that.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from twisted.internet.interfaces import IReactorTime

    from oned.core import Core


def vm_dir(core: Core, vid: int) -> Path:
    return core.config.locations.var / "vms" / str(vid)


def format_vm_log(core: Core, lines: Iterable[tuple[str, str, str]], now: float) -> str:
    stamp = time.ctime(now)
    zone = core.config.zone_id
    return "".join(f"{stamp} [Z{zone}][{tag}][{letter}]: {msg}\n" for tag, letter, msg in lines)


def append_vm_log(directory: Path, text: str) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with open(directory / "vm.log", "a", encoding="utf-8") as out:
            out.write(text)
    except OSError:
        pass


#: Seconds VM log lines wait on the reactor before going to the writer thread.
HANDOFF_DELAY = 0.05


class VmLogWriter:
    """Appends VM log lines from one worker thread, in order (file system calls cost
    more than the rest of a VM allocation on slow disks)."""

    def __init__(self, clock: IReactorTime | None = None) -> None:
        self._clock = clock
        self._buffer: list[tuple[Path, str]] = []
        self._handoff_due = False
        self._queue: queue.SimpleQueue[tuple[Path, str] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._pending = 0
        self._idle = threading.Condition()

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="vm-log", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._handoff()
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(10)
            self._thread = None

    @property
    def running(self) -> bool:
        return self._thread is not None

    def put(self, directory: Path, text: str) -> None:
        """Queue lines; they reach the thread in one hand-over per reactor turn."""
        self._buffer.append((directory, text))
        if not self._handoff_due and self._clock is not None:
            self._handoff_due = True
            self._clock.callLater(HANDOFF_DELAY, self._handoff)
        elif self._clock is None:
            self._handoff()

    def _handoff(self) -> None:
        self._handoff_due = False
        batch, self._buffer = self._buffer, []
        if not batch:
            return
        with self._idle:
            self._pending += len(batch)
        for item in batch:
            self._queue.put(item)

    def flush(self, timeout: float = 10.0) -> None:
        """Wait until every queued line is written."""
        self._handoff()
        with self._idle:
            self._idle.wait_for(lambda: self._pending == 0, timeout)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            batch = [item]
            while True:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._queue.put(None)
                    break
                batch.append(more)
            texts: dict[Path, list[str]] = {}
            for directory, text in batch:
                texts.setdefault(directory, []).append(text)
            for directory, chunks in texts.items():
                append_vm_log(directory, "".join(chunks))
            with self._idle:
                self._pending -= len(batch)
                self._idle.notify_all()


def write_vm_log(core: Core, vid: int, lines: Iterable[tuple[str, str, str]], now: float) -> None:
    """Append ``<ctime> [Z0][TAG][L]: text`` lines to ``vms/<vid>/vm.log`` (through the
    LifeCycleManager's writer thread once it runs)."""
    lines = list(lines)
    if not lines:
        return
    text = format_vm_log(core, lines, now)
    lcm = core.lifecycle_manager
    writer = getattr(lcm, "log_writer", None)
    if writer is not None and writer.running:
        writer.put(vm_dir(core, vid), text)
    else:
        append_vm_log(vm_dir(core, vid), text)
