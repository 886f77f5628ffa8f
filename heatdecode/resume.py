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

import errno
import json
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from heatdecode.results import Failure, FileRecord, PointRecord, SourceRecord

PARTIAL_NAMES = {"csv": "coordinates.partial.csv", "json": "coordinates.partial.json"}
LOCK_NAME = ".heatdecode.lock"
# settings that must match for a resumed run to equal an uninterrupted one
RESUME_KEYS = ("runs", "coords", "stride", "stride_offset", "spacing", "layout", "peaks")


class OutputBusy(RuntimeError):
    """Another run holds the lock on this output folder, or the lock can't be taken."""


@contextmanager
def output_lock(out_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``out_dir`` for the duration of a run.

    The lock file is opened without following a symlink and must be a regular
    file: a link planted at its name can't make the run write elsewhere.

    Raises:
        OutputBusy: another process holds it, or the lock file can't be used
            (a symlink, a folder, a full disk), in one line.
    """
    try:
        import fcntl
    except ImportError:  # Windows: no flock; runs are not protected from each other
        yield
        return
    path = out_dir / LOCK_NAME
    flags = os.O_RDWR | os.O_CREAT | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, 0o666)
    except OSError as exc:
        raise OutputBusy(f"can't use the lock file {path}: {_why(exc)}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OutputBusy(f"can't use the lock file {path}: not a regular file")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "another process"
            raise OutputBusy(
                f"another heatdecode run ({holder}) is writing to {out_dir}; "
                "wait for it to finish or choose another --out"
            ) from None
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()}".encode(), 0)
        except OSError as exc:  # a full disk, say
            raise OutputBusy(f"can't write the lock file {path}: {_why(exc)}") from None
        yield
    finally:
        os.close(fd)  # releases the lock


def _why(exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return "it is a symlink (remove it; heatdecode never writes through links)"
    if exc.errno == errno.EISDIR:
        return "it is a folder"
    return exc.strerror or str(exc)


@dataclass
class Resumed:
    """What an interrupted run had finished: each complete source's record."""

    sources: dict[str, SourceRecord] = field(default_factory=dict)

    @property
    def complete(self) -> set[str]:
        return set(self.sources)

    @property
    def maps(self) -> int:
        return sum(f.maps for record in self.sources.values() for f in record.files)

    @property
    def failures(self) -> int:
        return sum(len(record.failures) for record in self.sources.values())

    def overlays(self) -> set[str]:
        """The overlay paths (relative to --out) its arrays were drawn to."""
        return {f.overlay for r in self.sources.values() for f in r.files if f.overlay}


def read_partial(
    out_dir: Path, settings: dict[str, Any], inputs: dict[str, Any] | None = None
) -> Resumed | None:
    """The partial outputs in ``out_dir``, or None if there are none.

    ``inputs`` is this run's :func:`input_record`; the sources the interrupted
    run finished must be the same files now (same path, size and mtime).

    Raises:
        ValueError: the partial JSON is unreadable or incomplete (one line
            naming the missing key), or was written with other settings or
            inputs (its rows would not match the ones decoded now).
    """
    path = out_dir / PARTIAL_NAMES["json"]
    if not path.exists():
        return None
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:  # unreadable, not UTF-8, not JSON
        raise ValueError(f"can't resume from {path}: {exc!r}") from None
    try:
        return _resumed(document, settings, inputs)  # its own ValueErrors say what differs
    except MalformedOutputs as exc:
        raise ValueError(f"can't resume from {path}: {exc}") from None


class MalformedOutputs(Exception):
    """The partial JSON lacks a key or has a value of the wrong type."""


def _get(entry: Any, key: str, where: str, kind: type | tuple[type, ...] = object) -> Any:
    if not isinstance(entry, dict):
        raise MalformedOutputs(f"{where} is not an object")
    if key not in entry:
        raise MalformedOutputs(f"missing key {key!r} in {where}")
    value = entry[key]
    if not isinstance(value, kind):
        raise MalformedOutputs(f"{key!r} in {where} has the wrong type")
    return value


def _resumed(document: Any, settings: dict[str, Any], inputs: dict[str, Any] | None) -> Resumed:
    complete = _get(document, "complete_sources", "the document", list)
    before = _get(document, "settings", "the document", dict)
    changed = [k for k in RESUME_KEYS if before.get(k) != settings.get(k)]
    if changed:
        raise ValueError(
            f"can't resume: {', '.join(changed)} differ from the interrupted run's; "
            "run with the same options, or start over with --overwrite"
        )
    if inputs is not None:
        _check_inputs(document.get("resume_inputs"), inputs, complete)
    records = document_records(document, resumed=True)
    # a complete source may have left no entry at all (a file that held nothing)
    return Resumed(
        {name: records.get(name) or SourceRecord(name, resumed=True) for name in complete}
    )


def document_records(document: Any, resumed: bool = False) -> dict[str, SourceRecord]:
    """Every source's record in a ``coordinates.json`` (or its partial twin), in
    the order the document first names them: its arrays, failures and points.

    Raises:
        MalformedOutputs: a key missing or of the wrong type (naming where).
    """
    sources: dict[str, SourceRecord] = {}

    def record(name: str) -> SourceRecord:
        return sources.setdefault(name, SourceRecord(name, resumed=resumed))

    for i, entry in enumerate(_get(document, "files", "the document", list)):
        source = _get(entry, "source", f"files[{i}]", str)
        for key, kind in (("file", str), ("samples", int), ("channels", int)):
            _get(entry, key, f"files[{i}]", kind)
        record(source).files.append(FileRecord.from_entry(entry))
    for i, entry in enumerate(_get(document, "failures", "the document", list)):
        source = _get(entry, "source", f"failures[{i}]", str)
        _get(entry, "file", f"failures[{i}]", str)
        record(source).failures.append(Failure.from_entry(entry))
    source_of = {f.name: name for name, r in sources.items() for f in r.files}
    for i, row in enumerate(_get(document, "rows", "the document", list)):
        for key in ("status", "decoder", "x", "y", "sample", "channel"):
            _get(row, key, f"rows[{i}]")
        file = _get(row, "file", f"rows[{i}]", str)
        if file not in source_of:
            raise MalformedOutputs(f"rows[{i}] names {file!r}, which is in no files entry")
        sources[source_of[file]].points.append(PointRecord.from_row(row))
    return sources


def input_record(inputs: list[str], sources: dict[str, Path]) -> dict[str, Any]:
    """What identifies this run's inputs: the input paths resolved, and for each
    source (by name) its resolved path, size and modification time, from one
    ``stat`` each."""
    files: dict[str, Any] = {}
    for name, path in sources.items():
        try:
            info = path.stat()
            files[name] = [os.path.realpath(path), info.st_size, info.st_mtime_ns]
        except OSError:  # unreadable or a symlink loop: reported later
            files[name] = [os.path.realpath(path), None, None]
    # realpath, unlike Path.resolve, gives an answer for a symlink loop too
    return {"paths": [os.path.realpath(p) for p in inputs], "files": files}


def _check_inputs(before: Any, now: dict[str, Any], complete: list[str]) -> None:
    if not isinstance(before, dict):
        raise MalformedOutputs("missing key 'resume_inputs' in the document")
    if before.get("paths") != now["paths"]:
        raise ValueError(
            "can't resume: the inputs differ from the interrupted run's "
            f"({', '.join(before.get('paths') or [])}); run on the same inputs, "
            "or start over with --overwrite"
        )
    old = before.get("files") if isinstance(before.get("files"), dict) else {}
    changed = [name for name in complete if old.get(name) != now["files"].get(name)]
    if changed:
        more = f" and {len(changed) - 3} more" if len(changed) > 3 else ""
        shown = ", ".join(changed[:3]) + more
        raise ValueError(
            f"can't resume: {shown} changed since the interrupted run (other file, size or "
            "modification time); start over with --overwrite"
        )
