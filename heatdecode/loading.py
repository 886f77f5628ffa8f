"""Reading heatmap files into numpy arrays: ``.npy`` and ``.npz`` here, PNG and
TIFF in :mod:`heatdecode.images`, every size guard before the bytes are read.

Data flows one way: :func:`~heatdecode.discovery.discover` turns the user's
paths into :class:`Source` objects, :func:`load_source` reads one source into
:class:`HeatmapArray` objects (one per ``.npz`` member) or :class:`LoadFailure`
records. Nothing here touches torch.
"""

from __future__ import annotations

import io
import math
import threading
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np

from heatdecode.discovery import (  # noqa: F401  (re-exported: loading's names before the split)
    SCAN_KINDS,
    SUFFIXES,
    Source,
    discover,
    file_kind,
    open_regular,
    unique_name,
)
from heatdecode.failures import Failure
from heatdecode.guards import Cancelled, LoadError, check_budget, short_reason, show_bytes
from heatdecode.images import load_image
from heatdecode.layouts import (
    LayoutError,
    doubtful_guess,
    resolve_layout,
    spatial_dims,
    to_canonical,
)
from heatdecode.members import member_keys, select_keys, skip_non_heatmaps, skip_note
from heatdecode.preflight import MISSING, parse_size  # noqa: F401  (re-exported)

#: the default of ``max_map_bytes``: the most one array (a file, or one ``.npz``
#: member) may take as stored, elements x itemsize, like Pillow's bomb limit
MAX_MAP_BYTES = 2**31
#: a .npz member (or a whole archive) that inflates more than this many times
#: and to more than BOMB_MIN_BYTES is refused as a decompression bomb. Deflate,
#: np.savez_compressed's method, can't pass ~1,032x (an all-zero map reaches
#: 1,027x), so only bzip2/lzma members can trip it.
BOMB_RATIO = 1100
BOMB_MIN_BYTES = 64 * 2**20
# array data is read in pieces this big, so a cancelled load stops between two
_CHUNK = 64 * 2**20


@dataclass
class HeatmapArray:
    """One decoded-ready array: ``maps`` is ``(N, C, H, W)`` or ``(N, C, D, H, W)``."""

    name: str
    layout: str
    shape: tuple[int, ...]
    maps: np.ndarray
    warnings: list[str] = field(default_factory=list)
    #: the run's notes about its file (.npz members skipped as not heatmaps)
    notes: list[str] = field(default_factory=list)

    @property
    def spatial_dims(self) -> int:
        return spatial_dims(self.layout)


#: a file (or ``.npz`` member) that could not be read: a :class:`Failure`
LoadFailure = Failure


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


def _read_npy_header(fh) -> tuple[tuple[int, ...], bool, np.dtype]:
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
        raise LoadError(f"not a valid .npy file ({short_reason(exc)})") from None
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


def _read_payload(
    fh: BinaryIO,
    shape: tuple[int, ...],
    fortran: bool,
    dtype: np.dtype,
    cancel: threading.Event | None,
) -> np.ndarray:
    """The array data at ``fh``, as np.lib.format.read_array lays it out, read
    in pieces with ``cancel`` checked between them."""
    try:
        array = np.empty(shape[::-1] if fortran else shape, dtype)
        view = memoryview(array.reshape(-1).view(np.uint8))
        got = 0
        while got < len(view):
            if cancel is not None and cancel.is_set():
                raise Cancelled
            n = fh.readinto(view[got : got + _CHUNK])
            if not n:
                break
            got += n
    except LoadError:
        raise
    except Exception as exc:
        raise LoadError(f"could not read the array ({short_reason(exc)})") from None
    if got != len(view):
        raise LoadError(f"could not read the array (expected {len(view)} bytes, got {got})")
    return array.transpose() if fortran else array


def _load_npy(fh: BinaryIO, size: int, budget: int, cancel: threading.Event | None) -> np.ndarray:
    if size == 0:
        raise LoadError("empty file")
    shape, fortran, dtype = _read_npy_header(fh)
    _check_dtype(dtype)
    need = _payload(shape, dtype)
    have = size - fh.tell()
    # Checked before reading so a header that claims terabytes allocates nothing.
    if need > have:
        raise LoadError(
            f"truncated: the header promises {_short_shape(shape)} {dtype} ({show_bytes(need)}) "
            f"but only {show_bytes(have)} follow"
        )
    check_budget(need, budget)
    # the data straight into the array: the header was read and checked above
    return _read_payload(fh, shape, fortran, dtype, cancel)


