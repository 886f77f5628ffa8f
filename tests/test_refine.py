"""Behaviour of ``heatdecode.refine``: the decoders that refine the hard argmax.

* local soft-argmax: soft-argmax over the (2r+1)^d window around the argmax;
* quarter: the argmax moved 0.25 px toward the higher neighbour (HRNet);
* parabola: a parabola through the log-map on each axis;
* DARK: Gaussian smoothing, then one Newton step on the log-map.

Each is checked against an independent float64 numpy reference written from
its documented rule, on hand-built maps whose answer is known, and for accuracy
on random sub-pixel Gaussian peaks. Coordinates are ordered ``(x, y[, z])``:
x indexes W (the last axis), y indexes H, z indexes D.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from heatdecode import (
    DECODERS,
    LocalSoftArgmax,
    dark_decode,
    decode,
    local_soft_argmax,
    local_softargmax_decode,
    parabola_decode,
    quarter_decode,
)
from heatdecode.dark import _estimate_sigma
from heatdecode.decoders import PointEstimates, argmax_decode, to_frame
from heatdecode.peak import Peak

REFINING = ("local-softargmax", "quarter", "parabola", "dark")
FLOOR = 1e-12  # the documented log floor, relative to the peak


# ---------------------------------------------------------------------------
# Independent references (numpy, float64, one map at a time)
# ---------------------------------------------------------------------------


def gaussian(spatial: tuple[int, ...], centre_xyz, sigma) -> np.ndarray:
    """A unit-height Gaussian on ``spatial`` (array order) centred at ``centre_xyz``.

    ``sigma`` is a number or one value per axis, ordered (x, y[, z]) like the centre.
    """
    sigmas = np.broadcast_to(np.asarray(sigma, dtype=np.float64), (len(spatial),))
    grids = np.indices(spatial, dtype=np.float64)  # array order (z,) y, x
    r2 = sum(
        (g - c) ** 2 / (2 * s**2)
        for g, c, s in zip(grids, centre_xyz[::-1], sigmas[::-1], strict=True)
    )
    return np.exp(-r2)


def argmax_xyz(m: np.ndarray) -> np.ndarray:
    """numpy's argmax of the flattened map, ordered (x, y[, z]), as integers."""
    return np.array(np.unravel_index(np.argmax(m.ravel()), m.shape)[::-1])


def sizes_xyz(m: np.ndarray) -> np.ndarray:
    return np.array(m.shape[::-1])


def neighbour(m: np.ndarray, p_xyz: np.ndarray, axis: int, step: int) -> float:
    q = p_xyz.copy()
    q[axis] += step
    return float(m[tuple(q[::-1])])


