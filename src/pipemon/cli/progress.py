"""Progress of long work (the demo's history, `replay`, `detect`, `demo --export`): a bar with rate and
time left on stderr when it is a terminal, and nothing at all when it is piped or redirected.

    with progress() as bars:
        meter = bars.add("replaying history", total=9, unit="days")
        meter.set(2.5)                                   # or meter.advance(n)
        for line in bars.lines(open(path, "rb"), size, "reading"): ...  # a file read, with its own bar
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from rich.console import Console
from rich.filesize import decimal
from rich.progress import (BarColumn, Progress, ProgressColumn, Task, TaskID, TaskProgressColumn, TextColumn,
                           TimeRemainingColumn)
from rich.text import Text


class RateColumn(ProgressColumn):
    """Units per second, in the task's unit (bytes as kB/MB)."""

    def render(self, task: Task) -> Text:
        speed, unit = task.speed, task.fields.get("unit", "")
        if speed is None and task.elapsed:  # too few samples yet (or quick work): the average so far
            speed = task.completed / task.elapsed
        if speed is None:
            return Text("", style="progress.data.speed")
        shown = f"{decimal(int(speed))}/s" if unit == "bytes" else f"{speed:,.1f} {unit}/s"
        return Text(shown, style="progress.data.speed")


class Meter:
    """One bar; a no-op without a terminal."""

    def __init__(self, bars: Progress | None = None, task: TaskID | None = None):
        self._bars, self._task = bars, task

    def set(self, completed: float) -> None:
        if self._bars is not None and self._task is not None:
            self._bars.update(self._task, completed=completed)

    def advance(self, n: float = 1) -> None:
        if self._bars is not None and self._task is not None:
            self._bars.advance(self._task, n)


class Bars:
    def __init__(self, bars: Progress | None):
        self._bars = bars

    def add(self, description: str, total: float | None, unit: str) -> Meter:
        if self._bars is None:
            return Meter()
        return Meter(self._bars, self._bars.add_task(description, total=total, unit=unit))

    def lines(self, f: Iterable[bytes], total: int | None, description: str) -> Iterator[bytes]:
        """The lines of `f`, advancing a bar by the bytes read (a total of None: rate without time left)."""
        if self._bars is None:
            yield from f
            return
        meter, pending = self.add(description, total, "bytes"), 0
        for line in f:
            pending += len(line)
            if pending >= 1 << 16:  # a lock and a clock read per 64 KB, not per line
                meter.advance(pending)
                pending = 0
            yield line
        meter.advance(pending)


@contextmanager
def progress(console: Console | None = None) -> Iterator[Bars]:
    screen = console or Console(stderr=True)
    if not screen.is_terminal:
        yield Bars(None)
        return
    with Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(), RateColumn(),
                  TimeRemainingColumn(), TextColumn("left"), console=screen,
                  refresh_per_second=4) as bars:  # a bar is read by people: 4 Hz is smooth, and cheap
        yield Bars(bars)
