"""Finding heatmap files: the user's paths turned into :class:`Source` s.

Folders are walked iteratively (no recursion limit) without following links;
hidden entries are skipped, FIFOs, sockets and devices are reported and never
opened, and names are made unique. Standard library only.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from heatdecode.failures import Failure as LoadFailure
from heatdecode.preflight import MISSING, npz_member

SUFFIXES = (".npy", ".npz", ".png", ".tif", ".tiff")


@dataclass(frozen=True)
class Source:
    """One file to read: ``path`` on disk, ``name`` as reported in outputs;
    ``member``: only that array of an ``.npz`` (an argument ``file.npz:key``,
    named as the outputs name members)."""

    path: Path
    name: str
    member: str | None = None


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
