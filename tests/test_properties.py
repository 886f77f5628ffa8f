"""Property-based tests of every decoder in :data:`heatdecode.family.DECODERS`.

Maps are drawn over shapes (1×1, 1×N, N×1, 2×2×2 and random 2D/3D sizes),
dtypes (float16/32/64, bfloat16, 8- to 64-bit integers), values from −1e30 to
1e30 with subnormals, constant maps, plateaus and coarse maps full of ties, and
each decoder's options (β log-uniform from 1e-3 to 1e4, every normalisation,
radius, σ). The properties:

* every output is finite and inside ``[0, n−1]`` on each axis, and the score
  is the map's maximum;
* argmax's coordinates point at a maximum, the first in row-major order;
* flipping a map along an axis mirrors that coordinate (argmax on tie-free
  maps, the soft-argmax on any map, the refinements on tie-free interior peaks);
* shifting a peak away from the border shifts the coordinates by as much;
* a map decodes to the same bits alone, in a batch, or beside other maps
  (NaN, Inf, constant ones included), whatever the batch's size.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from heatdecode.family import DECODERS, decode

NAMES = list(DECODERS)
REFINING = ["local-softargmax", "quarter", "parabola", "dark"]
SETTINGS = settings(
    # 30 keeps the file well under 30 s; raise it to hunt (HEATDECODE_PROPERTY_EXAMPLES=500)
    max_examples=int(os.environ.get("HEATDECODE_PROPERTY_EXAMPLES", "30")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

FLOATS = {
    torch.float16: 65504.0,  # the largest float16: 1e30 would round to inf
    torch.bfloat16: 1e30,
    torch.float32: 1e30,
    torch.float64: 1e30,
}
INTS = {torch.uint8: np.uint8, torch.int16: np.int16, torch.int32: np.int32, torch.int64: np.int64}
DTYPES = [*FLOATS, *INTS]
# values that make arithmetic hard: zeros, the smallest subnormals of each width, huge values
SPECIAL = [0.0, -0.0, 5e-324, -5e-324, 1e-310, 1.4e-45, -1e-40, 6e-8, 1e-30, 1.0, -1.0]

SHAPES_2D = st.one_of(
    st.sampled_from([(1, 1), (1, 7), (6, 1), (2, 2), (3, 3)]),
    st.tuples(st.integers(1, 9), st.integers(1, 9)),
)
SHAPES_3D = st.one_of(
    st.sampled_from([(2, 2, 2), (1, 1, 1), (1, 3, 1), (3, 1, 4)]),
    st.tuples(st.integers(1, 5), st.integers(1, 5), st.integers(1, 5)),
)
SHAPES = st.one_of(SHAPES_2D, SHAPES_3D)
KINDS = ["random", "constant", "plateau", "coarse", "peak"]


def float_elements(limit: float) -> st.SearchStrategy[float]:
    special = [v for v in SPECIAL + [limit, -limit] if abs(v) <= limit]
    return st.one_of(
        st.floats(-limit, limit, allow_nan=False, allow_infinity=False),
        st.sampled_from(special),
    )


def elements(dtype: torch.dtype) -> st.SearchStrategy:
    if dtype in FLOATS:
        return float_elements(FLOATS[dtype])
    info = np.iinfo(INTS[dtype])
    return st.integers(int(info.min), int(info.max))


def carrier(dtype: torch.dtype) -> type:
    """The numpy dtype a map is drawn in before it becomes a ``dtype`` tensor."""
    return INTS.get(dtype, np.float64)


def as_tensor(values: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(values)).to(dtype)


@st.composite
def one_map(draw, spatial: tuple[int, ...], dtype: torch.dtype, kind: str) -> np.ndarray:
    values = elements(dtype)
    base = carrier(dtype)
    if kind == "constant":
        return np.full(spatial, draw(values), dtype=base)
    if kind == "coarse":  # a handful of distinct values: ties everywhere
        pool = draw(st.lists(values, min_size=1, max_size=3))
        return np.asarray(draw(hnp.arrays(base, spatial, elements=st.sampled_from(pool))), base)
    array = np.asarray(draw(hnp.arrays(base, spatial, elements=values)), dtype=base)
    if kind == "plateau":  # a block of equal maxima
        top = array.max()
        corner = [draw(st.integers(0, n - 1)) for n in spatial]
        size = [draw(st.integers(1, n - c)) for n, c in zip(spatial, corner, strict=True)]
        block = tuple(slice(c, c + s) for c, s in zip(corner, size, strict=True))
        array[block] = top
    elif kind == "peak":  # one clear maximum somewhere
        where = tuple(draw(st.integers(0, n - 1)) for n in spatial)
        array[where] = draw(values)
    elif kind == "interior-peak":  # a single maximum away from the edges (where there are any)
        where = tuple(draw(st.integers(min(1, n - 1), max(0, n - 2))) for n in spatial)
        top = array.max()
        if base is np.float64:
            lower = float(top) - max(abs(float(top)) * 0.01, 1e-3)  # survives float16 rounding
        else:
            lower = int(top) - 1
        assume(lower >= (-FLOATS[dtype] if dtype in FLOATS else int(np.iinfo(base).min)))
        array = np.minimum(array, np.asarray(lower, dtype=base))
        array[where] = top
    return array


@st.composite
def batches(draw, kinds=KINDS, shapes=SHAPES, dtypes=DTYPES, count=(1, 3)):
    """``(maps, spatial_dims)``: a ``(B, *spatial)`` tensor of one dtype."""
    dtype = draw(st.sampled_from(dtypes))
    spatial = draw(shapes)
    b = draw(st.integers(*count))
    maps = [draw(one_map(spatial, dtype, draw(st.sampled_from(kinds)))) for _ in range(b)]
    return as_tensor(np.stack(maps), dtype), len(spatial)


@st.composite
def options(draw, name: str) -> dict:
    """Options for ``name`` (those it doesn't take are ignored by ``decode``)."""
    return {
        "beta": draw(st.floats(-3.0, 4.0).map(lambda e: 10.0**e)),
        "normalize": draw(st.sampled_from(["none", "max", "minmax"])),
        "radius": draw(st.integers(1, 3)),
        "sigma": draw(st.one_of(st.none(), st.floats(0.0, 5.0))),
    }


def run(name: str, maps: torch.Tensor, sd: int, opts: dict):
    with torch.no_grad():
        return decode(maps, name, spatial_dims=sd, **opts)


def sizes_xyz(maps: torch.Tensor, sd: int) -> np.ndarray:
    """Axis lengths ordered like the coordinates: (W, H[, D])."""
    return np.array(list(reversed(maps.shape[-sd:])), dtype=np.float64)


def tolerance(maps: torch.Tensor) -> float:
    """Rounding allowed per pixel of axis length (float64 computes in float64, the rest float32)."""
    wide = maps.dtype == torch.float64 or maps.dtype in (torch.int32, torch.int64)
    return 1e-9 if wide else 2e-5


def unique_max(maps: torch.Tensor, sd: int) -> bool:
    flat = maps.double().reshape(-1, int(np.prod(maps.shape[-sd:])))
    return bool(((flat == flat.amax(-1, keepdim=True)).sum(-1) == 1).all())


def argmax_index(maps: torch.Tensor, sd: int) -> np.ndarray:
    """numpy's argmax of each map, as (x, y[, z]) indices."""
    spatial = maps.shape[-sd:]
    flat = maps.double().reshape(-1, int(np.prod(spatial))).numpy()
    index = np.array([np.unravel_index(np.argmax(row), spatial) for row in flat])
    return index[:, ::-1].astype(np.float64)


# --------------------------------------------------------------------------- range


@pytest.mark.parametrize("name", NAMES)
@SETTINGS
@given(data=st.data())
def test_outputs_are_finite_and_inside_the_map(name, data):
    maps, sd = data.draw(batches(), label="maps")
    opts = data.draw(options(name), label="options")
    out = run(name, maps, sd, opts)
    coords = out.coords.double().numpy()
    upper = sizes_xyz(maps, sd) - 1
    slack = tolerance(maps) * (upper + 1)
    assert np.isfinite(coords).all(), coords
    assert (coords >= -slack).all() and (coords <= upper + slack).all(), (coords, upper)
    assert out.finite.all()
    # the score is the map's raw maximum, for every decoder
    expected = maps.double().reshape(len(maps), -1).amax(-1)
    assert torch.equal(out.score.double(), expected), (out.score, expected)
    if out.spread is not None:
        spread = out.spread.double().numpy()
        assert np.isfinite(spread).all() and (spread >= 0).all()


# --------------------------------------------------------------------------- argmax


@SETTINGS
@given(case=batches())
def test_argmax_points_at_the_first_maximum(case):
    maps, sd = case
    out = run("argmax", maps, sd, {})
    coords = out.coords.numpy().astype(np.int64)
    flat = maps.reshape(len(maps), *maps.shape[-sd:])
    for m in range(len(maps)):
        value = flat[m][tuple(coords[m][::-1])]  # (x, y[, z]) -> [(z,) y, x]
        assert value == flat[m].max(), (value, flat[m].max())
    assert (out.coords.double().numpy() == argmax_index(maps, sd)).all()


# --------------------------------------------------------------------------- flips


def interior(maps: torch.Tensor, sd: int) -> bool:
    """Every map's argmax is at least one pixel from the edges of every longer-than-1 axis."""
    index = argmax_index(maps, sd)
    n = sizes_xyz(maps, sd)
    inside = (index >= 1) & (index <= n - 2)
    return bool((inside | (n == 1)).all())


FLIP_SHAPES = st.one_of(
    st.tuples(st.sampled_from([1, 3, 4, 5, 7]), st.sampled_from([1, 3, 4, 6, 8])),
    st.tuples(*[st.sampled_from([1, 3, 4, 5])] * 3),
)


@pytest.mark.parametrize("name", NAMES)
@SETTINGS
@given(data=st.data())
def test_flipping_a_map_mirrors_its_coordinates(name, data):
    soft = name == "softargmax"
    kinds = KINDS if soft else ["interior-peak"] if name in REFINING else ["random", "peak"]
    maps, sd = data.draw(batches(kinds=kinds, shapes=FLIP_SHAPES), label="maps")
    if not soft:
        assume(unique_max(maps, sd))  # ties: the argmax could flip to another maximum
    if name in REFINING:
        assume(interior(maps, sd))
    opts = data.draw(options(name), label="options")
    out = run(name, maps, sd, opts)
    n = sizes_xyz(maps, sd)
    exact = name in ("argmax", "quarter")
    for k in range(sd):  # coordinate k indexes array axis -1-k
        flipped = run(name, maps.flip(-1 - k), sd, opts)
        expected = out.coords.double().numpy().copy()
        expected[:, k] = (n[k] - 1) - expected[:, k]
        got = flipped.coords.double().numpy()
        if exact:
            assert (got == expected).all(), (k, got, expected)
        else:
            np.testing.assert_allclose(got, expected, rtol=0, atol=tolerance(maps) * n.max())


# --------------------------------------------------------------------------- shifts


@st.composite
def shifted_peaks(draw):
    """A peak patch on a zero background at two places, both away from the border.

    Returns ``(before, after, shift_xyz, spatial_dims)``; the margin (3 px around
    the patch) keeps every decoder's neighbourhood (a local window of radius 2,
    DARK's 3×3 stencil) inside the map.
    """
    sd = draw(st.sampled_from([2, 3]))
    dtype = draw(st.sampled_from([torch.float32, torch.float64]))
    radius = draw(st.integers(0, 2))
    side = 2 * radius + 1
    margin = 3
    shift = [draw(st.integers(-3, 3)) for _ in range(sd)]  # array order: ([z,] y, x)
    top = 8 if sd == 3 else 14
    spatial = [
        draw(st.integers(side + 2 * margin + abs(s), side + 2 * margin + abs(s) + top))
        for s in shift
    ]
    corner = [
        draw(st.integers(margin + max(0, -s), n - margin - side - max(0, s)))
        for n, s in zip(spatial, shift, strict=True)
    ]
    patch = draw(hnp.arrays(np.float64, (side,) * sd, elements=st.floats(0.01, 1.0)))
    patch[tuple(draw(st.integers(0, side - 1)) for _ in range(sd))] = 1.5  # one clear maximum
    before = np.zeros(spatial)
    after = np.zeros(spatial)
    before[tuple(slice(c, c + side) for c in corner)] = patch
    after[tuple(slice(c + s, c + s + side) for c, s in zip(corner, shift, strict=True))] = patch
    shift_xyz = np.array(shift[::-1], dtype=np.float64)
    return as_tensor(before[None], dtype), as_tensor(after[None], dtype), shift_xyz, sd


@pytest.mark.parametrize("name", NAMES)
@SETTINGS
@given(case=shifted_peaks(), data=st.data())
def test_shifting_a_peak_shifts_the_coordinates(name, case, data):
    before, after, shift, sd = case
    opts = data.draw(options(name), label="options")
    if name == "softargmax":
        # the global soft-argmax also weighs the background, which doesn't move:
        # hot enough, the background's weight (< N·e^-β) is below rounding
        opts["beta"] = data.draw(st.floats(60.0, 1e4), label="beta")
    first = run(name, before, sd, opts).coords.double().numpy()
    second = run(name, after, sd, opts).coords.double().numpy()
    n = sizes_xyz(before, sd)
    np.testing.assert_allclose(second, first + shift, rtol=0, atol=tolerance(before) * n.max())
    if name in ("argmax", "quarter"):
        assert (second == first + shift).all()


# --------------------------------------------------------------------------- batches


@st.composite
def companions(draw, like: torch.Tensor, sd: int) -> torch.Tensor:
    """0 to 4 other maps of the same shape and dtype: random, constant, NaN, ±Inf."""
    spatial, dtype = like.shape[-sd:], like.dtype
    others = []
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(KINDS + (["nonfinite"] if dtype in FLOATS else [])))
        if kind == "nonfinite":
            array = draw(one_map(spatial, dtype, "random")).astype(np.float64)
            where = tuple(draw(st.integers(0, n - 1)) for n in spatial)
            array[where] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
        else:
            array = draw(one_map(spatial, dtype, kind))
        others.append(as_tensor(array[None], dtype))
    return torch.cat(others) if others else like[:0]


