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
import re
import stat
import threading
import zipfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageMode, ImageSequence, UnidentifiedImageError

from heatdecode.layouts import LayoutError, resolve_layout, spatial_dims, to_canonical
from heatdecode.preflight import MISSING

SUFFIXES = (".npy", ".npz", ".png", ".tif", ".tiff")

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

_UNITS = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}


_SIZE = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([kmgt]?)(?:i?b)?\s*", re.IGNORECASE)


def parse_size(text: str) -> int:
    """A byte count from ``"2147483648"``, ``"512M"``, ``"4G"`` or ``"1.5GiB"``
    (binary units: K = 1024; case and a trailing ``B``/``iB`` don't matter).
    Whether the size is allowed is the caller's rule.

    Raises:
        ValueError: not a number of bytes, with the reason in one line.
    """
    match = _SIZE.fullmatch(text)
    if match is None:
        raise ValueError(f"{text!r} is not a size; give bytes or a size such as 512M or 4G")
    return int(float(match[1]) * _UNITS[match[2].lower()])


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
    """A file (or ``.npz`` member) that could not be read, and why, in one line.

    ``kind`` says what happened, for code (messages are for people):
    ``"unreadable"`` (read and refused), ``"missing"`` (an argument that doesn't
    exist), ``"skipped"`` (a FIFO, socket or device a folder scan found and did
    not open) or ``"overlay"`` (decoded, but its overlay could not be written).
    The first three come from :func:`discover` and :func:`load_source`; the
    kinds in :data:`SCAN_KINDS` never reach :func:`load_source`.
    """

    name: str
    reason: str
    kind: str = "unreadable"


#: failures that :func:`discover` reports itself: no reader ever sees them
SCAN_KINDS = ("missing", "skipped")


class LoadError(Exception):
    """Raised inside this module with a one-line reason; turned into LoadFailure."""


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
            name = _unique(str(path), seen)
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
    return _kind(mode)


def _kind(mode: int) -> str:
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


class Cancelled(LoadError):
    """The run was interrupted while this file was being read."""

    def __init__(self) -> None:
        super().__init__("interrupted while being read")


def _check_budget(need: int, limit: int, what: str = "the array would take") -> None:
    if need > limit:
        raise LoadError(
            f"refused: {what} {_bytes(need)}, over the --max-map-bytes limit of "
            f"{_bytes(limit)} (raise it with --max-map-bytes)"
        )


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
        raise LoadError(f"could not read the array ({_short(exc)})") from None
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
            f"truncated: the header promises {_short_shape(shape)} {dtype} ({_bytes(need)}) "
            f"but only {_bytes(have)} follow"
        )
    _check_budget(need, budget)
    # the data straight into the array: the header was read and checked above
    return _read_payload(fh, shape, fortran, dtype, cancel)


def _member_keys(names: list[str]) -> list[str]:
    """One unique key per member: the name without ``.npy`` (as np.load names
    it) unless two members would share it (``k`` and ``k.npy``) or it is taken;
    then the member keeps its stored name, and a name still taken (a zip may
    repeat one) gets ``#2``, ``#3``..."""
    stripped = [n[:-4] if n.endswith(".npy") else n for n in names]
    counts: dict[str, int] = {}
    for key in stripped:
        counts[key] = counts.get(key, 0) + 1
    keys: list[str] = []
    taken: set[str] = set()
    for name, key in zip(names, stripped, strict=True):
        if counts[key] > 1 or key in taken:
            key = _unique(name, taken)
        taken.add(key)
        keys.append(key)
    return keys


def _unique(name: str, taken: set[str]) -> str:
    """``name``, or the first of ``name#2``, ``name#3``... not yet ``taken``."""
    candidate, count = name, 1
    while candidate in taken:
        count += 1
        candidate = f"{name}#{count}"
    return candidate


