"""heatdecode.bench: structure only (timings are never asserted), and no H·W grids."""

from __future__ import annotations

import math

import pytest
import torch

from heatdecode.bench import BenchRow, bench_decoders, synthetic_maps, time_round_robin
from heatdecode.family import DECODERS, decode
from heatdecode.reductions import logits as reductions_logits


def test_bench_decoders_returns_one_row_per_decoder_in_order():
    rows = bench_decoders((2, 3, 12, 10), "cpu", ["softargmax", "argmax"], repeats=2, warmup=0)
    assert [r.decoder for r in rows] == ["softargmax", "argmax"]
    for row in rows:
        assert isinstance(row, BenchRow)
        decoder, median_ms, maps_per_s = row  # a plain (decoder, median_ms, maps_per_s) tuple
        assert median_ms > 0 and math.isfinite(median_ms)
        assert maps_per_s == pytest.approx(6 / (median_ms / 1e3))


def test_bench_decoders_defaults_to_every_decoder_and_3d_for_five_axes():
    rows = bench_decoders((1, 2, 6, 7, 8), repeats=2, warmup=0)
    assert [r.decoder for r in rows] == list(DECODERS)


def test_bench_decoders_rejects_unknown_decoders_and_devices():
    with pytest.raises(ValueError, match="unknown decoder"):
        bench_decoders((1, 4, 4), decoders=["nope"], repeats=2)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="cuda"):
            bench_decoders((1, 4, 4), device="cuda", repeats=2)


def test_round_robin_calls_every_entry_warmup_plus_repeats_times_interleaved():
    log: list[str] = []
    times = time_round_robin(
        {"a": lambda: log.append("a"), "b": lambda: log.append("b")}, repeats=3, warmup=1
    )
    assert {k: len(v) for k, v in times.items()} == {"a": 3, "b": 3}
    assert log == ["a", "b", "a", "b", "b", "a", "a", "b"]  # each round starts one later


def test_synthetic_maps_peak_inside_the_map():
    maps = synthetic_maps((3, 2, 20, 30), 2, noise=0.0, seed=1)
    assert maps.shape == (3, 2, 20, 30) and maps.dtype == torch.float32
    assert maps.amax((-2, -1)).min() > 0.5  # a peak of height ~1 in every map
    assert torch.equal(maps, synthetic_maps((3, 2, 20, 30), 2, noise=0.0, seed=1))


@pytest.mark.parametrize("spatial", [(24, 40), (10, 12, 14)])
def test_no_decoder_builds_a_grid_of_the_maps_size(monkeypatch, spatial):
    """No coordinate grid of H·W(·D) elements: aranges and meshgrids stay per-axis sized."""
    n = math.prod(spatial)
    seen: list[int] = []
    arange, meshgrid = torch.arange, torch.meshgrid

    def counting_arange(*args, **kwargs):
        out = arange(*args, **kwargs)
        seen.append(out.numel())
        return out

    def counting_meshgrid(*args, **kwargs):
        out = meshgrid(*args, **kwargs)
        seen.extend(t.numel() for t in out)
        return out

    maps = synthetic_maps((3, *spatial), len(spatial))
    monkeypatch.setattr(torch, "arange", counting_arange)
    monkeypatch.setattr(torch, "meshgrid", counting_meshgrid)
    for name in DECODERS:
        decode(maps, name, spatial_dims=len(spatial))
        leaf = maps.clone().requires_grad_(True)
        if DECODERS[name].differentiable:
            decode(leaf, name, spatial_dims=len(spatial)).coords.sum().backward()
    assert seen and max(seen) < n


# ---------------------------------------------------------------------------
# The fast paths the benchmark drives: same bits alone or in any batch, and
# close to float64 whichever path a map takes
# ---------------------------------------------------------------------------


def _mixed_maps(spatial: tuple[int, ...]) -> torch.Tensor:
    """Maps whose softmax takes each path: in range, far out of range, constant, NaN, -Inf."""
    gen = torch.Generator().manual_seed(5)
    maps = torch.randn((9, *spatial), generator=gen, dtype=torch.float64)
    maps[1] = maps[1] * 30 + 100  # logits beyond ±60: the exact (shifted) path
    maps[2] = 7.0  # constant
    maps[3] = maps[3] * 1e-3 - 80  # in range only for small β
    maps[4].view(-1)[3] = float("nan")
    maps[5].view(-1)[5] = float("-inf")
    maps[6] = maps[6] * 1e30  # huge: exact path, max|x| normalisation
    maps[7] = maps[7].abs() * 255  # a 0-255 image
    return maps.float()