FIELDS = ("coords", "score", "spread", "flat", "finite", "border", "skipped")


def same(one, other, rows: list[int], name: str) -> None:
    """Every field of ``one`` equals ``other``'s rows ``rows``, bit for bit."""
    for field in FIELDS:
        a, b = getattr(one, field), getattr(other, field)
        assert (a is None) == (b is None), field
        if a is not None:
            assert torch.equal(a, b[rows]), (name, field, a, b[rows])


@pytest.mark.parametrize("name", NAMES)
@SETTINGS
@given(data=st.data())
def test_a_map_decodes_the_same_alone_in_a_batch_or_beside_any_maps(name, data):
    maps, sd = data.draw(batches(count=(1, 4)), label="maps")
    opts = data.draw(options(name), label="options")
    others = data.draw(companions(maps, sd), label="companions")
    together = run(name, maps, sd, opts)
    # the same maps, in a larger batch, in shuffled order among other maps
    mixed = torch.cat([maps, others])
    order = data.draw(st.permutations(range(len(mixed))), label="order")
    crowd = run(name, mixed[list(order)], sd, opts)
    position = [order.index(m) for m in range(len(maps))]
    same(together, crowd, position, name)
    for m in range(len(maps)):  # and one at a time (a batch of one, and no batch axis)
        same(run(name, maps[m : m + 1], sd, opts), together, [m], name)
        alone = run(name, maps[m], sd, opts)
        assert torch.equal(alone.coords, together.coords[m]), (name, alone, together)
    # leading dimensions don't matter either
    if len(maps) % 2 == 0:
        grid = run(name, maps.reshape(2, len(maps) // 2, *maps.shape[1:]), sd, opts)
        assert torch.equal(grid.coords.reshape(together.coords.shape), together.coords)


# --------------------------------------------------------------------------- tiny peaks


@pytest.mark.parametrize(("dtype", "tiny"), [(torch.float32, 1.4e-45), (torch.float64, 5e-324)])
def test_parabola_on_a_tiny_positive_peak_is_finite(dtype, tiny):
    maps = torch.zeros(1, 7, dtype=dtype)
    maps[0, 1] = tiny  # found by test_a_map_decodes_the_same_alone_in_a_batch_...[parabola]
    assert torch.isfinite(decode(maps, "parabola").coords).all()
