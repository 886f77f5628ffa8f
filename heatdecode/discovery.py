"""Finding heatmap files: the user's paths turned into :class:`Source` s.

Folders are walked iteratively (no recursion limit) without following links;
hidden entries are skipped, FIFOs, sockets and devices are reported and never
opened, and names are made unique; :func:`open_regular` opens a file for the
readers only if it is a regular one. Standard library only.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from heatdecode.failures import Failure as LoadFailure
from heatdecode.guards import LoadError, short_reason
from heatdecode.preflight import MISSING, npz_member

SUFFIXES = (".npy", ".npz", ".png", ".tif", ".tiff")


@dataclass(frozen=True)
class Source:
    """One file to read: ``path`` on disk, ``name`` as reported in outputs;
    ``member``: only that array of an ``.npz`` (an argument ``file.npz:key``,
    named as the outputs name members); ``keys``: only these members of an
    ``.npz`` (``--key``; a file holding none of them fails), otherwise members
    that plainly aren't heatmaps are skipped (see :mod:`heatdecode.members`);
    ``strict_layout``: an ``auto`` layout guess that looks wrong fails the array
    (``--strict-layout``) rather than warn."""

    path: Path
    name: str
    member: str | None = None
    keys: tuple[str, ...] = ()
    strict_layout: bool = False


#: failures that :func:`discover` reports itself: no reader ever sees them
SCAN_KINDS = ("missing", "skipped")


def _is_hidden(name: str) -> bool:
    return name.startswith(".")


def discover(
    paths: Sequence[str | os.PathLike[str]],
    exclude: Iterable[Path] = (),
    skip: Callable[[Path, bool], bool] | None = None,
) -> tuple[list[Source], list[LoadFailure]]:
    """Expand files and folders into a sorted, deterministic list of sources.

    Folders are scanned recursively (hidden entries, symlinked folders and
    anything under ``exclude`` are skipped, as are the folders and heatmap
    files inside them for which ``skip(path, is_folder)`` is true; files of other types
    are ignored). Symlinked files are followed, wherever they point. The walk
    is iterative, so a tree thousands of folders deep is scanned like any other.
    A heatmap-named entry of a folder that is not a regular file (a FIFO, a
    socket, a device) is never opened: it becomes a failure of kind ``skipped``.
    A file argument is taken whatever its suffix, so a wrong file is reported
    rather than silently skipped; so is a folder that can't be listed (it
    becomes a source that :func:`load_source` reports as permission denied). A
    folder named like a heatmap file (``x.npy/``) is a folder, argument or not.

    Names are relative to the folder argument (posix separators) or, for a file
    argument, the file's name. Every name is unique: one already taken becomes
    the path as given (``d2/x.npy``) and, if that is taken too, the path with
    ``#2``, ``#3``... appended.
    """
    excluded = [Path(p).resolve() for p in exclude]
    sources: list[Source] = []
    failures: list[LoadFailure] = []
    seen: set[str] = set()

    def add(path: Path, name: str) -> None:
        if name in seen:  # two arguments yield the same name: keep both, told apart
            name = unique_name(str(path), seen)
        seen.add(name)
        sources.append(Source(path, name))

    for arg in paths:
        root = Path(arg)
        if root.is_dir():
            found, special = _walk(root, excluded, skip)
            failures += [
                LoadFailure(
                    p.relative_to(root).as_posix(),
                    f"not a regular file ({kind}); skipped",
                    kind="skipped",
                )
                for p, kind in special
            ]
            for path in sorted(found, key=lambda p: p.relative_to(root).as_posix()):
                add(path, path.relative_to(root).as_posix() if path != root else str(arg))
        elif root.exists() or root.is_symlink():
            add(root, root.name)
        elif (member := npz_member(str(arg))) is not None:
            archive, key = member
            name = f"{archive.name}:{key}"
            if name not in seen:
                seen.add(name)
                sources.append(Source(archive, name, member=key))
        else:
            failures.append(LoadFailure(str(arg), MISSING, kind="missing"))
    return sources, failures


def _walk(
    root: Path, excluded: list[Path], skip: Callable[[Path, bool], bool] | None
) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Heatmap files under ``root`` (and folders that can't be listed), and the
    special files among them, with a stack rather than recursion (``os.walk``
    recurses once per level: a deep tree raised RecursionError)."""
    found: list[Path] = []
    special: list[tuple[Path, str]] = []
    stack = [root]
    while stack:
        here = stack.pop()
        try:
            with os.scandir(here) as listing:
                entries = list(listing)
        except OSError:  # a folder that can't be listed is reported, not silently skipped
            found.append(here)
            continue
        for entry in entries:
            if _is_hidden(entry.name):
                continue
            path = here / entry.name
            if _is_dir(entry):
                # symlinked folders are not followed, as os.walk doesn't
                if entry.is_symlink() or (excluded and _under(path, excluded)):
                    continue
                if not (skip and skip(path, True)):
                    stack.append(path)
            elif entry.name.lower().endswith(SUFFIXES) and not (skip and skip(path, False)):
                kind = _special_kind(entry)
                if kind is None:
                    found.append(path)
                else:
                    special.append((path, kind))
    return found, special


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False


