"""A run's inputs: the files under its paths, less its own and earlier runs' outputs.

Also the output folder's own entries, checked before anything is written.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from heatdecode.loading import LoadFailure, Source, discover
from heatdecode.preflight import METRICS_NAMES, OUTPUT_NAMES, UsageError
from heatdecode.resume import LOCK_NAME, PARTIAL_NAMES
from heatdecode.writers import JSON_SCHEMA

#: what a run writes into --out: only these are left out when --out is (inside) an input
OWN_FOLDERS = ("overlays",)
OWN_FILES = ("sweep.png", "comparison.png")  # outputs with a heatmap suffix, besides overlays


def discover_inputs(
    paths: Sequence[str | os.PathLike[str]],
    out_dir: Path,
    notes: list[str],
    *,
    keys: Sequence[str] = (),
    strict_layout: bool = False,
) -> tuple[list[Source], list[LoadFailure]]:
    """:func:`discover`, leaving out ``out_dir``'s own outputs and the folders of
    earlier runs (a note for each of those); every source takes ``strict_layout``
    and, if it is an ``.npz`` not named ``file.npz:key``, ``keys`` (``--key``)."""
    sources, failures = _discover(paths, out_dir, notes)
    chosen = tuple(dict.fromkeys(keys))
    if chosen or strict_layout:
        sources = [
            replace(
                s,
                keys=chosen if s.member is None and s.path.suffix.lower() == ".npz" else (),
                strict_layout=strict_layout,
            )
            for s in sources
        ]
    return sources, failures


def noting(
    notes: list[str], on_loaded: Callable[[Source, list], None] | None
) -> Callable[[Source, list], None]:
    """``on_loaded`` that first adds each array's notes (members of its file
    skipped as not heatmaps) to the run's ``notes``."""

    def loaded(source: Source, items: list) -> None:
        for item in items:
            notes.extend(getattr(item, "notes", ()))  # a LoadFailure has none
        if on_loaded is not None:
            on_loaded(source, items)

    return loaded


def _discover(
    paths: Sequence[str | os.PathLike[str]], out_dir: Path, notes: list[str]
) -> tuple[list[Source], list[LoadFailure]]:
    out = out_dir.resolve()

    def skip(path: Path, is_folder: bool) -> bool:
        if path.name in OWN_FOLDERS or path.name in OWN_FILES:
            if path.parent.resolve() == out:
                return True
            if _is_old_output(path.parent, out):  # e.g. an input folder used as --out before
                notes.append(f"skipped {path}: an earlier heatdecode run's output")
                return True
        # only a folder can hold outputs: no file-system calls for each heatmap file
        if is_folder and _is_old_output(path, out):
            notes.append(f"skipped {path}: it holds an earlier heatdecode run's outputs")
            return True
        return False

    return discover(paths, skip=skip)


def _is_old_output(folder: Path, out: Path) -> bool:
    """A folder carrying heatdecode's marker (its lock file, or a coordinates.json
    of ours), other than this run's own --out."""
    try:
        marked = (folder / LOCK_NAME).exists() or _ours(folder / OUTPUT_NAMES["json"])
        return marked and folder.resolve() != out
    except (OSError, RuntimeError):  # unreadable, or a symlink loop: discover reports it
        return False


def _ours(path: Path) -> bool:
    if not path.is_file():
        return False
    with open(path, "rb") as fh:
        return JSON_SCHEMA.encode() in fh.read(200)


def check_output_entries(out_dir: Path) -> None:
    """Refuse symlinked output names in ``out_dir``: nothing is written through a link."""
    names = [*OUTPUT_NAMES.values(), *PARTIAL_NAMES.values(), *METRICS_NAMES, *OWN_FOLDERS]
    for name in names:
        path = out_dir / name
        if path.is_symlink():
            raise UsageError(f"{path} is a symlink; heatdecode writes only inside --out: remove it")
    overlays = out_dir / OWN_FOLDERS[0]
    if overlays.exists() and not overlays.is_dir():
        raise UsageError(f"{overlays} is a file; overlays go in a folder of that name")


def remove_new_folder(out_dir: Path) -> None:
    try:
        (out_dir / LOCK_NAME).unlink(missing_ok=True)
        out_dir.rmdir()
    except OSError:
        pass
