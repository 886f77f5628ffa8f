"""Decoded coordinates scored against ground truth (``heatdecode run --truth``).

A truth CSV names maps the way ``coordinates.csv`` does (``file,sample,channel``)
and gives their true ``x,y[,z]``. :func:`evaluate` matches every decoded row to
its truth row and summarises, per decoder, the Euclidean error, the bias per
axis and the PCK (fraction of maps within a distance). Errors are in the units
of the coordinates given: pixels for the default frame, so the truth must be in
the same frame as the rows (``heatdecode sample`` writes the pixel frame).

Nothing is dropped silently: decoded maps without a truth row are listed in
``missing_truth``, truth rows without a decoded map in ``missing_maps``, and
maps whose coordinates are empty (status ``nonfinite``) are counted as
``undecoded`` and as failures in the PCK.
"""

from __future__ import annotations

import csv
import json
import math
import os
import stat
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
from rich.table import Table

from heatdecode.atomic import CSV_ERRORS, JSON_ERRORS, atomic_write

Key = tuple[str, int, int]  # (file, sample, channel)

PCK_THRESHOLDS: tuple[float, ...] = (0.5, 1.0, 2.0)
METRICS_SCHEMA = "heatdecode.metrics/1"
REQUIRED_TRUTH_COLUMNS = ("file", "sample", "channel", "x", "y")
#: what a truth file may hold: it is read whole into memory, line by line
MAX_TRUTH_BYTES = 1 << 30
MAX_TRUTH_LINE = 1 << 20
# Coordinates reach us rounded to 6 decimals (coordinates.csv), and e.g.
# hypot(0.3, 0.4) is 0.5000000000000001: an error this close to a threshold is
# on it.
PCK_TOLERANCE = 1e-9


def pck_column(threshold: float) -> str:
    """The column name of PCK at ``threshold``.

    Example:
        >>> [pck_column(t) for t in PCK_THRESHOLDS]
        ['pck_0.5', 'pck_1', 'pck_2']
    """
    return f"pck_{threshold:g}"


def metrics_columns(thresholds: Sequence[float] = PCK_THRESHOLDS) -> tuple[str, ...]:
    """The columns of ``metrics.csv`` (one row per decoder)."""
    stats = ("decoder", "count", "undecoded", "mean", "median", "p95", "max")
    return stats + ("bias_x", "bias_y", "bias_z") + tuple(pck_column(t) for t in thresholds)


#: ``metrics.csv``'s columns with the default PCK thresholds.
METRICS_COLUMNS = metrics_columns()

FIELD_DESCRIPTIONS: dict[str, str] = {
    "decoder": "decoder label, as in coordinates.csv",
    "count": "maps of this decoder that have a truth row (decoded + undecoded)",
    "undecoded": "of those, maps with empty coordinates (status nonfinite): "
    "left out of mean/median/p95/max/bias, counted as failures in PCK",
    "mean": "mean Euclidean error |estimate - truth| over decoded maps, in the coordinates' units",
    "median": "median Euclidean error over decoded maps",
    "p95": "95th percentile of the Euclidean error over decoded maps "
    "(linear interpolation between order statistics, numpy's default)",
    "max": "largest Euclidean error over decoded maps",
    "bias_x": "mean signed error estimate - truth along x (a systematic shift)",
    "bias_y": "mean signed error estimate - truth along y",
    "bias_z": "mean signed error estimate - truth along z, over 3D maps (null if none)",
    "pck_T": "fraction of the count maps with error <= T (undecoded maps count as failures)",
    "missing_truth": "decoded maps (file, sample, channel) with no truth row: not scored",
    "missing_maps": "truth rows with no decoded map: not scored",
}


