"""Finding heatmap files and reading them into numpy arrays.

Data flows one way: :func:`discover` turns the user's paths into
:class:`Source` objects, :func:`load_source` reads one source into
:class:`HeatmapArray` objects (one per ``.npz`` member) or :class:`LoadFailure`
records. Nothing here touches torch.
"""

from __future__ import annotations

import errno
import io
import math
import os
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

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
    rather than silently skipped; so is a folder that can't be listed (it
    becomes a source that :func:`load_source` reports as permission denied). A
    folder named like a heatmap file (``x.npy/``) is a folder, argument or not.
    Names are relative to the folder argument (posix separators) or, for a file
    argument, the file's name.
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
            # a folder that can't be listed is reported, not silently skipped
            unlisted: list[OSError] = []
            for dirpath, dirnames, filenames in os.walk(root, onerror=unlisted.append):
                here = Path(dirpath)
                dirnames[:] = sorted(
                    d for d in dirnames if not _is_hidden(d) and not _under(here / d, excluded)
                )
                for f in filenames:
                    if not _is_hidden(f) and f.lower().endswith(SUFFIXES):
                        found.append(here / f)
            found += [Path(e.filename) for e in unlisted if e.filename is not None]
            for path in sorted(found, key=lambda p: p.relative_to(root).as_posix()):
                add(path, path.relative_to(root).as_posix() if path != root else str(arg))
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


# numpy refuses longer headers as unsafe; checked before the header is read
_MAX_HEADER = 10_000


def _read_npy_header(fh) -> tuple[tuple[int, ...], np.dtype]:
    shape, _, dtype = _read_npy_header_full(fh)
    return shape, dtype


def _read_npy_header_full(fh) -> tuple[tuple[int, ...], bool, np.dtype]:
    """The header's shape, Fortran order and dtype; ``fh`` is left at the data."""
    try:
        version = np.lib.format.read_magic(fh)
        if version not in ((1, 0), (2, 0), (3, 0)):
            raise LoadError(
                f"not a valid .npy file (unknown format version {version[0]}.{version[1]})"
            )
        # The header is read here and handed to numpy: a backslash (never in the header
        # of a dtype we accept) could make Python's parser warn on the user's terminal.
        width = 2 if version == (1, 0) else 4
        size = fh.read(width)
        length = int.from_bytes(size, "little") if len(size) == width else 0
        if length > _MAX_HEADER:
            raise LoadError(f"not a valid .npy file (a header of {length} bytes)")
        header = fh.read(length)
        if b"\\" in header:
            raise LoadError("not a valid .npy file (a backslash in its header)")
        stream = io.BytesIO(size + header)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(stream)
        else:
            # 3.0 only differs from 2.0 by a UTF-8 header, which numpy writes only for
            # field names that latin-1 can't hold (a structured dtype: refused anyway);
            # numpy has no public reader for it
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(stream)
    except LoadError:
        raise
    except Exception as exc:  # numpy raises ValueError / EOFError / SyntaxError here
        raise LoadError(f"not a valid .npy file ({_short(exc)})") from None
    # numpy's header check lets negative and huge sizes through; read_array then
    # fails obscurely or warns (an overflowing product) on the user's terminal
    if any(n < 0 for n in shape):
        raise LoadError(f"not a valid .npy file (negative size in shape {_short_shape(shape)})")
    if any(n > np.iinfo(np.intp).max for n in shape):
        raise LoadError(
            f"not a valid .npy file (shape {_short_shape(shape)} is larger than any array can be)"
        )
    if 0 in shape:  # nothing to read, and nothing to decode
        raise LoadError(f"array of shape {_short_shape(shape)} has an empty axis")
    return shape, fortran, dtype


def _payload(shape: tuple[int, ...], dtype: np.dtype) -> int:
    """Bytes the header promises, exactly (Python ints: no float overflow for absurd shapes)."""
    return math.prod(shape) * dtype.itemsize


