"""find_peaks: scikit-image's peak_local_max map by map, batched, and refined per peak."""

from __future__ import annotations

import itertools
import math
import zlib

import numpy as np
import pytest
import torch

skimage_feature = pytest.importorskip("skimage.feature")
ndi = pytest.importorskip("scipy.ndimage")

from heatdecode import Peaks, decode, find_peaks  # noqa: E402
from heatdecode.decoders import to_frame  # noqa: E402

peak_local_max = skimage_feature.peak_local_max

MIN_DISTANCES = (1, 2, 3)
BORDERS = (True, False, 2)


def random_maps(rng: np.random.Generator, kind: str, count: int, shape: tuple) -> np.ndarray:
    """``count`` maps: float noise, lightly smoothed float, or quantised (plateaus, ties)."""
    noise = rng.random((count, *shape))
    if kind == "float64":
        return noise
    smooth = ndi.gaussian_filter(noise, sigma=(0,) + (1.0,) * len(shape))
    smooth = (smooth - smooth.min()) / (smooth.max() - smooth.min())
    if kind == "float32":
        return smooth.astype(np.float32)
    if kind == "uint8":  # few levels: wide plateaus and many equal heights
        return np.round(smooth * rng.choice([6, 20, 255])).astype(np.uint8)
    return np.round(smooth * 4000).astype(np.uint16)


def reference(image: np.ndarray, **options) -> np.ndarray:
    """peak_local_max's (row, col[, plane]) peaks, reversed to x first."""
    num = options.pop("num_peaks")
    found = peak_local_max(image, num_peaks=np.inf if num is None else num, **options)
    return found[:, ::-1]


CASES = [
    (shape, kind)
    for shape in [(5, 7), (13, 17), (24, 19), (6, 32), (5, 6, 7), (9, 12, 10)]
    for kind in ("float64", "float32", "uint8", "uint16")
]


@pytest.mark.parametrize(("shape", "kind"), CASES, ids=lambda v: str(v))
def test_the_same_peaks_in_the_same_order_as_peak_local_max(shape, kind):
    rng = np.random.default_rng(zlib.crc32(repr((shape, kind)).encode()))
    count = 24 if len(shape) == 2 else 16  # 24·16 + 16·8 = 512 maps in all
    maps = random_maps(rng, kind, count, shape)
    value = float(np.quantile(maps, 0.6))
    thresholds = [(None, None), (value, None), (None, 0.5), (value, 0.3)]
    tensor = torch.from_numpy(maps)
    for k, (md, border) in enumerate(itertools.product(MIN_DISTANCES, BORDERS)):
        for absolute, relative in (thresholds[k % 4], thresholds[(k + 1) % 4]):
            options = dict(
                min_distance=md,
                threshold_abs=absolute,
                threshold_rel=relative,
                exclude_border=border,
                num_peaks=3 if (k + md) % 3 == 0 else None,
            )
            found = find_peaks(tensor, spatial_dims=len(shape), **options)
            assert found.counts.shape == (count,)
            for m in range(count):
                mine = found.coords[found.map_index == m]
                expected = reference(maps[m], **options)
                assert mine.tolist() == expected.tolist(), (m, options)
                assert found.rank[found.map_index == m].tolist() == list(range(len(expected)))


def test_saturated_plateaus_thin_exactly_as_scikit_image():
    rng = np.random.default_rng(3)
    image = (rng.random((70, 90)) * 200).astype(np.uint8)
    image[10:40, 15:70] = 255  # every pixel of it a candidate
    image[50:60, 5:9] = 255
    volume = (rng.random((14, 20, 18)) * 100).astype(np.uint8)
    volume[2:11, 3:15, 4:13] = 255
    for md in (2, 3, 4, 6):
        for data in (image, volume):
            found = find_peaks(torch.from_numpy(data), data.ndim, min_distance=md)
            options = dict(min_distance=md, num_peaks=None)
            assert found.coords.tolist() == reference(data, **options).tolist()


def test_constant_and_non_finite_maps_have_no_peaks():
    rng = np.random.default_rng(4)
    maps = rng.random((5, 9, 11))
    maps[1] = 0.25
    maps[2, 4, 4] = np.nan
    maps[3, 1, 2] = np.inf
    maps[4, 2, 2] = -np.inf
    assert len(peak_local_max(maps[1])) == 0  # scikit-image: none for a flat image
    found = find_peaks(torch.from_numpy(maps), min_distance=1, threshold_rel=0.2)
    assert found.counts.tolist()[1:] == [0, 0, 0, 0]
    expected = reference(maps[0], min_distance=1, threshold_rel=0.2, num_peaks=None)
    assert found.coords.tolist() == expected.tolist()


