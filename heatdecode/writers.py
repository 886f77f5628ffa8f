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
import unicodedata
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from heatdecode.atomic import CSV_ERRORS, JSON_ERRORS, atomic_write
from heatdecode.frames import Frame, apply_frame
from heatdecode.pipeline import DecodedArray
from heatdecode.status import row_status

CSV_COLUMNS = ("file", "sample", "channel", "decoder", "x", "y", "z", "score", "spread", "status")
JSON_SCHEMA = "heatdecode.coordinates/1"


def display_name(name: str) -> str:
    r"""A file name (or any text) fit for one line of a terminal: nothing in it
    can move the cursor, recolour the screen, retitle the window or reorder
    the text around it.

    Escaped: C0 and C1 control characters and DEL (``\n``, ``\x1b``, ``\x9b``),
    Unicode format characters such as the bidi overrides (``\u202e``), line and
    paragraph separators, and undecodable bytes (``\xff``, as the CSV writes
    them). Everything else, ``ü`` and ``[bold]`` included, is shown as it is
    (consoles print with markup and emoji codes off).

    Example:
        >>> display_name("two\nlines.npy"), display_name("caf\udce9.npy")
        ('two\\nlines.npy', 'caf\\xe9.npy')
        >>> display_name("\x1b]0;PWNED\x07a\u202eb.npy")
        '\\x1b]0;PWNED\\x07a\\u202eb.npy'
    """
    return "".join(_display_char(char) for char in name)


def _display_char(char: str) -> str:
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:  # a byte that os.fsdecode couldn't decode
        return f"\\x{code - 0xDC00:02x}"
    if code < 0x20 or 0x7F <= code <= 0x9F:
        return repr(char)[1:-1] if char in "\t\n\r" else f"\\x{code:02x}"
    if unicodedata.category(char) in _INVISIBLE:
        return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"
    return char


# format characters (bidi overrides, zero-width joiners...), separators, lone
# surrogates and unassigned or private code points: none is safe to show raw
_INVISIBLE = frozenset({"Cf", "Zl", "Zp", "Cs", "Co", "Cn"})


def map_status(result: DecodedArray, index: int, label: str) -> str:
    """The status of one row: its flags, ranked by :func:`heatdecode.status.row_status`."""
    out = result.outputs[label]
    return row_status(
        {
            "nonfinite": not result.finite[index],
            "flat": bool(result.flat[index]),
            "border": bool(out.border[index]),
            "unrefined": bool(out.skipped[index]),
            "low-contrast": bool(out.low_contrast[index]),
            "multimodal": bool(result.multimodal[index]),
        }
    )


def iter_rows(results: Iterable[DecodedArray], frame: Frame = Frame()) -> Iterator[dict[str, Any]]:
    """One row per map and decoder, in (file, sample, channel, decoder) order.

    Coordinates are converted from the heatmap's pixel frame to ``frame``; a
    map with NaN/Inf, or a row whose coordinates come out NaN/Inf, gets empty
    numbers and status ``nonfinite``.
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
                if not all(map(math.isfinite, xyz)):
                    # a backstop: options the CLI refuses (beta, stride, spacing
                    # out of range) could overflow; a non-finite point is never "ok"
                    status = "nonfinite"
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
        # csv quotes only the lineterminator's characters, so a lone "\r" in a file
        # name (column 0) would be written bare and split the record on reading
        quoted = csv.writer(fh, lineterminator="\n", quoting=csv.QUOTE_ALL)
        writer.writerow(CSV_COLUMNS)
        for row in rows:
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
        json.dump(document, fh, indent=1, ensure_ascii=False, allow_nan=False)
        fh.write("\n")

    atomic_write(path, write, errors=JSON_ERRORS)


def json_rows(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows ready for JSON: non-finite numbers become null."""
    return [{k: _json_number(v) for k, v in row.items()} for row in rows]
