"""Reading the CSVs a user hands in: ground truth (``--truth``) and, for scoring
a run after the fact, its ``coordinates.csv``.

Both are parsed here, at the edge: cells become numbers (or a one-line
``ValueError`` naming the file and line), so what flows on is typed.
"""

from __future__ import annotations

import csv
import math
import os
import stat
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

import numpy as np

from heatdecode.results import PointRecord

Key = tuple[str, int, int]  # (file, sample, channel)

REQUIRED_TRUTH_COLUMNS = ("file", "sample", "channel", "x", "y")
#: what a truth file may hold: it is read whole into memory, line by line
MAX_TRUTH_BYTES = 1 << 30
MAX_TRUTH_LINE = 1 << 20


def _number(value: Any) -> float | None:
    """A coordinate: None for empty/None/NaN, else a float (ValueError if not a number)."""
    if value is None:
        return None
    if isinstance(value, str):
        value = value.strip()
        if not value:
            return None
    number = float(value)
    return None if math.isnan(number) else number


def _index(value: Any) -> int:
    """A sample/channel index: a non-negative integer, ``"3"`` or ``"3.0"``."""
    if isinstance(value, str):
        text = value.strip()
        try:
            value = int(text)
        except ValueError:
            value = float(text)  # "3.0" from a float column; "x" raises
    if isinstance(value, (float, np.floating)):
        if not float(value).is_integer():
            raise ValueError(f"not an integer: {value!r}")
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"not an integer >= 0: {value!r}")
    return int(value)


def read_truth(path: Path, many: bool = False) -> list[dict[str, Any]]:
    """Read a ground-truth CSV: ``file,sample,channel,x,y`` and optionally ``z``.

    Other columns (``decoder``, ``score``, ...) are ignored; ``truth.csv`` from
    ``heatdecode sample`` reads as is. An empty ``z`` cell means a 2D map.

    ``many``: any number of truth points per map (peaks mode); otherwise a
    map given twice is an error.

    Returns:
        One dict per line, ``{"file", "sample", "channel", "decoder", "x", "y",
        "z"}`` with ints for sample/channel, floats for x/y and a float or None
        for z; ``decoder`` is the column's value or ``"truth"``.

    Raises:
        ValueError: naming the file and line, for a missing column, a cell that
            isn't a finite number (or a non-negative integer index), an empty
            file name, a (file, sample, channel) given twice, a line the CSV
            reader refuses (a cell over 128 KiB) or over :data:`MAX_TRUTH_LINE`;
            or for a path that is not a regular file (``/dev/zero``, a FIFO) or
            holds more than :data:`MAX_TRUTH_BYTES`. Unreadable files raise
            ``OSError`` as usual.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     path = Path(tmp) / "truth.csv"
        ...     _ = path.write_text("file,sample,channel,x,y\\nmaps.npy,0,1,3.5,7\\n")
        ...     [row] = read_truth(path)
        >>> row["file"], row["sample"], row["channel"], row["x"], row["y"], row["z"]
        ('maps.npy', 0, 1, 3.5, 7.0, None)
    """
    path = Path(path)
    info = path.stat()
    if not stat.S_ISREG(info.st_mode):
        raise ValueError(f"{path}: not a regular file")
    if info.st_size > MAX_TRUTH_BYTES:
        raise ValueError(
            f"{path}: {info.st_size:,} bytes, over the {MAX_TRUTH_BYTES:,} a truth file may hold"
        )
    try:
        # utf-8-sig: spreadsheets save CSV with a byte-order mark; O_NONBLOCK: a
        # FIFO swapped in after the check above can't block the open
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with open(fd, encoding="utf-8-sig", newline="") as fh:
            if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
                raise ValueError(f"{path}: not a regular file")
            lines = list(_truth_lines(path, _bounded(path, fh), many))
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    return lines


def _bounded(path: Path, fh: IO[str]) -> Iterator[str]:
    """The lines of ``fh``, refusing one over :data:`MAX_TRUTH_LINE` characters
    or a file growing past :data:`MAX_TRUTH_BYTES` while it is read."""
    total = 0
    for number, line in enumerate(iter(lambda: fh.readline(MAX_TRUTH_LINE + 1), ""), 1):
        if len(line) > MAX_TRUTH_LINE:
            raise ValueError(f"{path}: line {number}: over {MAX_TRUTH_LINE:,} characters")
        total += len(line)
        if total > MAX_TRUTH_BYTES:
            raise ValueError(f"{path}: over the {MAX_TRUTH_BYTES:,} bytes a truth file may hold")
        yield line


