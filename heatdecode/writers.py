r"""Writing results: ``coordinates.csv`` and ``coordinates.json``, atomically.

Every output goes to a temporary file in the same folder and is renamed into
place only when complete, so an interrupted run never leaves a half-written
file under a final name.

Text outputs are always valid UTF-8. A file name that is not (on Linux a name
is bytes; Python decodes an undecodable byte such as ``0xff`` to the lone
surrogate ``"\udcff"``) is written with each such byte as the four characters
``\xff``: ``caf\xe9.npy`` in the CSV and, escaped as JSON requires,
``"caf\\xe9.npy"`` in the JSON, which reads back as ``caf\xe9.npy`` too.
Names that are valid UTF-8 (commas, quotes, newlines, spaces, ``ü``...) are
written as they are and round-trip through Python's ``csv`` and ``json``.
``os.fsdecode(codecs.escape_decode(name.encode())[0])`` gives back the name on
disk (for names without a backslash of their own). Other text written through
:func:`atomic_write` gets Python's ``backslashreplace`` (``\udcff``).
"""

from __future__ import annotations

import codecs
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


def _escaper(backslash: str) -> Callable[[UnicodeError], tuple[str, int]]:
    """A codec error handler writing undecodable bytes as ``\\xNN`` (other lone
    surrogates as ``\\uXXXX``), with ``backslash`` as the backslash."""

    def handler(exc: UnicodeError) -> tuple[str, int]:
        if not isinstance(exc, UnicodeEncodeError):
            raise exc
        out = []
        for char in exc.object[exc.start : exc.end]:
            code = ord(char)
            if 0xDC80 <= code <= 0xDCFF:  # a byte that os.fsdecode couldn't decode
                out.append(f"{backslash}x{code - 0xDC00:02x}")
            else:
                out.append(f"{backslash}u{code:04x}")
        return "".join(out), exc.end

    return handler


# Used by write_csv and write_json: a name's undecodable byte 0xff becomes the
# text \xff (in JSON the backslash is itself escaped, so it parses to the same text).
CSV_ERRORS = "heatdecode.csv-escape"
JSON_ERRORS = "heatdecode.json-escape"
codecs.register_error(CSV_ERRORS, _escaper("\\"))
codecs.register_error(JSON_ERRORS, _escaper("\\\\"))


def display_name(name: str) -> str:
    r"""A file name fit for one line of a message: control characters and
    undecodable bytes escaped (``\n``, ``\xff``), as the CSV writes the bytes.

    Example:
        >>> display_name("two\nlines.npy"), display_name("caf\udce9.npy")
        ('two\\nlines.npy', 'caf\\xe9.npy')
    """
    out = []
    for char in name:
        code = ord(char)
        if 0xDC80 <= code <= 0xDCFF:  # a byte that os.fsdecode couldn't decode
            out.append(f"\\x{code - 0xDC00:02x}")
        elif code < 0x20 or code == 0x7F:
            out.append(repr(char)[1:-1])
        else:
            out.append(char)
    return "".join(out)


def atomic_write(
    path: Path,
    write: Callable[[IO[Any]], None],
    binary: bool = False,
    errors: str = "backslashreplace",
) -> None:
    """Call ``write(fh)`` on a temporary file beside ``path``, then rename it to ``path``.

    Text is UTF-8; ``errors`` says what becomes of characters UTF-8 can't hold
    (the lone surrogates of undecodable file names): never raw invalid bytes.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    # os.open with 0o666 honours the user's umask (mkstemp would force 0600)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        mode = "wb" if binary else "w"
        kwargs = {} if binary else {"encoding": "utf-8", "newline": "", "errors": errors}
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

    atomic_write(path, write, errors=CSV_ERRORS)
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

    atomic_write(path, write, errors=JSON_ERRORS)


def json_rows(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows ready for JSON: non-finite numbers become null."""
    return [{k: _json_number(v) for k, v in row.items()} for row in rows]
