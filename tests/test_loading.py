"""Finding heatmap files (``discover``) and reading them (``load_source``).

Every fixture file is built inside the test from numpy arrays or Pillow images.
Bad files never raise: each becomes a ``LoadFailure`` whose one-line reason
says what is wrong.
"""

from __future__ import annotations

import csv
import io
import os
import struct
import threading
import time
import tracemalloc
import warnings
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

import heatdecode.images as images
import heatdecode.loading as loading
from heatdecode.loading import (
    MAX_MAP_BYTES,
    HeatmapArray,
    LoadFailure,
    Source,
    discover,
    load_source,
    parse_size,
)

# --------------------------------------------------------------------------- helpers


def npy_bytes(array: np.ndarray, version: tuple[int, int] | None = None) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, array, version=version, allow_pickle=True)
    return buffer.getvalue()


def npy_header_only(shape: tuple[int, ...], dtype: str = "<f8") -> bytes:
    """A valid .npy header that promises ``shape`` but carries no data at all."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buffer, {"descr": dtype, "fortran_order": False, "shape": shape}
    )
    return buffer.getvalue()


def write_npy(path: Path, array: np.ndarray, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(npy_bytes(array, **kwargs))
    return path


def write_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def png_bytes(image: Image.Image, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


def write_stack(path: Path, pages: list[np.ndarray]) -> Path:
    images = [Image.fromarray(page) for page in pages]
    images[0].save(path, save_all=True, append_images=images[1:])
    return path


def load(path: Path, layout: str = "auto", name: str | None = None):
    return load_source(Source(path, name if name is not None else path.name), layout)


def load_ok(path: Path, layout: str = "auto") -> HeatmapArray:
    [item] = load(path, layout)
    assert isinstance(item, HeatmapArray), item
    return item


def load_fail(path: Path, layout: str = "auto") -> str:
    """The reason of the single failure loading ``path``; checks it is one plain line."""
    [item] = load(path, layout)
    assert isinstance(item, LoadFailure), item
    assert item.name == path.name
    assert_one_line(item.reason)
    return item.reason


def assert_one_line(reason: str) -> None:
    assert reason.strip()
    assert "\n" not in reason and "\r" not in reason
    assert "Traceback" not in reason


def touch(root: Path, *names: str) -> None:
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")


def names_of(sources) -> list[str]:
    return [s.name for s in sources]


# --------------------------------------------------------------------------- discover


def test_folder_scan_is_recursive_sorted_and_named_relative_to_the_folder(tmp_path):
    data = tmp_path / "data"
    # created out of order on purpose
    touch(data, "z.npy", "b/c/deep.npz", "a.png", "b/one.tif", "b/two.tiff", "A.npy", "b.npy")
    sources, failures = discover([data])
    assert failures == []
    expected = ["A.npy", "a.png", "b.npy", "b/c/deep.npz", "b/one.tif", "b/two.tiff", "z.npy"]
    assert names_of(sources) == expected
    for source in sources:
        assert source.path == data / source.name
        assert "\\" not in source.name


def test_folder_scan_is_deterministic(tmp_path):
    first, second = tmp_path / "one", tmp_path / "two"
    files = ["m.npy", "x/a.npy", "x/b/c.png", "k.npz", "x/b/a.tif"]
    touch(first, *files)
    touch(second, *reversed(files))
    assert names_of(discover([first])[0]) == names_of(discover([second])[0])
    assert discover([first]) == discover([first])


def test_folder_scan_skips_hidden_files_and_folders(tmp_path):
    touch(tmp_path, "keep.npy", ".hidden.npy", ".cache/inside.npy", "sub/.git/x.npz", "sub/ok.npz")
    sources, _ = discover([tmp_path])
    assert names_of(sources) == ["keep.npy", "sub/ok.npz"]


def test_folder_scan_ignores_other_file_types(tmp_path):
    touch(
        tmp_path,
        "map.npy",
        "notes.txt",
        "map.npy.bak",
        "photo.jpg",
        "README",
        "archive.zip",
        "map.npyz",
        "sub/table.csv",
    )
    assert names_of(discover([tmp_path])[0]) == ["map.npy"]


def test_folder_scan_suffixes_are_case_insensitive(tmp_path):
    touch(tmp_path, "A.NPY", "b.Png", "c.TIF")
    assert names_of(discover([tmp_path])[0]) == ["A.NPY", "b.Png", "c.TIF"]


def test_file_argument_is_named_by_its_file_name(tmp_path):
    path = write_npy(tmp_path / "deep" / "er" / "map.npy", np.ones((3, 4)))
    sources, failures = discover([str(path)])
    assert failures == []
    assert sources == [Source(path, "map.npy")]


def test_file_argument_of_another_type_is_taken_and_then_reported(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("not a heatmap")
    sources, _ = discover([path])
    assert names_of(sources) == ["notes.txt"]
    [failure] = load_source(sources[0])
    assert isinstance(failure, LoadFailure)
    assert "unsupported file type .txt" in failure.reason


def test_file_without_suffix_is_reported_as_unsupported(tmp_path):
    path = tmp_path / "heatmap"
    path.write_bytes(npy_bytes(np.ones((2, 2))))
    assert "unsupported file type (no suffix)" in load_fail(path)


def test_explicit_hidden_arguments_are_taken(tmp_path):
    hidden_file = write_npy(tmp_path / ".hidden.npy", np.ones((2, 2)))
    touch(tmp_path / ".folder", "x.npy")
    sources, _ = discover([hidden_file, tmp_path / ".folder"])
    assert names_of(sources) == [".hidden.npy", "x.npy"]


def test_missing_argument_becomes_a_failure_and_the_rest_still_load(tmp_path):
    touch(tmp_path, "a.npy")
    missing = tmp_path / "nope"
    sources, failures = discover([missing, tmp_path, str(tmp_path / "gone.npy")])
    assert names_of(sources) == ["a.npy"]
    assert failures == [
        LoadFailure(str(missing), "no such file or folder", kind="missing"),
        LoadFailure(str(tmp_path / "gone.npy"), "no such file or folder", kind="missing"),
    ]


def test_arguments_keep_their_order_and_duplicate_names_are_told_apart(tmp_path):
    touch(tmp_path / "second", "a.npy", "b.npy")
    touch(tmp_path / "first", "a.npy")
    sources, _ = discover([tmp_path / "second", tmp_path / "first"])
    names = names_of(sources)
    assert names[:2] == ["a.npy", "b.npy"]
    assert len(names) == len(set(names)) == 3
    assert sources[2].path == tmp_path / "first" / "a.npy"


def test_excluded_output_folder_is_skipped(tmp_path):
    data = tmp_path / "data"
    touch(data, "a.npy", "out/coords.npy", "out/deeper/b.png", "outer/c.npy")
    sources, _ = discover([data], exclude=[data / "out"])
    assert names_of(sources) == ["a.npy", "outer/c.npy"]


def test_exclude_matches_however_the_folder_is_spelled(tmp_path, monkeypatch):
    data = tmp_path / "data"
    touch(data, "a.npy", "out/b.npy")
    monkeypatch.chdir(tmp_path)
    # relative argument, exclude spelled with a detour through ..
    sources, _ = discover(["data"], exclude=[tmp_path / "data" / "x" / ".." / "out"])
    assert names_of(sources) == ["a.npy"]
    # absolute argument, relative exclude
    sources, _ = discover([data], exclude=[Path("data/out")])
    assert names_of(sources) == ["a.npy"]


def test_exclude_of_a_folder_that_does_not_exist_is_harmless(tmp_path):
    touch(tmp_path, "a.npy")
    sources, failures = discover([tmp_path], exclude=[tmp_path / "not-yet-created"])
    assert names_of(sources) == ["a.npy"] and failures == []


def test_symlinked_folders_are_not_followed(tmp_path):
    data = tmp_path / "data"
    touch(data, "a.npy")
    touch(tmp_path / "elsewhere", "b.npy")
    (data / "link").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    (data / "loop").symlink_to(data, target_is_directory=True)  # would recurse forever
    assert names_of(discover([data])[0]) == ["a.npy"]


def test_dangling_symlink_is_found_and_reported_as_broken(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "gone.npy").symlink_to(tmp_path / "deleted.npy")
    # inside a folder scan
    sources, failures = discover([data])
    assert failures == []
    assert names_of(sources) == ["gone.npy"]
    [failure] = load_source(sources[0])
    assert failure == LoadFailure("gone.npy", "broken symbolic link")
    # as a file argument it is a source too, not "no such file"
    sources, failures = discover([data / "gone.npy"])
    assert names_of(sources) == ["gone.npy"] and failures == []
    assert "broken symbolic link" in load_fail(data / "gone.npy")


# --------------------------------------------------------------------------- .npy


@pytest.mark.parametrize(
    ("shape", "layout", "canonical"),
    [
        ((5, 7), "HW", (1, 1, 5, 7)),
        ((3, 5, 7), "CHW", (1, 3, 5, 7)),
        ((2, 3, 5, 7), "NCHW", (2, 3, 5, 7)),
        ((2, 3, 4, 5, 7), "NCDHW", (2, 3, 4, 5, 7)),
    ],
)
def test_npy_auto_layout_follows_the_number_of_axes(tmp_path, shape, layout, canonical):
    array = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    item = load_ok(write_npy(tmp_path / "m.npy", array))
    assert item.name == "m.npy"
    assert item.layout == layout
    assert item.shape == shape
    assert item.maps.shape == canonical
    assert item.spatial_dims == (3 if "D" in layout else 2)
    assert item.warnings == []
    np.testing.assert_array_equal(item.maps.reshape(shape), array)


def test_npy_with_an_explicit_layout(tmp_path):
    canonical = np.random.default_rng(0).random((2, 3, 5, 7))  # N, C, H, W
    saved = np.transpose(canonical, (0, 2, 3, 1))  # N, H, W, C
    item = load_ok(write_npy(tmp_path / "m.npy", saved), layout="NHWC")
    assert item.layout == "NHWC"
    assert item.shape == (2, 5, 7, 3)
    np.testing.assert_array_equal(item.maps, canonical)


def test_npy_volume_saved_with_depth_last(tmp_path):
    canonical = np.random.default_rng(1).random((1, 2, 4, 5, 7))  # N, C, D, H, W
    saved = np.transpose(canonical, (0, 1, 3, 4, 2))  # N, C, H, W, D
    item = load_ok(write_npy(tmp_path / "v.npy", saved), layout="NCHWD")
    assert item.spatial_dims == 3
    np.testing.assert_array_equal(item.maps, canonical)


def test_npy_fortran_order_and_format_version_2(tmp_path):
    array = np.asfortranarray(np.arange(35, dtype=np.float64).reshape(5, 7))
    item = load_ok(write_npy(tmp_path / "f.npy", array))
    np.testing.assert_array_equal(item.maps[0, 0], array)
    item = load_ok(write_npy(tmp_path / "v2.npy", array, version=(2, 0)))
    np.testing.assert_array_equal(item.maps[0, 0], array)


FLOAT32_CASES = [
    (np.uint8, [0, 1, 128, 254, 255]),
    (np.uint16, [0, 1, 1000, 65534, 65535]),
    (np.float16, [-65504.0, -0.0999755859375, 0.0, 5.960464477539063e-08, 65504.0]),
    (np.float32, [-3.4028234663852886e38, -1.5, 1.1754943508222875e-38, 0.1, 3.0e38]),
]
FLOAT64_CASES = [
    (np.float64, [-1e300, -0.1, 5e-324, np.pi, 1e300]),
    (np.int32, [-(2**31), -1, 0, 7, 2**31 - 1]),
    (np.uint32, [0, 1, 2**31, 2**32 - 2, 2**32 - 1]),
    (np.int64, [-(2**53), -(2**31) - 1, 0, 2**40 + 1, 2**53]),
    (np.uint64, [0, 1, 2**32 + 1, 2**52 + 1, 2**53]),
]


@pytest.mark.parametrize(
    ("dtype", "values", "expected"),
    [(*case, np.float32) for case in FLOAT32_CASES]
    + [(*case, np.float64) for case in FLOAT64_CASES],
    ids=lambda v: getattr(v, "__name__", ""),
)
def test_dtypes_become_float_with_values_preserved(tmp_path, dtype, values, expected):
    array = np.array(values, dtype=dtype).reshape(1, 5)
    item = load_ok(write_npy(tmp_path / "d.npy", array))
    assert item.maps.dtype == expected
    # exact: every stored value comes back equal, nothing rounded away
    assert item.maps.ravel().tolist() == array.ravel().tolist()


@pytest.mark.parametrize(
    ("dtype", "expected"),
    [(">u2", np.float32), (">f4", np.float32), (">i4", np.float64), (">f8", np.float64)],
)
def test_big_endian_files_become_native_floats_of_the_same_width_rule(tmp_path, dtype, expected):
    values = np.array([[0.1, 1.0, 2.0, 3.0]]) if "f" in dtype else np.array([[0, 1, 2, 300]])
    array = values.astype(dtype)
    item = load_ok(write_npy(tmp_path / "be.npy", array))
    assert item.maps.dtype == expected
    assert item.maps.dtype.isnative
    np.testing.assert_array_equal(item.maps[0, 0], array.astype(expected))


# --------------------------------------------------------------------------- .npz


def test_npz_yields_every_member_named_file_colon_key(tmp_path):
    first = np.arange(35, dtype=np.float32).reshape(5, 7)
    second = np.ones((2, 3, 4, 6), dtype=np.float64)
    path = tmp_path / "sub" / "maps.npz"
    path.parent.mkdir()
    np.savez(path, heat=first, other=second)
    items = load_source(Source(path, "sub/maps.npz"))
    assert all(isinstance(i, HeatmapArray) for i in items)
    by_name = {i.name: i for i in items}
    assert set(by_name) == {"sub/maps.npz:heat", "sub/maps.npz:other"}
    assert by_name["sub/maps.npz:heat"].layout == "HW"
    np.testing.assert_array_equal(by_name["sub/maps.npz:heat"].maps[0, 0], first)
    assert by_name["sub/maps.npz:other"].layout == "NCHW"
    assert by_name["sub/maps.npz:other"].maps.dtype == np.float64


def test_compressed_npz_and_positional_names(tmp_path):
    path = tmp_path / "c.npz"
    np.savez_compressed(path, np.zeros((4, 5)), np.ones((3, 4, 5)))
    items = load(path)
    assert sorted(i.name for i in items) == ["c.npz:arr_0", "c.npz:arr_1"]
    assert all(isinstance(i, HeatmapArray) for i in items)


def test_npz_layout_applies_to_every_member_and_a_misfit_fails_alone(tmp_path):
    path = tmp_path / "m.npz"
    np.savez(path, a=np.zeros((5, 7, 3)), b=np.zeros((5, 7)))
    items = {i.name: i for i in load(path, layout="HWC")}
    assert isinstance(items["m.npz:a"], HeatmapArray)
    assert items["m.npz:a"].maps.shape == (1, 3, 5, 7)
    assert isinstance(items["m.npz:b"], LoadFailure)
    assert "layout HWC has 3 axes but the array has 2" in items["m.npz:b"].reason


def test_npz_bad_members_fail_alone_while_the_others_load(tmp_path):
    good = np.arange(35, dtype=np.float32).reshape(5, 7)
    objects = np.array([{"a": 1}, None], dtype=object)
    path = write_zip(
        tmp_path / "mixed.npz",
        {
            "good.npy": npy_bytes(good),
            "garbage.npy": b"this is not an npy member at all",
            "pickled.npy": npy_bytes(objects),
            "huge.npy": npy_header_only((10**6, 10**6)),
            "complex.npy": npy_bytes(np.zeros((3, 3), dtype=np.complex64)),
            "flat.npy": npy_bytes(np.zeros(9)),
            "cut.npy": npy_bytes(np.zeros((5, 7)))[:-16],
        },
    )
    items = {i.name: i for i in load(path)}
    # the 1-D member beside a map is skipped with a note (heatdecode.members), not failed
    assert set(items) == {
        f"mixed.npz:{key}" for key in ("good", "garbage", "pickled", "huge", "complex", "cut")
    }
    assert isinstance(items["mixed.npz:good"], HeatmapArray)
    np.testing.assert_array_equal(items["mixed.npz:good"].maps[0, 0], good)
    assert "flat (float64 (9,), 1-D)" in items["mixed.npz:good"].notes[0]
    expected_words = {
        "garbage": "not a valid .npy",
        "pickled": "python objects",
        "huge": "truncated",
        "complex": "complex",
    }
    for key, words in expected_words.items():
        failure = items[f"mixed.npz:{key}"]
        assert isinstance(failure, LoadFailure), key
        assert_one_line(failure.reason)
        assert words in failure.reason.lower(), (key, failure.reason)
    cut = items["mixed.npz:cut"]
    assert isinstance(cut, LoadFailure)
    assert "truncated" in cut.reason or "expected 280 bytes got 264" in cut.reason, cut.reason


def test_npz_member_with_corrupt_data_fails_alone(tmp_path):
    marker = np.full((4, 4), 1.2345678, dtype=np.float64)
    path = write_zip(
        tmp_path / "crc.npz", {"ok.npy": npy_bytes(np.ones((4, 4))), "bad.npy": npy_bytes(marker)}
    )
    raw = bytearray(path.read_bytes())
    at = raw.index(marker.tobytes()[:8]) + 40
    raw[at] ^= 0xFF  # stored (uncompressed) member: its CRC no longer matches
    path.write_bytes(bytes(raw))
    items = {i.name: i for i in load(path)}
    assert isinstance(items["crc.npz:ok"], HeatmapArray)
    failure = items["crc.npz:bad"]
    assert isinstance(failure, LoadFailure)
    assert "crc" in failure.reason.lower()


def test_npz_needing_a_newer_zip_version_is_a_failure_not_a_crash(tmp_path):
    buffer = io.BytesIO()
    np.savez(buffer, a=np.ones((3, 3)))
    raw = bytearray(buffer.getvalue())
    entry = raw.index(b"PK\x01\x02")  # central directory entry of member a.npy
    raw[entry + 6 : entry + 8] = (99).to_bytes(2, "little")  # "version needed": 9.9
    path = tmp_path / "future.npz"
    path.write_bytes(bytes(raw))
    reason = load_fail(path)
    assert ".npz" in reason or "zip" in reason


def test_npz_without_arrays(tmp_path):
    path = write_zip(tmp_path / "empty.npz", {})
    assert "holds no arrays" in load_fail(path)


# --------------------------------------------------------------------------- .png


def test_png_8_bit_values_are_exact(tmp_path):
    array = np.arange(35, dtype=np.uint8).reshape(5, 7) * 7 + 10
    array[0, 0], array[-1, -1] = 0, 255
    path = tmp_path / "g.png"
    Image.fromarray(array).save(path)
    item = load_ok(path)
    assert item.layout == "HW"
    assert item.shape == (5, 7)
    assert item.maps.shape == (1, 1, 5, 7)
    assert item.maps.dtype == np.float32
    assert item.warnings == []
    np.testing.assert_array_equal(item.maps[0, 0], array.astype(np.float32))


def test_png_16_bit_values_are_exact(tmp_path):
    array = (np.arange(35, dtype=np.uint16).reshape(7, 5) * 1871).astype(np.uint16)
    array[0, 0], array[-1, -1] = 0, 65535
    path = tmp_path / "g16.png"
    image = Image.fromarray(array)
    assert image.mode == "I;16"
    image.save(path)
    item = load_ok(path)
    assert item.maps.shape == (1, 1, 7, 5)
    assert item.warnings == []
    np.testing.assert_array_equal(item.maps[0, 0], array)
    assert item.maps.max() == 65535


@pytest.mark.parametrize("mode", ["RGB", "RGBA"])
def test_colour_png_is_converted_to_grayscale_with_a_warning(tmp_path, mode):
    grey = np.arange(35, dtype=np.uint8).reshape(5, 7) * 7
    channels = [grey, grey, grey] + ([np.full_like(grey, 255)] if mode == "RGBA" else [])
    path = tmp_path / "c.png"
    Image.fromarray(np.stack(channels, axis=-1)).save(path)
    item = load_ok(path)
    assert item.maps.shape == (1, 1, 5, 7)
    # a grey colour image keeps its grey values
    np.testing.assert_array_equal(item.maps[0, 0], grey)
    assert len(item.warnings) == 1
    assert mode in item.warnings[0] and "grayscale" in item.warnings[0]


def test_colour_png_conversion_uses_luma_weights(tmp_path):
    rgb = np.zeros((1, 3, 3), dtype=np.uint8)
    rgb[0, 0, 0] = rgb[0, 1, 1] = rgb[0, 2, 2] = 255  # pure red, green, blue
    path = tmp_path / "rgb.png"
    Image.fromarray(rgb).save(path)
    item = load_ok(path)
    # ITU-R 601-2 luma: 0.299 R + 0.587 G + 0.114 B
    np.testing.assert_allclose(item.maps[0, 0, 0], [76.2, 149.7, 29.1], atol=1)


@pytest.mark.parametrize("mode", ["P", "LA", "1"])
def test_other_colour_modes_are_converted_with_a_warning(tmp_path, mode):
    image = Image.new(mode, (7, 5))
    path = tmp_path / "m.png"
    image.save(path)
    item = load_ok(path)
    assert item.maps.shape == (1, 1, 5, 7)
    assert any("grayscale" in w for w in item.warnings)


# --------------------------------------------------------------------------- .tif / .tiff


def test_single_page_tiff_is_an_image(tmp_path):
    page = np.random.default_rng(2).random((5, 7)).astype(np.float32)
    path = write_stack(tmp_path / "one.tif", [page])
    item = load_ok(path)
    assert item.layout == "HW"
    assert item.maps.shape == (1, 1, 5, 7)
    np.testing.assert_array_equal(item.maps[0, 0], page)


@pytest.mark.parametrize(
    ("suffix", "dtype"), [(".tif", np.float32), (".tiff", np.uint16), (".tif", np.uint8)]
)
def test_multi_page_tiff_is_a_volume_with_auto_layout_dhw(tmp_path, suffix, dtype):
    volume = (np.arange(3 * 4 * 5).reshape(3, 4, 5) * 3).astype(dtype)  # D=3, H=4, W=5
    path = write_stack(tmp_path / f"vol{suffix}", list(volume))
    item = load_ok(path)
    assert item.layout == "DHW"
    assert item.shape == (3, 4, 5)
    assert item.spatial_dims == 3
    assert item.maps.shape == (1, 1, 3, 4, 5)
    np.testing.assert_array_equal(item.maps[0, 0], volume)  # pages in order


def test_multi_page_tiff_with_an_explicit_channel_layout(tmp_path):
    volume = np.arange(3 * 4 * 5, dtype=np.float32).reshape(3, 4, 5)
    item = load_ok(write_stack(tmp_path / "c.tif", list(volume)), layout="CHW")
    assert item.layout == "CHW"
    assert item.spatial_dims == 2
    np.testing.assert_array_equal(item.maps[0], volume)


def test_multi_page_colour_tiff_warns_once(tmp_path):
    pages = [np.full((4, 5, 3), value, dtype=np.uint8) for value in (10, 20, 30)]
    item = load_ok(write_stack(tmp_path / "rgb.tif", pages))
    assert item.maps.shape == (1, 1, 3, 4, 5)
    np.testing.assert_array_equal(item.maps[0, 0, :, 0, 0], [10, 20, 30])
    assert len(item.warnings) == 1 and "grayscale" in item.warnings[0]


def test_tiff_whose_next_page_pointer_is_garbage_fails_cleanly(tmp_path):
    # A TIFF's first page ends with the offset of the next page (0 = no more pages);
    # pointing it into the header leaves a "page" without width and height.
    data = bytearray(png_bytes(Image.fromarray(np.zeros((6, 8), np.uint8)), "TIFF"))
    first = struct.unpack_from("<I", data, 4)[0]
    entries = struct.unpack_from("<H", data, first)[0]
    next_page = first + 2 + 12 * entries
    assert data[next_page : next_page + 4] == b"\0\0\0\0"
    struct.pack_into("<I", data, next_page, 2)
    path = tmp_path / "bad-ifd.tif"
    path.write_bytes(bytes(data))
    assert "corrupt" in load_fail(path)


def test_tiff_pages_of_different_sizes_fail(tmp_path):
    path = write_stack(
        tmp_path / "odd.tif", [np.zeros((4, 5), np.uint8), np.zeros((5, 4), np.uint8)]
    )
    assert "differ" in load_fail(path)


# --------------------------------------------------------------------------- bad files


@pytest.mark.parametrize("suffix", [".npy", ".npz", ".png", ".tif", ".tiff"])
def test_empty_file(tmp_path, suffix):
    path = tmp_path / f"empty{suffix}"
    path.write_bytes(b"")
    assert load_fail(path) == "empty file"


@pytest.mark.parametrize(
    ("suffix", "words"),
    [
        (".npy", "not a valid .npy file"),
        (".npz", "not a valid .npz archive"),
        (".png", "not a readable image"),
        (".tif", "not a readable image"),
    ],
)
def test_corrupt_bytes(tmp_path, suffix, words):
    path = tmp_path / f"junk{suffix}"
    path.write_bytes(bytes(range(256)) * 4)
    assert words in load_fail(path)


def test_text_file_named_png(tmp_path):
    path = tmp_path / "x.png"
    path.write_text("I am a heatmap, honest\n")
    assert "not a readable image" in load_fail(path)


def test_truncated_png(tmp_path):
    data = png_bytes(Image.fromarray(np.random.default_rng(3).integers(0, 255, (64, 64), np.uint8)))
    path = tmp_path / "cut.png"
    path.write_bytes(data[: len(data) // 2])
    assert "truncated" in load_fail(path)


def test_directory_named_like_a_heatmap(tmp_path):
    (tmp_path / "x.npy").mkdir()
    assert load_fail(tmp_path / "x.npy") == "is a directory"


def test_truncated_npy_names_the_promised_shape(tmp_path):
    path = tmp_path / "cut.npy"
    path.write_bytes(npy_bytes(np.zeros((3, 5, 7), dtype=np.float32))[:-10])
    reason = load_fail(path)
    assert reason.startswith("truncated")
    assert "(3, 5, 7)" in reason and "float32" in reason
    assert "420 B" in reason and "410 B" in reason  # promised vs present


def test_npy_header_claiming_terabytes_fails_fast_and_names_the_size(tmp_path):
    path = tmp_path / "huge.npy"
    path.write_bytes(npy_header_only((10**6, 10**6), "<f8"))
    start = time.perf_counter()
    reason = load_fail(path)
    assert time.perf_counter() - start < 1.0
    assert reason.startswith("truncated")
    assert "(1000000, 1000000)" in reason
    assert "7.3 TB" in reason  # 8e12 bytes


def test_npy_header_claiming_gigabytes_allocates_nothing(tmp_path):
    # 2 GiB could be allocated lazily by the OS; tracemalloc sees numpy's allocations anyway.
    path = tmp_path / "big.npy"
    path.write_bytes(npy_header_only((16384, 16384), "<f8") + b"\0" * 1000)
    tracemalloc.start()
    try:
        reason = load_fail(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert reason.startswith("truncated") and "2.0 GB" in reason
    assert peak < 16 * 2**20


class _LeaveMarker:
    """Unpickling this object creates the file ``path`` (as an attacker's payload would)."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def _pickle_bomb(marker: Path) -> np.ndarray:
    array = np.empty((2, 2), dtype=object)
    array[...] = 0
    array[0, 0] = _LeaveMarker(marker)
    return array


def test_the_pickle_payload_works_when_unpickled(tmp_path):
    # Control for the tests below: loading with pickles allowed does create the marker.
    marker = tmp_path / "control-marker"
    path = write_npy(tmp_path / "evil.npy", _pickle_bomb(marker))
    loaded = np.load(path, allow_pickle=True)
    loaded[0, 0].close()
    assert marker.exists()


def test_pickled_object_array_in_npy_is_refused_never_unpickled(tmp_path):
    marker = tmp_path / "marker"
    path = write_npy(tmp_path / "evil.npy", _pickle_bomb(marker))
    reason = load_fail(path)
    assert "python objects" in reason.lower() and "pickle" in reason.lower()
    assert not marker.exists()


def test_pickled_object_array_in_npz_is_refused_never_unpickled(tmp_path):
    marker = tmp_path / "marker"
    path = tmp_path / "evil.npz"
    np.savez(path, evil=_pickle_bomb(marker), fine=np.ones((3, 3)))
    items = {i.name: i for i in load(path)}
    assert isinstance(items["evil.npz:fine"], HeatmapArray)
    assert isinstance(items["evil.npz:evil"], LoadFailure)
    assert "pickle" in items["evil.npz:evil"].reason.lower()
    assert not marker.exists()


@pytest.mark.parametrize(
    ("array", "words"),
    [
        (np.zeros((3, 3), dtype=[("x", "f4"), ("y", "f4")]), "structured dtype"),
        (np.zeros((3, 3), dtype=np.complex128), "complex dtype complex128"),
        (np.zeros((3, 3), dtype=bool), "boolean dtype"),
        (np.full((3, 3), "hot"), "non-numeric dtype <U3"),
        (np.full((3, 3), b"hot"), "non-numeric dtype |S3"),
        (np.zeros((3, 3), dtype="datetime64[s]"), "non-numeric dtype"),
    ],
    ids=["structured", "complex", "bool", "unicode", "bytes", "datetime"],
)
def test_dtypes_that_are_not_heatmaps(tmp_path, array, words):
    assert words in load_fail(write_npy(tmp_path / "d.npy", array))


@pytest.mark.parametrize("shape", [(0, 7), (5, 0), (3, 0, 7), (0, 1, 5, 7)])
def test_zero_size_axis(tmp_path, shape):
    reason = load_fail(write_npy(tmp_path / "z.npy", np.zeros(shape, np.float32)))
    assert "empty axis" in reason and str(shape) in reason


def test_layout_that_does_not_fit_the_array(tmp_path):
    path = write_npy(tmp_path / "m.npy", np.zeros((3, 5, 7)))
    assert load_fail(path, layout="NCHW") == (
        "layout NCHW has 4 axes but the array has 3 (shape (3, 5, 7))"
    )


@pytest.mark.parametrize("shape", [(), (7,), (1, 1, 1, 1, 1, 1)])
def test_auto_layout_cannot_guess(tmp_path, shape):
    reason = load_fail(write_npy(tmp_path / "m.npy", np.zeros(shape)))
    assert f"cannot guess the layout of a {len(shape)}-D array" in reason
    assert "--layout" in reason


def _write_valid(path: Path) -> None:
    suffix = path.suffix
    if suffix == ".npy":
        write_npy(path, np.ones((3, 3)))
    elif suffix == ".npz":
        np.savez(path, a=np.ones((3, 3)))
    else:
        Image.fromarray(np.ones((3, 3), np.uint8)).save(path)


@pytest.mark.parametrize("suffix", [".npy", ".npz", ".png", ".tif"])
def test_file_without_read_permission(tmp_path, suffix):
    path = tmp_path / f"locked{suffix}"
    _write_valid(path)
    path.chmod(0)
    try:
        if os.access(path, os.R_OK):
            pytest.skip("running with privileges that read any file (root)")
        reason = load_fail(path)
    finally:
        path.chmod(0o644)
    assert "permission denied" in reason.lower()
    # it is the permission that is wrong, not the file's content
    assert not any(word in reason for word in ("corrupt", "not a valid", "truncated")), reason


@pytest.mark.parametrize(
    ("limit", "suffix"), [(100, ".png"), (300, ".png"), (100, ".tif"), (300, ".tif")]
)
def test_decompression_bomb_is_refused(tmp_path, monkeypatch, limit, suffix):
    # 20 x 20 = 400 pixels: over 2 x 100 raises in Pillow, over 300 only warns.
    path = tmp_path / f"bomb{suffix}"
    Image.fromarray(np.zeros((20, 20), np.uint8)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", limit)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing may leak out as a warning either
        reason = load_fail(path)
    assert "decompression bomb" in reason


def test_source_name_is_used_in_failures(tmp_path):
    path = tmp_path / "x.npy"
    path.write_bytes(b"")
    [failure] = load_source(Source(path, "nested/x.npy"))
    assert failure == LoadFailure("nested/x.npy", "empty file")


# --------------------------------------------------------------------------- never raises


def _valid_bytes(suffix: str) -> bytes:
    array = np.arange(48, dtype=np.uint8).reshape(6, 8)
    if suffix == ".npy":
        return npy_bytes(array.astype(np.float32))
    if suffix == ".npz":
        buffer = io.BytesIO()
        np.savez_compressed(buffer, a=array, b=array.astype(np.int64))
        return buffer.getvalue()
    return png_bytes(Image.fromarray(array), "PNG" if suffix == ".png" else "TIFF")


SUFFIXES = [".npy", ".npz", ".png", ".tif"]


@st.composite
def damaged_files(draw):
    """A valid file of some type with a few bytes overwritten, cut short, or random bytes."""
    suffix = draw(st.sampled_from(SUFFIXES))
    kind = draw(st.sampled_from(["mutate", "cut", "random"]))
    if kind == "random":
        return suffix, draw(st.binary(max_size=300))
    data = bytearray(_valid_bytes(suffix))
    if kind == "cut":
        return suffix, bytes(data[: draw(st.integers(0, len(data) - 1))])
    for _ in range(draw(st.integers(1, 4))):
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    return suffix, bytes(data)


@pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow's notes on damaged TIFF tags
@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(damaged_files())
def test_damaged_files_never_raise(tmp_path, monkeypatch, damaged):
    suffix, data = damaged
    # keep a damaged header from asking Pillow for a huge image
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10**6)
    path = tmp_path / f"fuzz{suffix}"
    path.write_bytes(data)
    items = load(path)
    assert items
    for item in items:
        assert isinstance(item, (HeatmapArray, LoadFailure))
        if isinstance(item, LoadFailure):
            assert_one_line(item.reason)
        else:
            assert item.maps.ndim in (4, 5)
            assert item.maps.dtype in (np.float32, np.float64)


# --------------------------------------------------------------------------- the size budget


def traced_peak(work):
    """``work()``'s result and the most memory it held at once (numpy's buffers included)."""
    tracemalloc.start()
    try:
        result = work()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return result, peak


def budget_message(need: str, limit: str, what: str = "the array would take") -> str:
    return (
        f"refused: {what} {need}, over the --max-map-bytes limit of {limit} "
        "(raise it with --max-map-bytes)"
    )


@pytest.fixture
def no_decoding(monkeypatch):
    """Fails the test if any image page is decoded."""

    def decoded(*args):
        raise AssertionError("a page was decoded")

    monkeypatch.setattr(images, "_frame_to_array", decoded)


@pytest.mark.parametrize(
    ("text", "size"),
    [("1", 1), ("2147483648", 2**31), ("512M", 512 * 2**20), ("4G", 4 * 2**30), ("4g", 4 * 2**30),
     ("1.5GiB", 3 * 2**29), ("64 KB", 64 * 1024), ("2T", 2 * 2**40), ("0", 0)],
)  # fmt: skip
def test_parse_size_reads_bytes_and_binary_units(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "G", "lots", "-1", "4X", "1e9", "nan", "4 G B", "1.2.3"])
def test_parse_size_refuses_what_is_not_a_size(text):
    with pytest.raises(ValueError, match="is not a size"):
        parse_size(text)