def _check_inflation(declared: int, compressed: int, what: str) -> None:
    """The second guard against bombs: a tiny compressed size for a big declared one."""
    if declared > BOMB_MIN_BYTES and declared > BOMB_RATIO * max(compressed, 1):
        raise LoadError(
            f"refused as a decompression bomb: {what} {_bytes(compressed)} inflate to "
            f"{_bytes(declared)} ({declared // max(compressed, 1)}x, over {BOMB_RATIO}x); "
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
        raise LoadError(f"not a valid .npz archive ({_short(exc)})") from None
    members: list[tuple[str, np.ndarray | LoadError]] = []
    with archive:
        # ZipInfo objects, not names: a zip may hold two members of one name
        infos = [i for i in archive.infolist() if not i.filename.endswith("/")]
        if not infos:
            raise LoadError("the .npz archive holds no arrays")
        if len(infos) > 1:  # every member is in memory at once: the archive is a bomb too
            declared = sum(i.file_size for i in infos)
            _check_inflation(declared, sum(i.compress_size for i in infos), "its members'")
        for info, key in zip(infos, _member_keys([i.filename for i in infos]), strict=True):
            try:
                members.append((key, _load_member(archive, info, budget, cancel)))
            except Cancelled:
                raise
            except LoadError as exc:
                members.append((key, exc))
            except Exception as exc:  # zlib/CRC errors in a corrupt member
                members.append((key, LoadError(f"could not read the array ({_short(exc)})")))
    return members


def _load_member(
    archive: zipfile.ZipFile,
    info: zipfile.ZipInfo,
    budget: int,
    cancel: threading.Event | None,
) -> np.ndarray:
    """One member, refused before anything is inflated when its declared size
    is over the budget or far over its compressed size, then read in pieces."""
    _check_budget(info.file_size, budget, "the member would inflate to")
    if info.compress_type != zipfile.ZIP_STORED:
        _check_inflation(info.file_size, info.compress_size, "the member's")
    with archive.open(info) as fh:
        shape, fortran, dtype = _read_npy_header(fh)
        _check_dtype(dtype)
        need = _payload(shape, dtype)
        if need > info.file_size - fh.tell():
            raise LoadError(
                f"truncated: the header promises {_short_shape(shape)} {dtype} "
                f"({_bytes(need)}) but the member holds {_bytes(info.file_size - fh.tell())}"
            )
        _check_budget(need, budget)  # the declared size can lie; the header bounds the read
        array = _read_payload(fh, shape, fortran, dtype, cancel)
        fh.read(1)  # reach the member's end, where zipfile checks its CRC
    return array


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


def _page_bytes(image: Image.Image) -> int:
    """The bytes one page takes decoded: width x height x bytes per pixel."""
    mode = ImageMode.getmode(image.mode)
    return image.width * image.height * len(mode.bands) * np.dtype(mode.typestr).itemsize


def _pages(image: Image.Image, budget: int) -> list[tuple[int, int]]:
    """Every page's size, checked against Pillow's pixel limit and, summed, against
    the budget, before any page is decoded: ``seek`` reads a TIFF's page headers
    only. Other formats hold pages of one size: counted as that many copies."""
    frames = getattr(image, "n_frames", 1)
    if image.format == "PNG" and frames > 1:
        raise LoadError(
            f"animated PNG ({frames} frames): save one frame, or the volume as a .tif stack"
        )
    if image.format != "TIFF":
        _check_pixels(image)
        _check_budget(frames * _page_bytes(image), budget)
        return [image.size] * frames
    sizes, total = [], 0
    for page in ImageSequence.Iterator(image):  # seeks: nothing is decoded yet
        _check_pixels(page)  # every page: a TIFF's later pages can be bombs too
        sizes.append(page.size)
        total += _page_bytes(page)
    _check_budget(total, budget, "the pages would take")
    image.seek(0)
    return sizes


def _sixteen_bit_colour(head: bytes) -> bool:
    """A PNG whose header (IHDR) says 16 bits per sample in colour or with alpha:
    Pillow reads those as 8 bits per channel."""
    return (
        head[:8] == b"\x89PNG\r\n\x1a\n"
        and head[12:16] == b"IHDR"
        and len(head) >= 26
        and head[24] == 16
        and head[25] in (2, 4, 6)  # RGB, grey + alpha, RGBA
    )


def _load_image(
    fh: BinaryIO, size: int, budget: int, cancel: threading.Event | None
) -> tuple[np.ndarray, str | None, list[str]]:
    if size == 0:
        raise LoadError("empty file")
    notes: list[str] = []
    head = fh.read(26)
    fh.seek(0)
    try:
        with Image.open(fh) as image:  # the file load_source opened: no second open()
            sizes = _pages(image, budget)
            if len(set(sizes)) != 1:  # known before decoding any
                raise LoadError("the pages of this stack differ in size or type")
            stack = None
            for index, frame in enumerate(ImageSequence.Iterator(image)):
                if cancel is not None and cancel.is_set():
                    raise Cancelled
                page = _frame_to_array(frame, notes)
                if stack is None:  # filled page by page: no second copy from np.stack
                    stack = np.empty((len(sizes), *page.shape), page.dtype)
                elif page.shape != stack.shape[1:] or page.dtype != stack.dtype:
                    raise LoadError("the pages of this stack differ in size or type")
                stack[index] = page
    except LoadError:
        raise
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
    assert stack is not None
    if _sixteen_bit_colour(head):
        notes.append(
            "16-bit colour PNG read as 8 bits per channel (Pillow's limit); "
            "save a 16-bit grayscale PNG or a .npy to keep 16 bits"
        )
    if len(stack) == 1:
        return stack[0], None, notes
    # A multi-page TIFF is a volume: its auto layout is DHW, not CHW.
    return stack, "DHW", notes


def _read(
    path: Path, fh: BinaryIO, size: int, budget: int, cancel: threading.Event | None
) -> list[tuple[str | None, np.ndarray | LoadError, str | None, list[str]]]:
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return [(None, _load_npy(fh, size, budget, cancel), None, [])]
    if suffix == ".npz":
        return [(key, arr, None, []) for key, arr in _load_npz(fh, size, budget, cancel)]
    if suffix in (".png", ".tif", ".tiff"):
        array, default, notes = _load_image(fh, size, budget, cancel)
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
    in after :func:`discover`) is refused without blocking.
    """
    if max_map_bytes < 1:
        raise ValueError(f"max_map_bytes must be at least 1, got {max_map_bytes}")
    path = source.path
    try:
        # One open() for the common case: each file-system call releases and
        # retakes the GIL, which the loader threads and the decoder contend for.
        with _open_regular(path) as (fh, size):
            entries = _read(path, fh, size, max_map_bytes, cancel)
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
def _open_regular(path: Path) -> Iterator[tuple[BinaryIO, int]]:
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
            raise LoadError(f"not a regular file ({_kind(os.stat(path).st_mode)})") from None
        raise
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise LoadError(_folder(path))
        if not stat.S_ISREG(info.st_mode):
            raise LoadError(f"not a regular file ({_kind(info.st_mode)})")
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
