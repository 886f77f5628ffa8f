"""Fuzzing the loaders: mutated ``.npy``, ``.npz``, ``.png`` and ``.tif`` bytes through
:func:`heatdecode.loading.load_source`.

Each case takes a valid file (several dtypes, layouts, modes, compressions per
format), applies a few mutations drawn by hypothesis (bit flips, overwritten,
inserted or deleted runs of ``binary()``, truncation, 32-bit fields set to
edge values, duplicated slices; plus format-aware ones: a rewritten ``.npy``
header, a mutated ``.npz`` member re-zipped with valid CRCs, PNG chunks with
their CRCs fixed so the mutation reaches the decoder) and loads it. The only
outcomes allowed are :class:`HeatmapArray` items that are ready to decode or
:class:`LoadFailure` items with a one-line reason: any other exception, a
warning that isn't Pillow's (the CLI silences Pillow's; others would reach the
user's terminal), or a case running longer than ``CASE_SECONDS`` fails.

``HEATDECODE_FUZZ_EXAMPLES`` sets the cases per format (default 600: 2,400
cases plus 200 with a random suffix, about 10-20 s); the last test prints how
many ran and how long they took.
"""

from __future__ import annotations

import io
import os
import signal
import struct
import time
import tracemalloc
import warnings
import zipfile
import zlib
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from heatdecode.layouts import LETTERS
from heatdecode.loading import HeatmapArray, LoadFailure, Source, load_source

EXAMPLES = int(os.environ.get("HEATDECODE_FUZZ_EXAMPLES", "600"))
CROSS_EXAMPLES = max(1, EXAMPLES // 3)
CASE_SECONDS = 10  # a case that takes longer is a hang
RAN: Counter[str] = Counter()
CLOCK: dict[str, float] = {}

FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)

# --------------------------------------------------------------------------- seeds


def _npy(array: np.ndarray, version: tuple[int, int] | None = None) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, array, version=version)
    return buffer.getvalue()


def _npz(compressed: bool, **arrays: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buffer, **arrays)
    return buffer.getvalue()


def _image(array: np.ndarray, fmt: str, mode: str | None = None, **kwargs) -> bytes:
    image = Image.fromarray(array)
    if mode is not None:
        image = image.convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def _stack(pages: list[np.ndarray], **kwargs) -> bytes:
    images = [Image.fromarray(p) for p in pages]
    buffer = io.BytesIO()
    images[0].save(buffer, "TIFF", save_all=True, append_images=images[1:], **kwargs)
    return buffer.getvalue()


