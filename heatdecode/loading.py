"""Finding heatmap files and reading them into numpy arrays.

Data flows one way: :func:`discover` turns the user's paths into
:class:`Source` objects, :func:`load_source` reads one source into
:class:`HeatmapArray` objects (one per ``.npz`` member) or :class:`LoadFailure`
records. Nothing here touches torch.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageSequence, UnidentifiedImageError

from heatdecode.layouts import LayoutError, resolve_layout, spatial_dims, to_canonical

SUFFIXES = (".npy", ".npz", ".png", ".tif", ".tiff")


@dataclass(frozen=True)
class Source:
    """One file to read: ``path`` on disk, ``name`` as reported in outputs."""

    path: Path
    name: str


@dataclass
class HeatmapArray:
    """One decoded-ready array: ``maps`` is ``(N, C, H, W)`` or ``(N, C, D, H, W)``."""

    name: str
    layout: str
    shape: tuple[int, ...]
    maps: np.ndarray
    warnings: list[str] = field(default_factory=list)

    @property
    def spatial_dims(self) -> int:
        return spatial_dims(self.layout)


@dataclass(frozen=True)
class LoadFailure:
    """A file (or ``.npz`` member) that could not be read, and why, in one line."""

    name: str
    reason: str


class LoadError(Exception):
    """Raised inside this module with a one-line reason; turned into LoadFailure."""


def _is_hidden(name: str) -> bool:
    return name.startswith(".")


def discover(
    paths: Sequence[str | os.PathLike[str]], exclude: Iterable[Path] = ()
) -> tuple[list[Source], list[LoadFailure]]:
    """Expand files and folders into a sorted, deterministic list of sources.

    Folders are scanned recursively (hidden entries, symlinked folders and
    anything under ``exclude`` are skipped; files of other types are ignored).
    A file argument is taken whatever its suffix, so a wrong file is reported
    rather than silently skipped. Names are relative to the folder argument
    (posix separators) or, for a file argument, the file's name.
    """
    excluded = [Path(p).resolve() for p in exclude]
    sources: list[Source] = []
    failures: list[LoadFailure] = []
    seen: set[str] = set()

    def add(path: Path, name: str) -> None:
        if name in seen:  # two arguments yield the same name: keep both, told apart
            name = str(path)
        seen.add(name)
        sources.append(Source(path, name))

    for arg in paths:
        root = Path(arg)
        if root.is_dir():
            found = []
            for dirpath, dirnames, filenames in os.walk(root):
                here = Path(dirpath)
                dirnames[:] = sorted(
                    d for d in dirnames if not _is_hidden(d) and not _under(here / d, excluded)
                )
                for f in filenames:
                    if not _is_hidden(f) and f.lower().endswith(SUFFIXES):
                        found.append(here / f)
            for path in sorted(found, key=lambda p: p.relative_to(root).as_posix()):
                add(path, path.relative_to(root).as_posix())
        elif root.exists() or root.is_symlink():
            add(root, root.name)
        else:
            failures.append(LoadFailure(str(arg), "no such file or folder"))
    return sources, failures


def _under(path: Path, excluded: list[Path]) -> bool:
    resolved = path.resolve()
    return any(resolved == e or e in resolved.parents for e in excluded)


def _check_dtype(dtype: np.dtype) -> None:
    if dtype.hasobject:
        raise LoadError("holds Python objects (pickled data is never loaded)")
    if dtype.names is not None:
        raise LoadError(f"structured dtype {dtype} is not a heatmap")
    if dtype.kind == "b":
        raise LoadError("boolean dtype is not a heatmap")
    if dtype.kind == "c":
        raise LoadError(f"complex dtype {dtype} is not a heatmap")
    if dtype.kind not in "iuf":
        raise LoadError(f"non-numeric dtype {dtype} is not a heatmap")


def _read_npy_header(fh) -> tuple[tuple[int, ...], np.dtype]:
    try:
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(fh)
        elif version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(fh)
        elif version == (3, 0) and hasattr(np.lib.format, "_read_array_header"):
            # version 3.0 only differs by a UTF-8 header; numpy has no public reader for it
            shape, _, dtype = np.lib.format._read_array_header(fh, version)
        else:
            raise LoadError(
                f"not a valid .npy file (unknown format version {version[0]}.{version[1]})"
            )
    except LoadError:
        raise
    except Exception as exc:  # numpy raises ValueError / EOFError / SyntaxError here
        raise LoadError(f"not a valid .npy file ({_short(exc)})") from None
    return shape, dtype


def _load_npy(path: Path) -> np.ndarray:
    size = path.stat().st_size
    if size == 0:
        raise LoadError("empty file")
    with open(path, "rb") as fh:
        shape, dtype = _read_npy_header(fh)
        _check_dtype(dtype)
        need = int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
        have = size - fh.tell()
        # Checked before reading so a header that claims terabytes allocates nothing.
        if need > have:
            raise LoadError(
                f"truncated: the header promises {shape} {dtype} ({_bytes(need)}) "
                f"but only {_bytes(have)} follow"
            )
        fh.seek(0)
        try:
            return np.lib.format.read_array(fh, allow_pickle=False)
        except Exception as exc:
            raise LoadError(f"could not read the array ({_short(exc)})") from None


def _load_npz(path: Path) -> list[tuple[str, np.ndarray | LoadError]]:
    if path.stat().st_size == 0:
        raise LoadError("empty file")
    try:
        archive = zipfile.ZipFile(path)
    except PermissionError:
        raise
    except Exception as exc:  # BadZipFile, NotImplementedError for odd zip versions, ...
        raise LoadError(f"not a valid .npz archive ({_short(exc)})") from None
    members: list[tuple[str, np.ndarray | LoadError]] = []
    with archive:
        names = [n for n in archive.namelist() if not n.endswith("/")]
        if not names:
            raise LoadError("the .npz archive holds no arrays")
        for member in names:
            key = member[:-4] if member.endswith(".npy") else member
            try:
                info = archive.getinfo(member)
                with archive.open(member) as fh:
                    shape, dtype = _read_npy_header(fh)
                    _check_dtype(dtype)
                    need = int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
                    if need > info.file_size - fh.tell():
                        raise LoadError(
                            f"truncated: the header promises {shape} {dtype} ({_bytes(need)}) "
                            f"but the member holds {_bytes(info.file_size - fh.tell())}"
                        )
                with archive.open(member) as fh:
                    members.append((key, np.lib.format.read_array(fh, allow_pickle=False)))
            except LoadError as exc:
                members.append((key, exc))
            except Exception as exc:  # zlib/CRC errors in a corrupt member
                members.append((key, LoadError(f"could not read the array ({_short(exc)})")))
    return members


_GREY_MODES = {"L": None, "I;16": None, "I;16L": None, "I;16B": None, "I": None, "F": None}


def _frame_to_array(frame: Image.Image, notes: list[str]) -> np.ndarray:
    mode = frame.mode
    if mode not in _GREY_MODES:
        note = (
            f"{mode} image converted to grayscale (luma); a colour-mapped heatmap "
            "cannot be inverted, save the raw map instead"
        )
        if note not in notes:
            notes.append(note)
        frame = frame.convert("L")
    array = np.asarray(frame)
    if array.dtype.byteorder not in "=|":
        array = array.astype(array.dtype.newbyteorder("="))
    return array


def _load_image(path: Path) -> tuple[np.ndarray, str | None, list[str]]:
    if path.stat().st_size == 0:
        raise LoadError("empty file")
    notes: list[str] = []
    try:
        with Image.open(path) as image:
            # Pillow only warns between MAX_IMAGE_PIXELS and twice that; refuse it all
            # here rather than through warnings filters, which are not thread-safe.
            limit = Image.MAX_IMAGE_PIXELS
            if limit is not None and image.width * image.height > limit:
                raise Image.DecompressionBombError(
                    f"{image.width}x{image.height} pixels is over the limit of {limit}"
                )
            frames = [_frame_to_array(f, notes) for f in ImageSequence.Iterator(image)]
    except Image.DecompressionBombError as exc:
        raise LoadError(
            f"image too large, refused as a decompression bomb ({_short(exc)})"
        ) from None
    except UnidentifiedImageError:
        raise LoadError("not a readable image") from None
    except PermissionError:
        raise
    except Exception as exc:  # Pillow raises many types on damaged files (TypeError, KeyError...)
        raise LoadError(f"corrupt or truncated image ({_short(exc)})") from None
    if len(frames) == 1:
        return frames[0], None, notes
    if len({f.shape for f in frames}) != 1 or len({f.dtype for f in frames}) != 1:
        raise LoadError("the pages of this stack differ in size or type")
    # A multi-page TIFF is a volume: its auto layout is DHW, not CHW.
    return np.stack(frames), "DHW", notes


def _read(path: Path) -> list[tuple[str | None, np.ndarray | LoadError, str | None, list[str]]]:
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return [(None, _load_npy(path), None, [])]
    if suffix == ".npz":
        return [(key, arr, None, []) for key, arr in _load_npz(path)]
    if suffix in (".png", ".tif", ".tiff"):
        array, default, notes = _load_image(path)
        return [(None, array, default, notes)]
    raise LoadError(f"unsupported file type {suffix or '(no suffix)'}; use {', '.join(SUFFIXES)}")


def _as_float(array: np.ndarray) -> np.ndarray:
    # float64 and wide integers keep float64 so nothing is rounded away;
    # everything else (8/16-bit images, float16, float32) is computed in float32.
    if array.dtype.itemsize >= 8 or (array.dtype.kind in "iu" and array.dtype.itemsize >= 4):
        return array.astype(np.float64, copy=False)
    return array.astype(np.float32, copy=False)


def prepare(name: str, array: np.ndarray, layout: str, default: str | None = None) -> HeatmapArray:
    """Check an array and bring it to canonical layout and a float dtype.

    Raises:
        LoadError: wrong dtype, empty axis, or a layout that doesn't fit.
    """
    _check_dtype(array.dtype)
    try:
        resolved = resolve_layout(layout, array.ndim, default)
        if 0 in array.shape:
            raise LoadError(f"array of shape {array.shape} has an empty axis")
        maps = to_canonical(array, resolved)
    except LayoutError as exc:
        raise LoadError(f"{exc} (shape {array.shape})") from None
    return HeatmapArray(name, resolved, tuple(array.shape), _as_float(maps))


def load_source(source: Source, layout: str = "auto") -> list[HeatmapArray | LoadFailure]:
    """Read one file into arrays ready to decode; never raises for bad content."""
    path = source.path
    try:
        if path.is_dir():
            raise LoadError("is a directory")
        if not path.exists():
            raise LoadError("broken symbolic link" if path.is_symlink() else "no such file")
        open(path, "rb").close()  # a permission problem is reported as such, not as corruption
        entries = _read(path)
    except LoadError as exc:
        return [LoadFailure(source.name, str(exc))]
    except PermissionError:
        return [LoadFailure(source.name, "permission denied")]
    except OSError as exc:
        return [LoadFailure(source.name, f"could not read ({_short(exc)})")]
    except MemoryError:
        return [LoadFailure(source.name, "not enough memory to read it")]
    results: list[HeatmapArray | LoadFailure] = []
    for key, array, default, notes in entries:
        name = source.name if key is None else f"{source.name}:{key}"
        if isinstance(array, LoadError):
            results.append(LoadFailure(name, str(array)))
            continue
        try:
            item = prepare(name, array, layout, default)
        except LoadError as exc:
            results.append(LoadFailure(name, str(exc)))
            continue
        item.warnings.extend(notes)
        results.append(item)
    return results


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 160 else text[:157] + "..."


def _bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if n < 1024 or unit == "PB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")
