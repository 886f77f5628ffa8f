"""The soft-argmax's softmax, reduced to one marginal per axis, a chunk of maps at a time.

:func:`softmax_marginals` gives, for each map, the sums of its softmax weights
onto each axis (x, y[, z]) and the map's max and min: all the soft-argmax needs.
No ``H×W`` grid of weights or coordinates is kept for the whole batch: on CPU
the weights of a cache-sized chunk of maps are summed while they are in cache,
maps bigger than a chunk are exponentiated in slabs, and with autograd a custom
backward (:class:`_ExpMarginals`) replaces the graph through ``exp`` and the sums.

Every path gives a map the same bits alone or in any batch: which path a row
takes is decided from that row alone, and every path is the same elementwise
operations in the same order whatever else the chunk holds.

Pure core: imports only the standard library, numpy, torch and other core
modules; no I/O and no module state, so it can be used without the CLI stack
(``tests/test_package.py``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from heatdecode.reductions import extremes, logits

#: elements per chunk on CPU: 2 MB of float32 fits in L2 with room to spare
CHUNK_ELEMENTS_CPU = 1 << 19
#: elements per chunk elsewhere: large, so launches stay few
CHUNK_ELEMENTS_GPU = 1 << 26
#: exp(β·x̂) is taken without subtracting the maximum where every logit of the
#: map is within ±DIRECT_EXP_LIMIT: no weight can overflow (e^60·N stays far
#: below float32's limit) or lose the peak to underflow, and the softmax is the
#: same up to rounding. It saves a pass over the map, and for normalize="none"
#: the exp is the first pass, its arithmetic hiding the memory reads.
DIRECT_EXP_LIMIT = 60.0


def softmax_marginals(
    flat: Tensor, beta: float, normalize: str, spatial: torch.Size
) -> tuple[list[Tensor], Tensor, Tensor]:
    """The marginals of ``softmax(β·x̂)`` for each row of ``flat`` ``(M, N)``, and its max and min.

    Returns the unnormalised marginals ordered x (W), y (H)[, z (D)], each
    ``(M, n_axis)``, and each row's max and min ``(M, 1)``. Differentiable
    when ``flat`` requires grad.
    """
    if not (torch.is_grad_enabled() and flat.requires_grad):
        return _chunked_marginals(flat, beta, normalize, spatial)
    if flat.shape[0] == 0:
        hi, lo = extremes(flat)
        weights = torch.exp(logits(flat, hi, lo, beta, normalize))
        return _marginals(weights.reshape(-1, *spatial)), hi, lo
    if normalize == "none":
        hi, lo, *marginals = _ExpMarginals.apply(flat, beta, normalize, spatial)
        return marginals, hi, lo
    # the scale depends on max and min: autograd differentiates through them
    hi, lo = extremes(flat)
    shifted = logits(flat, hi, lo, beta, normalize)
    _, _, *marginals = _ExpMarginals.apply(shifted, 1.0, "logits", spatial)
    return marginals, hi, lo


def moments(marginals: list[Tensor], cdtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """The mean ``(M, d)`` and spread ``(M,)`` of the distributions whose marginals are given."""
    total = marginals[0].sum(-1, keepdim=True)
    means, variances = [], []
    for marginal in marginals:
        p = marginal / total
        index = torch.arange(p.shape[-1], dtype=cdtype, device=p.device)
        # an elementwise sum, not a matmul: BLAS blocks by batch size, and a map's
        # coordinates must not depend on which other maps share its batch
        mean = (p * index).sum(-1)
        variances.append((p * (index - mean[:, None]) ** 2).sum(-1))
        means.append(mean)
    return torch.stack(means, -1), torch.sqrt(torch.stack(variances, -1).sum(-1))


def _marginals(weights: Tensor) -> list[Tensor]:
    """Sums of ``(M, [D,] H, W)`` weights onto each axis, ordered x (W), y (H)[, z (D)].

    Two passes over the weights whatever the dimension: one sum over W, one
    over everything but W; the other marginals come from the small remainder.
    """
    over_w = weights.sum(-1)  # (M, [D,] H)
    onto_w = weights.sum(tuple(range(1, weights.ndim - 1)))  # (M, W)
    if weights.ndim == 3:
        return [onto_w, over_w]
    return [onto_w, over_w.sum(-2), over_w.sum(-1)]


def _chunk_budget(flat: Tensor) -> int:
    return CHUNK_ELEMENTS_GPU if flat.device.type != "cpu" else CHUNK_ELEMENTS_CPU


def _chunk_rows(flat: Tensor) -> int:
    """Rows (maps) per chunk: a cache-sized chunk on CPU, large ones on GPUs."""
    return max(1, min(flat.shape[0], _chunk_budget(flat) // max(1, flat.shape[1])))


def _exp_chunks(
    flat: Tensor,
    spatial: torch.Size,
    fill: Callable[[slice, Tensor], object],
    keep: Tensor | None = None,
) -> list[Tensor]:
    """:func:`_marginals` of the weights ``fill`` writes, a chunk of rows at a time.

    ``fill(chunk, out)`` writes the softmax weights (unnormalised) of the rows
    ``chunk`` into ``out``: one reused chunk-sized buffer, or the rows of
    ``keep`` when a backward pass needs them. The chunks come in order. On
    CPU each chunk's weights and sums stay in cache, which is several times
    faster than materialising the whole batch's softmax and keeps the extra
    memory to a few MB. No autograd.
    """
    m, n = flat.shape
    rows = _chunk_rows(flat)
    if keep is None:
        buffer = torch.empty((rows, n), dtype=flat.dtype, device=flat.device)
    parts: list[list[Tensor]] = [[] for _ in spatial]
    for start in range(0, m, rows):
        chunk = slice(start, min(m, start + rows))
        weights = keep[chunk] if keep is not None else buffer[: chunk.stop - start]
        fill(chunk, weights)
        for k, marginal in enumerate(_marginals(weights.view(-1, *spatial))):
            parts[k].append(marginal)
    return [torch.cat(p) if len(p) > 1 else p[0] for p in parts]


class _Weights:
    """The softmax weights of ``flat``'s rows for :func:`_exp_chunks`, with a shortcut.

    The protocol, in this order: :meth:`fill` for each chunk of rows in turn
    (``fill(chunk, out)`` writes the weights of the rows ``chunk`` into
    ``out``), then :meth:`finish` once with the marginals :func:`_exp_chunks`
    summed, which fixes the rows the shortcut got wrong, in place, and
    returns every row's max and min ``(M, 1)``.

    The shortcut is the *direct* exp, without the row's maximum subtracted
    (see :data:`DIRECT_EXP_LIMIT`). A row that can't take it (a constant,
    NaN or ±Inf map, logits beyond the limit) is recomputed by :meth:`finish`
    with the exact ``exp(β·(x̂ − max x̂))`` of :func:`~heatdecode.reductions.logits`.
    Which rows take which path is decided per row from its own max and min,
    and both paths are the same elementwise operations whatever the chunk
    holds, so a map's weights are the same bits in any batch.
    """

    normalize = "none"

    def __init__(self, flat: Tensor, beta: float) -> None:
        self.flat, self.beta = flat, beta

    def fill(self, chunk: slice, out: Tensor) -> None:
        raise NotImplementedError

    def finish(
        self, marginals: list[Tensor], spatial: torch.Size, keep: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def _redo(
        self,
        exact: Tensor,
        hi: Tensor,
        lo: Tensor,
        marginals: list[Tensor],
        spatial: torch.Size,
        keep: Tensor | None,
    ) -> None:
        """Recompute exactly the rows where ``exact`` (the first ``len(exact)`` rows) is True."""
        if not bool(exact.any()):
            return
        redo = exact.nonzero()[:, 0]
        weights = logits(self.flat[redo], hi[redo], lo[redo], self.beta, self.normalize).exp_()
        if keep is not None:
            keep[redo] = weights
        exacts = _marginals(weights.view(-1, *spatial))
        for marginal, exact_marginal in zip(marginals, exacts, strict=True):
            marginal[redo] = exact_marginal


class _RawWeights(_Weights):
    """``normalize="none"``: ``exp(β·x)``, the exp first and the max and min after.

    The exp runs while the rows are read from memory, and the max and min
    follow from cache, so the batch is read once. If the first chunk has a
    row out of range the later chunks go max-first instead (a shift of 0 for
    the rows in range, which is exact: their weights don't change), so
    logits far from 0 don't cost two exps.
    """

    def __init__(self, flat: Tensor, beta: float) -> None:
        super().__init__(flat, beta)
        self.highs: list[Tensor] = []
        self.lows: list[Tensor] = []
        self.exp_first = True
        self.checked_until = 0  # rows before this one took the direct exp unchecked

    def fill(self, chunk: slice, out: Tensor) -> None:
        block, beta = self.flat[chunk], self.beta
        if self.exp_first:
            if beta == 1.0:
                torch.exp(block, out=out)
            else:
                torch.mul(block, beta, out=out).exp_()
            hi, lo = extremes(block)
            self.checked_until = chunk.stop
            first, more = chunk.start == 0, chunk.stop < self.flat.shape[0]
            if first and more and not bool(self._in_range(hi, lo).all()):
                self.exp_first = False
        else:
            hi, lo = extremes(block)
            shift = torch.where(self._in_range(hi, lo), 0.0, hi)
            logits(block, shift, lo, beta, "none", out=out).exp_()
        self.highs.append(hi)
        self.lows.append(lo)

    def finish(
        self, marginals: list[Tensor], spatial: torch.Size, keep: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        hi = torch.cat(self.highs) if len(self.highs) > 1 else self.highs[0]
        lo = torch.cat(self.lows) if len(self.lows) > 1 else self.lows[0]
        n = self.checked_until
        self._redo(~self._in_range(hi[:n], lo[:n])[:, 0], hi, lo, marginals, spatial, keep)
        return hi, lo

    def _in_range(self, hi: Tensor, lo: Tensor) -> Tensor:
        return ((hi * self.beta).abs() <= DIRECT_EXP_LIMIT) & (hi != lo)


class _ScaledWeights(_Weights):
    """``normalize="max"``/``"minmax"``: ``exp(x·β/(max|x|·span))``, span 1 for ``max``.

    The factor needs each row's max and min first: they are taken for the
    whole batch at once. If no row may take the direct exp, every chunk is
    computed exactly straight away and :meth:`finish` has nothing to fix.
    """

    def __init__(self, flat: Tensor, beta: float, normalize: str) -> None:
        super().__init__(flat, beta)
        self.normalize = normalize
        self.hi, self.lo = extremes(flat)
        factor, self.direct = _direct_factor(self.hi, self.lo, beta, normalize)
        self.factor = factor if bool(self.direct.any()) else None

    def fill(self, chunk: slice, out: Tensor) -> None:
        block = self.flat[chunk]
        if self.factor is not None:
            torch.mul(block, self.factor[chunk], out=out).exp_()
        else:
            hi, lo = self.hi[chunk], self.lo[chunk]
            logits(block, hi, lo, self.beta, self.normalize, out=out).exp_()

    def finish(
        self, marginals: list[Tensor], spatial: torch.Size, keep: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        if self.factor is not None:
            self._redo(~self.direct[:, 0], self.hi, self.lo, marginals, spatial, keep)
        return self.hi, self.lo


def _direct_factor(hi: Tensor, lo: Tensor, beta: float, normalize: str) -> tuple[Tensor, Tensor]:
    """``β/(max|x|·span)`` per row, and where the direct exp is safe with it."""
    absmax = torch.maximum(hi.abs(), lo.abs())
    safe = torch.where(absmax > 0, absmax, torch.ones_like(absmax))
    if normalize == "max":
        scale = torch.full_like(safe, beta)
    else:
        span = hi / safe - lo / safe
        scale = beta / torch.where(span > 0, span, 1.0)
    factor = scale / safe
    direct = (scale <= DIRECT_EXP_LIMIT) & torch.isfinite(factor) & (hi != lo)
    return factor, direct


def _chunked_marginals(
    flat: Tensor, beta: float, normalize: str, spatial: torch.Size, keep: Tensor | None = None
) -> tuple[list[Tensor], Tensor, Tensor]:
    """:func:`_marginals` of the softmax weights without autograd, with each row's max and min.

    See :class:`_Weights`: for ``normalize="none"`` the max and min
    (``(M, 1)``) are taken chunk by chunk with the weights, so the batch is
    read from memory once. With ``keep`` the weights are written there (for
    a backward pass).
    """
    m, n = flat.shape
    budget = _chunk_budget(flat)
    if m == 0 or (keep is None and n > budget and spatial[0] > 1):
        hi, lo = extremes(flat)
        if m == 0:  # an empty batch: empty marginals, as the unchunked path gives
            return _marginals(flat.reshape(0, *spatial)), hi, lo
        return _slab_marginals(flat, hi, lo, beta, normalize, spatial, budget), hi, lo
    if normalize == "none":
        weights: _Weights = _RawWeights(flat, beta)
    else:
        weights = _ScaledWeights(flat, beta, normalize)
    marginals = _exp_chunks(flat, spatial, weights.fill, keep=keep)
    return (marginals, *weights.finish(marginals, spatial, keep))


def _slab_marginals(
    flat: Tensor,
    hi: Tensor,
    lo: Tensor,
    beta: float,
    normalize: str,
    spatial: torch.Size,
    budget: int,
) -> list[Tensor]:
    """:func:`_chunked_marginals` for maps bigger than a chunk: slabs along the first axis.

    A 512³ volume is 512 MB of float32; exponentiating it in slabs keeps the
    extra memory to one slab instead of a second copy of the volume. The
    result depends only on the map's own shape, never on its batch.
    """
    m = flat.shape[0]
    per_slice = flat.shape[1] // spatial[0]
    step = max(1, budget // per_slice)
    buffer = torch.empty(step * per_slice, dtype=flat.dtype, device=flat.device)
    rows: list[list[Tensor]] = [[] for _ in spatial]
    for i in range(m):  # only maps over `budget` elements get here: there are few
        first = torch.zeros(spatial[0], dtype=flat.dtype, device=flat.device)
        rest = [torch.zeros(n, dtype=flat.dtype, device=flat.device) for n in spatial[1:]]
        for start in range(0, spatial[0], step):
            stop = min(spatial[0], start + step)
            weights = buffer[: (stop - start) * per_slice].view(1, -1)
            block = flat[i : i + 1, start * per_slice : stop * per_slice]
            logits(block, hi[i : i + 1], lo[i : i + 1], beta, normalize, out=weights).exp_()
            slab = weights.view(stop - start, *spatial[1:])
            # marginals of the slab ordered x (W), y (H)[, z (D)], z being the slab axis
            parts = _marginals(slab[None])
            first[start:stop] = parts[-1][0]
            for acc, part in zip(rest, reversed(parts[:-1]), strict=True):
                acc += part[0]
        for k, marginal in enumerate([*reversed(rest), first]):
            rows[k].append(marginal)
    return [torch.stack(r) for r in rows]


class _ExpMarginals(torch.autograd.Function):
    """Softmax marginals with a backward pass that needs no autograd graph.

    ``apply(values, beta, "none", spatial)``: the weights of
    :class:`_RawWeights` for raw logits ``values`` ``(M, N)``, returned as
    ``(hi, lo, *marginals)`` (the rows' max and min carry no gradient: the
    softmax doesn't change when its shift does). ``apply(logits, 1.0,
    "logits", spatial)``: ``exp(logits)`` for logits already shifted (max
    and minmax, whose scale autograd differentiates before this).

    Forward: the same chunked exp and sums as without autograd, the weights
    kept (one copy of the batch, as a softmax's autograd keeps). Backward:
    each weight times the sum of its axes' incoming gradients, ``β·wᵢ·Σₖ
    gₖ[cₖ(i)]``, a chunk at a time: two passes over the batch, where
    autograd through sub, mul, exp and the sums takes about eight.
    """

    @staticmethod
    def forward(ctx, values: Tensor, beta: float, normalize: str, spatial: torch.Size):
        keep = torch.empty(values.shape, dtype=values.dtype, device=values.device)
        if normalize == "logits":
            marginals = _exp_chunks(
                values, spatial, lambda chunk, out: torch.exp(values[chunk], out=out), keep=keep
            )
            hi = lo = values.new_zeros(values.shape[0], 1)
        else:
            marginals, hi, lo = _chunked_marginals(values, beta, normalize, spatial, keep=keep)
        ctx.save_for_backward(keep)
        ctx.beta, ctx.spatial = beta, spatial
        ctx.mark_non_differentiable(hi, lo)
        ctx.set_materialize_grads(False)
        return (hi, lo, *marginals)

    @staticmethod
    @once_differentiable
    def backward(ctx, _hi: Tensor | None, _lo: Tensor | None, *grads: Tensor | None):
        (weights,) = ctx.saved_tensors
        spatial, d = ctx.spatial, len(ctx.spatial)
        m = weights.shape[0]
        terms = []
        for k, grad in enumerate(grads):  # k = 0: x (the last axis)
            if grad is None:
                continue
            shape = [m] + [1] * d
            shape[d - k] = spatial[d - 1 - k]
            terms.append((grad * ctx.beta).reshape(shape))
        if not terms:
            return None, None, None, None
        out = torch.empty_like(weights)
        rows = _chunk_rows(weights)
        for start in range(0, m, rows):
            chunk = slice(start, min(m, start + rows))
            w = weights[chunk].view(-1, *spatial)
            o = out[chunk].view(-1, *spatial)
            torch.mul(w, terms[0][chunk], out=o)
            for term in terms[1:]:
                o.addcmul_(w, term[chunk])
        return out, None, None, None