@dataclass(frozen=True)
class DecoderMetrics:
    """One decoder's scores; the error statistics are ``None`` when no map was decoded."""

    decoder: str
    count: int
    undecoded: int
    mean: float | None
    median: float | None
    p95: float | None
    max: float | None
    bias_x: float | None
    bias_y: float | None
    bias_z: float | None
    pck: dict[float, float | None]  # threshold -> fraction; None when count is 0

    def row(self) -> dict[str, Any]:
        """The ``metrics.csv`` row: column name -> value."""
        out: dict[str, Any] = {
            "decoder": self.decoder,
            "count": self.count,
            "undecoded": self.undecoded,
            "mean": self.mean,
            "median": self.median,
            "p95": self.p95,
            "max": self.max,
            "bias_x": self.bias_x,
            "bias_y": self.bias_y,
            "bias_z": self.bias_z,
        }
        out.update({pck_column(t): v for t, v in self.pck.items()})
        return out


@dataclass(frozen=True)
class Evaluation:
    """Per-decoder scores plus the keys that could not be matched, both ways."""

    decoders: dict[str, DecoderMetrics]  # in the order the decoders first appear
    missing_truth: list[Key] = field(default_factory=list)
    missing_maps: list[Key] = field(default_factory=list)
    thresholds: tuple[float, ...] = PCK_THRESHOLDS

    def rows(self) -> list[dict[str, Any]]:
        """One ``metrics.csv`` row per decoder."""
        return [m.row() for m in self.decoders.values()]


# ---------------------------------------------------------------------------
# reading truth
# ---------------------------------------------------------------------------


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


