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

import csv
import errno
import json
import math
import os
import re
import unicodedata
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from heatdecode.frames import Frame, apply_frame
from heatdecode.pipeline import DecodedArray
from heatdecode.status import row_status

CSV_COLUMNS = ("file", "sample", "channel", "decoder", "x", "y", "z", "score", "spread", "status")
JSON_SCHEMA = "heatdecode.coordinates/1"


# Error modes of atomic_write for write_csv and write_json: a name's undecodable
# byte 0xff becomes the text \xff (in JSON the backslash is itself escaped, so
# it parses to the same text); other lone surrogates become \uXXXX. Done by
# _EscapingText rather than a codec error handler, so nothing is registered
# process-wide when this module is imported.
CSV_ERRORS = "heatdecode.csv-escape"
JSON_ERRORS = "heatdecode.json-escape"
_BACKSLASHES = {CSV_ERRORS: "\\", JSON_ERRORS: "\\\\"}
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


class _EscapingText:
    """A text file's ``write`` that escapes lone surrogates with ``backslash``."""

    def __init__(self, fh: IO[str], backslash: str) -> None:
        self._fh = fh
        self._backslash = backslash

    def write(self, text: str) -> int:
        return self._fh.write(_LONE_SURROGATE.sub(self._escape, text))

    def _escape(self, match: re.Match[str]) -> str:
        code = ord(match.group())
        if 0xDC80 <= code <= 0xDCFF:  # a byte that os.fsdecode couldn't decode
            return f"{self._backslash}x{code - 0xDC00:02x}"
        return f"{self._backslash}u{code:04x}"


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


def atomic_write(
    path: Path,
    write: Callable[[IO[Any]], None],
    binary: bool = False,
    errors: str = "backslashreplace",
    root: Path | None = None,
) -> None:
    """Call ``write(fh)`` on a temporary file beside ``path``, then rename it to ``path``.

    Text is UTF-8; ``errors`` says what becomes of characters UTF-8 can't hold
    (the lone surrogates of undecodable file names): never raw invalid bytes.

    With ``root``, ``path`` must lie under it and every folder between them is
    opened (or created) without following symlinks, and the file is created and
    renamed relative to that folder: a symlink planted in an output folder
    can't send the write elsewhere (``OSError`` ``ELOOP`` instead). The
    temporary name is short (``.hd-<12 hex>.tmp``) so that any legal ``path``
    has a legal temporary name.
    """
    mode = "wb" if binary else "w"
    escape = None if binary else _BACKSLASHES.get(errors)
    if escape is not None:
        errors = "strict"  # nothing unencodable is left once surrogates are escaped
    kwargs = {} if binary else {"encoding": "utf-8", "newline": "", "errors": errors}

    def write_to(fh: IO[Any]) -> None:
        write(fh if escape is None else _EscapingText(fh, escape))

    tmp = f".hd-{uuid.uuid4().hex[:12]}.tmp"
    # 0o666 honours the user's umask (mkstemp would force 0600); O_EXCL and
    # O_NOFOLLOW: never open what someone else put there
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC
    if not os.supports_dir_fd >= {os.open, os.mkdir, os.rename}:  # Windows
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path.with_name(tmp), flags, 0o666)
        try:
            with os.fdopen(fd, mode, **kwargs) as fh:
                write_to(fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(path.with_name(tmp), path)
        except BaseException:
            path.with_name(tmp).unlink(missing_ok=True)
            raise
        return
    if root is None:
        path.parent.mkdir(parents=True, exist_ok=True)
        root, parts = path.parent, ()
    else:
        parts = path.parent.relative_to(root).parts
    dir_fd = _open_folder(root, parts)
    try:
        fd = os.open(tmp, flags, 0o666, dir_fd=dir_fd)
        try:
            with os.fdopen(fd, mode, **kwargs) as fh:
                write_to(fh)
                fh.flush()
                os.fsync(fh.fileno())
            # the rename replaces a symlink at path; it never follows one
            os.replace(tmp, path.name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except BaseException:
            try:
                os.unlink(tmp, dir_fd=dir_fd)
            except OSError:
                pass
            raise
    except OSError as exc:
        if exc.filename in (tmp, path.name):  # name the file meant, not a relative name
            exc.filename = str(path)
        raise
    finally:
        os.close(dir_fd)


_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)


def _open_folder(root: Path, parts: tuple[str, ...]) -> int:
    """A descriptor of ``root/parts...``, each part created if missing and never a symlink."""
    fd = os.open(root, os.O_RDONLY | _DIRECTORY | _CLOEXEC)
    here = root
    try:
        for part in parts:
            here = here / part
            if part in ("..", "/"):
                raise OSError(errno.EINVAL, "path leaves the output folder", str(here))
            try:
                os.mkdir(part, 0o777, dir_fd=fd)
            except FileExistsError:
                pass
            try:
                child = os.open(part, os.O_RDONLY | _DIRECTORY | _NOFOLLOW | _CLOEXEC, dir_fd=fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):  # a symlink or a file
                    reason = "not a real folder (a symlink or a file)"
                    raise OSError(exc.errno, reason, str(here)) from None
                raise
            os.close(fd)
            fd = child
        return fd
    except BaseException:
        os.close(fd)
        raise


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
