r"""Writing results: ``coordinates.csv`` and ``coordinates.json``, atomically.

Every output goes through :func:`heatdecode.atomic.atomic_write`: a temporary
file in the same folder, renamed into place only when complete, so an
interrupted run never leaves a half-written file under a final name.

Text outputs are always valid UTF-8. A file name that is not (on Linux a name
is bytes; Python decodes an undecodable byte such as ``0xff`` to the lone
surrogate ``"\udcff"``) is written with each such byte as the four characters
``\xff``: ``caf\xe9.npy`` in the CSV and, escaped as JSON requires,
``"caf\\xe9.npy"`` in the JSON, which reads back as ``caf\xe9.npy`` too.
Names that are valid UTF-8 (commas, quotes, newlines, spaces, ``ü``...) are
written as they are and round-trip through Python's ``csv`` and ``json``.
``os.fsdecode(codecs.escape_decode(name.encode())[0])`` gives back the name on
disk (for names without a backslash of their own). Other text written through
:func:`~heatdecode.atomic.atomic_write` gets Python's ``backslashreplace`` (``\udcff``).
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from heatdecode.atomic import CSV_ERRORS, JSON_ERRORS, atomic_write
from heatdecode.display import display_name  # noqa: F401  (re-exported)
from heatdecode.frames import Frame
from heatdecode.results import COLUMNS, ArrayResult, PointRecord, iter_points

CSV_COLUMNS = COLUMNS  # one home: heatdecode.results
JSON_SCHEMA = "heatdecode.coordinates/1"


def iter_rows(results: Iterable[ArrayResult], frame: Frame = Frame()) -> Iterator[dict[str, Any]]:
    """The rows of :func:`heatdecode.results.iter_points`, as dicts by column."""
    return (point.row() for point in iter_points(results, frame))


def _cell(value: Any, key: str) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        if key in ("x", "y", "z", "spread"):
            return f"{value:.6f}"
        return f"{value:.9g}"
    return str(value)


def write_csv(path: Path, points: Iterable[PointRecord]) -> int:
    """Write ``points`` as CSV rows with the columns :data:`CSV_COLUMNS`; returns
    the row count."""
    count = 0

    def write(fh: IO[str]) -> None:
        nonlocal count
        writer = csv.writer(fh, lineterminator="\n")
        # csv quotes only the lineterminator's characters, so a lone "\r" in a file
        # name (column 0) would be written bare and split the record on reading
        quoted = csv.writer(fh, lineterminator="\n", quoting=csv.QUOTE_ALL)
        writer.writerow(CSV_COLUMNS)
        for point in points:
            row = point.row()
            cells = [_cell(row[k], k) for k in CSV_COLUMNS]
            (quoted if "\r" in cells[0] else writer).writerow(cells)
            count += 1

    atomic_write(path, write, errors=CSV_ERRORS)
    return count


def _json_number(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(path: Path, document: dict[str, Any]) -> None:
    """Write ``document`` as indented JSON (NaN/Inf become null, so it stays valid)."""

    def write(fh: IO[str]) -> None:
        # json.dump writes each of its millions of small pieces on its own; one
        # write per megabyte gives the same bytes in a third of the time
        encoder = json.JSONEncoder(indent=1, ensure_ascii=False, allow_nan=False)
        pieces: list[str] = []
        size = 0
        for piece in encoder.iterencode(document):
            pieces.append(piece)
            size += len(piece)
            if size >= _JSON_WRITE_CHARS:
                fh.write("".join(pieces))
                pieces, size = [], 0
        fh.write("".join(pieces) + "\n")

    atomic_write(path, write, errors=JSON_ERRORS)


_JSON_WRITE_CHARS = 1 << 20


def json_rows(points: Iterable[PointRecord]) -> list[dict[str, Any]]:
    """The points as ``coordinates.json`` rows: non-finite numbers become null."""
    return [{k: _json_number(v) for k, v in point.row().items()} for point in points]
