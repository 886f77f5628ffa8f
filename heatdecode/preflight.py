"""What a run checks before any work, without reading data or importing torch.

The CLI calls these before it imports the decoding stack, so a usage mistake
(an ``--out`` that is a file, inputs that don't exist) is answered at once;
:func:`heatdecode.runner.run` calls them again (under the output folder's lock)
for callers of the library.

Standard library only.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

OUTPUT_NAMES = {"csv": "coordinates.csv", "json": "coordinates.json"}
METRICS_NAMES = ("metrics.csv", "metrics.json")
#: ``run --report``'s page (heatdecode.report_page writes it; named here, torch-free)
REPORT_NAME = "report.html"
MISSING = "no such file or folder"


class UsageError(ValueError):
    """A mistake in how the run was asked for (exit code 2), found before any work."""


def check_out_dir(
    out_dir: Path,
    formats: Sequence[str],
    overwrite: bool,
    metrics: bool = False,
    report: bool = False,
) -> None:
    """Refuse an output folder that can't be used, before any work starts."""
    if report and "json" not in formats:
        raise UsageError("--report reads coordinates.json: use --format json or both")
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"--out {out_dir} is a file, not a folder")
    existing = out_dir
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(f"--out {out_dir} is not writable")
    if not overwrite:
        names = [OUTPUT_NAMES[f] for f in formats] + (list(METRICS_NAMES) if metrics else [])
        names += [REPORT_NAME] if report else []
        taken = [name for name in names if (out_dir / name).exists()]
        if taken:
            raise UsageError(
                f"{out_dir} already holds {', '.join(taken)}; pass --overwrite to replace, "
                "or choose another --out"
            )


def nothing_to_decode(reasons: Sequence[tuple[str, str]]) -> UsageError:
    """The usage error of a run that found no input: ``(name, reason)`` of each
    path that failed, in order."""
    reason = "; ".join(f"{name}: {why}" for name, why in reasons)
    return UsageError(f"nothing to decode ({reason or 'no .npy, .npz, .png or .tif files found'})")


def npz_member(arg: str) -> tuple[Path, str] | None:
    """``file.npz:key`` naming a member of an existing archive → (the archive's
    path, the key), as the outputs name members; otherwise ``None``.

    Example:
        >>> npz_member("no-such.npz:heatmaps") is None
        True
    """
    archive, sep, key = arg.rpartition(":")
    if sep and key and archive.endswith(".npz") and Path(archive).is_file():
        return Path(archive), key
    return None


def check_some_input_exists(paths: Sequence[str | os.PathLike[str]]) -> None:
    """Refuse a run none of whose paths exists (a run with some missing goes on,
    and reports each missing one)."""
    if paths and not any(os.path.lexists(p) or npz_member(str(p)) for p in paths):
        raise nothing_to_decode([(str(p), MISSING) for p in paths])


_UNITS = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}
_SIZE = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([kmgt]?)(?:i?b)?\s*", re.IGNORECASE)


def parse_size(text: str) -> int:
    """A byte count from ``"2147483648"``, ``"512M"``, ``"4G"`` or ``"1.5GiB"``
    (binary units: K = 1024; case and a trailing ``B``/``iB`` don't matter).
    Whether the size is allowed is the caller's rule. (Also importable from
    :mod:`heatdecode.loading`.)

    Raises:
        ValueError: not a number of bytes, with the reason in one line.

    Example:
        >>> parse_size("512M"), parse_size("1.5GiB"), parse_size("2048")
        (536870912, 1610612736, 2048)
    """
    match = _SIZE.fullmatch(text)
    if match is None:
        raise ValueError(f"{text!r} is not a size; give bytes or a size such as 512M or 4G")
    return int(float(match[1]) * _UNITS[match[2].lower()])