def _check_inflation(declared: int, compressed: int, what: str) -> None:
    """The second guard against bombs: a tiny compressed size for a big declared one."""
    if declared > BOMB_MIN_BYTES and declared > BOMB_RATIO * max(compressed, 1):
        raise LoadError(
            f"refused as a decompression bomb: {what} {show_bytes(compressed)} inflate to "
            f"{show_bytes(declared)} ({declared // max(compressed, 1)}x, over {BOMB_RATIO}x); "
            "if it is real, save it uncompressed (np.savez)"
        )


def _load_npz(
    fh: BinaryIO, size: int, budget: int, cancel: threading.Event | None
) -> list[tuple[str, np.ndarray | LoadError]]:
    if size == 0:
        raise LoadError("empty file")
    try:
        archive = zipfile.ZipFile(fh)  # the file load_source opened and checked
    except PermissionError:
        raise
    except Exception as exc:  # BadZipFile, NotImplementedError for odd zip versions, ...
        raise LoadError(f"not a valid .npz archive ({short_reason(exc)})") from None
    members: list[tuple[str, np.ndarray | LoadError]] = []
    with archive:
        # ZipInfo objects, not names: a zip may hold two members of one name
        infos = [i for i in archive.infolist() if not i.filename.endswith("/")]
        if not infos:
            raise LoadError("the .npz archive holds no arrays")
        if len(infos) > 1:  # every member is in memory at once: the archive is a bomb too
            declared = sum(i.file_size for i in infos)
            _check_inflation(declared, sum(i.compress_size for i in infos), "its members'")
        for info, key in zip(infos, member_keys([i.filename for i in infos]), strict=True):
            try:
                members.append((key, _load_member(archive, info, budget, cancel)))
            except Cancelled:
                raise
            except LoadError as exc:
                members.append((key, exc))
            except Exception as exc:  # zlib/CRC errors in a corrupt member
                members.append((key, LoadError(f"could not read the array ({short_reason(exc)})")))
    return members


def _load_member(
    archive: zipfile.ZipFile,
    info: zipfile.ZipInfo,
    budget: int,
    cancel: threading.Event | None,
) -> np.ndarray:
    """One member, refused before anything is inflated when its declared size
    is over the budget or far over its compressed size, then read in pieces. A
    boolean one is read (a mask beside heatmaps is skipped); :func:`prepare` refuses it."""
    check_budget(info.file_size, budget, "the member would inflate to")
    if info.compress_type != zipfile.ZIP_STORED:
        _check_inflation(info.file_size, info.compress_size, "the member's")
    with archive.open(info) as fh:
        shape, fortran, dtype = _read_npy_header(fh)
        if dtype.kind != "b":
            _check_dtype(dtype)
        need = _payload(shape, dtype)
        if need > info.file_size - fh.tell():
            raise LoadError(
                f"truncated: the header promises {_short_shape(shape)} {dtype} "
                f"({show_bytes(need)}) but the member holds "
                f"{show_bytes(info.file_size - fh.tell())}"
            )
        check_budget(need, budget)  # the declared size can lie; the header bounds the read
        array = _read_payload(fh, shape, fortran, dtype, cancel)
        fh.read(1)  # reach the member's end, where zipfile checks its CRC
    return array


def _read(
    path: Path, fh: BinaryIO, size: int, budget: int, cancel: threading.Event | None
) -> list[tuple[str | None, np.ndarray | LoadError, str | None, list[str]]]:
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return [(None, _load_npy(fh, size, budget, cancel), None, [])]
    if suffix == ".npz":
        return [(key, arr, None, []) for key, arr in _load_npz(fh, size, budget, cancel)]
    if suffix in (".png", ".tif", ".tiff"):
        array, default, notes = load_image(fh, size, budget, cancel)
        return [(None, array, default, notes)]
    raise LoadError(f"unsupported file type {suffix or '(no suffix)'}; use {', '.join(SUFFIXES)}")


def _as_float(array: np.ndarray) -> np.ndarray:
    # float64 and wide integers keep float64 so nothing is rounded away;
    # everything else (8/16-bit images, float16, float32) is computed in float32.
    if array.dtype.itemsize >= 8 or (array.dtype.kind in "iu" and array.dtype.itemsize >= 4):
        return array.astype(np.float64, copy=False)
    return array.astype(np.float32, copy=False)