@pytest.mark.parametrize("spatial", [(13, 7), (5, 6, 7)])
@pytest.mark.parametrize("normalize", ["none", "max", "minmax"])
@pytest.mark.parametrize("beta", [0.5, 1.0, 20.0, 100.0])
def test_softargmax_paths_give_the_same_bits_in_any_batch(spatial, normalize, beta, monkeypatch):
    import heatdecode.decoders as decoders_module
    import heatdecode.softmax as softmax_module

    maps = _mixed_maps(spatial)
    dims = len(spatial)
    kw = {"beta": beta, "normalize": normalize, "spatial_dims": dims}
    whole = decoders_module.softargmax_decode(maps, **kw)
    order = torch.tensor([8, 1, 0, 4, 3, 7, 2, 6, 5])
    # tiny chunks: the first chunk's rows decide the later chunks' mode
    monkeypatch.setattr(softmax_module, "CHUNK_ELEMENTS_CPU", 2 * maps[0].numel())
    shuffled = decoders_module.softargmax_decode(maps[order], **kw)
    for i in range(len(maps)):
        alone = decoders_module.softargmax_decode(maps[i : i + 1], **kw)
        j = int((order == i).nonzero())
        for a, b, c in [(whole.coords[i], shuffled.coords[j], alone.coords[0])]:
            assert torch.equal(a, b) or (a.isnan().all() and b.isnan().all()), i
            assert torch.equal(a, c) or (a.isnan().all() and c.isnan().all()), i
    finite = whole.finite
    assert finite.tolist() == [True, True, True, True, False, False, True, True, True]
    # every finite map is within float32 rounding of the exact formula (shift by the max)
    want = _plain_soft_argmax(maps, beta, normalize, dims)
    torch.testing.assert_close(whole.coords[finite], want[finite], rtol=0, atol=1e-5)


def _plain_soft_argmax(maps: torch.Tensor, beta: float, normalize: str, dims: int):

    flat = maps.reshape(len(maps), -1)
    hi, lo = flat.amax(-1, keepdim=True), flat.amin(-1, keepdim=True)
    p = torch.softmax(reductions_logits(flat, hi, lo, beta, normalize), -1).view(maps.shape)
    axes = range(1, dims + 1)
    means = []
    for axis in reversed(axes):  # x, y[, z]
        marginal = p.sum(tuple(a for a in axes if a != axis))
        means.append((marginal * torch.arange(marginal.shape[-1], dtype=maps.dtype)).sum(-1))
    return torch.stack(means, -1)


@pytest.mark.parametrize("normalize", ["none", "minmax"])
@pytest.mark.parametrize("beta", [1.0, 20.0])
def test_softargmax_gradient_matches_autograd_through_the_plain_formula(normalize, beta):
    import heatdecode.decoders as decoders_module

    maps = _mixed_maps((6, 5))[[0, 1, 2, 3, 7]].double()
    maps[4] = maps[4] / 255  # not a one-hot softmax: the spread's sqrt stays differentiable
    maps.requires_grad_(True)
    out = decoders_module.softargmax_decode(maps, beta=beta, normalize=normalize)
    loss = (out.coords * torch.tensor([1.0, -2.0], dtype=torch.float64)).sum() + out.spread.sum()
    (got,) = torch.autograd.grad(loss, maps)

    flat = maps.reshape(len(maps), -1)
    hi, lo = flat.amax(-1, keepdim=True), flat.amin(-1, keepdim=True)
    p = torch.softmax(reductions_logits(flat, hi, lo, beta, normalize), -1).view(maps.shape)
    means, variances = [], []
    for marginal in (p.sum(-2), p.sum(-1)):  # x, y
        index = torch.arange(marginal.shape[-1], dtype=torch.float64)
        mean = (marginal * index).sum(-1)
        means.append(mean)
        variances.append((marginal * (index - mean[:, None]) ** 2).sum(-1))
    coords = torch.stack(means, -1)
    plain = (coords * torch.tensor([1.0, -2.0], dtype=torch.float64)).sum()
    plain = plain + torch.sqrt(torch.stack(variances, -1).sum(-1)).sum()
    (want,) = torch.autograd.grad(plain, maps)
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.int16, torch.int64])
def test_argmax_numpy_and_torch_paths_agree_on_ties_nan_and_inf(dtype, monkeypatch):
    import heatdecode.decoders as decoders_module
    import heatdecode.reductions as reductions

    gen = torch.Generator().manual_seed(11)
    maps = torch.randint(-3, 4, (40, 7, 9), generator=gen).to(dtype)  # many ties
    if dtype.is_floating_point:
        maps[3, 2, 2], maps[3, 5, 1] = float("nan"), 9.0
        maps[4, 0, 4] = float("-inf")
        maps[5, 6, 8] = float("inf")
    maps[6] = 2  # constant
    fast = decoders_module.argmax_decode(maps)
    monkeypatch.setattr(reductions, "NUMPY_MAX_THREADS", 0)  # force torch's reductions
    slow = decoders_module.argmax_decode(maps)
    for a, b in zip(fast, slow, strict=True):
        if a is not None:
            assert torch.equal(a.nan_to_num(), b.nan_to_num())
    assert fast.finite[3:6].tolist() == ([False] * 3 if dtype.is_floating_point else [True] * 3)
    assert fast.flat[6]


def test_bench_refuses_batches_over_its_limit_before_allocating():
    """Issue 8, item 13: --shape 100000,100000,100000,100000 was a torch traceback."""
    from heatdecode.bench import BENCH_MAX_BYTES, check_bench

    with pytest.raises(ValueError, match="the most bench makes is 1 GiB"):
        bench_decoders((10**5,) * 4, decoders=["argmax"])
    with pytest.raises(ValueError, match="bytes of float32"):
        check_bench((1, BENCH_MAX_BYTES // 4 + 1), 1)
    with pytest.raises(ValueError, match="repeats must be from 1 to 10000"):
        check_bench((2, 8, 8), 10**11)
    check_bench((1, BENCH_MAX_BYTES // 4), 1)  # the limit itself is allowed