def test_single_pixel_and_single_row_maps_follow_scikit_image():
    pixel = np.array([[0.7]])
    for threshold in (None, 0.5, 0.9):
        options = dict(threshold_abs=threshold, exclude_border=False, num_peaks=None)
        found = find_peaks(torch.from_numpy(pixel), **options)
        assert found.coords.tolist() == reference(pixel, **options).tolist()
    row = np.array([[0.0, 3.0, 1.0, 3.0, 3.0, 0.5, 2.0]])
    for md, border in itertools.product((1, 2), (False, 0, 1)):
        options = dict(min_distance=md, exclude_border=border, num_peaks=None)
        found = find_peaks(torch.from_numpy(row), **options)
        assert found.coords.tolist() == reference(row, **options).tolist()


def test_unsigned_zero_peaks_rank_by_value_where_scikit_image_wraps_around():
    """Deliberate: skimage sorts by -intensities, which is 0 for an unsigned 0."""
    image = np.zeros((12, 12), dtype=np.uint8)
    image[3, 3], image[8, 8] = 200, 100
    options = dict(min_distance=2, threshold_abs=-1.0, exclude_border=False, num_peaks=None)
    expected = reference(image, **options)
    found = find_peaks(torch.from_numpy(image), **options)
    assert sorted(found.coords.tolist()) == sorted(expected.tolist())
    assert image[expected[0, 1], expected[0, 0]] == 0  # skimage: a zero first
    assert found.score[:2].tolist() == [200.0, 100.0]  # here: by value
    assert (found.score[2:] == 0).all()


def test_fields_ordering_and_shapes():
    rng = np.random.default_rng(5)
    maps = torch.from_numpy(rng.random((2, 3, 15, 13)))
    found = find_peaks(maps, min_distance=2, threshold_rel=0.5)
    assert isinstance(found, Peaks)
    assert found.counts.shape == (2, 3) and int(found.counts.sum()) == len(found.coords)
    assert torch.equal(found.coords, found.coords.round()) and found.coords.dtype == maps.dtype
    flat = maps.reshape(6, 15, 13)
    x, y = found.coords.long().unbind(-1)
    assert torch.equal(found.score, flat[found.map_index, y, x])
    key = found.map_index * 1000 + found.rank
    assert torch.equal(key, key.sort().values)  # by map, then rank
    assert (found.score[1:] <= found.score[:-1])[found.rank[1:] > 0].all()
    assert not found.border.any() and not found.skipped.any() and found.spread.isnan().all()
    argmax = find_peaks(maps, min_distance=2, threshold_rel=0.5, refine="argmax")
    for mine, theirs in zip(found, argmax, strict=True):
        assert torch.equal(mine, theirs) or torch.allclose(mine, theirs, equal_nan=True)


def test_a_map_gives_the_same_peaks_alone_or_in_any_batch():
    rng = np.random.default_rng(6)
    maps = torch.from_numpy(random_maps(rng, "uint8", 6, (20, 22)))
    together = find_peaks(maps, min_distance=2, refine="parabola")
    for m in range(6):
        alone = find_peaks(maps[m], min_distance=2, refine="parabola")
        assert torch.equal(alone.coords, together.coords[together.map_index == m])


def test_padded_coordinates_for_a_model():
    maps = torch.zeros(2, 2, 9, 9)
    maps[0, 0, 2, 2] = maps[0, 0, 6, 6] = maps[0, 0, 2, 6] = 1.0
    maps[1, 1, 4, 4] = 1.0
    found = find_peaks(maps, min_distance=1)
    coords, valid = found.padded()
    assert coords.shape == (2, 2, 3, 2) and valid.shape == (2, 2, 3)
    assert valid.sum(-1).tolist() == [[3, 0], [0, 1]]
    assert coords[0, 0, 0].tolist() == [2.0, 2.0] and coords[1, 1, 0].tolist() == [4.0, 4.0]
    assert coords[~valid].isnan().all() and not coords[valid].isnan().any()
    short, kept = found.padded(1)
    assert short.shape == (2, 2, 1, 2) and kept.sum().item() == 2
    assert found.padded(5)[0].shape == (2, 2, 5, 2)
    none = find_peaks(torch.zeros(3, 4, 4))
    assert none.padded()[0].shape == (3, 0, 2)
    with pytest.raises(ValueError, match="k must be"):
        found.padded(-1)


