"""Behaviour of ``heatdecode.decoders``: hard argmax and soft-argmax, 2D and 3D.

The soft-argmax is checked against an independent float64 numpy reference written
straight from the formula ``Σᵢ i · softmax(β · x̂)ᵢ`` with full ``(D,) H, W`` index
grids; the hard argmax against ``numpy.argmax`` on the flattened map. Coordinates
are ordered ``(x, y[, z])``: x indexes W (the last axis), y indexes H, z indexes D.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from heatdecode.decoders import (
    Decoded,
    PointEstimates,
    SoftArgmax,
    argmax_decode,
    hard_argmax,
    soft_argmax,
    softargmax_decode,
    to_frame,
)
from heatdecode.family import decode

# the two global decoders this file is about; the refining family has its own tests
DECODERS = ("argmax", "softargmax")

# low β on random maps is tested on purpose here; the warning has its own tests
# (tests/test_decode_flags.py)
pytestmark = pytest.mark.filterwarnings("ignore::heatdecode.status.BackgroundDominatedWarning")

NORMALIZE = ("none", "max", "minmax")


# ---------------------------------------------------------------------------
# Independent references (numpy, float64, no heatdecode code involved)
# ---------------------------------------------------------------------------


def ref_normalize(x: np.ndarray, normalize: str) -> np.ndarray:
    """``x̂`` from the contract: x, x / max|x|, or (x - min) / (max - min)."""
    x = x.astype(np.float64)
    if normalize == "none":
        return x
    if normalize == "max":
        a = np.abs(x).max()
        return x / a if a > 0 else np.zeros_like(x)
    lo, hi = x.min(), x.max()
    return (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)


def ref_soft_argmax_one(x: np.ndarray, beta: float, normalize: str) -> tuple[np.ndarray, float]:
    """Soft-argmax and spread of ONE map ``(H, W)`` or ``(D, H, W)``, in pixels.

    Returns ``(coords ordered (x, y[, z]), spread)``.
    """
    logits = beta * ref_normalize(x, normalize)
    w = np.exp(logits - logits.max())
    p = w / w.sum()
    grids = np.indices(x.shape, dtype=np.float64)  # grids[k][i, j(, l)] = index along axis k
    means = np.array([(p * g).sum() for g in grids])  # array order: (y, x) or (z, y, x)
    variances = np.array([(p * (g - m) ** 2).sum() for g, m in zip(grids, means, strict=True)])
    return means[::-1].copy(), float(np.sqrt(variances.sum()))


def ref_soft_argmax(
    maps: np.ndarray, beta: float, normalize: str, spatial_dims: int
) -> tuple[np.ndarray, np.ndarray]:
    """Batched :func:`ref_soft_argmax_one`: ``(..., *S) -> ((..., d), (...))``."""
    lead = maps.shape[:-spatial_dims]
    coords = np.zeros((*lead, spatial_dims))
    spread = np.zeros(lead)
    for idx in np.ndindex(*lead):
        coords[idx], spread[idx] = ref_soft_argmax_one(maps[idx], beta, normalize)
    return coords, spread


def ref_hard_argmax(maps: np.ndarray, spatial_dims: int) -> np.ndarray:
    """``numpy.argmax`` on each flattened map, unravelled and ordered (x, y[, z])."""
    spatial = maps.shape[-spatial_dims:]
    lead = maps.shape[:-spatial_dims]
    out = np.zeros((*lead, spatial_dims))
    for idx in np.ndindex(*lead):
        flat_index = np.argmax(maps[idx].ravel())
        out[idx] = np.unravel_index(flat_index, spatial)[::-1]
    return out


def centre(spatial: tuple[int, ...]) -> list[float]:
    """The centre of a map in pixels, ordered (x, y[, z])."""
    return [(n - 1) / 2 for n in reversed(spatial)]


def uniform_spread(spatial: tuple[int, ...]) -> float:
    """Spread of a uniform distribution over the map: var of 0..n-1 is (n² - 1) / 12."""
    return math.sqrt(sum((n * n - 1) / 12 for n in spatial))


def gaussian(spatial: tuple[int, ...], peak: tuple[float, ...], sigma: float) -> np.ndarray:
    """An isotropic Gaussian bump centred at ``peak`` (array order), values in (0, 1]."""
    grids = np.indices(spatial, dtype=np.float64)
    r2 = sum((g - c) ** 2 for g, c in zip(grids, peak, strict=True))
    return np.exp(-r2 / (2 * sigma**2))


def t(a: np.ndarray, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return torch.from_numpy(np.array(a, copy=True)).to(dtype)


# ---------------------------------------------------------------------------
# 1. Soft-argmax and spread against the numpy reference
# ---------------------------------------------------------------------------

REFERENCE_CASES = [  # (map shape including batch dims, spatial_dims)
    ((3, 7, 13), 2),
    ((2, 48, 64), 2),
    ((13, 7), 2),  # no batch dims, H > W
    ((2, 5, 7, 11), 3),
]


@pytest.mark.parametrize("shape, spatial_dims", REFERENCE_CASES)
@pytest.mark.parametrize("normalize", NORMALIZE)
@pytest.mark.parametrize("beta", [0.5, 5.0, 50.0])
def test_soft_argmax_matches_numpy_reference_in_float64(rng, shape, spatial_dims, normalize, beta):
    maps = rng.normal(size=shape)
    want_xy, want_spread = ref_soft_argmax(maps, beta, normalize, spatial_dims)

    out = softargmax_decode(t(maps), beta=beta, spatial_dims=spatial_dims, normalize=normalize)

    assert out.coords.dtype == torch.float64
    assert out.coords.shape == (*shape[:-spatial_dims], spatial_dims)
    np.testing.assert_allclose(out.coords.numpy(), want_xy, rtol=0, atol=1e-9)
    np.testing.assert_allclose(out.spread.numpy(), want_spread, rtol=0, atol=1e-9)
    np.testing.assert_allclose(
        soft_argmax(t(maps), beta=beta, spatial_dims=spatial_dims, normalize=normalize).numpy(),
        want_xy,
        rtol=0,
        atol=1e-9,
    )


@pytest.mark.parametrize("shape, spatial_dims", REFERENCE_CASES)
@pytest.mark.parametrize("normalize", NORMALIZE)
@pytest.mark.parametrize("beta", [0.5, 5.0, 50.0])
def test_soft_argmax_matches_numpy_reference_in_float32(rng, shape, spatial_dims, normalize, beta):
    maps = rng.normal(size=shape).astype(np.float32)
    # The reference sees exactly the float32 values; only the arithmetic differs.
    want_xy, want_spread = ref_soft_argmax(maps, beta, normalize, spatial_dims)

    out = softargmax_decode(
        t(maps, torch.float32), beta=beta, spatial_dims=spatial_dims, normalize=normalize
    )

    assert out.coords.dtype == torch.float32
    np.testing.assert_allclose(out.coords.numpy(), want_xy, rtol=0, atol=5e-5)
    np.testing.assert_allclose(out.spread.numpy(), want_spread, rtol=0, atol=5e-5)


@pytest.mark.parametrize("spatial", [(4, 9), (1, 6), (3, 5, 2)])
def test_spread_of_a_constant_map_is_that_of_the_uniform_distribution(spatial):
    out = softargmax_decode(torch.full(spatial, 2.0), spatial_dims=len(spatial))
    assert out.spread.item() == pytest.approx(uniform_spread(spatial), abs=1e-5)


def test_spread_of_a_one_hot_map_at_large_beta_is_zero():
    maps = torch.zeros(6, 11)
    maps[2, 9] = 1.0
    out = softargmax_decode(maps, beta=1e4)
    assert out.spread.item() == pytest.approx(0.0, abs=1e-6)


def test_spread_is_in_pixels_whatever_the_coordinate_frame(rng):
    maps = t(rng.normal(size=(3, 7, 13)))
    pixel = softargmax_decode(maps, beta=2.0, coords="pixel")
    normalized = softargmax_decode(maps, beta=2.0, coords="normalized")
    torch.testing.assert_close(normalized.spread, pixel.spread)


# ---------------------------------------------------------------------------
# 2. Axis order: x indexes W, y indexes H, z indexes D
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("row, col", [(0, 8), (4, 0), (3, 6), (1, 2), (4, 8)])
def test_hot_pixel_at_row_r_col_c_decodes_to_x_c_y_r(row, col):
    maps = torch.zeros(5, 9)  # H=5, W=9: non-square so a swap cannot hide
    maps[row, col] = 1.0

    assert hard_argmax(maps).tolist() == [col, row]
    soft = soft_argmax(maps, beta=1e4, normalize="none")
    torch.testing.assert_close(soft, torch.tensor([col, row], dtype=torch.float32))


@pytest.mark.parametrize("d, h, w", [(0, 0, 8), (3, 5, 0), (2, 1, 7), (3, 0, 0), (1, 4, 6)])
def test_hot_voxel_at_d_h_w_decodes_to_x_w_y_h_z_d(d, h, w):
    maps = torch.zeros(2, 4, 6, 9)  # batch of 2, D=4, H=6, W=9
    maps[1, d, h, w] = 1.0
    maps[0, 3 - d, 5 - h, 8 - w] = 1.0

    assert hard_argmax(maps, spatial_dims=3).tolist() == [[8 - w, 5 - h, 3 - d], [w, h, d]]
    soft = soft_argmax(maps, beta=1e4, spatial_dims=3, normalize="none")
    want = torch.tensor([[8 - w, 5 - h, 3 - d], [w, h, d]], dtype=torch.float32)
    torch.testing.assert_close(soft, want)


def test_meshgrid_xy_indexing_bug_gives_wrong_answer_on_non_square_map():
    """The classic bug: ``np.meshgrid(rows, cols)`` defaults to 'xy' indexing.

    Its grids are transposed, shape (W, H) instead of (H, W); on a square map that
    silently swaps x and y, on a non-square one the flattened product lands on a
    different pixel altogether. heatdecode must agree with the 'ij' grid.
    """
    H, W = 5, 9
    maps = np.zeros((H, W))
    maps[3, 7] = 1.0
    p = np.exp(1e4 * (maps - maps.max()))
    p /= p.sum()

    rows_ij, cols_ij = np.meshgrid(np.arange(H), np.arange(W), indexing="ij")
    right = [(p * cols_ij).sum(), (p * rows_ij).sum()]
    rows_xy, cols_xy = np.meshgrid(np.arange(H), np.arange(W))  # the bug: shape (W, H)
    wrong = [(p.ravel() * cols_xy.ravel()).sum(), (p.ravel() * rows_xy.ravel()).sum()]

    got = soft_argmax(t(maps), beta=1e4).tolist()
    assert right == pytest.approx([7.0, 3.0])
    assert wrong == pytest.approx([6.0, 4.0])  # what the 'xy' grid would report
    assert got == pytest.approx(right, abs=1e-9)
    assert got != pytest.approx(wrong, abs=0.5)


def test_meshgrid_xy_reference_differs_from_heatdecode_on_a_random_non_square_map(rng):
    H, W = 7, 13
    maps = rng.normal(size=(H, W))
    p = np.exp(maps - maps.max())
    p /= p.sum()
    rows_xy, cols_xy = np.meshgrid(np.arange(H), np.arange(W))  # wrong: 'xy'
    wrong = np.array([(p.ravel() * cols_xy.ravel()).sum(), (p.ravel() * rows_xy.ravel()).sum()])
    right, _ = ref_soft_argmax_one(maps, 1.0, "none")

    got = soft_argmax(t(maps)).numpy()
    np.testing.assert_allclose(got, right, atol=1e-9)
    assert np.abs(got - wrong).max() > 0.1


# ---------------------------------------------------------------------------
# 3. Hard argmax is numpy's argmax, ties included
# ---------------------------------------------------------------------------

LEADS = [(), (1,), (4,), (2, 3), (2, 1, 3)]


@pytest.mark.parametrize("lead", LEADS)
@pytest.mark.parametrize("spatial", [(7, 13), (13, 7), (5, 7, 11)])
@pytest.mark.parametrize("kind", ["normal", "ties"])
def test_hard_argmax_is_numpy_argmax_on_the_flattened_map(rng, lead, spatial, kind):
    shape = (*lead, *spatial)
    if kind == "normal":
        maps = rng.normal(size=shape).astype(np.float32)
    else:  # integer values 0..3: every map has many tied maxima
        maps = rng.integers(0, 4, size=shape).astype(np.float32)
    sd = len(spatial)

    out = argmax_decode(t(maps, torch.float32), spatial_dims=sd)

    np.testing.assert_array_equal(out.coords.numpy(), ref_hard_argmax(maps, sd))
    np.testing.assert_array_equal(out.score.numpy(), maps.max(axis=tuple(range(-sd, 0))))
    np.testing.assert_array_equal(
        hard_argmax(t(maps, torch.float32), spatial_dims=sd).numpy(), ref_hard_argmax(maps, sd)
    )


def test_tie_goes_to_the_first_maximum_in_row_major_order():
    maps = torch.zeros(3, 4)
    maps[2, 0] = maps[0, 3] = maps[1, 1] = 7.0  # row-major first: (row 0, col 3)
    assert hard_argmax(maps).tolist() == [3.0, 0.0]


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int32, torch.int64])
def test_hard_argmax_of_integer_maps_is_numpy_argmax(rng, dtype):
    maps = rng.integers(0, 4, size=(3, 6, 5))
    got = hard_argmax(torch.from_numpy(maps).to(dtype))
    np.testing.assert_array_equal(got.numpy(), ref_hard_argmax(maps, 2))


def test_hard_argmax_of_large_int64_values_is_exact():
    """Integers above 2**24 are not all representable in float32.

    numpy's argmax of [2**24, 2**24 + 1] is 1; converting to float32 first
    rounds both to 2**24 and turns them into a tie resolved to index 0.
    """
    values = np.array([[2**24, 2**24 + 1, 5]], dtype=np.int64)
    out = argmax_decode(torch.from_numpy(values))
    assert np.argmax(values.ravel()) == 1
    assert out.coords.tolist() == [1.0, 0.0]
    assert int(out.score.item()) == 2**24 + 1


# ---------------------------------------------------------------------------
# 4. At large β the soft-argmax is the hard argmax
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("normalize", NORMALIZE)
@pytest.mark.parametrize("spatial", [(7, 13), (5, 7, 11)])
def test_soft_argmax_at_large_beta_equals_hard_argmax_on_a_sharp_unique_peak(
    rng, normalize, spatial
):
    sd = len(spatial)
    maps = rng.uniform(0, 1, size=(4, *spatial))
    for b in range(4):  # one peak per map, well above the background
        maps[b].flat[rng.integers(0, maps[b].size)] = 2.0
    maps = t(maps, torch.float32)

    soft = soft_argmax(maps, beta=1e4, spatial_dims=sd, normalize=normalize)
    torch.testing.assert_close(soft, hard_argmax(maps, spatial_dims=sd), rtol=0, atol=1e-5)


# ---------------------------------------------------------------------------
# 5. Translation equivariance
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spatial, peak, shift, atol",
    [
        ((40, 56), (15, 20), (6, -5), 1e-4),
        ((40, 56), (20, 28), (-7, 11), 1e-4),
        # a volume has ~10x more background voxels per unit of peak mass: ~8e-5 seen
        ((20, 24, 28), (8, 10, 12), (3, -2, 5), 3e-4),
    ],
)
def test_integer_shift_of_a_gaussian_shifts_the_coordinates_by_that_offset(
    spatial, peak, shift, atol
):
    sd = len(spatial)
    moved = tuple(p + s for p, s in zip(peak, shift, strict=True))
    maps = t(np.stack([gaussian(spatial, peak, 2.0), gaussian(spatial, moved, 2.0)]))
    offset = torch.tensor(shift[::-1], dtype=torch.float64)  # array order -> (x, y[, z])

    hard = hard_argmax(maps, spatial_dims=sd)
    assert hard[0].tolist() == list(peak[::-1])
    assert (hard[1] - hard[0]).tolist() == offset.tolist()

    soft = soft_argmax(maps, beta=20.0, spatial_dims=sd, normalize="minmax")
    # The far background (weight ~1 per pixel against ~e^20 at the peak, a few 1e-6
    # of the mass in 2D) pulls the mean by ~1e-5 px towards the map centre; the pull
    # changes with the shift, so allow ~1e-4 px rather than float64 exactness.
    torch.testing.assert_close(soft[1] - soft[0], offset, rtol=0, atol=atol)
    torch.testing.assert_close(
        soft[0], torch.tensor(peak[::-1], dtype=torch.float64), rtol=0, atol=atol
    )


# ---------------------------------------------------------------------------
# 6. Constant maps and maps with NaN / Inf
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("value", [0.0, 3.5, -2.0])
@pytest.mark.parametrize("normalize", NORMALIZE)
@pytest.mark.parametrize("spatial", [(5, 8), (3, 4, 6)])
def test_constant_map_argmax_at_origin_soft_argmax_at_centre_and_flagged_flat(
    value, normalize, spatial
):
    sd = len(spatial)
    maps = torch.full((2, *spatial), value)

    hard = argmax_decode(maps, spatial_dims=sd)
    assert hard.coords.tolist() == [[0.0] * sd] * 2
    assert hard.flat.tolist() == [True, True]
    assert hard.score.tolist() == [value, value]

    soft = softargmax_decode(maps, beta=5.0, spatial_dims=sd, normalize=normalize)
    torch.testing.assert_close(soft.coords, torch.tensor([centre(spatial)] * 2))
    assert soft.flat.tolist() == [True, True]
    assert soft.finite.tolist() == [True, True]
    assert soft.spread.tolist() == pytest.approx([uniform_spread(spatial)] * 2, abs=1e-5)


def test_a_map_with_a_peak_is_not_flat():
    maps = torch.zeros(2, 3, 4)
    maps[1, 2, 3] = 1e-6
    assert argmax_decode(maps).flat.tolist() == [True, False]
    assert softargmax_decode(maps).flat.tolist() == [True, False]


@pytest.mark.parametrize("decoder", DECODERS)
def test_maps_with_nan_or_inf_are_flagged_not_finite_without_spoiling_the_batch(rng, decoder):
    clean = rng.normal(size=(6, 9))
    maps = np.stack([clean, clean, clean, clean, clean])
    maps[1, 2, 3] = np.nan
    maps[2, 0, 0] = np.inf
    maps[3, 5, 8] = -np.inf
    maps[4] = np.nan

    out = decode(t(maps), decoder, beta=3.0)
    alone = decode(t(clean), decoder, beta=3.0)

    assert out.finite.tolist() == [True, False, False, False, False]
    torch.testing.assert_close(out.coords[0], alone.coords)
    assert alone.finite.item() is True


# ---------------------------------------------------------------------------
# 7. Half precision, extreme values, extreme β
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("normalize", NORMALIZE)
@pytest.mark.parametrize("beta", [1.0, 50.0, 1e3])
def test_half_precision_input_is_decoded_in_float32(rng, dtype, normalize, beta):
    maps = torch.from_numpy(rng.normal(scale=4.0, size=(3, 12, 17)).astype(np.float32))
    half = maps.to(dtype)
    as_float = half.float()  # the very same values, already in float32

    out = softargmax_decode(half, beta=beta, normalize=normalize)
    want = softargmax_decode(as_float, beta=beta, normalize=normalize)

    assert not torch.isnan(out.coords).any()
    assert out.coords.dtype == torch.float32
    torch.testing.assert_close(out.coords, want.coords, rtol=0, atol=1e-5)
    torch.testing.assert_close(out.spread, want.spread, rtol=0, atol=1e-5)
    # and close to decoding the unrounded float32 map: rounding the input to 11
    # (float16) or 8 (bfloat16) significant bits moves logits of size ~10 by up to
    # ~0.005 / ~0.04, which moves the mean by a few hundredths of a pixel at β=1.
    if beta == 1.0:
        full = soft_argmax(maps, beta=beta, normalize=normalize)
        atol = 0.03 if dtype == torch.float16 else 0.25
        torch.testing.assert_close(out.coords, full, rtol=0, atol=atol)

    hard = argmax_decode(half)
    np.testing.assert_array_equal(hard.coords.numpy(), ref_hard_argmax(as_float.numpy(), 2))
    torch.testing.assert_close(hard.score, as_float.amax((-2, -1)))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_large_half_precision_map_does_not_overflow_the_softmax_sum(dtype):
    # 256 * 300 = 76800 equal weights of 1 would overflow float16's 65504.
    maps = torch.zeros(256, 300, dtype=dtype)
    torch.testing.assert_close(soft_argmax(maps), torch.tensor([149.5, 127.5]))


EXTREME_MAPS = {  # name -> (dtype, values drawn with random signs/magnitudes)
    "float32 ±1e30": (np.float32, lambda r, s: r.choice([-1e30, 1e30, 3e29, -2e30], size=s)),
    "float64 ±1e300": (np.float64, lambda r, s: r.choice([-1e300, 1e300, -3e299, 5e299], size=s)),
    "float32 subnormal": (np.float32, lambda r, s: r.uniform(-1, 1, size=s) * 1e-40),
    "float64 subnormal": (np.float64, lambda r, s: r.uniform(-1, 1, size=s) * 1e-310),
    "float32 mixed": (np.float32, lambda r, s: r.choice([1e-40, -1e30, 1e30, 0.0, 1.0], size=s)),
    "float32 normal": (np.float32, lambda r, s: r.normal(size=s)),
}


@pytest.mark.parametrize("name", list(EXTREME_MAPS))
@pytest.mark.parametrize("normalize", NORMALIZE)
@pytest.mark.parametrize("beta", [1e-3, 1e4])
@pytest.mark.parametrize("spatial", [(6, 10), (3, 4, 5)])
def test_extreme_values_and_beta_give_finite_coordinates_inside_the_map(
    rng, name, normalize, beta, spatial
):
    np_dtype, draw = EXTREME_MAPS[name]
    sd = len(spatial)
    maps = torch.from_numpy(draw(rng, (3, *spatial)).astype(np_dtype))
    upper = torch.tensor([n - 1 for n in reversed(spatial)], dtype=maps.dtype)

    for out in (
        softargmax_decode(maps, beta=beta, spatial_dims=sd, normalize=normalize),
        argmax_decode(maps, spatial_dims=sd),
    ):
        assert torch.isfinite(out.coords).all(), out.coords
        assert (out.coords >= 0).all() and (out.coords <= upper).all(), out.coords
        assert out.finite.all()
        if out.spread is not None:
            assert torch.isfinite(out.spread).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("normalize", NORMALIZE)
@pytest.mark.parametrize("beta", [1e-3, 1.0, 1e4])
def test_values_at_the_dtype_limit_never_give_nan(dtype, normalize, beta):
    big = torch.finfo(dtype).max
    maps = torch.tensor([[-big, big, 0.0], [big, -big, -big / 2]], dtype=dtype)
    out = softargmax_decode(maps, beta=beta, normalize=normalize)
    assert torch.isfinite(out.coords).all(), out.coords
    assert torch.isfinite(out.spread).all(), out.spread


@pytest.mark.parametrize(
    "dtype, exponent",
    [
        (torch.float32, -100),
        (torch.float32, 60),
        (torch.float32, 127),  # values up to ±2**127: max - min overflows float32
        (torch.float64, -1000),
        (torch.float64, 900),
        (torch.float64, 1023),  # values up to ±2**1023: max - min overflows float64
    ],
)
@pytest.mark.parametrize("normalize", ["max", "minmax"])
@pytest.mark.parametrize("beta", [1.0, 5.0])
def test_max_and_minmax_normalization_make_the_result_scale_invariant(
    rng, dtype, exponent, normalize, beta
):
    """x̂ is unchanged when x is multiplied by a power of two, up to the largest values."""
    base = rng.uniform(-1, 1, size=(2, 5, 8))
    base[:, 0, 0], base[:, 4, 7] = -1.0, 1.0  # the extremes are exactly ±1
    base = torch.from_numpy(base).to(dtype)
    scaled = base * 2.0**exponent
    assert torch.isfinite(scaled).all()

    want = softargmax_decode(base, beta=beta, normalize=normalize)
    got = softargmax_decode(scaled, beta=beta, normalize=normalize)
    torch.testing.assert_close(got.coords, want.coords, rtol=0, atol=1e-5)
    torch.testing.assert_close(got.spread, want.spread, rtol=0, atol=1e-5)


# ---------------------------------------------------------------------------
# 8. Gradients
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("normalize", NORMALIZE)
@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("coords", ["pixel", "normalized"])
def test_gradcheck_soft_argmax_and_spread_in_float64(normalize, spatial_dims, coords):
    gen = torch.Generator().manual_seed(7)
    maps = torch.randn(2, 3, 4, 5, dtype=torch.float64, generator=gen).requires_grad_()

    def fn(x):
        out = softargmax_decode(
            x, beta=2.0, spatial_dims=spatial_dims, normalize=normalize, coords=coords
        )
        return out.coords, out.spread

    assert torch.autograd.gradcheck(fn, (maps,))


def test_gradient_of_x_matches_the_analytic_softmax_gradient(rng):
    """For normalize="none": ∂x̄/∂m_ij = β · p_ij · (j − x̄), likewise for ȳ."""
    beta = 1.5
    maps_np = rng.normal(size=(5, 8))
    maps = t(maps_np).requires_grad_()
    soft_argmax(maps, beta=beta)[0].backward()

    p = np.exp(beta * (maps_np - maps_np.max()))
    p /= p.sum()
    rows, cols = np.indices(maps_np.shape)
    x_bar = (p * cols).sum()
    np.testing.assert_allclose(maps.grad.numpy(), beta * p * (cols - x_bar), atol=1e-12)


@pytest.mark.parametrize("normalize", NORMALIZE)
def test_gradients_reach_the_input_through_the_soft_argmax_module(rng, normalize):
    layer = SoftArgmax(beta=3.0, normalize=normalize)
    maps = t(rng.normal(size=(2, 3, 6, 7)), torch.float32).requires_grad_()

    xy = layer(maps)
    assert xy.shape == (2, 3, 2)
    xy.sum().backward()

    assert maps.grad is not None and maps.grad.shape == maps.shape
    assert torch.isfinite(maps.grad).all()
    assert (maps.grad.abs().sum(dim=(-2, -1)) > 0).all()  # every map gets a gradient


def test_soft_argmax_module_is_the_function_with_its_settings(rng):
    maps = t(rng.normal(size=(2, 4, 5, 6)))
    layer = SoftArgmax(beta=4.0, spatial_dims=3, normalize="minmax", coords="normalized")
    want = soft_argmax(maps, beta=4.0, spatial_dims=3, normalize="minmax", coords="normalized")
    torch.testing.assert_close(layer(maps), want)
    assert "beta=4.0" in repr(layer) and "'minmax'" in repr(layer)


# ---------------------------------------------------------------------------
# 9. The normalized frame
# ---------------------------------------------------------------------------


def test_corner_pixels_map_to_plus_minus_one_in_the_normalized_frame():
    H, W = 5, 9
    maps = torch.zeros(4, H, W)
    corners = [(0, 0), (0, W - 1), (H - 1, 0), (H - 1, W - 1)]
    for b, (r, c) in enumerate(corners):
        maps[b, r, c] = 1.0
    want = torch.tensor([[-1.0, -1.0], [1.0, -1.0], [-1.0, 1.0], [1.0, 1.0]])

    assert hard_argmax(maps, coords="normalized").tolist() == want.tolist()
    torch.testing.assert_close(soft_argmax(maps, beta=1e4, coords="normalized"), want)


def test_corner_voxels_map_to_plus_minus_one_in_the_normalized_frame():
    D, H, W = 3, 4, 6
    maps = torch.zeros(8, D, H, W)
    want = []
    for b in range(8):
        d, h, w = (b >> 2) & 1, (b >> 1) & 1, b & 1
        maps[b, d * (D - 1), h * (H - 1), w * (W - 1)] = 1.0
        want.append([2.0 * w - 1, 2.0 * h - 1, 2.0 * d - 1])

    assert hard_argmax(maps, spatial_dims=3, coords="normalized").tolist() == want
    soft = soft_argmax(maps, beta=1e4, spatial_dims=3, coords="normalized")
    torch.testing.assert_close(soft, torch.tensor(want))


@pytest.mark.parametrize("decoder", DECODERS)
def test_an_axis_of_size_one_maps_to_zero_in_the_normalized_frame(rng, decoder):
    row = torch.zeros(1, 7)
    row[0, 6] = 1.0
    got = decode(row, decoder, beta=1e4, coords="normalized").coords
    torch.testing.assert_close(got, torch.tensor([1.0, 0.0]))

    column = t(rng.normal(size=(4, 1)), torch.float32)
    assert decode(column, decoder, coords="normalized").coords[0].item() == 0.0

    single = torch.tensor([[3.0]])
    assert decode(single, decoder, coords="normalized").coords.tolist() == [0.0, 0.0]
    assert decode(single, decoder, coords="pixel").coords.tolist() == [0.0, 0.0]


@pytest.mark.parametrize("spatial", [(5, 9), (1, 4), (3, 1), (4, 6, 2), (1, 1, 7)])
def test_to_frame_follows_two_x_over_w_minus_one_minus_one_and_round_trips(rng, spatial):
    sizes = np.array(spatial[::-1], dtype=np.float64)  # (W, H[, D])
    pixel = rng.uniform(0, 1, size=(10, len(spatial))) * (sizes - 1)

    got = to_frame(t(pixel), spatial, "normalized").numpy()

    with np.errstate(divide="ignore", invalid="ignore"):
        formula = np.where(sizes > 1, 2 * pixel / (sizes - 1) - 1, 0.0)
    np.testing.assert_allclose(got, formula, atol=1e-12)
    back = (got + 1) * (sizes - 1) / 2
    np.testing.assert_allclose(back, pixel, atol=1e-12)
    assert to_frame(t(pixel), spatial, "pixel").numpy().tolist() == pixel.tolist()


def test_to_frame_docstring_example():
    got = to_frame(torch.tensor([[0.0, 2.0], [9.0, 1.0]]), (3, 10), "normalized")
    assert got.tolist() == [[-1.0, 1.0], [1.0, 0.0]]


@pytest.mark.parametrize("decoder", DECODERS)
@pytest.mark.parametrize("shape, spatial_dims", [((3, 7, 13), 2), ((2, 5, 7, 11), 3)])
def test_normalized_output_is_to_frame_of_pixel_output(rng, decoder, shape, spatial_dims):
    maps = t(rng.normal(size=shape))
    spatial = shape[-spatial_dims:]
    kw = dict(spatial_dims=spatial_dims, beta=2.0, normalize="max")
    pixel = decode(maps, decoder, coords="pixel", **kw).coords
    normalized = decode(maps, decoder, coords="normalized", **kw).coords
    torch.testing.assert_close(normalized, to_frame(pixel, spatial, "normalized"))
    assert (normalized.abs() <= 1).all()


# ---------------------------------------------------------------------------
# 10. Property tests
# ---------------------------------------------------------------------------

BIG32 = float(np.float32(1e30))  # 1e30 rounded to float32
WIDE = st.floats(min_value=-BIG32, max_value=BIG32, width=32)  # subnormals included
BETA = st.floats(min_value=-3.0, max_value=4.0).map(lambda e: 10.0**e)  # log-uniform


@st.composite
def heatmaps(draw, elements=WIDE, dtype=np.float32):
    """(maps, spatial_dims): 0–2 batch dims, spatial sizes 1..6 (2D) or 1..4 (3D)."""
    spatial_dims = draw(st.sampled_from([2, 3]))
    top = 6 if spatial_dims == 2 else 4
    spatial = draw(st.tuples(*[st.integers(1, top)] * spatial_dims))
    lead = draw(st.lists(st.integers(1, 3), max_size=2))
    maps = draw(hnp.arrays(dtype, (*lead, *spatial), elements=elements))
    return maps, spatial_dims


EDGE_SHAPES = [
    (np.array([[2.5]], dtype=np.float32), 2),  # 1×1
    (np.array([[0.0, -1e30, 1e30, 1e-40, 7.0]], dtype=np.float32), 2),  # 1×N
    (np.arange(8, dtype=np.float32).reshape(2, 2, 2), 3),  # 2×2×2
]


def add_edge_examples(fn):
    for maps, sd in EDGE_SHAPES:
        fn = example(case=(maps, sd), beta=1e-3, normalize="minmax")(fn)
        fn = example(case=(maps, sd), beta=1e4, normalize="none")(fn)
    return fn


@settings(max_examples=50, deadline=None)
@add_edge_examples
@given(case=heatmaps(), beta=BETA, normalize=st.sampled_from(NORMALIZE))
def test_property_outputs_are_finite_and_inside_the_map(case, beta, normalize):
    maps, sd = case
    spatial = maps.shape[-sd:]
    upper = np.array([n - 1 for n in reversed(spatial)], dtype=np.float64)
    slack = 1e-5 * (upper + 1)  # float32 rounding of a mean of 0..n-1

    soft = softargmax_decode(
        torch.from_numpy(maps), beta=beta, spatial_dims=sd, normalize=normalize
    )
    hard = argmax_decode(torch.from_numpy(maps), spatial_dims=sd)

    for out in (soft, hard):
        xy = out.coords.double().numpy()
        assert np.isfinite(xy).all()
        assert (xy >= -slack).all() and (xy <= upper + slack).all()
        assert out.finite.all()
    spread = soft.spread.double().numpy()
    assert np.isfinite(spread).all()
    assert (spread >= 0).all() and (spread <= np.sqrt(((upper / 2) ** 2).sum()) + 1e-4).all()


@settings(max_examples=50, deadline=None)
@given(case=heatmaps())
def test_property_argmax_score_is_the_map_max_and_coords_are_numpy_argmax(case):
    maps, sd = case
    out = argmax_decode(torch.from_numpy(maps), spatial_dims=sd)
    np.testing.assert_array_equal(out.score.numpy(), maps.max(axis=tuple(range(-sd, 0))))
    np.testing.assert_array_equal(out.coords.numpy(), ref_hard_argmax(maps, sd))


@settings(max_examples=50, deadline=None)
@given(
    case=heatmaps(elements=st.floats(-1e6, 1e6, width=32), dtype=np.float64),
    beta=BETA,
    normalize=st.sampled_from(NORMALIZE),
)
def test_property_flipping_along_w_mirrors_x(case, beta, normalize):
    maps, sd = case
    W = maps.shape[-1]
    flipped = np.flip(maps, axis=-1)
    kw = dict(beta=beta, spatial_dims=sd, normalize=normalize)

    soft = soft_argmax(t(maps), **kw).numpy()
    soft_flipped = soft_argmax(t(flipped), **kw).numpy()
    np.testing.assert_allclose(soft_flipped[..., 0], (W - 1) - soft[..., 0], atol=1e-9 * W)
    np.testing.assert_allclose(soft_flipped[..., 1:], soft[..., 1:], atol=1e-9 * W)

    # The hard argmax mirrors exactly when no map has a tied maximum.
    flat = maps.reshape(*maps.shape[:-sd], -1)
    assume(((flat == flat.max(-1, keepdims=True)).sum(-1) == 1).all())
    hard = hard_argmax(t(maps), spatial_dims=sd).numpy()
    hard_flipped = hard_argmax(t(flipped), spatial_dims=sd).numpy()
    np.testing.assert_array_equal(hard_flipped[..., 0], (W - 1) - hard[..., 0])
    np.testing.assert_array_equal(hard_flipped[..., 1:], hard[..., 1:])


@settings(max_examples=50, deadline=None)
@given(
    case=heatmaps(elements=st.floats(-1e6, 1e6, width=32), dtype=np.float64),
    beta=BETA,
    normalize=st.sampled_from(NORMALIZE),
    copies=st.integers(1, 4),
)
def test_property_a_map_decodes_the_same_alone_or_in_a_batch(case, beta, normalize, copies):
    maps, sd = case
    spatial = maps.shape[-sd:]
    batch = maps.reshape(-1, *spatial)
    batch = np.concatenate([batch] * copies)  # the same maps, in a larger batch
    kw = dict(beta=beta, spatial_dims=sd, normalize=normalize)

    soft_b = softargmax_decode(t(batch), **kw)
    hard_b = argmax_decode(t(batch), spatial_dims=sd)
    for i in range(len(batch)):
        soft_1 = softargmax_decode(t(batch[i]), **kw)
        hard_1 = argmax_decode(t(batch[i]), spatial_dims=sd)
        np.testing.assert_allclose(soft_b.coords[i].numpy(), soft_1.coords.numpy(), atol=1e-12)
        np.testing.assert_allclose(soft_b.spread[i].numpy(), soft_1.spread.numpy(), atol=1e-12)
        assert hard_b.coords[i].tolist() == hard_1.coords.tolist()
        assert hard_b.score[i].item() == hard_1.score.item()
        assert soft_b.flat[i].item() == soft_1.flat.item()


# ---------------------------------------------------------------------------
# Return type, shapes and the decode() dispatcher
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("lead", LEADS)
@pytest.mark.parametrize("spatial", [(4, 6), (2, 3, 5)])
def test_decoded_fields_have_the_documented_shapes(lead, spatial):
    sd = len(spatial)
    maps = torch.rand(*lead, *spatial)
    soft = softargmax_decode(maps, spatial_dims=sd)
    hard = argmax_decode(maps, spatial_dims=sd)

    assert isinstance(soft, PointEstimates) and isinstance(hard, PointEstimates)
    for out in (soft, hard):
        assert out.coords.shape == (*lead, sd)
        assert out.score.shape == lead
        assert out.flat.shape == lead and out.flat.dtype == torch.bool
        assert out.finite.shape == lead and out.finite.dtype == torch.bool
    assert soft.spread.shape == lead
    assert hard.spread is None
    torch.testing.assert_close(soft.score, maps.amax(tuple(range(-sd, 0))))


def test_decode_dispatches_by_name(rng):
    maps = t(rng.normal(size=(3, 6, 7)))
    assert DECODERS == ("argmax", "softargmax")
    torch.testing.assert_close(decode(maps, "argmax").coords, argmax_decode(maps).coords)
    kw = dict(beta=7.0, normalize="minmax", coords="normalized")
    torch.testing.assert_close(
        decode(maps, "softargmax", **kw).coords, softargmax_decode(maps, **kw).coords
    )


# ---------------------------------------------------------------------------
# 11. Bad arguments
# ---------------------------------------------------------------------------

BOTH = [
    pytest.param(lambda x, **kw: argmax_decode(x, **kw), id="argmax"),
    pytest.param(lambda x, **kw: softargmax_decode(x, **kw), id="softargmax"),
]


@pytest.mark.parametrize("fn", BOTH)
@pytest.mark.parametrize(
    "maps, kwargs",
    [
        (torch.zeros(2, 3, 4, 5, 6), {"spatial_dims": 4}),
        (torch.zeros(3, 4), {"spatial_dims": 1}),
        (torch.zeros(5), {}),  # too few dims for 2D
        (torch.zeros(4, 5), {"spatial_dims": 3}),  # too few dims for 3D
        (torch.zeros(2, 0, 5), {}),  # empty H
        (torch.zeros(3, 0), {}),  # empty W
        (torch.zeros(2, 0, 4, 4), {"spatial_dims": 3}),  # empty D
        (torch.zeros(3, 4), {"coords": "pixels"}),
        (torch.zeros(3, 4), {"coords": "Normalized"}),
    ],
)
def test_bad_shapes_and_options_raise_value_error(fn, maps, kwargs):
    with pytest.raises(ValueError):
        fn(maps, **kwargs)


@pytest.mark.parametrize("beta", [0.0, -1.0, float("nan"), float("inf"), -float("inf")])
def test_beta_must_be_finite_and_positive(beta):
    with pytest.raises(ValueError, match="beta"):
        soft_argmax(torch.zeros(3, 4), beta=beta)
    with pytest.raises(ValueError, match="beta"):
        SoftArgmax(beta=beta)(torch.zeros(3, 4))


@pytest.mark.parametrize("normalize", ["minmax ", "l2", "None", ""])
def test_unknown_normalize_raises(normalize):
    with pytest.raises(ValueError, match="normalize"):
        soft_argmax(torch.zeros(3, 4), normalize=normalize)
    with pytest.raises(ValueError, match="normalize"):
        SoftArgmax(normalize=normalize)


def test_unknown_coords_in_the_module_and_to_frame_raise():
    with pytest.raises(ValueError, match="coords"):
        SoftArgmax(coords="grid")
    with pytest.raises(ValueError, match="coords"):
        to_frame(torch.zeros(1, 2), (3, 4), "grid")


@pytest.mark.parametrize("fn", BOTH)
@pytest.mark.parametrize(
    "maps",
    [torch.zeros(3, 4, dtype=torch.bool), torch.zeros(3, 4, dtype=torch.complex64)],
    ids=["bool", "complex"],
)
def test_bool_and_complex_maps_raise_type_error(fn, maps):
    with pytest.raises(TypeError):
        fn(maps)


@pytest.mark.parametrize("fn", BOTH)
def test_non_tensor_input_raises_type_error(fn):
    with pytest.raises(TypeError):
        fn(np.zeros((3, 4)))


def test_unknown_decoder_name_raises():
    with pytest.raises(ValueError, match="unknown decoder"):
        decode(torch.zeros(3, 4), "centroid")


@pytest.mark.parametrize("requires_grad", [False, True])
def test_an_empty_batch_gives_empty_coordinates(requires_grad):
    maps = torch.zeros(0, 3, 4, 5, requires_grad=requires_grad)
    assert soft_argmax(maps).shape == (0, 3, 2)
    assert hard_argmax(maps).shape == (0, 3, 2)
    assert soft_argmax(maps, spatial_dims=3).shape == (0, 3)


@pytest.mark.parametrize("shape", [(3, 40, 50), (2, 12, 30, 40)])
def test_maps_larger_than_a_chunk_are_decoded_in_slabs_with_the_same_result(shape, monkeypatch):
    import heatdecode.softmax as softmax_module

    x = torch.randn(*shape, dtype=torch.float64, generator=torch.Generator().manual_seed(3)) * 3
    spatial_dims = len(shape) - 1
    whole = softargmax_decode(x, 2.0, spatial_dims=spatial_dims, normalize="minmax")
    monkeypatch.setattr(softmax_module, "CHUNK_ELEMENTS_CPU", 37)  # force several slabs
    slabs = softargmax_decode(x, 2.0, spatial_dims=spatial_dims, normalize="minmax")
    torch.testing.assert_close(slabs.coords, whole.coords, rtol=0, atol=1e-12)
    torch.testing.assert_close(slabs.spread, whole.spread, rtol=0, atol=1e-12)


def test_beta_beyond_its_maximum_is_refused_and_the_maximum_stays_finite():
    """Issue 8, item 8: β = 4e38 overflowed β/span in float32 and 0·∞ made the
    peak's logit NaN: empty coordinates with status ok. β is capped at 1e6,
    where every map (spans down to float32's epsilon) still decodes finitely."""
    from heatdecode.decoders import BETA_MAX, softargmax_decode

    maps = torch.zeros(2, 6, 6)
    maps[:, 2, 3] = 1
    maps[1] += 1e3  # a small relative span: β/span is largest here
    maps[1, 0, 0] += 1e-4
    for beta in (4e38, 1e308, float("inf"), BETA_MAX * 1.01):
        with pytest.raises(ValueError, match="at most 1e\\+06"):
            softargmax_decode(maps, beta=beta, normalize="minmax")
    for normalize in ("none", "max", "minmax"):
        out = softargmax_decode(maps, beta=BETA_MAX, normalize=normalize)
        assert torch.isfinite(out.coords).all(), normalize


def test_family_checks_every_option_range_in_one_place():
    from heatdecode.family import check_options, resolve_options

    with pytest.raises(ValueError, match="beta"):
        resolve_options("softargmax", beta=4e38)
    with pytest.raises(ValueError, match="sigma"):
        resolve_options("dark", sigma=1e300)
    with pytest.raises(ValueError, match="radius"):
        check_options({"radius": 0})
    assert resolve_options("local-softargmax", radius=10**6)["radius"] == 10**6


# ---------------------------------------------------------------------------
# Old names: Decoded for PointEstimates, coords= for frame=
# ---------------------------------------------------------------------------


def test_decoded_is_the_old_name_of_point_estimates():
    import heatdecode

    assert Decoded is PointEstimates
    assert heatdecode.Decoded is heatdecode.PointEstimates is PointEstimates
    assert "PointEstimates" in heatdecode.__all__ and "Decoded" in heatdecode.__all__


FRAMES = ("pixel", "half-pixel", "normalized", "normalized-edges")


def _fields(out):
    """A decoder's result as a tuple: every field of a PointEstimates, or the coordinates."""
    return out if isinstance(out, tuple) else (out,)


@pytest.mark.parametrize("frame", FRAMES)
@pytest.mark.parametrize(
    ("fn", "kw"),
    [
        (hard_argmax, {}),
        (argmax_decode, {}),
        (soft_argmax, {"beta": 3.0, "normalize": "minmax"}),
        (softargmax_decode, {"beta": 3.0, "normalize": "minmax"}),
    ],
    ids=["hard_argmax", "argmax_decode", "soft_argmax", "softargmax_decode"],
)
def test_coords_is_a_working_alias_of_frame(fn, kw, frame):
    maps = torch.rand(2, 3, 5, 7, generator=torch.Generator().manual_seed(1))
    new = fn(maps, frame=frame, **kw)
    old = fn(maps, coords=frame, **kw)
    for a, b in zip(_fields(new), _fields(old), strict=True):
        assert (a is None and b is None) or torch.equal(a, b)
    with pytest.raises(TypeError, match="not both"):
        fn(maps, frame=frame, coords=frame, **kw)
    with pytest.raises(ValueError, match="coords"):
        fn(maps, frame="grid", **kw)


def test_frame_defaults_to_pixel_and_may_be_given_by_position():
    maps = torch.rand(2, 4, 6, generator=torch.Generator().manual_seed(2))
    pixel = hard_argmax(maps)
    assert torch.equal(hard_argmax(maps, 2, "pixel"), pixel)
    assert torch.equal(hard_argmax(maps, 2, "normalized"), hard_argmax(maps, frame="normalized"))
    assert torch.equal(
        soft_argmax(maps, 2.0, 2, "max", "half-pixel"),
        soft_argmax(maps, 2.0, frame="half-pixel", normalize="max"),
    )


def test_to_frame_takes_frame_or_its_old_name_and_needs_one():
    pixel = torch.tensor([[0.0, 2.0], [9.0, 1.0]])
    for frame in FRAMES:
        want = to_frame(pixel, (3, 10), frame)
        assert torch.equal(to_frame(pixel, (3, 10), frame=frame), want)
        assert torch.equal(to_frame(pixel, (3, 10), coords=frame), want)
    with pytest.raises(TypeError):
        to_frame(pixel, (3, 10))
    with pytest.raises(TypeError, match="not both"):
        to_frame(pixel, (3, 10), "pixel", coords="pixel")


def test_the_module_takes_frame_or_its_old_name():
    maps = torch.rand(2, 5, 6, generator=torch.Generator().manual_seed(3))
    new = SoftArgmax(beta=4.0, frame="normalized")
    old = SoftArgmax(beta=4.0, coords="normalized")
    assert new.frame == old.frame == old.coords == "normalized"
    assert torch.equal(new(maps), old(maps))
    assert torch.equal(new(maps), soft_argmax(maps, beta=4.0, frame="normalized"))
    assert "frame='normalized'" in repr(new)
    old.coords = "pixel"  # the attribute's old name still sets it
    assert old.frame == "pixel" and torch.equal(old(maps), soft_argmax(maps, beta=4.0))
    with pytest.raises(TypeError, match="not both"):
        SoftArgmax(frame="pixel", coords="normalized")