def test_the_default_budget_is_2_gib_and_must_be_positive(tmp_path):
    assert MAX_MAP_BYTES == 2**31
    path = write_npy(tmp_path / "a.npy", np.zeros((2, 2)))
    with pytest.raises(ValueError, match="at least 1"):
        load_source(Source(path, "a.npy"), max_map_bytes=0)


def test_npy_over_the_budget_is_refused_from_its_header(tmp_path):
    path = write_npy(tmp_path / "big.npy", np.zeros((256, 1024), np.float32))  # 1 MB
    [item], peak = traced_peak(lambda: load_source(Source(path, "big.npy"), max_map_bytes=2**19))
    assert item == LoadFailure("big.npy", budget_message("1.0 MB", "512.0 KB"))
    assert peak < 2**18
    [ok] = load_source(Source(path, "big.npy"), max_map_bytes=2**20)  # exactly the limit
    assert isinstance(ok, HeatmapArray)


def test_npy_of_3_gb_is_refused_at_the_default_budget(tmp_path):
    path = tmp_path / "huge.npy"
    path.write_bytes(npy_header_only((3 * 2**28,), "<f4"))
    with open(path, "r+b") as fh:  # sparse: the data "follows" without taking disk space
        fh.truncate(len(npy_header_only((3 * 2**28,), "<f4")) + 3 * 2**30)
    [item], peak = traced_peak(lambda: load(path))
    assert item.reason == budget_message("3.0 GB", "2.0 GB")
    assert peak < 2**20


