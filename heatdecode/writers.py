"""Writing results: ``coordinates.csv`` and ``coordinates.json``, atomically.

Every output goes to a temporary file in the same folder and is renamed into
place only when complete, so an interrupted run never leaves a half-written
file under a final name.
"""

from __future__ import annotations

import csv
import json
import math
import os
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from heatdecode.frames import Frame, apply_frame
from heatdecode.pipeline import DecodedArray

CSV_COLUMNS = ("file", "sample", "channel", "decoder", "x", "y", "z", "score", "spread", "status")
JSON_SCHEMA = "heatdecode.coordinates/1"


def atomic_write(path: Path, write: Callable[[IO[Any]], None], binary: bool = False) -> None:
    """Call ``write(fh)`` on a temporary file beside ``path``, then rename it to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    # os.open with 0o666 honours the user's umask (mkstemp would force 0600)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        mode = "wb" if binary else "w"
        kwargs = {} if binary else {"encoding": "utf-8", "newline": "", "errors": "surrogateescape"}
        with os.fdopen(fd, mode, **kwargs) as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def map_status(result: DecodedArray, index: int, label: str) -> str:
    """The most serious status of one row (see :mod:`heatdecode.status`)."""
    out = result.outputs[label]
    checks = (
        ("nonfinite", not result.finite[index]),
        ("flat", result.flat[index]),
        ("border", out.border[index]),
        ("unrefined", out.skipped[index]),
        ("low-contrast", out.low_contrast[index]),
        ("multimodal", result.multimodal[index]),
    )
    return next((status for status, applies in checks if applies), "ok")


def iter_rows(results: Iterable[DecodedArray], frame: Frame = Frame()) -> Iterator[dict[str, Any]]:
    """One row per map and decoder, in (file, sample, channel, decoder) order.

    Coordinates are converted from the heatmap's pixel frame to ``frame``; a
    map with NaN/Inf gets empty numbers and status ``nonfinite``.
    """
    for result in results:
        framed = {
            label: apply_frame(out.coords, result.spatial_shape, frame)
            for label, out in result.outputs.items()
        }
        for m in range(result.maps):
            sample, channel = divmod(m, result.channels)
            for label, out in result.outputs.items():
                status = map_status(result, m, label)
                xyz = [float(v) for v in framed[label][m]]
                spread = float(out.spread[m])
                row: dict[str, Any] = {
                    "file": result.name,
                    "sample": sample,
                    "channel": channel,
                    "decoder": label,
                    "x": xyz[0],
                    "y": xyz[1],
                    "z": xyz[2] if len(xyz) == 3 else None,
                    "score": float(out.score[m]),
                    "spread": spread if math.isfinite(spread) else None,
                    "status": status,
                }
                if status == "nonfinite":
                    for key in ("x", "y", "z", "score", "spread"):
                        row[key] = None
                yield row


def _cell(value: Any, key: str) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        if key in ("x", "y", "z", "spread"):
            return f"{value:.6f}"
        return f"{value:.9g}"
    return str(value)


def write_csv(path: Path, rows: Iterable[dict[str, Any]]) -> int:
    """Write ``rows`` as CSV with the columns :data:`CSV_COLUMNS`; returns the row count."""
    count = 0

    def write(fh: IO[str]) -> None:
        nonlocal count
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        for row in rows:
            writer.writerow([_cell(row[k], k) for k in CSV_COLUMNS])
            count += 1

    atomic_write(path, write)
    return count


def _json_number(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(path: Path, document: dict[str, Any]) -> None:
    """Write ``document`` as indented JSON (NaN/Inf become null, so it stays valid)."""

    def write(fh: IO[str]) -> None:
        json.dump(document, fh, indent=1, ensure_ascii=False, allow_nan=False)
        fh.write("\n")

    atomic_write(path, write)


def json_rows(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows ready for JSON: non-finite numbers become null."""
    return [{k: _json_number(v) for k, v in row.items()} for row in rows]
