"""The progress bar of ``heatdecode run`` and ``sweep``, and the counts it shows.

:func:`progress_bar` yields a :class:`Tracker`, whose ``on_start``,
``on_loaded`` and ``on_phase`` are :func:`heatdecode.runner.run`'s callbacks.
The bar appears at once (before the inputs are even found), names the phase
the run is in (finding inputs, reading and decoding, drawing overlays,
writing outputs), and counts files read and maps: a file of 8,500 maps and one
of 1 are not alike. Its rate and ETA come from :class:`Rate`, an exponentially
weighted mean over the last seconds, so the ETA does not jump with every file.

The tracker counts whether or not a bar is drawn (``--quiet``, not a terminal):
the interruption message says "N of the M files read", M being the bar's count.

Imported by a command once its command line is checked: it imports rich.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, ProgressColumn, Task, TextColumn
from rich.text import Text

from heatdecode.display import display_name

#: seconds over which the rate is averaged (weights fall by e every TAU seconds)
TAU = 10.0


class Rate:
    """Events per second, exponentially weighted over the last :data:`TAU` seconds.

    Early on (less than TAU seconds in) it is about the mean since the start:
    the weights are normalised by the time they cover.

    Example:
        >>> rate = Rate(tau=10.0, now=0.0)
        >>> for second in range(1, 6):
        ...     rate.add(10, now=float(second))
        >>> round(rate.per_second(now=5.0))  # 10 a second
        11
    """

    def __init__(self, tau: float = TAU, now: float = 0.0) -> None:
        self.tau = tau
        self.start = self.last = now
        self.weighted = 0.0  # sum of events, each weighted by exp(-age / tau)

    def add(self, count: float, now: float) -> None:
        self._decay(now)
        self.weighted += count

    def per_second(self, now: float) -> float | None:
        self._decay(now)
        span = now - self.start
        if span <= 0 or self.weighted <= 0:
            return None
        # the weights' integral over the time covered: tau·(1 - e^(-span/tau))
        return self.weighted / (self.tau * -math.expm1(-span / self.tau))

    def _decay(self, now: float) -> None:
        if now > self.last:
            self.weighted *= math.exp(-(now - self.last) / self.tau)
            self.last = now


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class Tracker:
    """The run's callbacks, and what the bar shows: phase, files, maps, rate, ETA."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self.clock = clock
        self.started = clock()
        self.phase = "finding inputs"
        self.files_total: int | None = None
        self.files_read = 0
        self.maps_read = 0
        self.file_rate = Rate(now=self.started)
        self.map_rate = Rate(now=self.started)
        self.progress: Any = None  # the rich Progress drawing it, when one does
        self.task: Any = None

    def on_start(self, total: int) -> None:
        """The inputs are found: ``total`` files to read."""
        self.files_total = total
        self.on_phase("reading and decoding")

    def on_phase(self, name: str) -> None:
        self.phase = name
        self._refresh()
        if self.progress is not None:
            self.progress.refresh()  # a new phase shows at once

    def on_loaded(self, source: Any, items: list[Any]) -> None:
        """A file was read: its errors and warnings printed, its maps counted."""
        from heatdecode.loading import LoadFailure

        console = self.progress.console if self.progress is not None else None
        maps = 0
        for item in items:
            if isinstance(item, LoadFailure):
                _say(console, f"error: {item.name}: {item.reason}")
                continue
            for note in item.warnings:
                _say(console, f"warning: {item.name}: {note}")
            maps += int(item.maps.shape[0] * item.maps.shape[1])
        now = self.clock()
        self.files_read += 1
        self.maps_read += maps
        self.file_rate.add(1, now)
        self.map_rate.add(maps, now)
        self._refresh()

    def text(self) -> str:
        """``reading and decoding  3/10 files  1,234 maps  56 maps/s  0:00:02  ETA 0:00:05``"""
        now = self.clock()
        files = f"{self.files_read:,}" + (
            "" if self.files_total is None else f"/{self.files_total:,}"
        )
        parts = [f"{files} files", f"{self.maps_read:,} maps"]
        map_rate = self.map_rate.per_second(now)
        parts.append("– maps/s" if map_rate is None else f"{map_rate:,.0f} maps/s")
        parts.append(_clock(now - self.started))
        parts.append(f"ETA {self.eta(now)}")
        return "  ".join(parts)

    def eta(self, now: float) -> str:
        """Files left over the smoothed file rate; ``–`` until it is known."""
        rate = self.file_rate.per_second(now)
        if self.files_total is None or rate is None:
            return "–"
        if self.phase != "reading and decoding":
            return "0:00:00"
        return _clock(max(self.files_total - self.files_read, 0) / rate)

    def _refresh(self) -> None:
        if self.progress is not None:
            self.progress.update(
                self.task,
                description=self.phase,
                total=self.files_total,
                completed=self.files_read,
            )


class _Counts(ProgressColumn):
    """The tracker's numbers, drawn anew at each refresh (so the clock runs)."""

    def __init__(self, tracker: Tracker) -> None:
        super().__init__()
        self.tracker = tracker

    def render(self, task: Task) -> Text:
        return Text(self.tracker.text())


def _say(console: Console | None, text: str) -> None:
    if console is None:
        from heatdecode.cli.render import err_console

        console = err_console()
    console.print(display_name(text))


@contextmanager
def progress_bar(
    err: Console, quiet: bool, clock: Callable[[], float] = time.perf_counter
) -> Iterator[Tracker]:
    """A progress bar (only on a terminal, and not ``quiet``) over a run whose
    callbacks are the yielded tracker's; per-file messages printed above it."""
    tracker = Tracker(clock)
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(bar_width=20),
        _Counts(tracker),
        console=err,
        transient=True,
        disable=quiet or not err.is_terminal,
    )
    tracker.progress = progress
    tracker.task = progress.add_task(tracker.phase, total=None)
    progress.start()  # at once: finding the inputs may take a while too
    try:
        yield tracker
    finally:
        progress.refresh()
        progress.stop()