def read_truth(path: Path) -> list[dict[str, Any]]:
    """Read a ground-truth CSV: ``file,sample,channel,x,y`` and optionally ``z``.

    Other columns (``decoder``, ``score``, ...) are ignored; ``truth.csv`` from
    ``heatdecode sample`` reads as is. An empty ``z`` cell means a 2D map.

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
            lines = list(_truth_lines(path, _bounded(path, fh)))
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


def _truth_lines(path: Path, fh: Iterable[str]) -> Iterable[dict[str, Any]]:
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
        if key in seen:
            raise ValueError(
                f"{path}: line {line}: {_describe(key)} is given twice (first on line {seen[key]})"
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


def _describe(key: Key) -> str:
    return f"{key[0]} sample {key[1]} channel {key[2]}"


# ---------------------------------------------------------------------------
# scoring
# ---------------------------------------------------------------------------


def _key(row: Mapping[str, Any]) -> Key:
    return (str(row["file"]), _index(row["sample"]), _index(row["channel"]))


def _point(row: Mapping[str, Any]) -> tuple[float | None, float | None, float | None]:
    return _number(row.get("x")), _number(row.get("y")), _number(row.get("z"))


def _metrics(
    decoder: str,
    deltas: list[tuple[float, float, float | None]],
    undecoded: int,
    thresholds: Sequence[float],
) -> DecoderMetrics:
    count = len(deltas) + undecoded
    if deltas:
        d = np.array([(dx, dy, np.nan if dz is None else dz) for dx, dy, dz in deltas])
        errors = np.sqrt(np.nansum(d**2, axis=1))  # nansum: a 2D map has no z term
        stats = [float(np.mean(errors)), float(np.median(errors))]
        stats += [float(np.percentile(errors, 95)), float(np.max(errors))]
        has_z = ~np.isnan(d[:, 2])
        bias = [float(np.mean(d[:, 0])), float(np.mean(d[:, 1]))]
        bias.append(float(np.mean(d[has_z, 2])) if has_z.any() else None)
    else:
        errors = np.zeros(0)
        stats, bias = [None] * 4, [None] * 3
    pck: dict[float, float | None] = {
        t: (float(np.count_nonzero(errors <= t + PCK_TOLERANCE)) / count if count else None)
        for t in thresholds
    }
    return DecoderMetrics(decoder, count, undecoded, *stats, *bias, pck)


def evaluate(
    rows: Iterable[Mapping[str, Any]],
    truth: Iterable[Mapping[str, Any]],
    thresholds: Sequence[float] = PCK_THRESHOLDS,
) -> Evaluation:
    """Score decoded ``rows`` against ``truth``, per decoder.

    Args:
        rows: dicts like ``coordinates.csv`` rows (``file, sample, channel,
            decoder, x, y, z, ...``); numbers may be numbers or CSV strings;
            ``x``/``y`` None, empty or NaN means the map wasn't decoded.
            Other fields (status, score, ...) are not used.
        truth: dicts with ``file, sample, channel, x, y`` and optionally ``z``
            (as :func:`read_truth` returns), at most one per key.
        thresholds: PCK distances, in the coordinates' units.

    Returns:
        An :class:`Evaluation`. For each decoder: ``count`` maps with truth, of
        which ``undecoded`` had empty coordinates; mean, median, p95, max error
        and bias (estimate − truth) per axis over the decoded ones; PCK over all
        ``count`` (an undecoded map is a miss). Maps without truth and truth
        without maps are listed, in the order met, not scored.

    Raises:
        ValueError: a key twice in ``truth``, a (key, decoder) twice in
            ``rows``, or a row whose dimension (z present or not) differs from
            its truth row's.

    Example:
        >>> truth = [{"file": "a.npy", "sample": 0, "channel": 0, "x": 1.0, "y": 1.0}]
        >>> rows = [  # one pixel too low in y, and a map nobody gave truth for
        ...     dict(truth[0], decoder="argmax", y=2.0),
        ...     dict(truth[0], decoder="argmax", file="b.npy"),
        ... ]
        >>> result = evaluate(rows, truth)
        >>> m = result.decoders["argmax"]
        >>> m.count, m.mean, m.bias_y, m.pck
        (1, 1.0, 1.0, {0.5: 0.0, 1.0: 1.0, 2.0: 1.0})
        >>> result.missing_truth
        [('b.npy', 0, 0)]
    """
    thresholds = tuple(float(t) for t in thresholds)
    targets: dict[Key, tuple[float, float, float | None]] = {}
    for entry in truth:
        key = _key(entry)
        if key in targets:
            raise ValueError(f"truth: {_describe(key)} is given twice")
        x, y, z = _point(entry)
        if x is None or y is None or not all(math.isfinite(v) for v in (x, y, z or 0.0)):
            raise ValueError(f"truth: {_describe(key)} has no finite x, y")
        targets[key] = (x, y, z)

    deltas: dict[str, list[tuple[float, float, float | None]]] = {}
    undecoded: dict[str, int] = {}
    seen: set[tuple[Key, str]] = set()
    found: set[Key] = set()
    missing_truth: dict[Key, None] = {}  # an ordered set
    for row in rows:
        key, decoder = _key(row), str(row["decoder"])
        if (key, decoder) in seen:
            raise ValueError(f"{_describe(key)} has two {decoder} rows")
        seen.add((key, decoder))
        found.add(key)
        deltas.setdefault(decoder, [])
        undecoded.setdefault(decoder, 0)
        if key not in targets:
            missing_truth[key] = None
            continue
        x, y, z = _point(row)
        tx, ty, tz = targets[key]
        if x is None or y is None or not all(math.isfinite(v) for v in (x, y, z or 0.0)):
            undecoded[decoder] += 1
            continue
        if (z is None) != (tz is None):
            dims = ("3D", "2D") if tz is None else ("2D", "3D")
            raise ValueError(
                f"{_describe(key)}: {decoder} gives {dims[0]} coordinates, truth {dims[1]}"
            )
        deltas[decoder].append((x - tx, y - ty, None if z is None else z - tz))

    return Evaluation(
        decoders={d: _metrics(d, deltas[d], undecoded[d], thresholds) for d in deltas},
        missing_truth=list(missing_truth),
        missing_maps=[key for key in targets if key not in found],
        thresholds=thresholds,
    )


# ---------------------------------------------------------------------------
# output
# ---------------------------------------------------------------------------


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6f}"
    return str(value)


def _key_dicts(keys: list[Key]) -> list[dict[str, Any]]:
    return [{"file": f, "sample": s, "channel": c} for f, s, c in keys]


def metrics_document(evaluation: Evaluation) -> dict[str, Any]:
    """What ``metrics.json`` holds: schema, field descriptions, rows, missing lists."""
    return {
        "schema": METRICS_SCHEMA,
        "thresholds": list(evaluation.thresholds),
        "columns": list(metrics_columns(evaluation.thresholds)),
        "fields": FIELD_DESCRIPTIONS,
        "decoders": evaluation.rows(),
        "missing_truth": _key_dicts(evaluation.missing_truth),
        "missing_maps": _key_dicts(evaluation.missing_maps),
    }


def write_metrics(out_dir: Path, evaluation: Evaluation) -> list[Path]:
    """Write ``metrics.csv`` and ``metrics.json`` into ``out_dir`` atomically; returns both paths.

    The CSV has one row per decoder (columns :func:`metrics_columns`, numbers to
    6 decimals, empty where undefined); the JSON the same at full precision
    (``null`` where undefined), plus ``missing_truth``, ``missing_maps`` and a
    description of every field.
    """
    paths = [Path(out_dir) / "metrics.csv", Path(out_dir) / "metrics.json"]
    write_metrics_csv(paths[0], evaluation)
    write_metrics_json(paths[1], evaluation)
    return paths


def write_metrics_csv(path: Path, evaluation: Evaluation) -> None:
    """``metrics.csv`` (see :func:`write_metrics`) at ``path``, atomically."""
    columns = metrics_columns(evaluation.thresholds)

    def write(fh: IO[str]) -> None:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(columns)
        for row in evaluation.rows():
            writer.writerow([_cell(row[c]) for c in columns])

    atomic_write(path, write, errors=CSV_ERRORS)


def write_metrics_json(path: Path, evaluation: Evaluation) -> None:
    """``metrics.json`` (see :func:`write_metrics`) at ``path``, atomically."""

    def write(fh: IO[str]) -> None:
        json.dump(metrics_document(evaluation), fh, indent=1, ensure_ascii=False, allow_nan=False)
        fh.write("\n")

    atomic_write(path, write, errors=JSON_ERRORS)


def _show(value: float | None, digits: int = 3, signed: bool = False) -> str:
    if value is None:
        return "–"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def metrics_table(evaluation: Evaluation) -> Table:
    """The evaluation as a rich table: one row per decoder, missing keys in the caption.

    Example:
        >>> truth = [{"file": "a.npy", "sample": 0, "channel": 0, "x": 1.0, "y": 1.0}]
        >>> rows = [dict(truth[0], decoder="argmax", y=1.5)]
        >>> table = metrics_table(evaluate(rows, truth))
        >>> [c.header for c in table.columns][3:8]
        ['mean', 'median', 'p95', 'max', 'bias x']
        >>> list(table.columns[3].cells), list(table.columns[-1].cells)
        (['0.500'], ['100.0%'])
    """
    has_z = any(m.bias_z is not None for m in evaluation.decoders.values())
    table = Table(title="Error against truth")
    for name in ("decoder", "maps", "undecoded", "mean", "median", "p95", "max"):
        table.add_column(name, justify="left" if name == "decoder" else "right")
    for axis in ("x", "y", "z") if has_z else ("x", "y"):
        table.add_column(f"bias {axis}", justify="right")
    for t in evaluation.thresholds:
        table.add_column(f"PCK@{t:g}", justify="right")
    for m in evaluation.decoders.values():
        cells = [m.decoder, str(m.count), str(m.undecoded)]
        cells += [_show(v) for v in (m.mean, m.median, m.p95, m.max)]
        cells += [
            _show(v, signed=True) for v in (m.bias_x, m.bias_y, m.bias_z)[: 3 if has_z else 2]
        ]
        cells += ["–" if v is None else f"{100 * v:.1f}%" for v in m.pck.values()]
        table.add_row(*cells)
    notes = ["errors in the coordinates' units; undecoded maps count as misses in PCK"]
    if evaluation.missing_truth:
        notes.append(f"{len(evaluation.missing_truth)} decoded map(s) without a truth row")
    if evaluation.missing_maps:
        notes.append(f"{len(evaluation.missing_maps)} truth row(s) without a decoded map")
    table.caption = "\n".join(notes)
    return table