def test_frames_and_the_deprecated_coords_alias():
    maps = torch.zeros(1, 7, 10)
    maps[0, 2, 7] = 1.0
    pixel = find_peaks(maps).coords
    for frame in ("half-pixel", "normalized", "normalized-edges"):
        expected = to_frame(pixel, (7, 10), frame)
        assert torch.allclose(find_peaks(maps, frame=frame).coords, expected)
        assert torch.allclose(find_peaks(maps, coords=frame).coords, expected)
    with pytest.raises(TypeError, match="not both"):
        find_peaks(maps, frame="pixel", coords="pixel")


@pytest.mark.parametrize(
    ("options", "error", "name"),
    [
        ({"min_distance": 0}, ValueError, "min_distance"),
        ({"min_distance": 1.5}, ValueError, "min_distance"),
        ({"min_distance": True}, ValueError, "min_distance"),
        ({"num_peaks": 0}, ValueError, "num_peaks"),
        ({"num_peaks": 2.0}, ValueError, "num_peaks"),
        ({"threshold_abs": math.nan}, ValueError, "threshold_abs"),
        ({"threshold_rel": math.inf}, ValueError, "threshold_rel"),
        ({"threshold_abs": "1"}, ValueError, "threshold_abs"),
        ({"exclude_border": -1}, ValueError, "exclude_border"),
        ({"exclude_border": (1,)}, ValueError, "exclude_border"),
        ({"exclude_border": "yes"}, TypeError, "exclude_border"),
        ({"refine": "softargmax"}, ValueError, "refine"),
        ({"refine": "nope"}, ValueError, "refine"),
        ({"refine": "local-softargmax", "beta": -1.0}, ValueError, "beta"),
        ({"refine": "dark", "sigma": -1.0}, ValueError, "sigma"),
        ({"refine": "parabola", "nope": 1}, TypeError, "nope"),
        ({"spatial_dims": 4}, ValueError, "spatial_dims"),
    ],
)
def test_bad_options_are_refused_naming_the_parameter(options, error, name):
    with pytest.raises(error, match=name):
        find_peaks(torch.rand(8, 8), **options)


def test_options_reach_the_refining_decoder_and_others_are_ignored():
    x, y = torch.arange(16.0, dtype=torch.float64), torch.arange(14.0)[:, None]
    maps = torch.exp(-((x - 7.3) ** 2 + (y - 6.6) ** 2) / 8)
    sharp = find_peaks(maps, refine="local-softargmax", beta=100.0).coords
    soft = find_peaks(maps, refine="local-softargmax", beta=5.0).coords
    assert not torch.allclose(sharp, soft)
    ignored = find_peaks(maps, refine="parabola", beta=5.0, sigma=None).coords
    assert torch.equal(ignored, find_peaks(maps, refine="parabola").coords)


def gaussian(shape: tuple, centre: np.ndarray, amplitude: float, sigma: float = 1.5) -> np.ndarray:
    """A Gaussian on a map of ``shape`` (array order) at ``centre`` (x first)."""
    grids = np.meshgrid(*[np.arange(n, dtype=np.float64) for n in shape], indexing="ij")
    r2 = sum((g - c) ** 2 for g, c in zip(grids, centre[::-1], strict=True))
    return amplitude * np.exp(-r2 / (2 * sigma**2))


def spot_maps(rng, shape: tuple, count: int, spots: int, sigma: float = 1.5):
    """Maps of many Gaussian spots, every two ≥ 4σ apart, amplitudes in [0.5, 1)."""
    maps, truths = [], []
    for _ in range(count):
        centres: list[np.ndarray] = []
        while len(centres) < spots:
            c = np.array([rng.uniform(3, n - 4) for n in shape[::-1]])  # x first
            if all(np.linalg.norm(c - o) >= 4 * sigma for o in centres):
                centres.append(c)
        maps.append(sum(gaussian(shape, c, rng.uniform(0.5, 1.0), sigma) for c in centres))
        truths.append(np.array(centres))
    return torch.from_numpy(np.stack(maps)), truths


def errors(found: Peaks, truths: list[np.ndarray]) -> np.ndarray:
    """Each true spot's distance to its peak; every spot must have one, nothing extra."""
    assert len(found.coords) == sum(len(t) for t in truths)
    out = []
    for m, truth in enumerate(truths):
        mine = found.coords[found.map_index == m].double().numpy()
        gap = np.linalg.norm(mine[:, None, :] - truth[None], axis=-1)
        assert (gap.min(0) < 1.0).all()  # every spot found
        out.append(gap.min(0))
    return np.concatenate(out)


