"""Interrupted runs: the output lock, partial outputs, and picking up with ``--resume``.

A run holds an exclusive lock on ``OUT/.heatdecode.lock`` (``flock``: the OS
releases it when the process dies, so a killed run never leaves a stale lock),
so two runs can't interleave rows in one folder. On Ctrl-C or SIGTERM the run
writes what it finished to ``coordinates.partial.csv`` and
``coordinates.partial.json`` (``"complete": false``), never under the final
names. ``--resume`` reads the partial JSON, skips the sources it lists as
complete, decodes the rest, and writes the final outputs as an uninterrupted
run would have, row for row; then the partial files are removed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PARTIAL_NAMES = {"csv": "coordinates.partial.csv", "json": "coordinates.partial.json"}
LOCK_NAME = ".heatdecode.lock"
# settings that must match for a resumed run to equal an uninterrupted one
RESUME_KEYS = ("runs", "coords", "stride", "stride_offset", "spacing", "layout")


class OutputBusy(RuntimeError):
    """Another run holds the lock on this output folder."""


@contextmanager
def output_lock(out_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``out_dir`` for the duration of a run.

    Raises:
        OutputBusy: another process holds it.
    """
    try:
        import fcntl
    except ImportError:  # Windows: no flock; runs are not protected from each other
        yield
        return
    fd = os.open(out_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "another process"
            raise OutputBusy(
                f"another heatdecode run ({holder}) is writing to {out_dir}; "
                "wait for it to finish or choose another --out"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


@dataclass
class Resumed:
    """What an interrupted run had finished, by source name."""

    complete: set[str] = field(default_factory=set)
    rows: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    files: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    failures: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    @property
    def maps(self) -> int:
        return sum(f["samples"] * f["channels"] for fs in self.files.values() for f in fs)


def read_partial(out_dir: Path, settings: dict[str, Any]) -> Resumed | None:
    """The partial outputs in ``out_dir``, or None if there are none.

    Raises:
        ValueError: the partial JSON is unreadable, or was written with other
            settings (its rows would not match the ones decoded now).
    """
    path = out_dir / PARTIAL_NAMES["json"]
    if not path.exists():
        return None
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        complete = document["complete_sources"]
        before = document["settings"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"can't resume from {path}: {exc!r}") from None
    changed = [k for k in RESUME_KEYS if before.get(k) != settings.get(k)]
    if changed:
        raise ValueError(
            f"can't resume: {', '.join(changed)} differ from the interrupted run's; "
            "run with the same options, or start over with --overwrite"
        )
    resumed = Resumed(complete=set(complete))
    for entry in document.get("files", []):
        resumed.files.setdefault(entry["source"], []).append(entry)
    for entry in document.get("failures", []):
        resumed.failures.setdefault(entry["source"], []).append(entry)
    source_of = {f["file"]: source for source, fs in resumed.files.items() for f in fs}
    for row in document.get("rows", []):
        resumed.rows.setdefault(source_of[row["file"]], []).append(row)
    return resumed


def remove_partial(out_dir: Path) -> None:
    """Delete the partial outputs once the final ones are written."""
    for name in PARTIAL_NAMES.values():
        (out_dir / name).unlink(missing_ok=True)
