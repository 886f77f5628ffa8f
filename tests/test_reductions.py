"""The kernels every decoder shares (heatdecode.reductions, heatdecode.peak) and the
soft-argmax's chunked softmax (heatdecode.softmax): each checked against a plain
torch formula, and each path against the others."""

from __future__ import annotations

import pytest
import torch

from heatdecode import reductions, softmax
from heatdecode.peak import Peak, axis_offsets
from heatdecode.reductions import (
    argmax_extremes,
    check_input,
    compute_dtype,
    extremes,
    gather,
    logits,
    unravel,
)


def _maps(shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    """Random maps with the awkward rows: a constant one, NaN, ±Inf, huge and 0–255 values."""
    maps = torch.randn(
        9, *shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64
    )
    maps[1] = 0.5
    maps[2].view(-1)[3] = float("nan")
    maps[3].view(-1)[2] = float("inf")
    maps[4].view(-1)[1] = float("-inf")
    maps[5] = maps[5] * 1e30
    maps[6] = maps[6].abs() * 255
    maps[7] = maps[7] * 100  # logits beyond the direct exp's limit
    return maps.float()


def test_check_input_refuses_what_no_decoder_can_read():
    assert check_input(torch.zeros(4, 5), 2) == (torch.Size([]), torch.Size([4, 5]))
    with pytest.raises(TypeError, match="torch.Tensor"):
        check_input([[0.0]], 2)
    with pytest.raises(ValueError, match="spatial_dims must be 2 or 3"):
        check_input(torch.zeros(4, 5), 4)
    with pytest.raises(ValueError, match="at least 3 dimensions"):
        check_input(torch.zeros(4, 5), 3)
    with pytest.raises(ValueError, match="empty spatial axis"):
        check_input(torch.zeros(2, 0, 5), 2)
    with pytest.raises(TypeError, match="real numbers"):
        check_input(torch.zeros(4, 5, dtype=torch.bool), 2)


@pytest.mark.parametrize(
    ("dtype", "want"),
    [
        (torch.float16, torch.float32),
        (torch.bfloat16, torch.float32),
        (torch.float32, torch.float32),
        (torch.uint8, torch.float32),
        (torch.int16, torch.float32),
        (torch.int32, torch.float64),
        (torch.float64, torch.float64),
    ],
)
def test_compute_dtype_widens_what_would_lose_the_peak(dtype, want):
    assert compute_dtype(dtype, torch.device("cpu")) == want


@pytest.mark.parametrize("spatial", [(7,), (3, 5), (2, 3, 4)])
def test_unravel_inverts_row_major_flattening_x_first(spatial):
    size = torch.Size(spatial)
    index = torch.arange(size.numel())
    grids = torch.meshgrid(*[torch.arange(n) for n in spatial], indexing="ij")
    want = torch.stack([g.reshape(-1) for g in reversed(grids)], -1)
    assert torch.equal(unravel(index, size), want)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.int16, torch.float16])
@pytest.mark.parametrize("threads", [reductions.NUMPY_MAX_THREADS, 0])
def test_argmax_extremes_matches_torchs_reductions_on_either_path(dtype, threads, monkeypatch):
    gen = torch.Generator().manual_seed(4)
    maps = torch.randint(-3, 4, (40, 63), generator=gen).to(dtype)  # many ties
    if dtype.is_floating_point:
        maps[3, 20], maps[3, 40] = float("nan"), 9.0
        maps[4, 5] = float("-inf")
        maps[5, 62] = float("inf")
    maps[6] = 2  # constant
    monkeypatch.setattr(reductions, "NUMPY_MAX_THREADS", threads)  # 0 forces torch's own
    monkeypatch.setattr(reductions, "ARGMAX_CHUNK_ELEMENTS", 63 * 7)  # several blocks
    index, hi, lo = argmax_extremes(maps)
    assert torch.equal(index, maps.argmax(-1))
    assert torch.equal(hi.nan_to_num(), maps.amax(-1).nan_to_num())
    assert torch.equal(lo.nan_to_num(), maps.amin(-1).nan_to_num())


@pytest.mark.parametrize("normalize", ["none", "max", "minmax"])
@pytest.mark.parametrize("beta", [1.0, 0.5, 30.0])
def test_logits_are_the_shifted_scaled_map_in_place_or_not(normalize, beta):
    flat = _maps((5, 6)).reshape(9, -1).double()
    hi, lo = extremes(flat)
    got = logits(flat, hi, lo, beta, normalize)
    out = torch.empty_like(flat)
    assert logits(flat, hi, lo, beta, normalize, out=out) is out
    assert torch.equal(got.nan_to_num(), out.nan_to_num())
    rows = [0, 5, 6, 7, 8]  # the finite, non-constant maps
    x = flat[rows]
    if normalize == "max":
        x = x / x.abs().amax(-1, keepdim=True)
    elif normalize == "minmax":
        x = (x - x.amin(-1, keepdim=True)) / (x.amax(-1, keepdim=True) - x.amin(-1, keepdim=True))
    want = beta * (x - x.amax(-1, keepdim=True))
    torch.testing.assert_close(got[rows], want, rtol=1e-12, atol=1e-12)
    assert (got[rows] <= 0).all()
    assert (got[1] == 0).all()  # a constant map: a uniform softmax