#: Mean error (px) on these noise-free σ=1.5 spots (40 per 64×80 map, 30 per
#: 28×32×36 volume, every two ≥ 4σ apart), measured: parabola 8e-4 (2D) and
#: 6e-4 (3D), within the 0.01 target; DARK with σ estimated 0.012 (2D) and
#: 0.017 (3D), over the target: its smoothing kernel (4σ) reaches past the
#: mask at a neighbour's cell, ~2σ away, and sees the spot's own tail cut
#: there (0.005 / 0.016 on sparser maps; 0.001 / 0.005 with spots 5σ apart).
#: DARK without smoothing (sigma=0) is 8e-4 in both. (Integer 0.36 / 0.51,
#: quarter 0.20 / 0.25, local-softargmax at its defaults 0.039 / 0.046.)
ACCURACY = {
    (2, "parabola", None): 0.01,
    (3, "parabola", None): 0.01,
    (2, "dark", None): 0.02,
    (3, "dark", None): 0.03,
    (2, "dark", 0.0): 0.01,
    (3, "dark", 0.0): 0.01,
}


@pytest.mark.parametrize(("dims", "refine", "sigma"), list(ACCURACY))
def test_every_gaussian_spot_is_found_and_refined(dims, refine, sigma):
    rng = np.random.default_rng(dims)
    shape = (64, 80) if dims == 2 else (28, 32, 36)
    maps, truths = spot_maps(rng, shape, count=3, spots=40 if dims == 2 else 30)
    options = {} if sigma is None else {"sigma": sigma}
    found = find_peaks(maps, dims, min_distance=2, threshold_rel=0.1, refine=refine, **options)
    assert errors(found, truths).mean() <= ACCURACY[(dims, refine, sigma)]
    integer = errors(find_peaks(maps, dims, min_distance=2, threshold_rel=0.1), truths)
    assert integer.mean() > 0.3  # the refinement is what did it


REFINES = [
    ("parabola", {}, 0.002),
    ("quarter", {}, 0.002),
    ("local-softargmax", {}, 0.002),
    ("local-softargmax", {"radius": 9}, 0.002),  # the window holds the other peak
    ("dark", {}, 0.04),  # its own tail is cut at the midpoint
    ("dark", {"sigma": 2.0}, 0.06),
]


@pytest.mark.parametrize(("refine", "options", "tolerance"), REFINES)
@pytest.mark.parametrize("dims", [2, 3])
def test_a_strong_neighbour_does_not_drag_a_weak_peak(dims, refine, options, tolerance):
    """Two Gaussians 2·min_distance apart, heights 1 and 0.1: each estimate is
    within what refining it alone on its own map gives, plus a tolerance."""
    rng = np.random.default_rng(7)
    md = 4
    shape = (26, 32) if dims == 2 else (24, 26, 30)
    for trial in range(6):
        first = rng.uniform(9.0, 11.0, dims)
        step = np.zeros(dims)
        step[trial % dims] = 2 * md
        if trial >= 4:
            step[:] = 2 * md  # diagonal
        second = first + step
        heights = (1.0, 0.1) if trial % 2 else (0.1, 1.0)
        alone = [gaussian(shape, c, h) for c, h in zip((first, second), heights, strict=True)]
        both = torch.from_numpy(alone[0] + alone[1])
        found = find_peaks(
            both, dims, min_distance=md, threshold_rel=0.02, refine=refine, **options
        )
        assert len(found.coords) == 2
        for centre, own in zip((first, second), alone, strict=True):
            single = decode(torch.from_numpy(own), refine, spatial_dims=dims, **options)
            own_error = np.linalg.norm(single.coords.numpy() - centre)
            mine = found.coords.numpy()
            error = np.linalg.norm(mine - centre, axis=-1).min()
            assert error <= own_error + tolerance, (trial, error, own_error)


@pytest.mark.parametrize("refine", ["quarter", "parabola", "local-softargmax", "dark"])
@pytest.mark.parametrize("dims", [2, 3])
def test_one_peak_refines_as_the_point_decoder_does_edges_included(dims, refine):
    rng = np.random.default_rng(8)
    shape = (11, 14) if dims == 2 else (9, 10, 12)
    for trial in range(4):
        centre = np.array([rng.uniform(0, n - 1) for n in shape[::-1]])
        if trial < 2:
            centre[trial % dims] = 0.2 if trial else shape[::-1][0] - 1.1  # at an edge
        image = torch.from_numpy(gaussian(shape, centre, 1.0, sigma=2.0))
        single = decode(image, refine, spatial_dims=dims)
        found = find_peaks(image, dims, exclude_border=False, threshold_rel=0.5, refine=refine)
        assert len(found.coords) == 1
        assert torch.allclose(found.coords[0], single.coords, atol=1e-9)
        assert found.border.item() == single.border.item()
        assert found.skipped.item() == single.skipped.item()
        if single.spread is not None:
            assert torch.allclose(found.spread[0], single.spread)