def _truth_lines(path: Path, fh: Iterable[str], many: bool) -> Iterable[dict[str, Any]]:
    rows = csv.reader(fh)
    reader = _Reader(path, rows)
    header = next(reader, None)
    if header is None:
        raise ValueError(
            f"{path}: empty file; expected a header line {','.join(REQUIRED_TRUTH_COLUMNS)}"
        )
    names = [name.strip() for name in header]
    missing = [c for c in REQUIRED_TRUTH_COLUMNS if c not in names]
    if missing:
        raise ValueError(
            f"{path}: line 1: missing column{'s' if len(missing) > 1 else ''} "
            f"{', '.join(missing)} (the header has: {', '.join(names) or 'nothing'})"
        )
    position = {
        name: names.index(name)
        for name in (*REQUIRED_TRUTH_COLUMNS, "z", "decoder")
        if name in names
    }
    seen: dict[Key, int] = {}
    for cells in reader:
        line = reader.line_num
        if not any(cell.strip() for cell in cells):
            continue  # blank lines, as spreadsheets leave at the end

        raw = {name: cells[i] if i < len(cells) else "" for name, i in position.items()}
        file = raw["file"].strip()
        if not file:
            raise ValueError(f"{path}: line {line}: empty file name")
        values: dict[str, Any] = {"file": file}
        for name in ("sample", "channel"):
            try:
                values[name] = _index(raw[name])
            except ValueError:
                raise ValueError(
                    f"{path}: line {line}: {name} must be an integer >= 0, got {raw[name]!r}"
                ) from None
        values["decoder"] = raw.get("decoder", "").strip() or "truth"
        for name in ("x", "y", "z"):
            text = raw.get(name, "")
            try:
                number = _number(text)
            except ValueError:
                raise ValueError(f"{path}: line {line}: {name} is not a number: {text!r}") from None
            if number is None and name != "z":
                raise ValueError(f"{path}: line {line}: {name} is empty")
            if number is not None and not math.isfinite(number):
                raise ValueError(f"{path}: line {line}: {name} is not finite: {text!r}")
            values[name] = number
        key = (file, values["sample"], values["channel"])
        if key in seen and not many:
            raise ValueError(
                f"{path}: line {line}: {describe_key(key)} is given twice "
                f"(first on line {seen[key]})"
            )
        seen[key] = line
        yield {k: values[k] for k in ("file", "sample", "channel", "decoder", "x", "y", "z")}


class _Reader:
    """A ``csv.reader`` whose errors (a cell over the field limit, a stray
    quote) name the file and line."""

    def __init__(self, path: Path, reader: Any) -> None:
        self.path, self.reader = path, reader

    @property
    def line_num(self) -> int:
        return int(self.reader.line_num)

    def __iter__(self) -> _Reader:
        return self

    def __next__(self) -> list[str]:
        try:
            return next(self.reader)
        except csv.Error as exc:
            raise ValueError(f"{self.path}: line {self.line_num}: {exc}") from None


def describe_key(key: Key) -> str:
    return f"{key[0]} sample {key[1]} channel {key[2]}"


def row_key(row: Mapping[str, Any]) -> Key:
    return (str(row["file"]), _index(row["sample"]), _index(row["channel"]))


def row_point(row: Mapping[str, Any]) -> tuple[float | None, float | None, float | None]:
    return _number(row.get("x")), _number(row.get("y")), _number(row.get("z"))


def _xyz(point: PointRecord) -> tuple[float | None, float | None, float | None]:
    coords = point.coords or (None, None)
    return coords[0], coords[1], coords[2] if len(coords) == 3 else None


def read_points(path: Path) -> list[PointRecord]:
    """The points of a ``coordinates.csv`` written by ``heatdecode run``.

    Raises:
        ValueError: naming the file and line, for a missing column or a cell
            that isn't a number where one belongs.
    """
    path = Path(path)
    with open(path, encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        missing = [
            c
            for c in ("file", "sample", "channel", "decoder", "x", "y")
            if c not in (reader.fieldnames or [])
        ]
        if missing:
            raise ValueError(f"{path}: line 1: missing column(s) {', '.join(missing)}")
        return [_read_point(path, reader.line_num, row) for row in reader]


def _read_point(path: Path, line: int, row: Mapping[str, str]) -> PointRecord:
    try:
        x, y, z = row_point(row)
        coords = None if x is None or y is None else tuple(v for v in (x, y, z) if v is not None)
        return PointRecord(
            file=row["file"],
            sample=_index(row["sample"]),
            channel=_index(row["channel"]),
            decoder=row["decoder"],
            point=_index(row.get("peak") or 0),
            coords=coords,
            score=_number(row.get("score")),
            spread=_number(row.get("spread")),
            status=row.get("status") or "",
        )
    except ValueError as exc:
        raise ValueError(f"{path}: line {line}: {exc}") from None