def on_edge(m: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Per axis (x first): argmax on the first or last index of an axis longer than 1."""
    n = sizes_xyz(m)
    return ((p == 0) | (p == n - 1)) & (n > 1)


def ref_quarter(m: np.ndarray) -> tuple[np.ndarray, bool]:
    p = argmax_xyz(m)
    edge = on_edge(m, p)
    out = p.astype(np.float64)
    for k in range(m.ndim):
        if sizes_xyz(m)[k] > 1 and not edge[k]:
            out[k] += 0.25 * np.sign(neighbour(m, p, k, 1) - neighbour(m, p, k, -1))
    return out, bool(edge.any())


def ref_parabola(m: np.ndarray) -> tuple[np.ndarray, bool, bool]:
    """(coords, border, skipped) from the rule in parabola_decode's docstring."""
    p = argmax_xyz(m)
    edge = on_edge(m, p)
    out = p.astype(np.float64)
    peak = float(m.max())
    if peak <= 0:
        return out, bool(edge.any()), True
    skipped = False
    for k in range(m.ndim):
        if sizes_xyz(m)[k] == 1 or edge[k]:
            continue
        lo, mid, hi = (
            math.log(max(v, peak * FLOOR))
            for v in (neighbour(m, p, k, -1), peak, neighbour(m, p, k, 1))
        )
        denom = lo - 2 * mid + hi
        if denom >= 0:
            skipped = True
            continue
        out[k] += float(np.clip(0.5 * (lo - hi) / denom, -0.5, 0.5))
    return out, bool(edge.any()), skipped


def ref_smooth(m: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian, kernel truncated at ⌊4σ + ½⌋, normalised, zero padding, same size."""
    r = math.floor(4 * sigma + 0.5)
    if r == 0:
        return m.copy()
    taps = np.arange(-r, r + 1, dtype=np.float64)
    k = np.exp(-(taps**2) / (2 * sigma**2))
    k /= k.sum()
    out = m.astype(np.float64)
    for axis in range(m.ndim):
        out = np.apply_along_axis(lambda line: np.convolve(np.pad(line, r), k, "valid"), axis, out)
    return out


def ref_sigma(m: np.ndarray) -> float:
    """One map's own σ: mean over axes of −1 / second difference of log f, as σ.

    Clamped to [0.5, 10]; 2.0 where the map allows no estimate (not finite, flat,
    peak ≤ 0 or on an edge, not strictly concave on every longer axis).
    """
    if not np.isfinite(m).all() or m.max() == m.min() or m.max() <= 0:
        return 2.0
    p = argmax_xyz(m)
    if on_edge(m, p).any():
        return 2.0
    peak = float(m.max())
    variances = []
    for k in range(m.ndim):
        if sizes_xyz(m)[k] == 1:
            continue
        lo, hi = (math.log(max(neighbour(m, p, k, s), peak * FLOOR)) for s in (-1, 1))
        curvature = lo - 2 * math.log(peak) + hi
        if curvature >= 0:
            return 2.0
        variances.append(-1 / curvature)
    if not variances:
        return 2.0
    return float(np.clip(math.sqrt(np.mean(variances)), 0.5, 10.0))


def ref_dark(m: np.ndarray, sigma: float | None) -> tuple[np.ndarray, bool, bool]:
    """(coords, border, skipped) of one map, from the steps in dark_decode's docstring.

    ``sigma=None``: the map's own σ (:func:`ref_sigma`), as dark_decode's default.
    """
    if sigma is None:
        sigma = ref_sigma(m)
    p = argmax_xyz(m)
    out = p.astype(np.float64)
    if not np.isfinite(m).all():
        return out, bool(on_edge(m, p).any()), True
    if on_edge(m, p).any():
        return out, True, False
    peak = float(m.max())
    smooth = ref_smooth(m, sigma)
    if peak <= 0 or smooth.max() <= 0:
        return out, False, True
    smooth *= peak / smooth.max()
    log = np.log(np.maximum(smooth, peak * FLOOR))
    axes = [k for k in range(m.ndim) if sizes_xyz(m)[k] > 1]

    def at(shift: dict[int, int]) -> float:
        q = p.copy()
        for k, s in shift.items():
            q[k] += s
        return float(log[tuple(q[::-1])])

    g = np.array([0.5 * (at({k: 1}) - at({k: -1})) for k in axes])
    h = np.zeros((len(axes), len(axes)))
    for i, k in enumerate(axes):
        h[i, i] = at({k: 1}) - 2 * at({}) + at({k: -1})
        for j, q in enumerate(axes):
            if q != k:
                h[i, j] = 0.25 * (
                    at({k: 1, q: 1}) - at({k: 1, q: -1}) - at({k: -1, q: 1}) + at({k: -1, q: -1})
                )
    if len(axes) == 0:
        return out, False, False
    if np.linalg.eigvalsh(h).max() >= 0:
        return out, False, True
    step = -np.linalg.solve(h, g)
    if np.abs(step).max() > 1:
        return out, False, True
    out[axes] += step
    return out, False, False


def ref_local(
    m: np.ndarray, beta: float, normalize: str, radius: int
) -> tuple[np.ndarray, float, bool]:
    """(coords, spread, border): softmax(β·x̂) over the window's positions inside the map."""
    x = m.astype(np.float64)
    if normalize == "max":
        a = np.abs(x).max()
        x = x / a if a > 0 else np.zeros_like(x)
    elif normalize == "minmax":
        x = (x - x.min()) / (x.max() - x.min()) if x.max() > x.min() else np.zeros_like(x)
    p = argmax_xyz(m)
    n = sizes_xyz(m)
    positions, logits = [], []
    for offset in np.ndindex(*([2 * radius + 1] * m.ndim)):
        q = p + np.array(offset) - radius
        if ((q >= 0) & (q < n)).all():
            positions.append(q)
            logits.append(beta * (x[tuple(q[::-1])] - x.max()))
    w = np.exp(np.array(logits))
    w /= w.sum()
    positions = np.array(positions, dtype=np.float64)
    mean = (w[:, None] * positions).sum(0)
    var = (w[:, None] * (positions - mean) ** 2).sum()
    border = bool((((p < radius) | (p > n - 1 - radius)) & (n > 1)).any())
    return mean, math.sqrt(var), border


def t(a, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return torch.from_numpy(np.array(a, copy=True)).to(dtype)


def peaky_maps(rng, count: int, spatial: tuple[int, ...]) -> np.ndarray:
    """Maps with one Gaussian peak (random centre, σ 1–3, some on the edge) over noise."""
    maps = []
    for _ in range(count):
        centre = np.array([rng.uniform(-0.4, n - 0.6) for n in reversed(spatial)])
        sigma = rng.uniform(1.0, 3.0)
        maps.append(gaussian(spatial, centre, sigma) + rng.uniform(0, 0.2, size=spatial))
    return np.array(maps)


# ---------------------------------------------------------------------------
# 1. Accuracy on random sub-pixel Gaussian peaks (noise-free, σ = 2, float64)
# ---------------------------------------------------------------------------

ACCURACY_CASES = {  # spatial shape -> number of maps
    (48, 64): 200,
    (20, 28, 36): 50,
}

# Mean Euclidean error bounds in px, per decoder and dimension. The argmax's
# error is that of rounding: E|u| for u uniform in the unit square (0.383) or
# cube (0.480); the quarter step halves the per-axis error (0.191 / 0.240).
ACCURACY_BOUNDS = {
    "argmax": {2: (0.30, 0.45), 3: (0.42, 0.54)},
    "quarter": {2: (0.15, 0.25), 3: (0.20, 0.28)},
    "local-softargmax": {2: (0.0, 0.05), 3: (0.0, 0.05)},
    "parabola": {2: (0.0, 0.01), 3: (0.0, 0.01)},
    "dark": {2: (0.0, 0.01), 3: (0.0, 0.01)},
}


@pytest.fixture(scope="module")
def random_peaks() -> dict[tuple[int, ...], tuple[torch.Tensor, np.ndarray]]:
    """Sub-pixel σ=2 Gaussians, centres uniform at least 6 px from every edge."""
    rng = np.random.default_rng(2024)
    out = {}
    for spatial, count in ACCURACY_CASES.items():
        centres = np.array(
            [[rng.uniform(6, n - 7) for n in reversed(spatial)] for _ in range(count)]
        )
        maps = np.array([gaussian(spatial, c, 2.0) for c in centres])
        out[spatial] = (t(maps), centres)
    return out


@pytest.mark.parametrize("spatial", list(ACCURACY_CASES), ids=["2d-48x64", "3d-20x28x36"])
@pytest.mark.parametrize("decoder", list(ACCURACY_BOUNDS))
def test_mean_error_on_subpixel_gaussians_with_default_settings(random_peaks, spatial, decoder):
    maps, centres = random_peaks[spatial]
    sd = len(spatial)

    out = decode(maps, decoder, spatial_dims=sd)

    error = np.linalg.norm(out.coords.numpy() - centres, axis=1).mean()
    low, high = ACCURACY_BOUNDS[decoder][sd]
    assert low <= error <= high, f"{decoder} {spatial}: mean error {error:.4f} px"
    if out.border is not None:  # no peak is near an edge, none is odd
        assert not out.border.any() and not out.skipped.any()


@pytest.mark.parametrize("decoder", ["parabola", "dark", "local-softargmax"])
def test_refining_decoders_beat_the_argmax_on_every_single_map(random_peaks, decoder):
    maps, centres = random_peaks[(48, 64)]
    hard = np.linalg.norm(argmax_decode(maps).coords.numpy() - centres, axis=1)
    refined = np.linalg.norm(decode(maps, decoder).coords.numpy() - centres, axis=1)
    assert (refined <= hard + 1e-9).all()


# ---------------------------------------------------------------------------
# 2. Quarter offset: hand-built maps
# ---------------------------------------------------------------------------


def test_quarter_steps_toward_the_higher_neighbour_on_each_axis():
    maps = torch.zeros(4, 5, 7)  # H=5, W=7
    maps[0, 2, 3], maps[0, 2, 4] = 1.0, 0.5  # right neighbour higher: +x
    maps[1, 2, 3], maps[1, 2, 2] = 1.0, 0.5  # left neighbour higher: -x
    maps[2, 2, 3], maps[2, 3, 3] = 1.0, 0.5  # the row below is higher: +y
    maps[3, 2, 3] = 1.0
    maps[3, 2, 2] = maps[3, 2, 4] = 0.5  # equal neighbours: no move

    out = quarter_decode(maps)

    assert out.coords.tolist() == [[3.25, 2.0], [2.75, 2.0], [3.0, 2.25], [3.0, 2.0]]
    assert out.border.tolist() == [False] * 4
    assert out.skipped.tolist() == [False] * 4
    assert out.spread is None


def test_quarter_does_not_move_an_axis_whose_argmax_is_on_the_edge():
    maps = torch.zeros(2, 5, 7)
    maps[0, 2, 0], maps[0, 2, 1], maps[0, 3, 0] = 1.0, 0.9, 0.5  # first column
    maps[1, 4, 3], maps[1, 3, 3], maps[1, 4, 4] = 1.0, 0.9, 0.5  # last row

    out = quarter_decode(maps)

    # the edge axis stays on its pixel; the other axis is still refined
    assert out.coords.tolist() == [[0.0, 2.25], [3.25, 4.0]]
    assert out.border.tolist() == [True, True]
    assert out.skipped.tolist() == [False, False]


def test_quarter_axis_order_on_a_non_square_map():
    maps = torch.zeros(3, 9)  # H=3, W=9
    maps[1, 6], maps[1, 7], maps[0, 6] = 1.0, 0.8, 0.3  # right and the row above higher
    assert quarter_decode(maps).coords.tolist() == [6.25, 0.75]


@pytest.mark.parametrize("spatial", [(7, 13), (13, 7), (5, 7, 11)])
def test_quarter_matches_numpy_reference(rng, spatial):
    maps = peaky_maps(rng, 12, spatial)
    out = quarter_decode(t(maps), spatial_dims=len(spatial))
    for i, m in enumerate(maps):
        want, border = ref_quarter(m)
        assert out.coords[i].tolist() == want.tolist()
        assert out.border[i].item() == border


# ---------------------------------------------------------------------------
# 3. Parabola on the log-map
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spatial, centre, sigma",
    [
        ((12, 17), (8.37, 4.81), 2.0),
        ((17, 12), (3.5, 11.02), (1.3, 2.7)),  # anisotropic: still exact per axis
        ((9, 11, 14), (6.66, 4.2, 3.91), (1.5, 2.0, 2.5)),
    ],
)
def test_parabola_finds_the_centre_of_an_exact_gaussian(spatial, centre, sigma):
    maps = t(gaussian(spatial, np.array(centre), sigma))
    out = parabola_decode(maps, spatial_dims=len(spatial))
    np.testing.assert_allclose(out.coords.numpy(), centre, rtol=0, atol=1e-9)
    assert not out.border and not out.skipped


def test_parabola_of_a_single_hot_pixel_is_that_pixel():
    maps = torch.zeros(5, 8, dtype=torch.float64)
    maps[3, 5] = 2.0  # zero neighbours meet the log floor on both sides: symmetric
    out = parabola_decode(maps)
    assert out.coords.tolist() == [5.0, 3.0]
    assert not out.skipped and not out.border


def test_parabola_puts_a_two_pixel_flat_top_at_its_middle():
    """The argmax is the *first* maximum, so its left neighbour is strictly lower and
    the fit is concave even on a flat top: the vertex lands between the two pixels."""
    y = np.arange(7.0)[:, None]
    maps = np.exp(-((y - 3.3) ** 2) / 8) * np.array([0.1, 0.5, 1.0, 1.0, 0.5, 0.1])
    out = parabola_decode(t(maps))
    np.testing.assert_allclose(out.coords.numpy(), [2.5, 3.3], rtol=0, atol=1e-9)
    assert not out.skipped and not out.border


def test_parabola_on_a_nearly_flat_top_keeps_the_symmetric_axis_and_refines_the_other():
    """Neighbours one float32 step below a peak of 1e30: the logs are taken relative
    to the peak, so the tiny curvature along x is still seen, and with equal
    neighbours x stays exactly on the argmax; y is refined toward the higher row."""
    peak = np.float32(1e30)
    below = np.nextafter(peak, np.float32(0))
    maps = np.full((5, 7), peak / 4, dtype=np.float32)
    maps[2, 2:5] = [below, peak, below]
    maps[3, 3] = peak / 2  # the row below is higher than the row above: y moves down

    out = parabola_decode(torch.from_numpy(maps))

    assert out.coords[0].item() == 3.0
    assert 2.0 < out.coords[1].item() <= 2.5
    assert out.skipped.item() is False and out.border.item() is False


@pytest.mark.parametrize("value", [0.0, -1.0])
def test_parabola_skips_maps_whose_peak_is_not_positive(value):
    maps = torch.full((5, 6), value - 3.0, dtype=torch.float64)
    maps[2, 3] = value
    maps[2, 4] = value - 1.0
    out = parabola_decode(maps)
    assert out.coords.tolist() == [3.0, 2.0]
    assert out.skipped.item() is True
    assert torch.isfinite(out.coords).all()


@pytest.mark.parametrize("spatial", [(7, 13), (13, 7), (5, 7, 11)])
def test_parabola_matches_numpy_reference(rng, spatial):
    maps = peaky_maps(rng, 12, spatial)
    maps[0] -= 0.5  # some neighbours below zero meet the floor
    out = parabola_decode(t(maps), spatial_dims=len(spatial))
    for i, m in enumerate(maps):
        want, border, skipped = ref_parabola(m)
        np.testing.assert_allclose(out.coords[i].numpy(), want, rtol=0, atol=1e-12)
        assert (out.border[i].item(), out.skipped[i].item()) == (border, skipped)


# ---------------------------------------------------------------------------
# 4. DARK
# ---------------------------------------------------------------------------


def log_quadratic(spatial: tuple[int, ...], centre_xyz, precision) -> np.ndarray:
    """``exp(−½ (x−c)ᵀ A (x−c))``, x ordered (x, y[, z]): a tilted, anisotropic peak."""
    grids = np.indices(spatial, dtype=np.float64)[::-1]  # x first
    d = np.stack([g - c for g, c in zip(grids, centre_xyz, strict=True)], -1)
    return np.exp(-0.5 * np.einsum("...i,ij,...j->...", d, np.array(precision), d))


@pytest.mark.parametrize(
    "spatial, centre, precision",
    [
        ((11, 15), (7.4, 5.35), [[0.30, 0.12], [0.12, 0.20]]),
        ((15, 11), (4.8, 7.7), [[0.50, -0.2], [-0.2, 0.25]]),
        (
            (9, 12, 14),
            (6.3, 5.6, 3.8),
            [[0.30, 0.05, -0.08], [0.05, 0.25, 0.10], [-0.08, 0.10, 0.40]],
        ),
    ],
)
def test_dark_newton_step_is_exact_on_a_log_quadratic_peak_without_smoothing(
    spatial, centre, precision
):
    """By hand: central differences of a quadratic are exact, so at the argmax p
    the log-map has gradient g = −A(p − c) and Hessian H = −A, and the Newton
    step p − H⁻¹g = p − (p − c) = c lands on the centre, mixed terms included.
    A per-axis fit would miss a tilted peak; check that too."""
    maps = t(log_quadratic(spatial, centre, precision))
    sd = len(spatial)

    out = dark_decode(maps, spatial_dims=sd, sigma=0.0)

    np.testing.assert_allclose(out.coords.numpy(), centre, rtol=0, atol=1e-9)
    assert not out.skipped and not out.border
    per_axis = parabola_decode(maps, spatial_dims=sd).coords.numpy()
    assert np.abs(per_axis - centre).max() > 0.01


def test_dark_smoothing_widens_a_gaussian_and_keeps_its_centre():
    """A σ_h Gaussian smoothed by a σ Gaussian is a Gaussian of √(σ_h² + σ²): its log
    is still quadratic and the Newton step still lands on the centre."""
    centre = np.array([20.3, 14.8])
    maps = t(gaussian((30, 40), centre, 2.0))
    for sigma in (1.0, 2.0, 3.0):
        out = dark_decode(maps, sigma=sigma)
        np.testing.assert_allclose(out.coords.numpy(), centre, rtol=0, atol=1e-4)


@pytest.mark.parametrize("sigma", [0.0, 0.7, 1.0, 2.5, None])
@pytest.mark.parametrize("spatial", [(13, 17), (17, 13), (9, 10, 12)])
def test_dark_matches_numpy_reference_including_the_smoothing(rng, sigma, spatial):
    maps = peaky_maps(rng, 16, spatial)
    maps[1] -= 0.15  # negative background: the smoothed map crosses zero
    maps[2, ..., 3] = maps[2].max() + 1.0  # a bright column: its argmax is on an edge
    sd = len(spatial)

    out = dark_decode(t(maps), spatial_dims=sd, sigma=sigma)

    for i, m in enumerate(maps):
        want, border, skipped = ref_dark(m, sigma)
        np.testing.assert_allclose(out.coords[i].numpy(), want, rtol=0, atol=1e-9)
        assert (out.border[i].item(), out.skipped[i].item()) == (border, skipped)


def test_dark_default_sigma_is_each_maps_own_sigma():
    # three peaks of σ = 1.5, 2.5, 3.5 (kernel radii 6, 10, 14): each map's
    # estimate is exact up to rounding, and each map is smoothed with its own σ
    centres = [np.array([15.2, 12.7]), np.array([18.6, 13.1]), np.array([16.0, 11.4])]
    sigmas = (1.5, 2.5, 3.5)
    maps = np.array([gaussian((26, 34), c, s) for c, s in zip(centres, sigmas, strict=True)])
    assert [ref_sigma(m) for m in maps] == pytest.approx(sigmas, abs=1e-12)

    default = dark_decode(t(maps))

    for i, s in enumerate(sigmas):
        given = dark_decode(t(maps[i]), sigma=s)
        torch.testing.assert_close(default.coords[i], given.coords, rtol=0, atol=1e-12)
        np.testing.assert_allclose(default.coords[i].numpy(), centres[i], rtol=0, atol=1e-4)


def test_dark_default_sigma_is_clamped_and_falls_back_to_2_map_by_map():
    """Each map's own estimate, clamped to [0.5, 10]; 2.0 for a map that allows none."""
    spatial, centre = (21, 23), np.array([11.3, 9.6])
    negative = gaussian(spatial, centre, 2.0) - 2.0
    nan = gaussian(spatial, centre, 2.0)
    nan[0, 0] = np.nan
    cases = [  # (map, its σ by the documented rule)
        (gaussian(spatial, centre, 1.5), 1.5),
        (gaussian(spatial, centre, 3.0), 3.0),
        (gaussian(spatial, centre, (1.0, 2.0)), math.sqrt(2.5)),  # σ² averaged over axes
        (gaussian(spatial, centre, 0.2), 0.5),  # clamped
        (gaussian(spatial, centre, 30.0), 10.0),  # clamped
        (gaussian(spatial, np.array([0.2, 9.6]), 2.0), 2.0),  # peak on the edge
        (nan, 2.0),
        (np.full(spatial, 0.5), 2.0),  # flat
        (negative, 2.0),  # peak <= 0
    ]
    maps = np.array([m for m, _ in cases])
    want = np.array([s for _, s in cases])
    assert [ref_sigma(m) for m in maps] == pytest.approx(want, abs=1e-9)

    estimated = _estimate_sigma(Peak(t(maps), 2))

    np.testing.assert_allclose(estimated.numpy(), want, rtol=0, atol=1e-9)
    default = dark_decode(t(maps))
    for i, (m, sigma) in enumerate(cases):
        given = dark_decode(t(m), sigma=sigma)
        torch.testing.assert_close(default.coords[i], given.coords, rtol=0, atol=1e-12)
        assert default.skipped[i].item() == given.skipped.item()


def test_dark_default_sigma_of_a_nearly_flat_top_is_clamped_to_10():
    """float32 neighbours one step below a peak of 1e30: the log-map's curvature is
    tiny (−6e-8, seen because logs are relative to the peak), so σ² = −1/curvature
    is huge and clamped to the largest σ, 10."""
    peak = np.float32(1e30)
    below = np.nextafter(peak, np.float32(0))
    maps = np.full((9, 11), peak / 4, dtype=np.float32)
    maps[4, 4:7] = [below, peak, below]
    maps[3, 5] = maps[5, 5] = below
    steep = gaussian((9, 11), np.array([5.2, 4.1]), 1.0).astype(np.float32)
    batch = torch.from_numpy(np.stack([steep, maps]))

    assert _estimate_sigma(Peak(batch, 2))[1].item() == 10.0
    assert torch.equal(dark_decode(batch).coords[1], dark_decode(batch[1], sigma=10.0).coords)


def test_dark_default_sigma_ignores_maps_that_are_not_finite():
    clean = gaussian((12, 15), np.array([7.2, 5.6]), 2.0)
    spoiled = clean.copy()
    spoiled[5, 7] = -np.inf  # beside the peak (row 6, column 7): a near-zero σ vote
    alone = dark_decode(t(clean))
    both = dark_decode(t(np.stack([clean, spoiled])))
    assert both.finite.tolist() == [True, False]
    assert torch.equal(both.coords[0], alone.coords)


def test_dark_skips_a_saddle_whose_hessian_is_not_negative_definite():
    # a bright diagonal through the peak and a dark anti-diagonal: the mixed term
    # outweighs the curvature along the axes, so the log-map is a saddle
    maps = torch.full((7, 7), 0.05, dtype=torch.float64)
    maps[3, 3] = 1.0
    maps[2, 2] = maps[4, 4] = 0.99
    maps[2, 4] = maps[4, 2] = 0.01
    maps[3, 2] = maps[3, 4] = maps[2, 3] = maps[4, 3] = 0.5

    out = dark_decode(maps, sigma=0.0)

    assert out.coords.tolist() == [3.0, 3.0]
    assert out.skipped.item() is True and out.border.item() is False


def test_dark_skips_a_flat_topped_peak_wider_than_the_smoothing():
    """A 5×5 plateau: the argmax is its first (top-left) pixel, 2 px from its centre.

    Smoothed with σ=1 the top stays nearly flat, so the quadratic model asks for a
    step longer than 1 px: refused, the argmax is reported.
    """
    maps = torch.zeros(20, 24, dtype=torch.float64)
    maps[6:11, 8:13] = 1.0

    out = dark_decode(maps, sigma=1.0)

    assert out.coords.tolist() == [8.0, 6.0]
    assert out.skipped.item() is True and out.border.item() is False
    want, _, skipped = ref_dark(maps.numpy(), 1.0)
    assert skipped and want.tolist() == [8.0, 6.0]


def test_dark_does_not_refine_a_peak_on_the_edge_of_any_axis():
    maps = np.zeros((3, 9, 12))
    maps[0] = gaussian((9, 12), np.array([0.3, 4.4]), 2.0)  # near the first column
    maps[1] = gaussian((9, 12), np.array([5.2, 8.4]), 2.0)  # near the last row
    maps[2] = gaussian((9, 12), np.array([5.2, 4.4]), 2.0)  # inside: refined

    out = dark_decode(t(maps), sigma=1.0)

    assert out.border.tolist() == [True, True, False]
    assert out.skipped.tolist() == [False, False, False]
    assert out.coords[:2].tolist() == [[0.0, 4.0], [5.0, 8.0]]  # the argmax, untouched
    np.testing.assert_allclose(out.coords[2].numpy(), [5.2, 4.4], atol=0.02)


@pytest.mark.parametrize("value", [0.0, -2.0])
def test_dark_skips_maps_whose_peak_is_not_positive(value):
    maps = torch.full((7, 8), value - 1.0, dtype=torch.float64)
    maps[3, 4] = value
    out = dark_decode(maps, sigma=1.0)
    assert out.coords.tolist() == [4.0, 3.0]
    assert out.skipped.item() is True
    assert torch.isfinite(out.coords).all()


# ---------------------------------------------------------------------------
# 5. Local soft-argmax
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("normalize", ["none", "max", "minmax"])
@pytest.mark.parametrize("radius", [1, 2, 3])
@pytest.mark.parametrize(
    "shape, spatial_dims", [((6, 7, 13), 2), ((6, 13, 7), 2), ((4, 5, 7, 9), 3)]
)
def test_local_softargmax_matches_numpy_reference(rng, normalize, radius, shape, spatial_dims):
    maps = rng.normal(size=shape) * 2.0  # argmaxes anywhere, windows often clipped
    beta = 1.7

    out = local_softargmax_decode(
        t(maps), beta=beta, spatial_dims=spatial_dims, normalize=normalize, radius=radius
    )

    assert out.coords.shape == (shape[0], spatial_dims)
    for i, m in enumerate(maps):
        want, spread, border = ref_local(m, beta, normalize, radius)
        np.testing.assert_allclose(out.coords[i].numpy(), want, rtol=0, atol=1e-12)
        assert out.spread[i].item() == pytest.approx(spread, abs=1e-12)
        assert out.border[i].item() == border


def test_local_softargmax_ignores_a_bright_background_outside_its_window():
    """The global soft-argmax is pulled by a second bump far away; the local one is not."""
    maps = gaussian((40, 60), np.array([15.0, 20.0]), 2.0) + 0.9 * gaussian(
        (40, 60), np.array([50.0, 10.0]), 2.0
    )
    local = local_softargmax_decode(t(maps))
    glob = decode(t(maps), "softargmax", beta=11.0, normalize="minmax")
    np.testing.assert_allclose(local.coords.numpy(), [15.0, 20.0], atol=1e-9)
    assert abs(glob.coords[0].item() - 15.0) > 1.0


def test_local_softargmax_flags_a_window_clipped_by_the_edge():
    maps = torch.zeros(3, 8, 10)
    maps[0, 4, 1] = 1.0  # 1 px from the left edge: a radius-2 window is clipped
    maps[1, 4, 2] = 1.0  # 2 px: fits
    maps[2, 6, 5] = 1.0  # 1 px from the bottom edge
    out = local_softargmax_decode(maps, radius=2)
    assert out.border.tolist() == [True, False, True]
    assert local_softargmax_decode(maps, radius=1).border.tolist() == [False, False, False]


@pytest.mark.parametrize("normalize", ["none", "max", "minmax"])
@pytest.mark.parametrize("shape, spatial_dims", [((2, 6, 7), 2), ((2, 4, 5, 6), 3)])
@pytest.mark.parametrize("coords", ["pixel", "normalized"])
def test_gradcheck_local_softargmax_in_float64(normalize, shape, spatial_dims, coords):
    gen = torch.Generator().manual_seed(3)
    maps = torch.randn(*shape, dtype=torch.float64, generator=gen).requires_grad_()

    def fn(x):
        out = local_softargmax_decode(
            x, beta=1.3, spatial_dims=spatial_dims, normalize=normalize, coords=coords
        )
        return out.coords, out.spread

    assert torch.autograd.gradcheck(fn, (maps,))


def test_local_softargmax_gradient_reaches_only_the_window_when_not_normalised():
    maps = torch.randn(9, 11, dtype=torch.float64)
    maps[4, 6] = 5.0
    maps.requires_grad_()
    local_soft_argmax(maps, beta=1.0, normalize="none", radius=2).sum().backward()
    touched = maps.grad != 0
    assert touched[2:7, 4:9].all()
    touched[2:7, 4:9] = False
    assert not touched.any()


def test_local_softargmax_module_is_the_function_with_its_settings(rng):
    maps = t(rng.normal(size=(2, 4, 5, 6)))
    layer = LocalSoftArgmax(
        beta=4.0, spatial_dims=3, normalize="max", coords="normalized", radius=1
    )
    want = local_soft_argmax(
        maps, beta=4.0, spatial_dims=3, normalize="max", coords="normalized", radius=1
    )
    torch.testing.assert_close(layer(maps), want)
    assert "radius=1" in repr(layer) and "'max'" in repr(layer)
    default = LocalSoftArgmax()
    torch.testing.assert_close(default(maps[0]), local_soft_argmax(maps[0]))


# ---------------------------------------------------------------------------
# 6. Every refining decoder: batches, leading dims, axis order, odd maps
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("decoder", REFINING)
@pytest.mark.parametrize("lead", [(), (1,), (3,), (2, 3)])
@pytest.mark.parametrize("spatial", [(9, 13), (6, 7, 9)])
def test_a_map_decodes_the_same_alone_and_in_a_batch_with_any_leading_dims(
    rng, decoder, lead, spatial
):
    sd = len(spatial)
    count = math.prod(lead)
    maps = peaky_maps(rng, count, spatial).reshape(*lead, *spatial)

    out = decode(t(maps), decoder, spatial_dims=sd)

    assert isinstance(out, PointEstimates)
    assert out.coords.shape == (*lead, sd)
    for field in (out.score, out.flat, out.finite, out.border, out.skipped):
        assert field.shape == lead
    flat_in = maps.reshape(-1, *spatial)
    flat_out = out.coords.reshape(-1, sd)
    for i in range(count):
        alone = decode(t(flat_in[i]), decoder, spatial_dims=sd)
        assert torch.equal(flat_out[i], alone.coords)
        assert out.border.reshape(-1)[i].item() == alone.border.item()
    torch.testing.assert_close(out.score, t(maps).amax(tuple(range(-sd, 0))))


def mixed_sigma_maps(rng, spatial: tuple[int, ...]) -> np.ndarray:
    """Gaussians of σ = 1.5, 2, 3 (kernel radii 6, 8, 12) at random sub-pixel centres,
    over a little noise, so each map's own σ estimate is a slightly different number."""
    maps = []
    for sigma in (1.5, 2.0, 3.0, 1.5, 3.0, 2.0):
        centre = np.array([rng.uniform(3, n - 4) for n in reversed(spatial)])
        maps.append(gaussian(spatial, centre, sigma) + rng.uniform(0, 0.02, size=spatial))
    return np.array(maps)


def odd_maps(spatial: tuple[int, ...]) -> np.ndarray:
    """Neighbours that must not disturb a batch: NaN, +Inf, −Inf, constant, a peak on
    the edge, a very wide peak (σ clamped to 10: radius 40, wider than the map) and a
    hot pixel (σ clamped to 0.5)."""
    centre = np.array([n / 2 - 0.3 for n in reversed(spatial)])
    bump = gaussian(spatial, centre, 2.0)
    nan, inf, minus = bump.copy(), bump.copy(), bump.copy()
    nan[(1,) * len(spatial)] = np.nan
    inf[tuple(n // 2 for n in spatial)] = np.inf  # on the peak
    minus[(2,) * len(spatial)] = -np.inf
    edge = gaussian(spatial, np.zeros(len(spatial)), 2.0)
    wide = gaussian(spatial, centre, 40.0)
    hot = np.zeros(spatial)
    hot[tuple(n // 2 for n in spatial)] = 1.0
    return np.array([nan, inf, minus, np.full(spatial, 0.3), edge, wide, hot])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("spatial", [(17, 13), (9, 11, 7)], ids=["2d", "3d"])
@pytest.mark.parametrize("sigma", [None, 1.5], ids=["own-sigma", "given-sigma"])
def test_dark_is_bit_identical_alone_and_in_batches_of_any_composition(rng, dtype, spatial, sigma):
    """A map's result must not depend on its batch: with ``sigma=None`` each map is
    smoothed with its own σ and only its own taps, whatever its batch's widest kernel;
    NaN and Inf in a neighbouring map stay in that map."""
    sd = len(spatial)
    maps = mixed_sigma_maps(rng, spatial)
    odd = odd_maps(spatial)
    everything = np.concatenate([maps, odd])

    def run(batch: np.ndarray) -> PointEstimates:
        return dark_decode(t(batch, dtype), spatial_dims=sd, sigma=sigma)

    def bits(x: torch.Tensor) -> torch.Tensor:  # NaN == NaN and -0 != +0, unlike ==
        return x.view(torch.int32 if x.dtype == torch.float32 else torch.int64)

    alone = [run(m) for m in everything]
    n, k = len(maps), len(everything)
    compositions = {  # name -> indices into `everything`, in batch order
        "all": list(range(k)),
        "reversed": list(range(k))[::-1],
        "sigma 1.5 only": [0, 3],
        "sigma 3 first": [2, 4, 0, 1, 3, 5],
        "odd ones between": [n, 0, n + 1, 1, n + 2, 2, n + 3, 3, n + 4, 4, n + 5, 5, n + 6],
        "repeated": [1, 1, n + 5, 1, 2, 0, 2],
    }
    for name, order in compositions.items():
        out = run(everything[order])
        for row, i in enumerate(order):
            for field in ("coords", "score", "flat", "finite", "border", "skipped"):
                got, want = getattr(out, field)[row], getattr(alone[i], field)
                if got.is_floating_point():
                    got, want = bits(got), bits(want)
                assert torch.equal(got, want), f"{name}: map {i}, {field}: {got} != {want}"
    # leading dims only reshape the batch
    out = run(everything[:12].reshape(3, 4, *spatial))
    for i in range(12):
        assert torch.equal(bits(out.coords.reshape(-1, sd)[i]), bits(alone[i].coords))
    # the clean maps are refined, the odd ones flagged as their rules say
    clean = run(maps)
    assert not clean.skipped.any() and not clean.border.any()
    odd_out = run(odd)
    assert odd_out.finite.tolist() == [False, False, False, True, True, True, True]
    assert odd_out.skipped[:3].all() and odd_out.border[3:5].all()
    assert torch.isfinite(odd_out.coords).all()


@pytest.mark.parametrize("decoder", REFINING)
@pytest.mark.parametrize("spatial", [(5, 8), (3, 4, 6)])
def test_constant_maps_are_flagged_flat_and_give_no_nan(decoder, spatial):
    sd = len(spatial)
    maps = torch.stack([torch.zeros(spatial), torch.full(spatial, 3.0), torch.full(spatial, -2.0)])

    out = decode(maps, decoder, spatial_dims=sd)

    assert out.flat.tolist() == [True] * 3
    assert out.finite.tolist() == [True] * 3
    assert torch.isfinite(out.coords).all()
    if decoder == "local-softargmax":
        # uniform weights over the window around index 0, clipped to 0..r
        assert out.coords.tolist() == [[1.0] * sd] * 3
    else:
        assert out.coords.tolist() == [[0.0] * sd] * 3  # argmax index 0, not refined
    assert out.border.tolist() == [True] * 3


@pytest.mark.parametrize("decoder", REFINING)
@pytest.mark.parametrize("sigma", [None, 1.5])
def test_maps_with_nan_or_inf_are_flagged_without_spoiling_the_batch(rng, decoder, sigma):
    clean = gaussian((9, 12), np.array([6.3, 4.4]), 2.0) + rng.uniform(0, 0.01, size=(9, 12))
    maps = np.stack([clean] * 5)
    maps[1, 2, 3] = np.nan
    maps[2, 4, 6] = np.inf
    maps[3, 5, 8] = -np.inf
    maps[4] = np.nan

    out = decode(t(maps), decoder, sigma=sigma)
    alone = decode(t(clean), decoder, sigma=sigma)

    assert out.finite.tolist() == [True, False, False, False, False]
    assert torch.equal(out.coords[0], alone.coords)
    assert torch.isfinite(out.coords[0]).all()
    assert out.skipped[1:].all()
    assert not alone.skipped and not alone.border


@pytest.mark.parametrize("decoder", REFINING)
@pytest.mark.parametrize("spatial", [(16, 21), (10, 12, 14)])
def test_float16_input_gives_finite_float32_results_close_to_float32_input(decoder, spatial):
    rng = np.random.default_rng(5)
    sd = len(spatial)
    centres = [np.array([rng.uniform(4, n - 5) for n in reversed(spatial)]) for _ in range(3)]
    maps = torch.from_numpy(np.array([gaussian(spatial, c, 2.0) for c in centres]))
    half = maps.to(torch.float16)

    out = decode(half, decoder, spatial_dims=sd)
    want = decode(half.float(), decoder, spatial_dims=sd)

    assert out.coords.dtype == torch.float32
    assert torch.isfinite(out.coords).all()
    torch.testing.assert_close(out.coords, want.coords, rtol=0, atol=1e-5)
    # 11 significant bits of the peak's shape: still within a few hundredths of a
    # pixel (the quarter rule is never closer than its own ±0.25 px steps allow)
    atol = 0.26 if decoder == "quarter" else 0.06
    np.testing.assert_allclose(out.coords.numpy(), np.array(centres), atol=atol)


@pytest.mark.parametrize("decoder", REFINING)
@pytest.mark.parametrize("d, h, w", [(4, 6, 9), (6, 3, 5), (3, 7, 4)])
def test_a_peak_at_d_h_w_decodes_to_x_w_y_h_z_d(decoder, d, h, w):
    spatial = (10, 11, 13)  # D, H, W: all different so a swap cannot hide
    maps = t(gaussian(spatial, np.array([w, h, d], dtype=np.float64), 1.5))
    out = decode(maps, decoder, spatial_dims=3)
    # DARK's zero padding (the map is 0 beyond its edge, which the true peak is
    # not) shifts a peak 3 px from an edge by a few thousandths of a pixel
    atol = 0.01 if decoder == "dark" else 1e-9
    np.testing.assert_allclose(out.coords.numpy(), [w, h, d], rtol=0, atol=atol)
    assert out.border.item() is False and out.skipped.item() is False


@pytest.mark.parametrize("decoder", REFINING)
def test_sub_pixel_offsets_go_to_the_right_axes_in_2d_and_3d(decoder):
    image = t(gaussian((14, 19), np.array([9.3, 5.8]), 2.0))  # (x, y) = (9.3, 5.8)
    volume = t(gaussian((11, 13, 16), np.array([9.3, 5.8, 4.2]), 2.0))
    for maps, want, sd in ((image, [9.3, 5.8], 2), (volume, [9.3, 5.8, 4.2], 3)):
        got = decode(maps, decoder, spatial_dims=sd).coords.numpy()
        if decoder == "quarter":  # from the argmax (9, 6[, 4]) toward the true centre
            want = [9.25, 5.75, 4.25][:sd]
            np.testing.assert_array_equal(got, want)
        else:
            np.testing.assert_allclose(got, want, rtol=0, atol=0.02)


@pytest.mark.parametrize("decoder", REFINING)
@pytest.mark.parametrize("shape, spatial_dims", [((3, 9, 13), 2), ((2, 7, 9, 11), 3)])
def test_normalized_output_is_to_frame_of_pixel_output(rng, decoder, shape, spatial_dims):
    maps = t(peaky_maps(rng, shape[0], shape[1:]))
    spatial = shape[-spatial_dims:]
    pixel = decode(maps, decoder, spatial_dims=spatial_dims, coords="pixel")
    normalized = decode(maps, decoder, spatial_dims=spatial_dims, coords="normalized")
    torch.testing.assert_close(normalized.coords, to_frame(pixel.coords, spatial, "normalized"))


@pytest.mark.parametrize("decoder", REFINING)
def test_an_axis_of_a_single_pixel_is_not_an_edge(decoder):
    row = t(gaussian((1, 15), np.array([6.4, 0.0]), 2.0))  # H=1
    out = decode(row, decoder)
    assert out.coords[1].item() == 0.0
    assert out.border.item() is False and out.skipped.item() is False
    assert abs(out.coords[0].item() - 6.4) <= (0.16 if decoder == "quarter" else 0.02)
    single = decode(torch.tensor([[3.0]]), decoder)
    assert single.coords.tolist() == [0.0, 0.0] and not single.border


# ---------------------------------------------------------------------------
# 7. The registry and bad arguments
# ---------------------------------------------------------------------------


def test_the_registry_lists_the_refining_decoders_with_their_options():
    assert DECODERS["local-softargmax"].options == ("beta", "normalize", "radius")
    assert DECODERS["local-softargmax"].differentiable
    assert DECODERS["quarter"].options == () and not DECODERS["quarter"].differentiable
    assert DECODERS["parabola"].options == () and not DECODERS["parabola"].differentiable
    assert DECODERS["dark"].options == ("sigma",) and not DECODERS["dark"].differentiable


def test_decode_passes_options_and_leaves_unset_ones_at_the_decoders_defaults(rng):
    maps = t(peaky_maps(rng, 4, (11, 14)))
    torch.testing.assert_close(
        decode(maps, "local-softargmax").coords, local_softargmax_decode(maps).coords
    )
    kw = dict(beta=3.0, normalize="none", radius=1, coords="normalized")
    torch.testing.assert_close(
        decode(maps, "local-softargmax", **kw).coords, local_softargmax_decode(maps, **kw).coords
    )
    torch.testing.assert_close(
        decode(maps, "dark", sigma=0.8).coords, dark_decode(maps, sigma=0.8).coords
    )
    torch.testing.assert_close(decode(maps, "dark").coords, dark_decode(maps).coords)


BAD_OPTIONS = [
    (local_softargmax_decode, {"radius": 0}, "radius"),
    (local_softargmax_decode, {"radius": -1}, "radius"),
    (local_softargmax_decode, {"radius": 1.5}, "radius"),
    (local_softargmax_decode, {"radius": True}, "radius"),
    (local_softargmax_decode, {"beta": 0.0}, "beta"),
    (local_softargmax_decode, {"beta": float("nan")}, "beta"),
    (local_softargmax_decode, {"normalize": "l2"}, "normalize"),
    (dark_decode, {"sigma": -1.0}, "sigma"),
    (dark_decode, {"sigma": float("nan")}, "sigma"),
    (dark_decode, {"sigma": float("inf")}, "sigma"),
]


@pytest.mark.parametrize("fn, kwargs, word", BAD_OPTIONS)
def test_bad_options_raise_value_error_naming_the_option(fn, kwargs, word):
    with pytest.raises(ValueError, match=word):
        fn(torch.rand(5, 6), **kwargs)


@pytest.mark.parametrize("decoder", REFINING)
@pytest.mark.parametrize(
    "maps, kwargs",
    [
        (torch.zeros(3, 4), {"spatial_dims": 1}),
        (torch.zeros(4, 5), {"spatial_dims": 3}),
        (torch.zeros(2, 0, 5), {}),
        (torch.zeros(3, 4), {"coords": "pixels"}),
    ],
)
def test_bad_shapes_and_frames_raise_value_error(decoder, maps, kwargs):
    with pytest.raises(ValueError):
        decode(maps, decoder, **kwargs)


@pytest.mark.parametrize("decoder", REFINING)
def test_an_empty_batch_gives_empty_results(decoder):
    out = decode(torch.zeros(0, 3, 5, 6), decoder)
    assert out.coords.shape == (0, 3, 2)
    assert out.border.shape == (0, 3) and out.skipped.shape == (0, 3)


@pytest.mark.parametrize("spatial", [(6, 6), (4, 5, 7)])
def test_a_window_wider_than_the_map_is_clamped_to_it(spatial):
    """Issue 8, item 3: radius 10⁶ once enumerated (2r+1)^d offsets in Python
    (23 GB for r = 10⁵); offsets beyond the map have zero weight, so the window
    is clamped to it and r = 10⁶ gives exactly what r = max extent − 1 gives."""
    from heatdecode.refine import local_softargmax_decode

    maps = torch.rand(3, *spatial, generator=torch.Generator().manual_seed(0))
    d = len(spatial)
    widest = local_softargmax_decode(maps, spatial_dims=d, radius=max(spatial) - 1)
    huge = local_softargmax_decode(maps, spatial_dims=d, radius=10**6)
    for a, b in zip(widest, huge, strict=True):
        assert (a is None and b is None) or torch.equal(a, b)


def test_dark_refuses_a_sigma_beyond_its_maximum():
    """Issue 8, item 3: σ = 1e10 asked for a 320 GB kernel, σ = 1e300 overflowed."""
    from heatdecode.refine import DARK_SIGMA_MAX, dark_decode

    maps = torch.zeros(1, 6, 6)
    maps[0, 2, 3] = 1
    for sigma in (1e10, 1e300, float("inf"), float("nan"), -1.0):
        with pytest.raises(ValueError, match="sigma must be"):
            dark_decode(maps, sigma=sigma)
    assert DARK_SIGMA_MAX == 1e4
    assert torch.isfinite(dark_decode(maps, sigma=100.0).coords).all()


# ---------------------------------------------------------------------------
# 7. Old names: coords= for frame=, and where each decoder lives
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fn", [local_softargmax_decode, quarter_decode, parabola_decode, dark_decode]
)
@pytest.mark.parametrize("frame", ["pixel", "half-pixel", "normalized", "normalized-edges"])
def test_coords_is_a_working_alias_of_frame_for_every_refining_decoder(rng, fn, frame):
    maps = t(peaky_maps(rng, 4, (9, 11)))
    new, old = fn(maps, frame=frame), fn(maps, coords=frame)
    for a, b in zip(new, old, strict=True):
        assert (a is None and b is None) or torch.equal(a, b)
    with pytest.raises(TypeError, match="not both"):
        fn(maps, frame=frame, coords=frame)


def test_local_soft_argmax_and_its_module_take_frame_or_its_old_name(rng):
    maps = t(rng.normal(size=(2, 5, 6)))
    want = local_soft_argmax(maps, frame="normalized", radius=1)
    assert torch.equal(local_soft_argmax(maps, coords="normalized", radius=1), want)
    # the positional order is unchanged: frame sits where coords sat, before radius
    assert torch.equal(local_soft_argmax(maps, 11.0, 2, "minmax", "normalized", 1), want)
    layer = LocalSoftArgmax(coords="normalized", radius=1)
    assert layer.frame == layer.coords == "normalized"
    assert torch.equal(layer(maps), want)
    assert torch.equal(LocalSoftArgmax(frame="normalized", radius=1)(maps), want)


def test_the_refining_decoders_are_importable_from_refine_and_their_own_modules():
    import heatdecode.dark
    import heatdecode.local
    import heatdecode.refine

    for name in ("local_softargmax_decode", "local_soft_argmax", "LocalSoftArgmax"):
        assert getattr(heatdecode.refine, name) is getattr(heatdecode.local, name)
    for name in ("dark_decode", "DARK_SIGMA_MAX", "DARK_SIGMA_RANGE", "DARK_SIGMA_FALLBACK"):
        assert getattr(heatdecode.refine, name) is getattr(heatdecode.dark, name)
    assert heatdecode.refine.LOG_FLOOR == FLOOR
