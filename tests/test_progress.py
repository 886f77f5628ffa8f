"""The progress bar: maps and files counted, the phase named, a rate and an ETA
that hold still, shown at once; and an interruption's message in the bar's terms."""

from __future__ import annotations

import io
import json
import re

import numpy as np
import pytest
from rich.console import Console

from heatdecode import runner
from heatdecode.cli import main, render
from heatdecode.cli.progress import Rate, Tracker, progress_bar
from heatdecode.loading import HeatmapArray

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def _terminal() -> tuple[Console, io.StringIO]:
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, record=True, width=160)
    return console, buffer


def _shown(buffer: io.StringIO) -> str:
    return ANSI.sub("", buffer.getvalue())


def _array(name: str, samples: int, channels: int) -> HeatmapArray:
    shape = (samples, channels, 5, 6)
    return HeatmapArray(name, "NCHW", shape, np.zeros(shape))


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_bar_counts_files_and_maps_names_each_phase_and_a_rate():
    """A file of 12 maps and one of 2 are not alike: the bar says 14 maps, and a rate."""
    err, buffer = _terminal()
    clock = Clock()
    with progress_bar(err, False, clock) as bar:
        assert "finding inputs" in _shown(buffer)  # at once, before any file is read
        bar.on_start(2)
        clock.now = 1.0
        bar.on_loaded(None, [_array("a.npy", 3, 4)])
        clock.now = 2.0
        bar.on_loaded(None, [_array("b.npy", 1, 2)])
        bar.on_phase("drawing overlays")
        bar.on_phase("writing outputs")
    shown = _shown(buffer)
    for phase in ("reading and decoding", "drawing overlays", "writing outputs"):
        assert phase in shown
    assert "2/2 files" in shown and "14 maps" in shown
    assert "7 maps/s" in shown and "0:00:02" in shown  # 14 maps in 2 s, the elapsed time


def test_a_quiet_run_counts_all_the_same():
    err, buffer = _terminal()
    with progress_bar(err, True) as bar:
        bar.on_start(3)
        bar.on_loaded(None, [_array("a.npy", 2, 2)])
    assert bar.files_read == 1 and bar.maps_read == 4
    assert "files" not in _shown(buffer)


def test_the_rate_is_the_mean_at_first_then_a_smoothed_one():
    rate = Rate(tau=10.0, now=0.0)
    for second in range(1, 4):
        rate.add(5, now=float(second))
    assert rate.per_second(3.0) == pytest.approx(5.0, rel=0.2)
    for second in range(4, 100):
        rate.add(5, now=float(second))
    rate.add(500, now=100.0)  # one burst moves it, without taking it over
    assert 5.0 < rate.per_second(100.0) < 60.0


def test_the_eta_holds_still_when_one_file_is_slow():
    """A file per second for 30 s, then one taking 5 s: the ETA of the 70 left
    moves by seconds, not by minutes."""
    clock = Clock()
    tracker = Tracker(clock)
    tracker.on_start(100)
    for second in range(1, 31):
        clock.now = float(second)
        tracker.on_loaded(None, [_array("f.npy", 1, 1)])
    before = _seconds(tracker.eta(clock.now))
    assert 60 <= before <= 80
    clock.now += 5.0  # the slow one
    tracker.on_loaded(None, [_array("slow.npy", 1, 1)])
    after = _seconds(tracker.eta(clock.now))
    assert abs(after - before) < 0.5 * before
    assert "ETA" in tracker.text() and "31/100 files" in tracker.text()


def _seconds(clock: str) -> int:
    h, m, s = map(int, clock.split(":"))
    return 3600 * h + 60 * m + s


def _interrupt_after(monkeypatch, arrays: int) -> None:
    """The next run stops as Ctrl-C would, as array number ``arrays`` completes."""
    real = runner.decode_sources

    def decode(todo, settings, **kwargs):
        inner, seen = kwargs["on_complete"], []

        def on_complete(result, maps):
            seen.append(result.name)
            if len(seen) == arrays:
                raise KeyboardInterrupt
            inner(result, maps)

        monkeypatch.setattr(runner, "decode_sources", real)
        return real(todo, settings, **{**kwargs, "on_complete": on_complete})

    monkeypatch.setattr(runner, "decode_sources", decode)


def test_the_interruption_counts_files_as_the_bar_does(tmp_path, monkeypatch):
    """The bar counts files read; the message says how many of those were finished."""
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(6):
        maps = np.zeros((2, 6, 8), np.float32)
        maps[0, 1 + i % 4, 2] = 1.0
        np.save(folder / f"m{i}.npy", maps)
    err, buffer = _terminal()
    monkeypatch.setattr(render, "err_console", lambda: err)
    _interrupt_after(monkeypatch, 3)
    out = tmp_path / "out"
    args = ["run", str(folder), "--out", str(out), "--batch-size", "1", "--workers", "1"]
    assert main(args) == 130
    shown = _shown(buffer)
    said = re.search(r"interrupted; (\d+) of the (\d+) files read were finished, saved in", shown)
    assert said, shown
    finished, read = map(int, said.groups())
    bar = re.findall(r"(\d+)/6 files", shown)
    assert bar and int(bar[-1]) == read  # the bar's last count
    partial = json.loads((out / "coordinates.partial.json").read_text())
    assert finished == len(partial["complete_sources"]) and finished <= read
