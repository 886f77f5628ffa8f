"""The sample generator: peaks where truth.csv says, every format, reproducible."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from PIL import Image

from heatdecode.sample import (
    PRESET_NAMES,
    SECOND_PEAK_HEIGHT,
    TRUTH_COLUMNS,
    gaussian,
    preset,
    write_sample,
    write_synthetic,
)


def test_gaussian_peaks_at_its_centre_in_xy_order():
    g = gaussian((9, 13), np.array([10.0, 2.0]), 1.5)  # x=10 (column), y=2 (row)
    assert np.unravel_index(g.argmax(), g.shape) == (2, 10)
    g3 = gaussian((5, 6, 7), np.array([6.0, 1.0, 3.0]), 1.0)  # x, y, z
    assert np.unravel_index(g3.argmax(), g3.shape) == (3, 1, 6)


def test_every_truth_row_sits_within_half_a_pixel_of_its_map_maximum(sample_set, read_map):
    folder, truth = sample_set
    assert len(truth) == 22
    for row in truth:
        heatmap = read_map(folder, row["file"], row["sample"], row["channel"])
        peak = np.unravel_index(heatmap.argmax(), heatmap.shape)[::-1]
        true = [row["x"], row["y"]] + ([row["z"]] if row["z"] is not None else [])
        assert np.all(np.abs(np.array(peak) - true) <= 0.5 + 1e-9), row


def test_formats_and_shapes(sample_set):
    folder, _ = sample_set
    assert Image.open(folder / "png8/peak_0.png").mode == "L"
    assert Image.open(folder / "png16/peak_0.png").mode.startswith("I;16")
    assert np.load(folder / "pose_nchw.npy").shape == (2, 5, 48, 40)
    volume = np.load(folder / "volume_ncdhw.npy")
    assert volume.ndim == 5 and len(set(volume.shape[2:])) == 3  # non-cubic
    with np.load(folder / "maps.npz") as archive:
        assert sorted(archive.files) == ["left", "right"]


def test_same_seed_same_bytes(tmp_path):
    write_sample(tmp_path / "a", seed=3)
    write_sample(tmp_path / "b", seed=3)
    for path in sorted((tmp_path / "a").rglob("*")):
        if path.is_file():
            twin = tmp_path / "b" / path.relative_to(tmp_path / "a")
            assert path.read_bytes() == twin.read_bytes()


def test_shipped_sample_data_is_what_the_generator_writes(tmp_path):
    from pathlib import Path

    shipped = Path(__file__).resolve().parents[1] / "sample_data"
    if not shipped.is_dir():
        pytest.skip("no sample_data/ beside the tests")
    write_sample(tmp_path / "fresh", seed=0)
    with open(shipped / "truth.csv", newline="") as a, open(tmp_path / "fresh" / "truth.csv") as b:
        assert list(csv.reader(a)) == list(csv.reader(b))


# ---------------------------------------------------------------------------
# write_synthetic: one knob per difficulty
# ---------------------------------------------------------------------------

SHAPE_2D, SHAPE_3D = (48, 64), (20, 28, 36)  # the 3D one non-cubic on purpose


def synth(tmp_path_factory, **knobs):
    """Write a synthetic set; returns (folder, truth rows, maps as (count, *spatial) float64)."""
    folder = tmp_path_factory.mktemp("synthetic")
    truth = write_synthetic(folder, **{"count": 16, "seed": 7, **knobs})
    files = {row["file"] for row in truth}
    if len(files) == 1:  # one .npy holding every map
        maps = np.load(folder / files.pop())[:, 0].astype(np.float64)
    else:
        maps = np.array([np.asarray(Image.open(folder / r["file"])) for r in truth], np.float64)
    return folder, truth, maps


def centres(truth):
    return np.array([[r["x"], r["y"]] + ([r["z"]] if r["z"] is not None else []) for r in truth])


@pytest.fixture(scope="module")
def clean2d(tmp_path_factory):
    return synth(tmp_path_factory, shape=SHAPE_2D)


@pytest.fixture(scope="module")
def clean3d(tmp_path_factory):
    return synth(tmp_path_factory, shape=SHAPE_3D)


def test_synthetic_2d_file_layout_and_truth_csv(clean2d):
    folder, truth, maps = clean2d
    assert np.load(folder / "maps.npy").shape == (16, 1, 48, 64)
    assert np.load(folder / "maps.npy").dtype == np.float32
    with open(folder / "truth.csv", newline="") as fh:
        lines = list(csv.reader(fh))
    assert tuple(lines[0]) == TRUTH_COLUMNS
    assert [(f, int(n), int(c), d, z) for f, n, c, d, _, _, z, _ in lines[1:]] == [
        ("maps.npy", i, 0, "truth", "") for i in range(16)
    ]
    assert [float(line[4]) for line in lines[1:]] == [r["x"] for r in truth]  # full precision
    assert {r["score"] for r in truth} == {1.0}


def test_synthetic_3d_non_cubic_layout(clean3d):
    folder, truth, maps = clean3d
    assert np.load(folder / "volumes.npy").shape == (16, 1, 20, 28, 36)
    assert all(r["z"] is not None for r in truth)
    assert np.all(centres(truth) <= np.array([35, 27, 19]))  # x, y, z within W, H, D


@pytest.mark.parametrize("which", ["clean2d", "clean3d"])
def test_synthetic_truth_within_half_a_pixel_of_the_argmax(which, request, read_map):
    folder, truth, _ = request.getfixturevalue(which)
    for row in truth:
        heatmap = read_map(folder, row["file"], row["sample"], row["channel"])
        peak = np.unravel_index(heatmap.argmax(), heatmap.shape)[::-1]
        assert np.all(np.abs(np.array(peak) - centres([row])[0]) <= 0.5 + 1e-9), row


def test_clean_centres_keep_three_sigma_from_the_edges(clean2d):
    _, truth, _ = clean2d
    xy = centres(truth)
    assert np.all(xy >= 6) and np.all(xy <= np.array([63, 47]) - 6)


def test_noise_knob_adds_gaussian_noise_of_that_std(tmp_path_factory, clean2d):
    _, truth, noisy = synth(tmp_path_factory, shape=SHAPE_2D, noise=0.05)
    _, clean_truth, clean = clean2d
    assert truth == clean_truth  # same seed: same centres, only noise added
    residual = noisy - clean  # 16 × 3072 samples: the std is known to ~0.4 %
    assert residual.std() == pytest.approx(0.05, rel=0.02)
    assert abs(residual.mean()) < 0.002
    assert abs(np.corrcoef(residual[:, :, :-1].ravel(), residual[:, :, 1:].ravel())[0, 1]) < 0.02


def test_offset_knob_adds_a_constant_background(tmp_path_factory, clean2d):
    _, truth, raised = synth(tmp_path_factory, shape=SHAPE_2D, offset=0.8)
    _, clean_truth, clean = clean2d
    assert truth == [dict(r, score=1.8) for r in clean_truth]
    np.testing.assert_allclose(raised - clean, 0.8, atol=1e-6)  # float32 rounding
    assert np.median(raised) == pytest.approx(0.8, abs=1e-3)


def test_two_peaks_second_is_0_7_high_and_separated(tmp_path_factory, clean2d):
    _, truth, both = synth(tmp_path_factory, shape=SHAPE_2D, two_peaks=True)
    _, clean_truth, clean = clean2d
    assert truth == clean_truth  # the truth is the first peak
    second = both - clean
    for k, row in enumerate(truth):
        # heights via integrals: both peaks have the same σ and sit ≥ 3σ inside
        assert second[k].sum() / clean[k].sum() == pytest.approx(SECOND_PEAK_HEIGHT, rel=0.01)
        assert 0.7 * np.exp(-0.5 / 8) <= second[k].max() <= 0.7  # nearest pixel ≤ √0.5 px off
        where = np.array(np.unravel_index(second[k].argmax(), second[k].shape)[::-1])
        assert np.linalg.norm(where - [row["x"], row["y"]]) >= 6 * 2.0 - 1.5
        # the first peak is still the global maximum, at the same pixel
        assert both[k].argmax() == clean[k].argmax()
        assert both[k].max() == pytest.approx(clean[k].max(), abs=1e-6)


def test_second_peak_height_is_a_knob(tmp_path_factory, clean2d):
    _, _, both = synth(tmp_path_factory, shape=SHAPE_2D, two_peaks=True, second_height=0.9)
    ratio = (both - clean2d[2]).sum(axis=(1, 2)) / clean2d[2].sum(axis=(1, 2))
    np.testing.assert_allclose(ratio, 0.9, rtol=0.01)


@pytest.mark.parametrize("shape", [SHAPE_2D, SHAPE_3D])
def test_near_border_centres_are_within_1_5_px_of_an_edge(tmp_path_factory, shape, read_map):
    folder, truth, maps = synth(tmp_path_factory, shape=shape, near_border=True, count=40)
    xyz = centres(truth)
    last = np.array(shape[::-1]) - 1
    assert np.all(xyz >= 0) and np.all(xyz <= last)
    to_edge = np.minimum(xyz, last - xyz).min(axis=1)
    assert np.all(to_edge <= 1.5)
    assert to_edge.max() > 1.0 and to_edge.min() < 0.5  # spread over the band
    for row in truth:  # a truncated peak still has its maximum at the nearest pixel
        heatmap = read_map(folder, row["file"], row["sample"], row["channel"])
        peak = np.unravel_index(heatmap.argmax(), heatmap.shape)[::-1]
        assert np.all(np.abs(np.array(peak) - centres([row])[0]) <= 0.5 + 1e-9)


def second_moments(maps, truth):
    """Per map, the weighted variance along each axis (x, y[, z]) about the truth."""
    out = []
    for heatmap, centre in zip(maps, centres(truth), strict=True):
        grids = np.meshgrid(*[np.arange(n) for n in heatmap.shape], indexing="ij")[::-1]
        weights = heatmap / heatmap.sum()
        out.append([(weights * (g - c) ** 2).sum() for g, c in zip(grids, centre, strict=True)])
    return np.array(out)


def test_anisotropy_is_the_ratio_of_sigma_x_to_sigma_y(tmp_path_factory):
    _, truth, maps = synth(tmp_path_factory, shape=SHAPE_2D, anisotropy=2.0)
    var = second_moments(maps, truth)
    np.testing.assert_allclose(np.sqrt(var[:, 0] / var[:, 1]), 2.0, rtol=0.02)
    np.testing.assert_allclose(np.sqrt(var[:, 1]), 2.0, rtol=0.02)  # σ_y stays sigma


def test_anisotropy_in_3d_and_per_axis_sigma(tmp_path_factory):
    _, truth, maps = synth(tmp_path_factory, shape=SHAPE_3D, sigma=(1.0, 1.5, 2.0), anisotropy=2)
    var = second_moments(maps, truth)
    np.testing.assert_allclose(np.sqrt(var).mean(axis=0), [2.0, 1.5, 2.0], rtol=0.02)


def test_quantize8_2d_writes_8_bit_pngs_peaking_at_255(tmp_path_factory):
    folder, truth, maps = synth(tmp_path_factory, shape=SHAPE_2D, quantize8=True, noise=0.05)
    assert [r["file"] for r in truth] == [f"png8/peak_{i:04d}.png" for i in range(16)]
    assert {(r["sample"], r["channel"], r["score"]) for r in truth} == {(0, 0, 255.0)}
    with Image.open(folder / truth[0]["file"]) as image:
        assert image.mode == "L" and image.size == (64, 48)
    assert np.all(maps == np.round(maps)) and maps.min() >= 0
    assert np.all(maps.max(axis=(1, 2)) == 255)


def test_quantize8_3d_rounds_to_uint8_levels(tmp_path_factory, clean3d):
    folder, truth, maps = synth(tmp_path_factory, shape=SHAPE_3D, quantize8=True)
    assert np.load(folder / "volumes.npy").dtype == np.uint8
    assert truth == [dict(r, score=255.0) for r in clean3d[1]]
    # without noise the float maps are scaled by their maximum, then rounded
    clean = clean3d[2]
    expected = np.rint(255 * clean / clean.max(axis=(1, 2, 3), keepdims=True))
    np.testing.assert_allclose(maps, expected, atol=1)  # float32 vs float64 at .5


def test_synthetic_same_seed_same_bytes_other_seed_other_centres(tmp_path):
    knobs = {"count": 4, "noise": 0.1, "two_peaks": True, "near_border": True}
    a = write_synthetic(tmp_path / "a", seed=3, **knobs)
    b = write_synthetic(tmp_path / "b", seed=3, **knobs)
    c = write_synthetic(tmp_path / "c", seed=4, **knobs)
    assert a == b and a != c
    for name in ("maps.npy", "truth.csv"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
        assert (tmp_path / "a" / name).read_bytes() != (tmp_path / "c" / name).read_bytes()


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("kind", PRESET_NAMES)
def test_every_preset_writes_in_2d_and_3d(tmp_path, kind, dims):
    knobs = preset(kind, dims)
    assert knobs["shape"] == ((48, 64) if dims == 2 else (32, 32, 32))
    assert knobs["sigma"] == 2.0
    truth = write_synthetic(tmp_path, count=2, **knobs)
    assert len(truth) == 2 and all((r["z"] is None) == (dims == 2) for r in truth)
    assert (tmp_path / "truth.csv").is_file()


def test_preset_values_and_errors():
    assert set(PRESET_NAMES) == {
        "clean", "noisy", "low-contrast", "quantized", "two-peaks", "border", "anisotropic"
    }  # fmt: skip
    assert preset("noisy")["noise"] == 0.05
    assert preset("border")["near_border"] is True
    assert preset("clean") == {**preset("noisy"), "noise": 0.0}
    with pytest.raises(ValueError, match="unknown kind 'blurry'"):
        preset("blurry")
    with pytest.raises(ValueError, match="dims"):
        preset("clean", dims=4)


def test_low_contrast_preset_really_hurts_softargmax_with_the_cli_defaults(tmp_path_factory):
    import torch

    from heatdecode import soft_argmax

    errors = {}
    for kind in ("clean", "low-contrast"):
        _, truth, maps = synth(tmp_path_factory, count=64, **preset(kind))
        xy = soft_argmax(torch.from_numpy(maps), beta=20.0, normalize="minmax").numpy()
        errors[kind] = np.linalg.norm(xy - centres(truth), axis=1).mean()
    assert errors["clean"] < 0.1
    assert errors["low-contrast"] > 0.8


@pytest.mark.parametrize(
    ("knobs", "message"),
    [
        ({"shape": (64,)}, "shape"),
        ({"shape": (2, 3, 4, 5)}, "shape"),
        ({"shape": (3, 64)}, "at least 4"),
        ({"count": 0}, "count"),
        ({"seed": -1}, "seed"),
        ({"sigma": 0.0}, "sigma"),
        ({"sigma": (1.0, 2.0, 3.0)}, "one value per axis"),
        ({"anisotropy": -1.0}, "anisotropy"),
        ({"noise": -0.1}, "noise"),
        ({"offset": float("nan")}, "offset"),
        ({"two_peaks": True, "second_height": 1.2}, "second_height"),
        ({"two_peaks": True, "shape": (12, 12), "sigma": 3.0}, "no room"),
    ],
)
def test_bad_knobs_are_value_errors(tmp_path, knobs, message):
    with pytest.raises(ValueError, match=message):
        write_synthetic(tmp_path, **knobs)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"count": 10**12}, "count must be"),
        ({"count": 100_000}, "512 MiB"),
        ({"sigma": 1e300}, "sigma must be"),
        ({"sigma": 9000.0, "anisotropy": 2.0}, "sigma times anisotropy"),
        ({"noise": 1e308}, "noise must be"),
        ({"offset": 1e308}, "offset must be"),
    ],
)
def test_write_synthetic_refuses_huge_sizes_before_making_anything(tmp_path, options, message):
    """Issue 8, item 13: count 10¹² tried to allocate 14.6 TiB, σ = 1e300 overflowed."""
    import tracemalloc

    from heatdecode.sample import write_synthetic

    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=message):
            write_synthetic(tmp_path / "s", **options)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 10 * 2**20
    assert not (tmp_path / "s").exists()