def _special_kind(entry: os.DirEntry) -> str | None:
    """What a non-regular entry is (``"a FIFO"``...), or None for a regular file
    or a link that doesn't resolve (that one is reported when it is read)."""
    try:
        if entry.is_file():  # free for a plain file: scandir already knows its type
            return None
        mode = entry.stat().st_mode
    except OSError:
        return None
    return file_kind(mode)


def file_kind(mode: int) -> str:
    for test, kind in (
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISDIR, "a folder"),
    ):
        if test(mode):
            return kind
    return "a special file"


def _under(path: Path, excluded: list[Path]) -> bool:
    resolved = path.resolve()
    return any(resolved == e or e in resolved.parents for e in excluded)


def unique_name(name: str, taken: set[str]) -> str:
    """``name``, or the first of ``name#2``, ``name#3``... not yet ``taken``."""
    candidate, count = name, 1
    while candidate in taken:
        count += 1
        candidate = f"{name}#{count}"
    return candidate


# non-blocking: opening a FIFO with no writer must not wait for one; no
# controlling terminal from a tty device
_OPEN_FLAGS = (
    os.O_RDONLY
    | getattr(os, "O_NONBLOCK", 0)
    | getattr(os, "O_NOCTTY", 0)
    | getattr(os, "O_BINARY", 0)
    | getattr(os, "O_CLOEXEC", 0)
)


@contextmanager
def open_regular(path: Path) -> Iterator[tuple[BinaryIO, int]]:
    """``path`` opened for reading, with its size, if it is a regular file."""
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except OSError as exc:  # say why: a folder, a broken link, a socket...
        if exc.errno == errno.ENAMETOOLONG:  # deep in a tree: Path.is_dir would raise too
            raise LoadError("path too long to open (over the system's limit)") from None
        if path.is_dir():
            raise LoadError(_folder(path)) from None
        if not path.exists():
            raise LoadError(_missing(path)) from None
        if exc.errno == errno.ENXIO:  # a socket can't be opened at all
            raise LoadError(f"not a regular file ({file_kind(os.stat(path).st_mode)})") from None
        raise
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise LoadError(_folder(path))
        if not stat.S_ISREG(info.st_mode):
            raise LoadError(f"not a regular file ({file_kind(info.st_mode)})")
        fh = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    with fh:
        yield fh, info.st_size


def _folder(path: Path) -> str:
    """Why a folder given as a source can't be read (:func:`discover` passes unlistable ones)."""
    try:
        with os.scandir(path):
            pass
    except PermissionError:
        return "permission denied (a folder that can't be listed: nothing in it was read)"
    except OSError as exc:
        return f"a folder that can't be listed ({short_reason(exc)})"
    return "is a directory"


def _missing(path: Path) -> str:
    """Why ``path``, which doesn't exist as far as ``Path.exists`` can tell, can't be read."""
    if not path.is_symlink():
        return "no such file"
    try:
        os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # Path.exists() is False for a loop too
            return "symbolic link loop"
    return "broken symbolic link"
