"""Peaks mode's decoding of one batch: every chosen decoder at every peak
(:func:`heatdecode.peaks.find_peaks`), as numpy columns.

Pure core: imports only the standard library, numpy, torch and other core
modules; no I/O and no module state.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from heatdecode.options import DecoderSpec, PeakOptions
from heatdecode.peaks import find_peaks
from heatdecode.results import MapColumns, PeakColumns


def peak_batch(
    maps: torch.Tensor, specs: Sequence[DecoderSpec], options: PeakOptions
) -> tuple[dict[str, PeakColumns], MapColumns]:
    """Each decoder's points in a ``(k, *spatial)`` batch (map index = batch row),
    and the per-map flags: flat, finite, the maximum, and whether a map had more
    than ``options.max_peaks`` peaks (then only the highest are kept).

    ``argmax`` is the integer peak; every other decoder refines each peak in its
    own window (see :func:`~heatdecode.peaks.find_peaks`).
    """
    flat_maps = maps.reshape(len(maps), -1)
    hi = flat_maps.amax(dim=1).double()
    lo = flat_maps.amin(dim=1).double()
    finite = torch.isfinite(hi) & torch.isfinite(lo)
    truncated = np.zeros(len(maps), dtype=bool)
    columns = {}
    for spec in specs:
        points, more = _decoder_points(maps, spec, options)
        columns[spec.label] = points
        truncated |= more
    per_map = MapColumns(
        flat=((hi == lo) & finite).cpu().numpy(),
        finite=finite.cpu().numpy(),
        multimodal=np.zeros(len(maps), dtype=bool),
        maximum=torch.where(finite, hi, torch.nan).cpu().numpy(),
        truncated=truncated,
    )
    return columns, per_map


def _decoder_points(
    maps: torch.Tensor, spec: DecoderSpec, options: PeakOptions
) -> tuple[PeakColumns, np.ndarray]:
    # one peak more than kept: a map that has it had too many
    found = find_peaks(
        maps,
        spatial_dims=maps.ndim - 1,
        min_distance=options.min_distance,
        threshold_abs=options.threshold_abs,
        threshold_rel=options.threshold_rel,
        exclude_border=options.exclude_border,
        num_peaks=options.max_peaks + 1,
        refine=None if spec.decoder == "argmax" else spec.decoder,
        **spec.options(),
    )
    keep = (found.rank < options.max_peaks).cpu().numpy()
    more = (found.counts.reshape(-1) > options.max_peaks).cpu().numpy()
    spread = found.spread if found.spread is not None else torch.full_like(found.score, np.nan)
    columns = PeakColumns(
        map_index=found.map_index.cpu().numpy()[keep],
        rank=found.rank.cpu().numpy()[keep],
        coords=found.coords.double().cpu().numpy()[keep],
        score=found.score.double().cpu().numpy()[keep],
        spread=spread.double().cpu().numpy()[keep],
        border=found.border.cpu().numpy()[keep],
        skipped=found.skipped.cpu().numpy()[keep],
    )
    return columns, more