def _seeds() -> dict[str, list[bytes]]:
    rng = np.random.default_rng(5)
    grey = rng.integers(0, 255, (5, 7), dtype=np.uint8)
    wide = (rng.random((4, 6)) * 60000).astype(np.uint16)
    floats = rng.random((5, 6)).astype(np.float32)
    rgb = rng.integers(0, 255, (4, 5, 3), dtype=np.uint8)
    return {
        ".npy": [
            _npy(floats),
            _npy(rng.random((2, 4, 5))),
            _npy(grey),
            _npy(floats.astype(">f4")),
            _npy(np.asfortranarray(rng.random((3, 4)))),
            _npy(floats.astype(np.float16), version=(2, 0)),
            _npy(floats, version=(3, 0)),
            _npy(rng.integers(-9, 9, (1, 2, 3, 4))),
            _npy(rng.random((1, 1, 2, 3, 4)).astype(np.float32)),
        ],
        ".npz": [
            _npz(False, a=floats, b=grey),
            _npz(True, a=floats, b=rng.random((2, 3, 4))),
            _npz(True, only=wide),
            _npz(False, vol=rng.random((1, 1, 2, 3, 3)).astype(np.float32)),
        ],
        ".png": [
            _image(grey, "PNG"),
            _image(wide, "PNG"),
            _image(rgb, "PNG"),
            _image(rgb, "PNG", "RGBA"),
            _image(rgb, "PNG", "P"),
            _image(grey, "PNG", "LA"),
            _image(grey, "PNG", "1"),
            _image(grey, "PNG", compress_level=0),
        ],
        ".tif": [
            _image(grey, "TIFF"),
            _image(floats, "TIFF"),
            _image(wide, "TIFF"),
            _image(rgb, "TIFF"),
            _image(grey, "TIFF", compression="tiff_deflate"),
            _image(grey, "TIFF", compression="packbits"),
            _stack([grey, grey // 2, grey // 3]),
            _stack([floats, floats * 2], compression="tiff_lzw"),
        ],
    }


SEEDS = _seeds()

# --------------------------------------------------------------------------- mutations

EDGE_INTS = [0, 1, 2, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0xFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF]


@st.composite
def mutate(draw, data: bytes) -> bytes:
    """``data`` with 1 to 6 blind mutations."""
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(
            st.sampled_from(
                ["flip", "set", "overwrite", "insert", "delete", "truncate", "int", "duplicate"]
            )
        )
        at = draw(st.integers(0, max(0, len(out) - 1)))
        if kind == "flip" and out:
            out[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set" and out:
            out[at] = draw(st.integers(0, 255))
        elif kind == "overwrite":
            chunk = draw(st.binary(min_size=1, max_size=8))
            out[at : at + len(chunk)] = chunk
        elif kind == "insert":
            out[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "delete":
            del out[at : at + draw(st.integers(1, 16))]
        elif kind == "truncate":
            del out[at:]
        elif kind == "int":
            value = draw(st.sampled_from([*EDGE_INTS, len(data), len(data) + 1]))
            fmt = draw(st.sampled_from(["<I", ">I", "<H", ">H"]))
            size = struct.calcsize(fmt)
            if len(out) >= size:
                at = min(at, len(out) - size)
                struct.pack_into(fmt, out, at, value & ((1 << (8 * size)) - 1))
        elif kind == "duplicate" and out:
            length = draw(st.integers(1, 32))
            out[draw(st.integers(0, len(out))) : 0] = out[at : at + length]
    return bytes(out)


DESCRS = [
    "<f4",
    ">f8",
    "<f2",
    "|u1",
    "<i8",
    "|O",
    "<c8",
    "|b1",
    "<U3",
    "|S2",
    "<M8[s]",
    "|V4",
    "zz",
    "",
    "[('a', '<f4')]",
    "('<f4', (2, 2))",
]
DIMS = st.one_of(
    st.integers(0, 9),
    st.sampled_from([-1, -(2**62), 2**31, 2**63, 2**64 + 7, 10**30, True]),
)


@st.composite
def npy_header(draw, data: bytes) -> bytes:
    """``data``'s array bytes behind a rewritten header: odd shapes, dtypes, orders, versions."""
    version = draw(st.sampled_from([(1, 0), (2, 0), (3, 0), (0, 0), (9, 9)]))
    start = 10 if data[6] == 1 else 12
    length = struct.unpack_from("<H" if data[6] == 1 else "<I", data, 8)[0]
    body = data[start + length :]
    shape = tuple(draw(st.lists(DIMS, max_size=6)))
    descr = draw(st.sampled_from(DESCRS))
    descr_text = descr if descr.startswith(("[", "(")) else repr(descr)
    order = draw(st.sampled_from(["False", "True", "0", "'yes'"]))
    text = f"{{'descr': {descr_text}, 'fortran_order': {order}, 'shape': {shape!r}, }}"
    text = draw(st.sampled_from([text, text[: len(text) // 2], text.replace("'", '"')]))
    raw = text.encode("utf-8").ljust(draw(st.integers(len(text), len(text) + 80))) + b"\n"
    size = struct.pack("<H" if version[0] < 2 else "<I", min(len(raw), 0xFFFF))
    return b"\x93NUMPY" + bytes(version) + size + raw + body


def rezip(data: bytes, member: bytes, name: str, compression: int) -> bytes:
    """``data``'s archive with ``name`` replaced by ``member``, written with valid CRCs."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as source:
        with zipfile.ZipFile(buffer, "w", compression) as target:
            for info in source.infolist():
                content = member if info.filename == name else source.read(info.filename)
                target.writestr(info.filename, content)
    return buffer.getvalue()


@st.composite
def npz_member(draw, data: bytes) -> bytes:
    """A valid archive holding one mutated (or header-rewritten) member."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        names = archive.namelist()
        name = draw(st.sampled_from(names))
        member = archive.read(name)
    member = draw(st.one_of(mutate(member), npy_header(member)))
    compression = draw(st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED]))
    return rezip(data, member, name, compression)


def fix_png_crcs(data: bytes) -> bytes:
    """Recompute every chunk's CRC, so a mutation gets past the checksum to the decoder."""
    out = bytearray(data)
    at = 8
    while at + 12 <= len(out):
        length = struct.unpack_from(">I", out, at)[0]
        end = at + 8 + length
        if end + 4 > len(out):
            break
        struct.pack_into(">I", out, end, zlib.crc32(bytes(out[at + 4 : end])) & 0xFFFFFFFF)
        at = end + 4
    return bytes(out)


@st.composite
def damaged(draw, suffix: str) -> bytes:
    seed = draw(st.sampled_from(SEEDS[suffix]))
    ways = [mutate(seed)]
    if suffix == ".npy":
        ways += [npy_header(seed), npy_header(seed).flatmap(mutate)]
    elif suffix == ".npz":
        ways += [npz_member(seed)]
    elif suffix == ".png":
        ways += [mutate(seed).map(fix_png_crcs)]
    ways += [st.binary(max_size=200)]  # and now and then, anything at all
    return draw(st.one_of(ways))


# --------------------------------------------------------------------------- the check


class Hang(Exception):
    pass


def _alarm(signum, frame):
    raise Hang(f"a case ran longer than {CASE_SECONDS} s")


def check(path: Path, data: bytes, label: str) -> None:
    """Load ``data`` as ``path``: a decoded map or a clean failure, nothing else."""
    path.write_bytes(data)
    name = path.name
    timed = hasattr(signal, "SIGALRM")  # POSIX: a Python-level hang is interrupted
    previous = signal.signal(signal.SIGALRM, _alarm) if timed else None
    if timed:
        signal.alarm(CASE_SECONDS)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            items = load_source(Source(path, name))
    finally:
        if timed:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, previous)
    RAN[label] += 1
    # the CLI silences Pillow's warnings (the file is reported once, as a failure);
    # anything else would print a multi-line warning on the user's terminal
    stray = [w for w in caught if f"{os.sep}PIL{os.sep}" not in w.filename]
    assert not stray, [f"{w.category.__name__}: {w.message} ({w.filename})" for w in stray]
    assert isinstance(items, list) and items
    for item in items:
        if isinstance(item, LoadFailure):
            assert item.name == name or item.name.startswith(f"{name}:"), item
            assert isinstance(item.reason, str) and item.reason.strip(), item
            assert "\n" not in item.reason and "\r" not in item.reason, item
            assert "Traceback" not in item.reason and len(item.reason) < 400, item
        else:
            assert isinstance(item, HeatmapArray), item
            assert item.name == name or item.name.startswith(f"{name}:"), item
            assert item.maps.ndim == (5 if "D" in item.layout else 4), item.layout
            assert item.maps.dtype in (np.float32, np.float64)
            assert item.maps.size == int(np.prod(item.shape)) > 0
            assert set(item.layout) <= set(LETTERS) and len(item.layout) == len(item.shape)


# --------------------------------------------------------------------------- the tests


@pytest.fixture(scope="module", autouse=True)
def clock():
    """When this file's first test started (for the closing report)."""
    CLOCK["start"] = time.perf_counter()


@pytest.mark.parametrize("suffix", [".npy", ".npz", ".png", ".tif"])
def test_every_seed_file_loads(tmp_path, suffix):
    for k, data in enumerate(SEEDS[suffix]):
        path = tmp_path / f"seed{k}{suffix}"
        path.write_bytes(data)
        items = load_source(Source(path, path.name))
        assert items and all(isinstance(i, HeatmapArray) for i in items), (k, items)


@pytest.mark.parametrize("suffix", [".npy", ".npz", ".png", ".tif"])
@FUZZ
@given(data=st.data())
def test_mutated_files_load_or_fail_cleanly(tmp_path, suffix, data):
    check(tmp_path / f"fuzz{suffix}", data.draw(damaged(suffix), label="bytes"), suffix)


@settings(FUZZ, max_examples=CROSS_EXAMPLES)
@given(
    source=st.sampled_from([".npy", ".npz", ".png", ".tif"]),
    suffix=st.sampled_from([".npy", ".npz", ".png", ".tif", ".tiff", ".NPY", ".txt", ""]),
    data=st.data(),
)
def test_mutated_files_under_any_suffix(tmp_path, source, suffix, data):
    check(tmp_path / f"fuzz{suffix}", data.draw(damaged(source), label="bytes"), "any suffix")


BUDGET = 128  # bytes: under most seeds, so mutated files are refused as well as read


@pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow's notes on damaged TIFF tags
@settings(FUZZ, max_examples=CROSS_EXAMPLES)
@given(suffix=st.sampled_from([".npy", ".npz", ".png", ".tif"]), data=st.data())
def test_mutated_files_never_pass_a_small_budget(tmp_path, suffix, data):
    """Whatever a mutated header claims, nothing bigger than ``max_map_bytes`` is
    read, and what is refused is refused before its memory is taken."""
    path = tmp_path / f"fuzz{suffix}"
    path.write_bytes(data.draw(damaged(suffix), label="bytes"))
    tracemalloc.start()
    try:
        items = load_source(Source(path, path.name), max_map_bytes=BUDGET)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    RAN["budget"] += 1
    for item in items:
        if isinstance(item, HeatmapArray):  # at least a byte an element as stored
            assert int(np.prod(item.shape)) <= BUDGET, item.shape
        else:
            assert "\n" not in item.reason, item
    if suffix in (".npy", ".npz"):  # heatdecode's own readers: nothing before the checks
        assert peak < 2**20, peak
    # Images: Pillow reads a chunk its header declares with one read(n), which
    # reserves n bytes of address space (untouched, so not resident) before the
    # file runs out: tracemalloc counts it, the machine barely notices; the bound
    # on what is decoded is the shape check above.


def test_report_how_many_cases_ran(capsys):
    total = sum(RAN.values())
    if not total:
        pytest.skip("no fuzz test ran in this session (selected alone)")
    seconds = time.perf_counter() - CLOCK["start"]
    with capsys.disabled():
        counts = ", ".join(f"{label} {n}" for label, n in sorted(RAN.items()))
        print(f"\nfuzzed {total} loader cases in {seconds:.1f} s ({counts})")
    ran_all = {".npy", ".npz", ".png", ".tif"} <= set(RAN)
    if ran_all:
        assert all(RAN[s] >= EXAMPLES for s in (".npy", ".npz", ".png", ".tif")), RAN
