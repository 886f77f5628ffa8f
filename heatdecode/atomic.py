r"""Atomic file writes that never follow a planted symlink, and escaped names.

:func:`atomic_write` writes to a temporary file beside the target and renames
it into place only when complete, so an interrupted run never leaves a
half-written file under a final name. Text is always valid UTF-8: with
``errors=CSV_ERRORS`` (or ``JSON_ERRORS``) a lone surrogate, which is how
Python holds a file name's undecodable byte such as ``0xff``, is written as the
text ``\xff`` (see :mod:`heatdecode.writers`). Standard library only, so the
evaluation, sample and sweep writers use it without importing torch.
"""

from __future__ import annotations

import errno
import os
import re
import signal
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

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


class OutputError(OSError):
    """An output could not be written (disk full, folder gone); one line for users."""


def commit_outputs(
    out_dir: Path, staged: dict[str, Callable[[Path], None]], remove: Iterable[str] = ()
) -> list[Path]:
    """Write every output under a temporary name, then rename them all into place.

    Either all the new outputs are in place or none is: Ctrl-C/SIGTERM while
    staging leaves the previous ones untouched, and during the renames it is
    held back until they are done (a ``KeyboardInterrupt`` saying so follows).

    Raises:
        OutputError: a write failed; nothing was replaced.
        KeyboardInterrupt: interrupted; its message says what was written.
    """
    temps: dict[str, Path] = {}
    try:
        for name, write in staged.items():
            temps[name] = out_dir / f".hd-{uuid.uuid4().hex[:12]}.{name}.tmp"
            write(temps[name])
    except BaseException as exc:
        for tmp in temps.values():
            tmp.unlink(missing_ok=True)
        if isinstance(exc, KeyboardInterrupt):
            raise KeyboardInterrupt(
                "while writing the outputs; none was replaced, the previous ones are intact"
            ) from None
        if isinstance(exc, OSError):
            where = getattr(exc, "filename", None) or out_dir
            raise OutputError(f"could not write {where}: {exc.strerror or exc}") from None
        raise
    with signals_held() as held:
        try:
            for name, tmp in temps.items():
                os.replace(tmp, out_dir / name)
            for name in remove:
                (out_dir / name).unlink(missing_ok=True)
        except OSError as exc:  # the folder vanished, say
            for tmp in temps.values():
                tmp.unlink(missing_ok=True)
            raise OutputError(f"could not write {out_dir / name}: {exc.strerror or exc}") from None
    written = [out_dir / name for name in staged]
    if held:
        raise KeyboardInterrupt("after every output was written: " + ", ".join(map(str, written)))
    return written


@contextmanager
def signals_held() -> Iterator[list[int]]:
    """Hold back Ctrl-C and SIGTERM (in the main thread) until the block is done;
    yields the list of signals that arrived meanwhile."""
    held: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield held
        return

    def hold(signum: int, frame: object) -> None:
        held.append(signum)

    previous = {sig: signal.signal(sig, hold) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield held
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