def _short_shape(shape: tuple[int, ...]) -> str:
    text = str(shape)
    return text if len(text) <= 80 else text[:77] + "..."


def _load_npy(fh: BinaryIO) -> np.ndarray:
    size = os.fstat(fh.fileno()).st_size
    if size == 0:
        raise LoadError("empty file")
    shape, fortran, dtype = _read_npy_header_full(fh)
    _check_dtype(dtype)
    need = _payload(shape, dtype)
    have = size - fh.tell()
    # Checked before reading so a header that claims terabytes allocates nothing.
    if need > have:
        raise LoadError(
            f"truncated: the header promises {_short_shape(shape)} {dtype} ({_bytes(need)}) "
            f"but only {_bytes(have)} follow"
        )
    # the data straight into the array: the header was read and checked above
    # (np.lib.format.read_array would parse it again), as read_array lays it out
    try:
        array = np.empty(shape[::-1] if fortran else shape, dtype)
        got = fh.readinto(memoryview(array.reshape(-1)).cast("B"))
    except Exception as exc:
        raise LoadError(f"could not read the array ({_short(exc)})") from None
    if got != need:
        raise LoadError(f"could not read the array (expected {need} bytes, got {got})")
    return array.transpose() if fortran else array


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
                    need = _payload(shape, dtype)
                    if need > info.file_size - fh.tell():
                        raise LoadError(
                            f"truncated: the header promises {_short_shape(shape)} {dtype} "
                            f"({_bytes(need)}) but the member holds "
                            f"{_bytes(info.file_size - fh.tell())}"
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


def _check_pixels(frame: Image.Image) -> None:
    # Pillow only warns between MAX_IMAGE_PIXELS and twice that, and only checks a
    # TIFF's later pages when they are decoded; refuse it all here rather than
    # through warnings filters, which are not thread-safe.
    limit = Image.MAX_IMAGE_PIXELS
    if limit is not None and frame.width * frame.height > limit:
        raise Image.DecompressionBombError(
            f"{frame.width}x{frame.height} pixels is over the limit of {limit}"
        )


def _load_image(fh: BinaryIO, size: int) -> tuple[np.ndarray, str | None, list[str]]:
    if size == 0:
        raise LoadError("empty file")
    notes: list[str] = []
    try:
        with Image.open(fh) as image:  # the file load_source opened: no second open()
            frames = []
            for frame in ImageSequence.Iterator(image):
                _check_pixels(frame)  # every page: a TIFF's later pages can be bombs too
                frames.append(_frame_to_array(frame, notes))
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


def _read(
    path: Path, fh: BinaryIO
) -> list[tuple[str | None, np.ndarray | LoadError, str | None, list[str]]]:
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return [(None, _load_npy(fh), None, [])]
    if suffix == ".npz":
        return [(key, arr, None, []) for key, arr in _load_npz(path)]
    if suffix in (".png", ".tif", ".tiff"):
        array, default, notes = _load_image(fh, os.fstat(fh.fileno()).st_size)
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
        # One open() for the common case: each file-system call releases and
        # retakes the GIL, which the loader threads and the decoder contend for.
        try:
            fh = open(path, "rb")
        except OSError:  # say why: a folder, a broken link, permission denied...
            if path.is_dir():
                raise LoadError(_folder(path)) from None
            if not path.exists():
                raise LoadError(_missing(path)) from None
            raise
        with fh:
            entries = _read(path, fh)
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


def _folder(path: Path) -> str:
    """Why a folder given as a source can't be read (:func:`discover` passes unlistable ones)."""
    try:
        with os.scandir(path):
            pass
    except PermissionError:
        return "permission denied (a folder that can't be listed: nothing in it was read)"
    except OSError as exc:
        return f"a folder that can't be listed ({_short(exc)})"
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


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 160 else text[:157] + "..."


def _bytes(n: float) -> str:
    if n >= 1024**6 * 10**6:  # a header's absurd claim: int/int division could overflow a float
        return "over a million PB"
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if n < 1024 or unit == "PB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")