def test_adjacent_plateau_peaks_refine_apart_with_min_distance_one():
    """min_distance=1 keeps both pixels of a two-pixel top; each masks the other."""
    image = torch.zeros(7, 9)
    image[3, 3] = image[3, 4] = 1.0
    image[2:5, 2:6] += 0.5
    found = find_peaks(image, exclude_border=False, refine="parabola")
    assert found.coords[:, 1].tolist() == [3.0, 3.0]
    left, right = sorted(found.coords[:, 0].tolist())
    assert left < 3.0 < 4.0 < right


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_gives_the_cpu_answer():
    rng = np.random.default_rng(9)
    maps = torch.from_numpy(random_maps(rng, "uint8", 8, (40, 50)))
    for refine in (None, "parabola", "dark", "local-softargmax"):
        cpu = find_peaks(maps, min_distance=2, refine=refine)
        gpu = find_peaks(maps.cuda(), min_distance=2, refine=refine)
        assert torch.equal(cpu.map_index, gpu.map_index.cpu())
        assert torch.allclose(cpu.coords, gpu.coords.cpu(), atol=1e-5, equal_nan=True)


@pytest.mark.parametrize("refine", ["parabola", "local-softargmax", "dark"])
def test_the_pairwise_and_the_distance_transform_masks_agree(refine, monkeypatch):
    """Few peaks per chunk: rivals by pairs; many: a distance transform. Same masks."""
    rng = np.random.default_rng(10)
    maps = torch.from_numpy(random_maps(rng, "float32", 4, (30, 34)))  # crowded: md=1
    volumes = torch.from_numpy(random_maps(rng, "uint8", 2, (10, 12, 14)))
    for data, dims in ((maps, 2), (volumes, 3)):
        pairs = find_peaks(data, dims, refine=refine, exclude_border=False)
        monkeypatch.setattr("heatdecode.peaks_refine.PAIR_ELEMENTS", 0)
        dense = find_peaks(data, dims, refine=refine, exclude_border=False)
        monkeypatch.undo()
        assert len(pairs.coords) > 100
        for mine, theirs in zip(pairs, dense, strict=True):
            assert torch.equal(mine, theirs) or torch.allclose(mine, theirs, equal_nan=True)


@pytest.mark.parametrize(
    "dtype", [torch.float16, torch.bfloat16, torch.int8, torch.int16, torch.int64, np.uint16]
)
def test_other_dtypes_give_scikit_images_peaks(dtype):
    rng = np.random.default_rng(11)
    values = np.round(rng.random((3, 14, 19)) * 60)
    if isinstance(dtype, torch.dtype):
        maps = torch.from_numpy(values).to(dtype)
    else:  # torch has few kernels for uint16 (16-bit PNGs): from numpy
        maps = torch.from_numpy(values.astype(dtype))
    found = find_peaks(maps, min_distance=2, threshold_rel=0.3)
    for m in range(3):
        expected = reference(values[m], min_distance=2, threshold_rel=0.3, num_peaks=None)
        assert found.coords[found.map_index == m].tolist() == expected.tolist()
    refined = find_peaks(maps, min_distance=2, threshold_rel=0.3, refine="parabola")
    assert torch.equal(refined.map_index, found.map_index)
    assert (refined.coords - found.coords).abs().max() <= 0.5


def test_no_maps_and_no_peaks_give_empty_results():
    for maps in (torch.zeros(0, 5, 6), torch.zeros(2, 0, 5, 6), torch.ones(3, 4, 4)):
        found = find_peaks(maps, refine="dark")
        assert found.coords.shape == (0, 2) and found.counts.shape == maps.shape[:-2]
        assert found.padded()[0].shape == (*maps.shape[:-2], 0, 2)


def test_exclude_border_per_axis_in_array_order():
    rng = np.random.default_rng(12)
    for shape, widths in (((15, 20), (3, 0)), ((15, 20), (0, 4)), ((8, 9, 10), (1, 0, 2))):
        image = rng.random(shape)
        found = find_peaks(torch.from_numpy(image), len(shape), exclude_border=widths)
        expected = reference(image, exclude_border=widths, num_peaks=None)
        assert found.coords.tolist() == expected.tolist()