def test_one_gather_serves_the_whole_batch_and_a_subset_of_its_rows():
    maps = _maps((6, 7))[[0, 5, 6, 7]]
    peak = Peak(maps, 2)
    offsets = torch.tensor([[-1, -1], [0, 0], [1, 0], [3, 2], [-7, 0]])
    values, valid = peak.gather(offsets)
    rows = torch.tensor([2, 0])
    sub_values, sub_valid = peak.gather(offsets, maps.reshape(4, -1)[rows], rows=rows)
    assert torch.equal(sub_values, values[rows]) and torch.equal(sub_valid, valid[rows])
    # the same, by hand, for one map and one offset inside it
    x, y = peak.index[1].tolist()
    assert values[1, 1].item() == maps[1, y, x].item() == peak.score[1].item()
    raw, inside = gather(
        peak.values, peak.index, offsets, peak.sizes, peak.strides
    )  # the kernel itself
    assert torch.equal(raw.to(peak.cdtype), values) and torch.equal(inside, valid)
    # outside the map: the nearest pixel's value, marked invalid
    assert not valid[:, 4].any()
    assert torch.equal(values[:, 4], maps[torch.arange(4), peak.index[:, 1], 0].to(peak.cdtype))


def test_axis_offsets_step_one_pixel_along_each_axis_x_first():
    assert axis_offsets(Peak(torch.zeros(2, 3, 4, 5), 3)).tolist() == [
        [-1, 0, 0],
        [1, 0, 0],
        [0, -1, 0],
        [0, 1, 0],
        [0, 0, -1],
        [0, 0, 1],
    ]


def _plain_marginals(flat, beta, normalize, spatial):
    hi, lo = extremes(flat)
    weights = torch.softmax(logits(flat, hi, lo, beta, normalize), -1).view(-1, *spatial)
    axes = range(1, len(spatial) + 1)
    return [weights.sum(tuple(a for a in axes if a != axis)) for axis in reversed(axes)]


@pytest.mark.parametrize("spatial", [(13, 7), (5, 6, 7)])
@pytest.mark.parametrize("normalize", ["none", "max", "minmax"])
@pytest.mark.parametrize("beta", [1.0, 20.0])
@pytest.mark.parametrize("chunk_maps", [1, 2, 100])
@pytest.mark.parametrize("first", [0, 7], ids=["in-range-first", "out-of-range-first"])
def test_chunked_softmax_marginals_are_the_plain_softmaxs_in_any_chunking(
    spatial, normalize, beta, chunk_maps, first, monkeypatch
):
    """Any chunk size, the first chunk's rows switching the later ones to max-first
    or not: the finite maps' marginals are the plain softmax's, and every map's
    bits are the same as with the default chunks."""
    order = [first] + [i for i in range(9) if i != first]
    flat = _maps(spatial).reshape(9, -1)[order]
    torch_spatial = torch.Size(spatial)
    default, hi, lo = softmax.softmax_marginals(flat, beta, normalize, torch_spatial)
    monkeypatch.setattr(softmax, "CHUNK_ELEMENTS_CPU", chunk_maps * flat.shape[1])
    chunked, hi_c, lo_c = softmax.softmax_marginals(flat, beta, normalize, torch_spatial)
    assert torch.equal(hi.nan_to_num(), hi_c.nan_to_num())
    assert torch.equal(lo.nan_to_num(), lo_c.nan_to_num())
    finite = torch.isfinite(flat).all(-1)
    plain = _plain_marginals(flat.double(), beta, normalize, spatial)
    for a, b, want in zip(default, chunked, plain, strict=True):
        assert torch.equal(a.nan_to_num(), b.nan_to_num())
        total = a[finite].sum(-1, keepdim=True)
        torch.testing.assert_close((a[finite] / total).double(), want[finite], rtol=0, atol=1e-6)


@pytest.mark.parametrize("normalize", ["none", "minmax"])
def test_chunked_marginals_with_autograd_are_the_same_distribution_as_without(normalize):
    """Unnormalised they may differ by a factor per map (the direct exp skips the shift)."""
    flat = _maps((6, 5)).reshape(9, -1)[[0, 5, 6, 8]].double()
    spatial = torch.Size((6, 5))
    plain, _, _ = softmax.softmax_marginals(flat, 3.0, normalize, spatial)
    tracked, _, _ = softmax.softmax_marginals(
        flat.clone().requires_grad_(True), 3.0, normalize, spatial
    )
    for a, b in zip(plain, tracked, strict=True):
        b = b.detach()
        torch.testing.assert_close(a / a.sum(-1, keepdim=True), b / b.sum(-1, keepdim=True))