def bomb_npz(path: Path, members: dict[str, int], compression: int) -> Path:
    """An archive of all-zero float32 members of the given sizes in bytes."""
    with zipfile.ZipFile(path, "w", compression, compresslevel=9) as archive:
        for name, nbytes in members.items():
            archive.writestr(name, npy_bytes(np.zeros(nbytes // 4, np.float32)))
    return path


def test_bzip2_npz_bomb_is_refused_before_inflating_at_the_default_budget(tmp_path):
    path = bomb_npz(tmp_path / "bomb.npz", {"bomb.npy": 64 * 2**20}, zipfile.ZIP_BZIP2)
    assert path.stat().st_size < 1000  # 64 MiB in a few hundred bytes
    [item], peak = traced_peak(lambda: load(path))
    assert item.name == "bomb.npz:bomb"
    assert item.reason.startswith("refused as a decompression bomb: the member's ")
    assert "inflate to 64.0 MB" in item.reason and "save it uncompressed" in item.reason
    assert peak < 2**20


def test_deflate_npz_member_over_the_budget_is_refused_and_its_neighbour_read(tmp_path):
    path = tmp_path / "bomb.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        archive.writestr("big.npy", npy_bytes(np.zeros(2**21, np.float32)))  # 8 MiB
        archive.writestr("small.npy", npy_bytes(np.eye(4, dtype=np.float32)))
    source = Source(path, "bomb.npz")
    (big, small), peak = traced_peak(lambda: load_source(source, max_map_bytes=2**20))
    assert big == LoadFailure(
        "bomb.npz:big", budget_message("8.0 MB", "1.0 MB", "the member would inflate to")
    )
    assert isinstance(small, HeatmapArray) and small.name == "bomb.npz:small"
    assert peak < 2**20


def test_archive_of_many_small_bzip2_bombs_is_refused_as_a_whole(tmp_path):
    # each member is under every per-member guard; the archive's members, all in
    # memory at once, inflate to 80 MB from a few KB
    members = {f"m{k}.npy": 2 * 2**20 for k in range(40)}
    path = bomb_npz(tmp_path / "many.npz", members, zipfile.ZIP_BZIP2)
    [item], peak = traced_peak(lambda: load(path))
    assert item.name == "many.npz"
    assert item.reason.startswith("refused as a decompression bomb: its members' ")
    assert peak < 2**20


def test_deflated_zeros_are_not_taken_for_a_bomb(tmp_path):
    # np.savez_compressed can't pass ~1,030x: the ratio guard leaves it alone
    path = bomb_npz(tmp_path / "zeros.npz", {"z.npy": 80 * 2**20}, zipfile.ZIP_DEFLATED)
    member = zipfile.ZipFile(path).infolist()[0]
    assert member.file_size / member.compress_size > 1000
    [item] = load_source(Source(path, "zeros.npz"), max_map_bytes=2**20)
    assert item.reason == budget_message("80.0 MB", "1.0 MB", "the member would inflate to")


def test_tiff_pages_are_summed_against_the_budget_before_any_is_decoded(tmp_path, monkeypatch):
    path = write_stack(tmp_path / "stack.tif", [np.zeros((64, 64), np.uint8)] * 10)  # 40 KB
    with monkeypatch.context() as patch:
        patch.setattr(images, "_frame_to_array", lambda *a: pytest.fail("a page was decoded"))
        [item] = load_source(Source(path, "stack.tif"), max_map_bytes=30_000)
    assert item.reason == budget_message("40.0 KB", "29.3 KB", "the pages would take")
    [ok] = load_source(Source(path, "stack.tif"), max_map_bytes=10 * 64 * 64)
    assert isinstance(ok, HeatmapArray) and ok.maps.shape == (1, 1, 10, 64, 64)


def test_png_over_the_budget_is_refused_from_its_header(tmp_path, no_decoding):
    path = tmp_path / "wide.png"
    Image.fromarray(np.zeros((100, 100), np.uint16)).save(path)  # 2 bytes a pixel
    [item] = load_source(Source(path, "wide.png"), max_map_bytes=19_999)
    assert item.reason == budget_message("19.5 KB", "19.5 KB")


def test_png_at_the_budget_is_read(tmp_path):
    path = tmp_path / "wide.png"
    Image.fromarray(np.zeros((100, 100), np.uint16)).save(path)
    [item] = load_source(Source(path, "wide.png"), max_map_bytes=20_000)
    assert isinstance(item, HeatmapArray)


# --------------------------------------------------------------------------- APNG, 16-bit colour


def test_animated_png_is_refused_not_read_as_a_volume(tmp_path, no_decoding):
    path = tmp_path / "anim.png"
    frames = [Image.fromarray(np.full((4, 5), k, np.uint8)) for k in range(3)]
    frames[0].save(path, save_all=True, append_images=frames[1:])
    reason = "animated PNG (3 frames): save one frame, or the volume as a .tif stack"
    assert load_fail(path) == reason


def _png16(colour_type: int, channels: int, width: int = 5, height: int = 4) -> bytes:
    """A 16-bit PNG written by hand (Pillow can't write 16-bit colour)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    pixels = np.zeros((height, width, channels), ">u2")
    pixels[1, 2] = 60000
    raw = b"".join(b"\0" + row.tobytes() for row in pixels)
    header = struct.pack(">IIBBBBB", width, height, 16, colour_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )  # fmt: skip


@pytest.mark.parametrize(("colour_type", "channels"), [(2, 3), (6, 4), (4, 2)])
def test_16_bit_colour_png_is_read_with_a_warning_that_it_lost_8_bits(
    tmp_path, colour_type, channels
):
    path = tmp_path / "deep.png"
    path.write_bytes(_png16(colour_type, channels))
    item = load_ok(path)
    assert any(note.startswith("16-bit colour PNG read as 8 bits") for note in item.warnings)
    assert np.unravel_index(np.argmax(item.maps[0, 0]), (4, 5)) == (1, 2)


def test_16_bit_grey_and_8_bit_colour_pngs_get_no_such_warning(tmp_path):
    (tmp_path / "grey16.png").write_bytes(_png16(0, 1))
    Image.fromarray(np.zeros((4, 5, 3), np.uint8)).save(tmp_path / "rgb8.png")
    grey = load_ok(tmp_path / "grey16.png")
    assert grey.warnings == [] and grey.maps.max() == 60000
    assert not any("16-bit" in note for note in load_ok(tmp_path / "rgb8.png").warnings)


# --------------------------------------------------------------------------- unique names


def test_npz_members_k_and_k_npy_keep_their_stored_names(tmp_path):
    path = write_zip(
        tmp_path / "d.npz",
        {
            "k": npy_bytes(np.eye(3)),
            "k.npy": npy_bytes(np.eye(4)),
            "lone.npy": npy_bytes(np.eye(2)),
        },
    )
    items = load(path)
    assert [i.name for i in items] == ["d.npz:k", "d.npz:k.npy", "d.npz:lone"]
    assert [i.shape for i in items] == [(3, 3), (4, 4), (2, 2)]


def test_npz_member_names_are_unique_even_when_the_zip_repeats_one(tmp_path):
    path = tmp_path / "d.npz"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # zipfile: "Duplicate name"
        write_zip(path, {})
        with zipfile.ZipFile(path, "w") as archive:
            for size in (2, 3, 4):
                archive.writestr("k.npy", npy_bytes(np.eye(size)))
            archive.writestr("k.npy.npy", npy_bytes(np.eye(5)))
    items = load(path)
    names = ["d.npz:k.npy", "d.npz:k.npy#2", "d.npz:k.npy#3", "d.npz:k.npy.npy"]
    assert [i.name for i in items] == names
    assert [i.shape for i in items] == [(2, 2), (3, 3), (4, 4), (5, 5)]  # each member read


def test_every_source_name_is_unique_whatever_the_arguments(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_npy(tmp_path / "d1" / "x.npy", np.eye(3))
    write_npy(tmp_path / "d2" / "x.npy", np.eye(3))
    sources, _ = discover(["d1", "d1/x.npy", "d1/x.npy", "d2/x.npy"])
    assert names_of(sources) == ["x.npy", "d1/x.npy", "d1/x.npy#2", "d2/x.npy"]
    monkeypatch.chdir(tmp_path / "d1")
    sources, _ = discover(["x.npy", "../d1/x.npy", "./x.npy"])
    assert names_of(sources) == ["x.npy", "../d1/x.npy", "x.npy#2"]
    assert [s.path.resolve() for s in sources] == [tmp_path / "d1" / "x.npy"] * 3


# --------------------------------------------------------------------------- special files


def _never_blocks(work, fifo: Path | None = None):
    """``work()``'s result; if it blocks, ``fifo`` is opened for writing to free it and the
    test fails (a regression must not hang the suite)."""
    box: list = []
    thread = threading.Thread(target=lambda: box.append(work()), daemon=True)
    thread.start()
    thread.join(10)
    if thread.is_alive() and fifo is not None:
        with open(fifo, "wb"):  # the blocked reader's writer: it reads EOF and returns
            pass
        thread.join(10)
        pytest.fail("reading a FIFO blocked")
    assert not thread.is_alive(), "blocked"
    return box[0]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_special_files_in_a_folder_are_reported_as_skipped_not_opened(tmp_path):
    import socket

    write_npy(tmp_path / "a.npy", np.eye(3))
    os.mkfifo(tmp_path / "x.npy")
    os.mkfifo(tmp_path / "ignored.txt")  # not a heatmap name: ignored like any other
    (tmp_path / "to_fifo.npy").symlink_to("x.npy")
    server = socket.socket(socket.AF_UNIX)
    try:
        server.bind(str(tmp_path / "s.npz"))
        sources, failures = _never_blocks(lambda: discover([tmp_path]))
    finally:
        server.close()
    assert names_of(sources) == ["a.npy"]
    assert sorted(failures, key=lambda f: f.name) == [
        LoadFailure("s.npz", "not a regular file (a socket); skipped", kind="skipped"),
        LoadFailure("to_fifo.npy", "not a regular file (a FIFO); skipped", kind="skipped"),
        LoadFailure("x.npy", "not a regular file (a FIFO); skipped", kind="skipped"),
    ]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_fifo_given_to_load_source_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "x.npy"
    os.mkfifo(fifo)
    [item] = _never_blocks(lambda: load(fifo), fifo)
    assert item == LoadFailure("x.npy", "not a regular file (a FIFO)")


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="no /dev/zero")
def test_a_device_given_as_a_file_is_refused_before_reading(tmp_path):
    sources, failures = discover(["/dev/zero"])
    assert failures == [] and names_of(sources) == ["zero"]
    [item], peak = traced_peak(lambda: _never_blocks(lambda: load_source(sources[0])))
    assert item == LoadFailure("zero", "not a regular file (a character device)")
    assert peak < 2**20


class CountingEvent(threading.Event):
    """An event that reads as set from its ``after``-th check on: a cancel mid-read."""

    def __init__(self, after: int) -> None:
        super().__init__()
        self.after, self.checks = after, 0

    def is_set(self) -> bool:
        self.checks += 1
        return self.checks >= self.after


@pytest.mark.parametrize("kind", ["npy", "npz", "deflated npz", "tif"])
def test_a_cancel_event_stops_a_read_between_two_pieces(tmp_path, monkeypatch, kind):
    monkeypatch.setattr(loading, "_CHUNK", 1024)
    data = np.zeros((64, 64), np.float32)  # 16 pieces of 1 KB
    if kind == "npy":
        path = write_npy(tmp_path / "a.npy", data)
    elif kind == "tif":
        path = write_stack(tmp_path / "a.tif", [data[:8, :8]] * 16)  # 16 pages
    else:
        path = tmp_path / "a.npz"
        method = zipfile.ZIP_DEFLATED if kind == "deflated npz" else zipfile.ZIP_STORED
        with zipfile.ZipFile(path, "w", method) as archive:
            archive.writestr("m.npy", npy_bytes(data))
    cancel = CountingEvent(after=3)
    [item] = load_source(Source(path, path.name), cancel=cancel)
    assert item == LoadFailure(path.name, "interrupted while being read")
    assert cancel.checks == 3  # stopped at the third piece, not after the sixteenth
    [whole] = load_source(Source(path, path.name), cancel=threading.Event())
    assert isinstance(whole, HeatmapArray)


# --------------------------------------------------------------------------- deep trees


@pytest.fixture
def deep_root(tmp_path, remove_tree):
    root = tmp_path / "deep"
    root.mkdir()
    yield root
    remove_tree(root)


def test_a_tree_1100_folders_deep_is_walked_without_recursion(deep_root, deep_tree):
    names = deep_tree(deep_root, 1100, (1, 600, 1100))
    (deep_root / "top.npy").write_bytes(npy_bytes(np.eye(2)))
    sources, failures = discover([deep_root])
    assert failures == []
    assert names_of(sources) == sorted([*names, "top.npy"])
    assert isinstance(load_source(sources[0])[0], HeatmapArray)


def test_an_npz_member_can_be_named_as_the_outputs_name_it(tmp_path):
    from heatdecode.cli import main

    heat = np.zeros((2, 3, 12, 16), np.float32)
    heat[:, :, 4, 5] = 1
    np.savez(tmp_path / "preds.npz", heatmaps=heat, bboxes=np.zeros((2, 4)), ids=np.arange(2))
    out = tmp_path / "out"
    assert main(["run", f"{tmp_path / 'preds.npz'}:heatmaps", "--out", str(out), "-q"]) == 0
    with open(out / "coordinates.csv", newline="") as fh:
        files = {row["file"] for row in csv.DictReader(fh)}
    assert files == {"preds.npz:heatmaps"}


def test_naming_an_npz_member_that_is_not_there_says_what_it_holds(tmp_path, capsys):
    from heatdecode.cli import main

    np.savez(tmp_path / "preds.npz", heatmaps=np.eye(4, dtype=np.float32))
    code = main(["run", f"{tmp_path / 'preds.npz'}:heatmap", "--out", str(tmp_path / "o"), "-q"])
    assert code == 1
    assert "preds.npz:heatmap: no member 'heatmap' (it holds: heatmaps)" in capsys.readouterr().err