def prepare(
    name: str,
    array: np.ndarray,
    layout: str,
    default: str | None = None,
    strict_layout: bool = False,
) -> HeatmapArray:
    """Check an array and bring it to canonical layout and a float dtype.

    Raises:
        LoadError: wrong dtype, empty axis, a layout that doesn't fit, or, with
            ``strict_layout``, an ``auto`` guess that looks wrong (otherwise a warning).
    """
    _check_dtype(array.dtype)
    try:
        resolved = resolve_layout(layout, array.ndim, default)
        if 0 in array.shape:
            raise LoadError(f"array of shape {array.shape} has an empty axis")
        maps = to_canonical(array, resolved)
    except LayoutError as exc:
        raise LoadError(f"{exc} (shape {array.shape})") from None
    guessed = layout == "auto" and default is None
    doubt = doubtful_guess(tuple(array.shape), resolved) if guessed else None
    if doubt is not None and strict_layout:
        raise LoadError(f"layout guessed as {resolved}, but {doubt} (--strict-layout)")
    item = HeatmapArray(name, resolved, tuple(array.shape), _as_float(maps))
    if doubt is not None:
        item.warnings.append(f"layout guessed as {resolved}, but {doubt}")
    return item


def load_source(
    source: Source,
    layout: str = "auto",
    max_map_bytes: int = MAX_MAP_BYTES,
    cancel: threading.Event | None = None,
) -> list[HeatmapArray | LoadFailure]:
    """Read one file into arrays ready to decode; never raises for bad content.

    Args:
        max_map_bytes: the most one array (the file, or one ``.npz`` member) may
            take as stored or decoded (elements x itemsize; a TIFF's pages
            summed); a bigger one is refused from its header, before anything
            is inflated or allocated. At least 1.
        cancel: when set (an interrupted run), a read in progress stops between
            two pieces of its data and the file is reported as interrupted.

    Only a regular file is read: a FIFO, a socket or a device (even one swapped
    in after :func:`discover`) is refused without blocking. Which ``.npz``
    members are read follows ``source.member``, ``source.keys`` and otherwise
    :mod:`heatdecode.members`' rule (the members skipped: a note in the first
    array's ``notes``); ``source.strict_layout`` makes a doubtful guess fail.
    """
    if max_map_bytes < 1:
        raise ValueError(f"max_map_bytes must be at least 1, got {max_map_bytes}")
    path = source.path
    try:
        # One open() for the common case: each file-system call releases and
        # retakes the GIL, which the loader threads and the decoder contend for.
        with open_regular(path) as (fh, size):
            entries = _read(path, fh, size, max_map_bytes, cancel)
    except LoadError as exc:
        return [LoadFailure(source.name, str(exc))]
    except PermissionError:
        return [LoadFailure(source.name, "permission denied")]
    except OSError as exc:
        return [LoadFailure(source.name, f"could not read ({short_reason(exc)})")]
    except MemoryError:
        return [LoadFailure(source.name, "not enough memory to read it")]
    try:
        entries, skipped = _chosen(source, entries, layout)
    except LoadError as exc:
        return [LoadFailure(source.name, str(exc))]
    results: list[HeatmapArray | LoadFailure] = []
    for key, array, default, notes in entries:
        name = source.name if key is None else f"{source.name}:{key}"
        if isinstance(array, LoadError):
            results.append(LoadFailure(name, str(array)))
            continue
        try:
            item = prepare(name, array, layout, default, source.strict_layout)
        except LoadError as exc:
            results.append(LoadFailure(name, str(exc)))
            continue
        item.warnings.extend(notes)
        results.append(item)
    if skipped:  # the note goes with the file's first array decoded
        first = next((r for r in results if isinstance(r, HeatmapArray)), None)
        if first is not None:
            first.notes.append(skip_note(source.name, skipped))
    return results


def _chosen(source: Source, entries: list, layout: str) -> tuple[list, list[str]]:
    """The entries to decode (see :mod:`heatdecode.members`), and the members skipped.

    Raises:
        LoadError: the member ``file.npz:key`` names, or every one ``--key``
            names, is not in the archive.
    """
    if source.member is not None:
        kept = [e for e in entries if e[0] == source.member]
        if not kept:
            held = ", ".join(str(e[0]) for e in entries)
            raise LoadError(f"no member {source.member!r} (it holds: {held})")
        return [(None, *e[1:]) for e in kept], []  # named by the source: file.npz:key
    if source.path.suffix.lower() != ".npz" or len(entries) < 2 and not source.keys:
        return entries, []
    if source.keys:
        return select_keys(entries, source.keys), []
    return skip_non_heatmaps(entries, layout)
