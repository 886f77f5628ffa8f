"""A corpus of bad inputs, built from code, run through ``heatdecode run`` in-process.

One module-scoped run decodes a folder that holds every bad file of the corpus
beside good ones (some with awkward names); each case then checks its own
one-line message on stderr (``error: FILE: reason``), its entry in
``coordinates.json``'s ``failures`` and that it left no rows, and each good
file checks that all its rows are in ``coordinates.csv`` with the right argmax.
Cases that need a run of their own (bad options, ``--out`` problems, unreadable
files and folders, arguments that are symlink loops or folders named ``x.npy``)
run alone.

Decisions tested here:

* A folder named like a heatmap file (``x.npy/``) is a folder, inside a folder
  scan and as an argument: it is scanned, and its files are named relative to
  it. An empty one contributes nothing.
* File names are written to ``coordinates.csv`` / ``coordinates.json`` as
  valid UTF-8; a byte that isn't UTF-8 (``0xff``) becomes the text ``\\xff``
  (see :mod:`heatdecode.writers`).
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import math
import os
import re
import shutil
import struct
import subprocess
import sys
import tracemalloc
import zipfile
import zlib
from collections.abc import Callable
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from heatdecode.cli import main
from heatdecode.loading import LoadFailure, Source, load_source
from heatdecode.writers import CSV_COLUMNS

# --------------------------------------------------------------------------- file makers


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, array, allow_pickle=True)
    return buffer.getvalue()


def npy_header(header: str, version: bytes = b"\x01\x00") -> bytes:
    """A .npy prefix with ``header`` as its (unchecked) dictionary text, padded as numpy does."""
    text = header.encode("latin-1")
    text = text.ljust(((len(text) + 11) // 64 + 1) * 64 - 11) + b"\n"
    return b"\x93NUMPY" + version + struct.pack("<H", len(text)) + text


def claimed(shape: str, descr: str = "<f8") -> bytes:
    return npy_header(f"{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}")


def image_bytes(array: np.ndarray, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, fmt)
    return buffer.getvalue()


def noise_png() -> bytes:
    rng = np.random.default_rng(7)
    return image_bytes(rng.integers(0, 255, (64, 64), dtype=np.uint8))


def noise_tif() -> bytes:
    rng = np.random.default_rng(8)
    return image_bytes(rng.integers(0, 255, (64, 64), dtype=np.uint8), "TIFF")


def png_chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def png_claiming(width: int, height: int) -> bytes:
    """A valid-looking 8-bit grey PNG whose header claims ``width x height`` (a bomb's header)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    rows = zlib.compress(b"\0" * (width + 1) * 4)  # 4 rows of zeros, compressed to nothing
    signature = b"\x89PNG\r\n\x1a\n"
    return (
        signature + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", rows) + png_chunk(b"IEND", b"")
    )


def png_with_corrupt_data() -> bytes:
    data = bytearray(noise_png())
    at = data.index(b"IDAT") + 50
    data[at] ^= 0xFF  # the chunk's CRC no longer matches
    return bytes(data)


def tiff_stack(pages: list[np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    images = [Image.fromarray(page) for page in pages]
    images[0].save(buffer, "TIFF", save_all=True, append_images=images[1:])
    return buffer.getvalue()


def _ifd_offsets(data: bytes) -> list[int]:
    offsets, at = [], struct.unpack_from("<I", data, 4)[0]
    while at:
        offsets.append(at)
        count = struct.unpack_from("<H", data, at)[0]
        at = struct.unpack_from("<I", data, at + 2 + 12 * count)[0]
    return offsets


def tiff_with_huge_second_page(width: int, height: int) -> bytes:
    """A 2-page TIFF whose second page claims ``width x height`` pixels (Pillow only warns)."""
    data = bytearray(tiff_stack([np.zeros((6, 8), np.uint8)] * 2))
    second = _ifd_offsets(bytes(data))[1]
    count = struct.unpack_from("<H", data, second)[0]
    for k in range(count):
        entry = second + 2 + 12 * k
        tag = struct.unpack_from("<H", data, entry)[0]
        if tag in (256, 257):  # ImageWidth, ImageLength: rewritten as LONG values
            struct.pack_into("<HII", data, entry + 2, 4, 1, width if tag == 256 else height)
    return bytes(data)


def tiff_with_garbage_next_page() -> bytes:
    data = bytearray(image_bytes(np.zeros((6, 8), np.uint8), "TIFF"))
    first = _ifd_offsets(bytes(data))[0]
    count = struct.unpack_from("<H", data, first)[0]
    struct.pack_into("<I", data, first + 2 + 12 * count, 2)  # "next page" inside the header
    return bytes(data)


def tiff_pages_claiming(pages: int, width: int, height: int) -> bytes:
    """A TIFF of ``pages`` pages that each claim ``width x height`` pixels (data: a few bytes)."""
    data = bytearray(tiff_stack([np.zeros((6, 8), np.uint8)] * pages))
    for at in _ifd_offsets(bytes(data)):
        for k in range(struct.unpack_from("<H", data, at)[0]):
            entry = at + 2 + 12 * k
            tag = struct.unpack_from("<H", data, entry)[0]
            if tag in (256, 257):  # ImageWidth, ImageLength: rewritten as LONG values
                struct.pack_into("<HII", data, entry + 2, 4, 1, width if tag == 256 else height)
    return bytes(data)


def npz_declaring(members: dict[str, bytes], name: str, size: int) -> bytes:
    """A stored archive whose member ``name`` declares ``size`` bytes in the central
    directory (its real data is a few bytes: refused before it is opened)."""
    data = bytearray(zip_bytes(members))
    at = data.index(b"PK\x01\x02")
    while True:
        length = struct.unpack_from("<H", data, at + 28)[0]
        if data[at + 46 : at + 46 + length] == name.encode():
            struct.pack_into("<II", data, at + 20, size, size)  # compressed, uncompressed
            return bytes(data)
        at = data.index(b"PK\x01\x02", at + 4)


def sparse_npy(shape: tuple[int, ...], descr: str = "<f4") -> Callable[[Path], object]:
    """A .npy whose data really follows its header, as a sparse file: no disk used."""
    header = claimed(str(shape), descr)
    need = math.prod(shape) * np.dtype(descr).itemsize

    def write(path: Path) -> None:
        with open(path, "wb") as fh:
            fh.write(header)
            fh.truncate(len(header) + need)

    return write


def apng_bytes(frames: int) -> bytes:
    buffer = io.BytesIO()
    images = [Image.fromarray(np.full((4, 5), k, np.uint8)) for k in range(frames)]
    images[0].save(buffer, "PNG", save_all=True, append_images=images[1:])
    return buffer.getvalue()


def zip_bytes(members: dict[str, bytes], compression: int = zipfile.ZIP_STORED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


class LeaveMarker:
    """Unpickling this creates the file ``path``: the payload an attacker would ship."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def pickle_bomb(marker: Path) -> np.ndarray:
    array = np.zeros((2, 2), dtype=object)
    array[0, 0] = LeaveMarker(marker)
    return array


def peaked(shape: tuple[int, ...], seed: int, dtype=np.float32) -> np.ndarray:
    """Random maps of ``shape`` with one clear maximum per map (volumes when 5-D)."""
    rng = np.random.default_rng(seed)
    maps = rng.random(shape) * 0.5
    spatial = 3 if len(shape) == 5 else 2
    flat = maps.reshape(-1, int(np.prod(shape[-spatial:])))
    flat[np.arange(len(flat)), rng.integers(flat.shape[1], size=len(flat))] = 1.0
    return flat.reshape(shape).astype(dtype)


# --------------------------------------------------------------------------- the corpus

NON_UTF8_GOOD = os.fsdecode(b"caf\xe9 \xff.npy")  # latin-1 byte and a byte no encoding has
NON_UTF8_BAD = os.fsdecode(b"bad-\xfe\xff.npy")
NEWLINE_GOOD = "new\nline.npy"
QUOTES_GOOD = "with \"double\" and 'single' quotes.npy"
COMMA_GOOD = "with,comma,s.npy"
SPACE_GOOD = "with space.png"
UNICODE_GOOD = "üñí©ødé.npy"
QUOTES_BAD = 'bad, "quoted" name.npz'


@dataclass(frozen=True)
class Bad:
    """A bad input: ``name`` as reported (``file`` or ``file.npz:key``) and its reason (a regex)."""

    id: str
    name: str
    reason: str


def _exact(text: str) -> str:
    return re.escape(text)


NPY_NOT_VALID = r"not a valid \.npy file \(.+\)"
NPY_BAD_MAGIC = r"not a valid \.npy file \(the magic string is not correct; .+\)"
NPZ_NOT_VALID = r"not a valid \.npz archive \(.+\)"
IMAGE_UNREADABLE = _exact("not a readable image")
IMAGE_CORRUPT = r"corrupt or truncated image \(.+\)"
PICKLED = _exact("holds Python objects (pickled data is never loaded)")
LIMIT = Image.MAX_IMAGE_PIXELS
WARN_RANGE = (10_000, LIMIT // 10_000 + 1)  # over Pillow's limit, under twice it: Pillow only warns


def _write_files(folder: Path, marker: Path) -> dict[str, Callable[[Path], object]]:
    """File name (relative to the corpus folder) -> writer, for every bad file."""
    good_npy = npy_bytes(peaked((8, 8), 1))
    good_npz = zip_bytes({"a.npy": good_npy})
    png, tif = noise_png(), noise_tif()
    h, w = WARN_RANGE[1], WARN_RANGE[0]

    def data(raw: bytes) -> Callable[[Path], object]:
        return lambda p: p.write_bytes(raw)

    def saved(array: np.ndarray) -> Callable[[Path], object]:
        return lambda p: p.write_bytes(npy_bytes(array))

    return {
        # .npy: truncated, corrupt, other content, lying headers
        "npy_cut_in_header.npy": data(good_npy[:30]),
        "npy_cut_in_data.npy": data(good_npy[:-40]),
        "npy_random_bytes.npy": data(bytes(range(256)) * 3),
        "npy_bad_version.npy": data(b"\x93NUMPY\x09\x09" + good_npy[8:]),
        "npy_bad_descr.npy": data(claimed("(8, 8)", "zz") + b"\0" * 512),
        "npy_header_not_a_dict.npy": data(npy_header("hello, world") + b"\0" * 64),
        "npy_backslash_in_header.npy": data(claimed("(8, 8)", "<f4\\:") + b"\0" * 256),
        "npy_header_too_long.npy": data(b"\x93NUMPY\x02\x00" + struct.pack("<I", 10**6)),
        "npy_negative_shape.npy": data(claimed("(-8, 8)") + b"\0" * 512),
        "npy_terabytes.npy": data(claimed("(1000000, 1000000)")),
        "npy_overflowing_shape.npy": data(claimed(f"({2**60}, {2**60}, {2**60})", "<f4")),
        "npy_dimension_past_int64.npy": data(claimed(f"({10**200}, 3)", "<f4")),
        "png_inside.npy": data(png),
        "npz_inside.npy": data(good_npz),
        "empty.npy": data(b""),
        # .npy: dtypes that are not heatmaps
        "pickled.npy": saved(pickle_bomb(marker)),
        "objects_in_struct.npy": saved(np.zeros(3, dtype=[("a", "O")])),
        "structured.npy": saved(np.zeros((3, 3), dtype=[("x", "<f4"), ("y", "<f4")])),
        "complex.npy": saved(np.ones((3, 3), np.complex128)),
        "bool.npy": saved(np.ones((3, 3), bool)),
        "unicode.npy": saved(np.full((3, 3), "hot")),
        "bytes.npy": saved(np.full((3, 3), b"hot")),
        "datetime.npy": saved(np.zeros((3, 3), "datetime64[s]")),
        "void.npy": saved(np.zeros((3, 3), "V4")),
        # .npy: arrays that don't fit a heatmap layout
        "zero_axis.npy": saved(np.ones((0, 4, 4), np.float32)),
        "one_d.npy": saved(np.ones(5)),
        "six_d.npy": saved(np.ones((1, 1, 1, 1, 2, 2))),
        # .npz
        "npz_cut.npz": data(good_npz[: len(good_npz) // 2]),
        "npz_random_bytes.npz": data(bytes(range(256)) * 3),
        "npz_text.npz": data(b"a text file, not an archive\n"),
        "npz_no_arrays.npz": data(zip_bytes({})),
        "empty.npz": data(b""),
        "mixed.npz": lambda p: _write_mixed_npz(p, marker),
        # .png
        "png_cut.png": data(png[: len(png) // 2]),
        "png_corrupt_data.png": data(png_with_corrupt_data()),
        "png_signature_only.png": data(b"\x89PNG\r\n\x1a\n broken"),
        "npy_inside.png": data(good_npy),
        "text.png": data(b"I am a heatmap, honest\n"),
        "empty.png": data(b""),
        "bomb.png": data(png_claiming(100_000, 100_000)),
        "bomb_warn_range.png": data(png_claiming(w, h)),
        # .tif / .tiff
        "tif_cut.tif": data(tif[: len(tif) // 2]),
        "tif_random_bytes.tif": data(bytes(range(256)) * 3),
        "text.tif": data(b"hello\n"),
        "empty.tif": data(b""),
        "empty.tiff": data(b""),
        "tif_pages_differ.tif": data(
            tiff_stack([np.zeros((4, 5), np.uint8), np.zeros((5, 4), np.uint8)])
        ),
        "tif_second_page_bomb.tif": data(tiff_with_huge_second_page(w, h)),
        "tif_garbage_next_page.tif": data(tiff_with_garbage_next_page()),
        # over the size budget (--max-map-bytes, 2 GiB by default), refused unread
        "npy_3gb_sparse.npy": sparse_npy((768, 1024, 1024)),
        "budget.npz": data(
            npz_declaring(
                {"big.npy": good_npy, "ok.npy": npy_bytes(BUDGET_OK)}, "big.npy", 3 * 2**30
            )
        ),
        "tif_pages_over_budget.tif": data(tiff_pages_claiming(30, 9000, 9000)),
        "animated.png": data(apng_bytes(3)),
        # awkward names on bad files
        NON_UTF8_BAD: data(b""),
        QUOTES_BAD: data(b"PK\x03\x04 not really a zip"),
    }


def _write_mixed_npz(path: Path, marker: Path) -> None:
    """An archive with one good member and members broken in every way a member can be."""
    crc_marker = np.full((4, 4), 1.2345678, np.float64)
    data = bytearray(
        zip_bytes(
            {
                "good.npy": npy_bytes(MIXED_GOOD),
                "crc.npy": npy_bytes(crc_marker),
                "garbage.npy": b"this is not an npy member at all",
                "pickled.npy": npy_bytes(pickle_bomb(marker)),
                "huge.npy": claimed("(1000000, 1000000)"),
                "complex.npy": npy_bytes(np.zeros((3, 3), np.complex64)),
                "cut.npy": npy_bytes(np.zeros((5, 7)))[:-16],
            }
        )
    )
    at = data.index(crc_marker.tobytes()[:8]) + 40
    data[at] ^= 0xFF  # a stored member: its CRC no longer matches
    path.write_bytes(bytes(data))


MIXED_GOOD = peaked((3, 6, 7), 11)
BUDGET_OK = peaked((4, 5), 22)
OVER = "over the --max-map-bytes limit of 2.0 GB (raise it with --max-map-bytes)"

BAD_CASES = [
    Bad("npy-cut-in-header", "npy_cut_in_header.npy", NPY_NOT_VALID),
    Bad(
        "npy-cut-in-data",
        "npy_cut_in_data.npy",
        _exact("truncated: the header promises (8, 8) float32 (256 B) but only 216 B follow"),
    ),
    Bad("npy-random-bytes", "npy_random_bytes.npy", NPY_BAD_MAGIC),
    Bad(
        "npy-bad-version",
        "npy_bad_version.npy",
        _exact("not a valid .npy file (unknown format version 9.9)"),
    ),
    Bad(
        "npy-bad-descr",
        "npy_bad_descr.npy",
        r"not a valid \.npy file \(descr is not a valid dtype descriptor: 'zz'\)",
    ),
    Bad("npy-header-not-a-dict", "npy_header_not_a_dict.npy", NPY_NOT_VALID),
    Bad(
        "npy-backslash-in-header",
        "npy_backslash_in_header.npy",
        _exact("not a valid .npy file (a backslash in its header)"),
    ),
    Bad(
        "npy-header-too-long",
        "npy_header_too_long.npy",
        _exact("not a valid .npy file (a header of 1000000 bytes)"),
    ),
    Bad(
        "npy-negative-shape",
        "npy_negative_shape.npy",
        _exact("not a valid .npy file (negative size in shape (-8, 8))"),
    ),
    Bad(
        "npy-terabytes",
        "npy_terabytes.npy",
        _exact(
            "truncated: the header promises (1000000, 1000000) float64 (7.3 TB) but only 0 B follow"
        ),
    ),
    Bad(
        "npy-overflowing-shape",
        "npy_overflowing_shape.npy",
        _exact(
            f"truncated: the header promises ({2**60}, {2**60}, {2**60}) float32 "
            "(over a million PB) but only 0 B follow"
        ),
    ),
    Bad(
        "npy-dimension-past-int64",
        "npy_dimension_past_int64.npy",
        r"not a valid \.npy file \(shape \(1000+\.\.\. is larger than any array can be\)",
    ),
    Bad("png-inside-npy", "png_inside.npy", NPY_BAD_MAGIC),
    Bad("npz-inside-npy", "npz_inside.npy", NPY_BAD_MAGIC),
    Bad("npy-empty", "empty.npy", _exact("empty file")),
    Bad("npy-pickled", "pickled.npy", PICKLED),
    Bad("npy-objects-in-struct", "objects_in_struct.npy", PICKLED),
    Bad(
        "npy-structured",
        "structured.npy",
        _exact("structured dtype [('x', '<f4'), ('y', '<f4')] is not a heatmap"),
    ),
    Bad("npy-complex", "complex.npy", _exact("complex dtype complex128 is not a heatmap")),
    Bad("npy-bool", "bool.npy", _exact("boolean dtype is not a heatmap")),
    Bad("npy-unicode", "unicode.npy", _exact("non-numeric dtype <U3 is not a heatmap")),
    Bad("npy-bytes", "bytes.npy", _exact("non-numeric dtype |S3 is not a heatmap")),
    Bad("npy-datetime", "datetime.npy", _exact("non-numeric dtype datetime64[s] is not a heatmap")),
    Bad("npy-void", "void.npy", _exact("non-numeric dtype |V4 is not a heatmap")),
    Bad("npy-zero-axis", "zero_axis.npy", _exact("array of shape (0, 4, 4) has an empty axis")),
    Bad(
        "npy-one-d",
        "one_d.npy",
        _exact("cannot guess the layout of a 1-D array; pass --layout (e.g. NCHW) (shape (5,))"),
    ),
    Bad(
        "npy-six-d",
        "six_d.npy",
        _exact(
            "cannot guess the layout of a 6-D array; pass --layout (e.g. NCHW) "
            "(shape (1, 1, 1, 1, 2, 2))"
        ),
    ),
    Bad("npz-cut", "npz_cut.npz", NPZ_NOT_VALID),
    Bad("npz-random-bytes", "npz_random_bytes.npz", NPZ_NOT_VALID),
    Bad("npz-text", "npz_text.npz", NPZ_NOT_VALID),
    Bad("npz-no-arrays", "npz_no_arrays.npz", _exact("the .npz archive holds no arrays")),
    Bad("npz-empty", "empty.npz", _exact("empty file")),
    Bad(
        "npz-member-crc",
        "mixed.npz:crc",
        r"(not a valid \.npy file|could not read the array) \(Bad CRC-32 for file 'crc\.npy'\)",
    ),
    Bad("npz-member-garbage", "mixed.npz:garbage", NPY_BAD_MAGIC),
    Bad("npz-member-pickled", "mixed.npz:pickled", PICKLED),
    Bad(
        "npz-member-terabytes",
        "mixed.npz:huge",
        _exact(
            "truncated: the header promises (1000000, 1000000) float64 (7.3 TB) "
            "but the member holds 0 B"
        ),
    ),
    Bad(
        "npz-member-complex",
        "mixed.npz:complex",
        _exact("complex dtype complex64 is not a heatmap"),
    ),
    Bad(
        "npz-member-cut",
        "mixed.npz:cut",
        _exact("truncated: the header promises (5, 7) float64 (280 B) but the member holds 264 B"),
    ),
    Bad("png-cut", "png_cut.png", IMAGE_CORRUPT),
    Bad("png-corrupt-data", "png_corrupt_data.png", IMAGE_CORRUPT),
    Bad("png-signature-only", "png_signature_only.png", IMAGE_UNREADABLE),
    Bad("npy-inside-png", "npy_inside.png", IMAGE_UNREADABLE),
    Bad("png-text", "text.png", IMAGE_UNREADABLE),
    Bad("png-empty", "empty.png", _exact("empty file")),
    Bad(
        "png-bomb",
        "bomb.png",
        r"image too large, refused as a decompression bomb \(Image size \(10000000000 pixels\) "
        r"exceeds limit of \d+ pixels.*\)",
    ),
    Bad(
        "png-bomb-warn-range",
        "bomb_warn_range.png",
        _exact(
            "image too large, refused as a decompression bomb "
            f"({WARN_RANGE[0]}x{WARN_RANGE[1]} pixels is over the limit of {LIMIT})"
        ),
    ),
    Bad("tif-cut", "tif_cut.tif", IMAGE_CORRUPT),
    Bad("tif-random-bytes", "tif_random_bytes.tif", IMAGE_UNREADABLE),
    Bad("tif-text", "text.tif", IMAGE_UNREADABLE),
    Bad("tif-empty", "empty.tif", _exact("empty file")),
    Bad("tiff-empty", "empty.tiff", _exact("empty file")),
    Bad(
        "tif-pages-differ",
        "tif_pages_differ.tif",
        _exact("the pages of this stack differ in size or type"),
    ),
    Bad(
        "tif-second-page-bomb",
        "tif_second_page_bomb.tif",
        _exact(
            "image too large, refused as a decompression bomb "
            f"({WARN_RANGE[0]}x{WARN_RANGE[1]} pixels is over the limit of {LIMIT})"
        ),
    ),
    Bad("tif-garbage-next-page", "tif_garbage_next_page.tif", IMAGE_CORRUPT),
    Bad("npy-3gb", "npy_3gb_sparse.npy", _exact(f"refused: the array would take 3.0 GB, {OVER}")),
    Bad(
        "npz-member-declares-3gb",
        "budget.npz:big",
        _exact(f"refused: the member would inflate to 3.0 GB, {OVER}"),
    ),
    Bad(
        "tif-pages-sum-over-budget",
        "tif_pages_over_budget.tif",
        _exact(f"refused: the pages would take 2.3 GB, {OVER}"),
    ),
    Bad(
        "png-animated",
        "animated.png",
        _exact("animated PNG (3 frames): save one frame, or the volume as a .tif stack"),
    ),
    Bad("symlink-dangling", "links/dangling.npy", _exact("broken symbolic link")),
    Bad("symlink-self-loop", "links/loop.npy", _exact("symbolic link loop")),
    Bad("symlink-loop-a", "links/loop_a.npy", _exact("symbolic link loop")),
    Bad("symlink-loop-b", "links/loop_b.npy", _exact("symbolic link loop")),
    Bad("name-non-utf8", NON_UTF8_BAD, _exact("empty file")),
    Bad("name-comma-quotes", QUOTES_BAD, NPZ_NOT_VALID),
]


def _good_files() -> dict[str, tuple[Callable[[Path], object], np.ndarray]]:
    """Reported name -> (writer or None for an .npz member, canonical (N, C, [D,] H, W) maps)."""
    chw = peaked((1, 3, 9, 14), 2)
    nchw = peaked((2, 3, 5, 6), 3, np.float64)
    grey8 = (peaked((1, 1, 6, 10), 4) * 200).astype(np.uint8)
    grey16 = (peaked((1, 1, 7, 5), 5) * 60000).astype(np.uint16)
    rgb = (peaked((1, 1, 5, 8), 6) * 250).astype(np.uint8)
    volume = peaked((1, 1, 3, 4, 5), 7)
    member_a, member_b = peaked((1, 1, 4, 6), 8), peaked((1, 2, 5, 5), 9)

    def npy(maps: np.ndarray, squeeze: int = 0) -> tuple[Callable[[Path], object], np.ndarray]:
        saved = maps.reshape(maps.shape[squeeze:])
        return (lambda p: np.save(p, saved)), maps

    def members(p: Path) -> None:
        with open(p, "wb") as fh:
            np.savez_compressed(fh, a=member_a[0, 0], b=member_b[0])

    return {
        "good_chw.npy": npy(chw, 1),
        "good_nchw.npy": npy(nchw),
        "good_8bit.png": ((lambda p: Image.fromarray(grey8[0, 0]).save(p)), grey8),
        "good_16bit.png": ((lambda p: Image.fromarray(grey16[0, 0]).save(p)), grey16),
        "good_grey_rgb.png": (
            (lambda p: Image.fromarray(np.stack([rgb[0, 0]] * 3, -1)).save(p)),
            rgb,
        ),
        "good_volume.tif": ((lambda p: p.write_bytes(tiff_stack(list(volume[0, 0])))), volume),
        "good_members.npz": (members, np.empty(0)),  # the file; its members are below
        "good_members.npz:a": (None, member_a),
        "good_members.npz:b": (None, member_b),
        "mixed.npz:good": (None, MIXED_GOOD[None]),
        "budget.npz:ok": (None, BUDGET_OK[None, None]),
        "sub/deeper/good.npy": npy(peaked((1, 1, 4, 4), 12), 2),
        "dir.npy/inside_a_folder_named_dir.npy.npy": npy(peaked((1, 1, 5, 4), 13), 2),
        NON_UTF8_GOOD: npy(peaked((1, 1, 3, 5), 14), 2),
        NEWLINE_GOOD: npy(peaked((1, 1, 4, 3), 15), 2),
        QUOTES_GOOD: npy(peaked((1, 2, 3, 3), 16), 1),
        COMMA_GOOD: npy(peaked((1, 1, 2, 6), 17), 2),
        SPACE_GOOD: ((lambda p: Image.fromarray(grey8[0, 0]).save(p)), grey8),
        UNICODE_GOOD: npy(peaked((1, 1, 6, 2), 18), 2),
    }


GOOD = {name: maps for name, (_, maps) in _good_files().items() if maps.size}
WARNINGS = {"good_grey_rgb.png": "RGB image converted to grayscale (luma)"}


def build_corpus(folder: Path, marker: Path) -> None:
    folder.mkdir(parents=True)
    for name, write in _write_files(folder, marker).items():
        write(folder / name)
    for name, (write, _) in _good_files().items():
        if write is not None:
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            write(folder / name)
    links = folder / "links"
    links.mkdir()
    (links / "dangling.npy").symlink_to(folder / "deleted.npy")
    (links / "loop.npy").symlink_to("loop.npy")
    (links / "loop_a.npy").symlink_to("loop_b.npy")
    (links / "loop_b.npy").symlink_to("loop_a.npy")
    (links / "up").symlink_to("..", target_is_directory=True)  # a folder loop: not followed
    (folder / "hollow.npy").mkdir()  # an empty folder named like a heatmap: nothing to read
    nan_map = peaked((3, 5, 7), 19)
    nan_map[1, 2, 3] = np.nan  # one bad map: reported, its neighbours decoded
    np.save(folder / "nan_map.npy", nan_map)
    (folder / "notes.txt").write_text("ignored: not a heatmap suffix")


# --------------------------------------------------------------------------- helpers


def written(name: str) -> str:
    """``name`` as coordinates.csv/json hold it: undecodable bytes as the text ``\\xNN``."""
    return "".join(f"\\x{ord(c) - 0xDC00:02x}" if 0xDC80 <= ord(c) <= 0xDCFF else c for c in name)


def shown(name: str) -> str:
    """``name`` as messages show it: undecodable bytes as in the CSV, control characters
    escaped, so a message stays on one line."""
    return "".join(repr(c)[1:-1] if ord(c) < 0x20 or ord(c) == 0x7F else c for c in written(name))


def read_csv(out: Path) -> list[dict[str, str]]:
    text = (out / "coordinates.csv").read_bytes().decode("utf-8")  # strict: valid UTF-8
    return list(csv.DictReader(io.StringIO(text, newline="")))


def read_json(out: Path) -> dict:
    return json.loads((out / "coordinates.json").read_bytes().decode("utf-8"))


def assert_usage_error(code: int, err: str, message: str) -> None:
    assert code == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("heatdecode: error: "), lines
    assert re.search(message, lines[0]), (message, lines[0])


@dataclass
class CorpusRun:
    folder: Path
    out: Path
    code: int
    err: str
    rows: list[dict[str, str]]
    doc: dict
    marker: Path


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> CorpusRun:
    """The whole corpus folder, decoded by one in-process ``heatdecode run``."""
    root = tmp_path_factory.mktemp("corpus")
    folder, out, marker = root / "in", root / "out", root / "pickle-marker"
    build_corpus(folder, marker)
    # like the real sys.stderr: UTF-8 with backslashreplace, so any name can be printed
    err = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="backslashreplace")
    with redirect_stderr(err), redirect_stdout(io.StringIO()):
        code = main(["run", str(folder), "--out", str(out), "--quiet", "--workers", "2"])
    err.flush()
    text = err.buffer.getvalue().decode("utf-8")
    return CorpusRun(folder, out, code, text, read_csv(out), read_json(out), marker)


# --------------------------------------------------------------------------- the corpus run


def test_corpus_has_enough_distinct_cases():
    assert len({case.id for case in BAD_CASES}) == len(BAD_CASES) >= 30
    assert len({case.name for case in BAD_CASES}) == len(BAD_CASES)


def test_corpus_run_exits_1_without_a_traceback(corpus):
    assert corpus.code == 1
    assert "Traceback" not in corpus.err
    for line in corpus.err.splitlines():
        assert line.startswith(("error: ", "warning: ")), line


def test_every_message_is_expected_and_every_bad_file_has_one(corpus):
    errors = [line for line in corpus.err.splitlines() if line.startswith("error: ")]
    expected = [f"error: {shown(case.name)}: " for case in BAD_CASES] + [
        "error: nan_map.npy: sample 0 channel 1: map contains NaN or Inf, not decoded"
    ]
    assert len(errors) == len(expected), errors
    for line in errors:
        assert sum(line.startswith(prefix) for prefix in expected) == 1, line
    warnings = [line for line in corpus.err.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == len(WARNINGS), warnings
    for (name, text), line in zip(WARNINGS.items(), warnings, strict=True):
        assert line.startswith(f"warning: {name}: {text}"), line


@pytest.mark.parametrize("case", BAD_CASES, ids=[case.id for case in BAD_CASES])
def test_bad_input_gets_one_line_a_failure_entry_and_no_rows(corpus, case):
    prefix = f"error: {shown(case.name)}: "
    lines = [line for line in corpus.err.splitlines() if line.startswith(prefix)]
    assert len(lines) == 1, (prefix, corpus.err)
    assert re.fullmatch(re.escape(prefix) + case.reason, lines[0]), lines[0]
    failures = [f for f in corpus.doc["failures"] if f["file"] == written(case.name)]
    assert len(failures) == 1, corpus.doc["failures"]
    assert re.fullmatch(case.reason, failures[0]["reason"]), failures[0]
    assert not [r for r in corpus.rows if r["file"] == written(case.name)]
    assert written(case.name) not in {f["file"] for f in corpus.doc["files"]}


def test_failures_list_holds_exactly_the_bad_inputs(corpus):
    assert sorted(f["file"] for f in corpus.doc["failures"]) == sorted(
        written(case.name) for case in BAD_CASES
    )


@pytest.mark.parametrize("name", sorted(GOOD), ids=lambda n: n.encode("ascii", "replace").decode())
def test_every_good_file_beside_the_bad_ones_is_decoded(corpus, name):
    maps = GOOD[name]
    n, c, *spatial = maps.shape
    rows = [r for r in corpus.rows if r["file"] == written(name)]
    keys = sorted((int(r["sample"]), int(r["channel"]), r["decoder"]) for r in rows)
    assert keys == sorted(
        (s, ch, d) for s in range(n) for ch in range(c) for d in ("argmax", "softargmax")
    )
    axes = "xyz"[: len(spatial)]
    for r in rows:
        assert r["status"] != "nonfinite"
        if r["decoder"] == "argmax":
            heatmap = maps[int(r["sample"]), int(r["channel"])]
            peak = np.unravel_index(np.argmax(heatmap), heatmap.shape)[::-1]
            assert [float(r[a]) for a in axes] == [float(i) for i in peak], r
    assert written(name) in {f["file"] for f in corpus.doc["files"]}


def test_a_map_with_nan_is_reported_and_its_neighbours_decoded(corpus):
    rows = [r for r in corpus.rows if r["file"] == "nan_map.npy"]
    status = {(r["channel"], r["decoder"]): r["status"] for r in rows}
    assert status[("1", "argmax")] == status[("1", "softargmax")] == "nonfinite"
    assert status[("0", "argmax")] != "nonfinite" and status[("2", "argmax")] != "nonfinite"
    assert corpus.doc["nonfinite_maps"] == [{"file": "nan_map.npy", "sample": 0, "channel": 1}]


def test_folders_named_like_heatmaps_are_folders_and_loops_are_not_followed(corpus):
    files = {f["file"] for f in corpus.doc["files"]}
    assert "dir.npy/inside_a_folder_named_dir.npy.npy" in files
    assert not any(name.startswith(("hollow.npy", "links/up/")) for name in files)
    assert not any("hollow.npy" in f["file"] for f in corpus.doc["failures"])


def test_pickled_payloads_are_never_unpickled(corpus):
    assert not corpus.marker.exists()


def test_awkward_names_round_trip_through_csv_and_json(corpus):
    csv_names = {r["file"] for r in corpus.rows}
    json_names = {r["file"] for r in corpus.doc["rows"]}
    for name in (NEWLINE_GOOD, QUOTES_GOOD, COMMA_GOOD, SPACE_GOOD, UNICODE_GOOD):
        assert name in csv_names and name in json_names, name
    # an undecodable byte is written as the text \xNN, in both files alike ...
    assert "caf\\xe9 \\xff.npy" in csv_names and "caf\\xe9 \\xff.npy" in json_names
    assert {f["file"] for f in corpus.doc["failures"]} >= {"bad-\\xfe\\xff.npy", QUOTES_BAD}
    # ... and turns back into the name on disk
    as_written = written(NON_UTF8_GOOD)
    disk = os.fsdecode(codecs.escape_decode(as_written.encode("utf-8"))[0])
    assert disk == NON_UTF8_GOOD and (corpus.folder / disk).is_file()
    # the CSV's rows are whole: a name's newline or comma doesn't split a row
    assert all(len(r) == len(CSV_COLUMNS) and None not in r for r in corpus.rows)
    assert len(corpus.rows) == len(corpus.doc["rows"])


def test_outputs_are_valid_utf8_without_raw_surrogates(corpus):
    for name in ("coordinates.csv", "coordinates.json"):
        text = (corpus.out / name).read_bytes().decode("utf-8")  # raises on invalid UTF-8
        assert not any(0xD800 <= ord(c) <= 0xDFFF for c in text), name


def test_terabyte_header_is_refused_without_allocating(corpus):
    tracemalloc.start()
    try:
        [item] = load_source(Source(corpus.folder / "npy_terabytes.npy", "npy_terabytes.npy"))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert isinstance(item, LoadFailure) and "7.3 TB" in item.reason
    assert peak < 4 * 2**20


# --------------------------------------------------------------------------- runs of their own


@pytest.fixture
def good_file(tmp_path: Path) -> Path:
    path = tmp_path / "in" / "good.npy"
    path.parent.mkdir()
    np.save(path, peaked((1, 2, 6, 7), 21)[0])
    return path


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the sources the run reads (none, for a usage error)."""
    import heatdecode.loading as loading
    import heatdecode.pipeline as pipeline

    seen: list[str] = []
    real = loading.load_source

    def spy(source, *args, **kwargs):
        seen.append(source.name)
        return real(source, *args, **kwargs)

    monkeypatch.setattr(loading, "load_source", spy)
    monkeypatch.setattr(pipeline, "load_source", spy, raising=False)
    return seen


BAD_OPTIONS = [
    (["--beta", "0"], r"--beta must be a finite number > 0 and at most 1e\+06, got 0\.0"),
    (["--beta", "-2"], r"--beta must be a finite number > 0 and at most 1e\+06, got -2\.0"),
    (["--beta", "nan"], r"--beta must be a finite number > 0 and at most 1e\+06, got nan"),
    (["--beta", "inf"], r"--beta must be a finite number > 0 and at most 1e\+06, got inf"),
    (["--beta", "-inf"], r"--beta must be a finite number > 0 and at most 1e\+06, got -inf"),
    (["--beta", "1e-400"], r"--beta must be a finite number > 0 and at most 1e\+06, got 0\.0"),
    (["--beta", "hot"], r"Invalid value for '--beta'"),
    (["--batch-size", "0"], r"--batch-size must be at least 1, got 0"),
    (["--batch-size", "-5"], r"--batch-size must be at least 1, got -5"),
    (["--layout", "HHW"], r"layout 'HHW' repeats the letter H"),
    (["--layout", "CHWC"], r"layout 'CHWC' repeats the letter C"),
    (["--layout", "XYZ"], r"layout 'XYZ' has the unknown letter 'X'"),
    (["--layout", "CW"], r"layout 'CW' needs both H and W"),
    (["--decoder", "median"], r"'median' is not one of"),
    (["-d", "argmax", "-d", "DARK"], r"'DARK' is not one of"),
    (["--normalize", "sqrt"], r"'sqrt' is not one of"),
    (["--device", "tpu"], r"unknown device 'tpu'"),
    (["--workers", "0"], r"--workers must be at least 1, got 0"),
    (["--radius", "0"], r"--radius must be an integer >= 1, got 0"),
    (
        ["--sigma", "nan"],
        r"--sigma must be a number from 0 to 10000 px \(or unset: estimated\), got nan",
    ),
    (["--max-map-bytes", "0"], r"--max-map-bytes must be at least 1 byte, got 0"),
    (["--max-map-bytes", "lots"], r"--max-map-bytes: 'lots' is not a size"),
    (["--max-map-bytes", "-1G"], r"--max-map-bytes: '-1G' is not a size"),
]


@pytest.mark.parametrize(
    ("extra", "message"), BAD_OPTIONS, ids=["_".join(extra) for extra, _ in BAD_OPTIONS]
)
def test_bad_option_is_one_line_exit_2_before_any_work(good_file, loads, capsys, extra, message):
    out = good_file.parent.parent / "out"
    code = main(["run", str(good_file), "--out", str(out), *extra])
    assert_usage_error(code, capsys.readouterr().err, message)
    assert loads == []  # not a single file read
    assert not out.exists()


def test_no_paths_at_all_is_a_usage_error(tmp_path, capsys):
    code = main(["run", "--out", str(tmp_path / "out")])
    assert_usage_error(code, capsys.readouterr().err, r"Missing argument")


def test_out_that_is_a_file_is_refused_before_any_work(good_file, loads, capsys):
    out = good_file.parent.parent / "taken"
    out.write_text("not a folder")
    code = main(["run", str(good_file), "--out", str(out)])
    assert_usage_error(code, capsys.readouterr().err, re.escape(f"--out {out} is a file"))
    assert loads == [] and out.read_text() == "not a folder"


def test_out_below_a_file_is_not_writable(good_file, loads, capsys):
    blocker = good_file.parent.parent / "blocker"
    blocker.write_text("x")
    out = blocker / "sub" / "out"
    code = main(["run", str(good_file), "--out", str(out)])
    assert_usage_error(code, capsys.readouterr().err, re.escape(f"--out {out} is not writable"))
    assert loads == []


# Unreadable inputs and read-only folders: root reads and writes anything, so when
# the tests run as root the run is a subprocess without the capabilities that let
# root ignore permissions (setpriv); elsewhere an ordinary subprocess.


def _unprivileged(probe: Path) -> list[str] | None:
    """A command prefix under which ``probe`` (mode 000) can't be read, or None."""
    probe.write_text("secret")
    probe.chmod(0)
    try:
        if not os.access(probe, os.R_OK):
            return []
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            return None
        prefix = [setpriv, "--bounding-set", "-dac_override,-dac_read_search", "--"]
        works = subprocess.run([*prefix, "true"], capture_output=True, timeout=30)
        denied = subprocess.run([*prefix, "cat", str(probe)], capture_output=True, timeout=30)
        return prefix if works.returncode == 0 and denied.returncode != 0 else None
    except (OSError, subprocess.SubprocessError):
        return None
    finally:
        probe.chmod(0o600)
        probe.unlink()


def run_cli_process(prefix: list[str], args: list[str]) -> subprocess.CompletedProcess:
    code = "import sys; from heatdecode.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run(
        [*prefix, sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )


def test_unreadable_file_and_folder_are_reported_and_the_rest_decoded(tmp_path):
    prefix = _unprivileged(tmp_path / "probe")
    if prefix is None:
        pytest.skip("running as root, and no setpriv to drop the right to read anything")
    folder = tmp_path / "in"
    folder.mkdir()
    np.save(folder / "a_good.npy", peaked((2, 4, 5), 31)[0])
    np.save(folder / "locked.npy", peaked((4, 5), 32))
    (folder / "locked_folder").mkdir()
    np.save(folder / "locked_folder" / "inside.npy", peaked((4, 5), 33))
    np.save(folder / "z_good.npy", peaked((4, 5), 34))
    (folder / "locked.npy").chmod(0)
    (folder / "locked_folder").chmod(0)
    out = tmp_path / "out"
    try:
        done = run_cli_process(prefix, ["run", str(folder), "--out", str(out), "-q"])
    finally:
        (folder / "locked.npy").chmod(0o644)
        (folder / "locked_folder").chmod(0o755)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.splitlines() == [
        "error: locked.npy: permission denied",
        "error: locked_folder: permission denied (a folder that can't be listed: "
        "nothing in it was read)",
    ]
    assert {r["file"] for r in read_csv(out)} == {"a_good.npy", "z_good.npy"}
    assert [f["file"] for f in read_json(out)["failures"]] == ["locked.npy", "locked_folder"]


def test_out_in_a_read_only_folder_is_refused_before_any_work(tmp_path, good_file):
    prefix = _unprivileged(tmp_path / "probe")
    if prefix is None:
        pytest.skip("running as root, and no setpriv to drop the right to write anywhere")
    readonly = tmp_path / "readonly"
    readonly.mkdir()
    readonly.chmod(0o555)
    out = readonly / "out"
    try:
        done = run_cli_process(prefix, ["run", str(good_file), "--out", str(out)])
    finally:
        readonly.chmod(0o755)
    assert_usage_error(done.returncode, done.stderr, re.escape(f"--out {out} is not writable"))
    assert not out.exists()


def test_symlink_loop_given_as_an_argument(tmp_path, good_file, capsys):
    loop = tmp_path / "loop.npy"
    loop.symlink_to("loop.npy")
    out = tmp_path / "out"
    code = main(["run", str(loop), str(good_file), "--out", str(out), "-q"])
    assert code == 1
    assert capsys.readouterr().err.splitlines() == ["error: loop.npy: symbolic link loop"]
    assert {r["file"] for r in read_csv(out)} == {"good.npy"}


def test_folder_named_like_a_heatmap_given_as_an_argument_is_scanned(tmp_path, capsys):
    folder = tmp_path / "x.npy"
    folder.mkdir()
    np.save(folder / "inner.npy", peaked((3, 4), 41))
    out = tmp_path / "out"
    assert main(["run", str(folder), "--out", str(out), "-q"]) == 0
    assert {r["file"] for r in read_csv(out)} == {"inner.npy"}
    assert capsys.readouterr().err == ""


def test_empty_folder_named_like_a_heatmap_is_nothing_to_decode(tmp_path, loads, capsys):
    (tmp_path / "hollow.npy").mkdir()
    code = main(["run", str(tmp_path / "hollow.npy"), "--out", str(tmp_path / "out")])
    assert_usage_error(code, capsys.readouterr().err, r"nothing to decode")
    assert loads == []


def test_bad_file_whose_name_holds_a_newline_gets_one_line(tmp_path, good_file, capsys):
    bad = tmp_path / "bad\nname.npy"
    bad.write_bytes(b"")
    code = main(["run", str(bad), str(good_file), "--out", str(tmp_path / "out"), "-q"])
    assert code == 1
    err = capsys.readouterr().err
    assert err.splitlines() == ["error: bad\\nname.npy: empty file"], err


# ------------------------------------------------------------- budgets, FIFOs, deep trees


def test_max_map_bytes_refuses_bigger_files_and_decodes_the_rest(tmp_path, good_file, capsys):
    big = tmp_path / "in" / "big.npy"
    np.save(big, peaked((64, 64), 51))  # 16 KB of float32
    out = tmp_path / "out"
    code = main(["run", str(big), str(good_file), "--out", str(out), "-q", "--max-map-bytes", "1K"])
    assert code == 1
    assert capsys.readouterr().err.splitlines() == [
        "error: big.npy: refused: the array would take 16.0 KB, over the --max-map-bytes "
        "limit of 1.0 KB (raise it with --max-map-bytes)"
    ]
    assert {r["file"] for r in read_csv(out)} == {"good.npy"}
    again = ["run", str(big), "--out", str(out), "-q", "--overwrite", "--max-map-bytes", "16K"]
    assert main(again) == 0  # raised to the array's size: decoded


def _run_with_timeout(args: list[str]) -> subprocess.CompletedProcess:
    """``heatdecode ARGS`` in a subprocess killed after a minute: a hang fails, not stalls."""
    code = "import sys; from heatdecode.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=60
    )


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_fifo_and_socket_in_a_folder_are_reported_skipped_and_the_run_finishes(tmp_path):
    import socket

    folder = tmp_path / "in"
    folder.mkdir()
    np.save(folder / "a.npy", peaked((4, 5), 52))
    os.mkfifo(folder / "x.npy")
    server = socket.socket(socket.AF_UNIX)
    try:
        server.bind(str(folder / "s.npy"))
        done = _run_with_timeout(["run", str(folder), "--out", str(tmp_path / "out"), "-q"])
    finally:
        server.close()
    assert done.returncode == 1, done.stderr
    assert sorted(done.stderr.splitlines()) == [
        "error: s.npy: not a regular file (a socket); skipped",
        "error: x.npy: not a regular file (a FIFO); skipped",
    ]
    assert {r["file"] for r in read_csv(tmp_path / "out")} == {"a.npy"}
    failures = read_json(tmp_path / "out")["failures"]
    assert sorted(f["file"] for f in failures) == ["s.npy", "x.npy"]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_fifo_and_device_given_as_arguments_are_refused_without_reading(tmp_path, good_file):
    fifo = tmp_path / "f.npy"
    os.mkfifo(fifo)
    args = ["run", str(fifo), str(good_file), "--out", str(tmp_path / "out"), "-q"]
    if os.path.exists("/dev/zero"):
        args.insert(2, "/dev/zero")
    done = _run_with_timeout(args)
    assert done.returncode == 1, done.stderr
    expected = ["error: f.npy: not a regular file (a FIFO)"]
    if os.path.exists("/dev/zero"):
        expected.append("error: zero: not a regular file (a character device)")
    assert done.stderr.splitlines() == expected
    assert {r["file"] for r in read_csv(tmp_path / "out")} == {"good.npy"}


def test_a_tree_deeper_than_the_path_limit_is_reported_and_the_rest_decoded(
    tmp_path, capsys, deep_tree, remove_tree
):
    folder = tmp_path / "in"
    folder.mkdir()
    try:
        deep_tree(folder, 2100, (1100, 2100))  # 4,200 characters: over Linux's 4,096
        out = tmp_path / "out"
        code = main(["run", str(folder), "--out", str(out), "-q"])
        err = capsys.readouterr().err
        files = {r["file"] for r in read_csv(out)}
    finally:
        remove_tree(tmp_path)  # the input tree, and the overlays' tree under out/
    assert code == 1, err
    [line] = err.splitlines()
    assert line.startswith("error: a/a/a/") and line.endswith(
        ": path too long to open (over the system's limit)"
    )
    assert files == {"a/" * 1100 + "x.npy"}


def test_a_per_axis_stride_that_does_not_fit_a_file_fails_that_file_alone(tmp_path, capsys):
    """A 3-value --stride on a folder of 2D and 3D maps: the 2D ones fail with the
    reason (no traceback), the volume is decoded and written."""
    flat = np.zeros((6, 8), np.float32)
    flat[2, 3] = 1
    volume = np.zeros((1, 1, 5, 6, 8), np.float32)
    volume[0, 0, 2, 3, 4] = 1
    np.save(tmp_path / "image.npy", flat)
    np.save(tmp_path / "volume.npy", volume)
    out = tmp_path / "out"
    code = main(["run", str(tmp_path), "--out", str(out), "--stride", "4,4,2", "-q"])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    assert "image.npy: --stride has 3 values (x,y,z) but this map has 2 axes" in err
    with open(out / "coordinates.csv", newline="") as fh:
        files = {row["file"] for row in csv.DictReader(fh)}
    assert files == {"volume.npy"}
