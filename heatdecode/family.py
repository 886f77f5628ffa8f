"""The decoder family: every decoder by name, with one signature.

``decode(heatmaps, name, ...)`` runs any decoder; :data:`DECODERS` says which
options each one takes. All return a :class:`~heatdecode.decoders.Decoded` in
the same coordinate frame, so they are directly comparable.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import Tensor

from heatdecode.decoders import Decoded, argmax_decode, softargmax_decode


@dataclass(frozen=True)
class DecoderInfo:
    """A decoder's entry: its function, the options it takes, and what it is."""

    function: Callable[..., Decoded]
    options: tuple[str, ...]
    differentiable: bool
    summary: str


DECODERS: dict[str, DecoderInfo] = {
    "argmax": DecoderInfo(argmax_decode, (), False, "index of the maximum (integer)"),
    "softargmax": DecoderInfo(
        softargmax_decode,
        ("beta", "normalize"),
        True,
        "Σ i·softmax(β·x̂) over the whole map",
    ),
}


def decode(
    heatmaps: Tensor,
    decoder: str,
    *,
    spatial_dims: int = 2,
    coords: str = "pixel",
    beta: float = 1.0,
    normalize: str = "none",
    radius: int = 2,
    sigma: float | None = None,
) -> Decoded:
    """Run the decoder named ``decoder`` (a key of :data:`DECODERS`).

    Options a decoder doesn't take are ignored, so one call shape serves all.

    Shape:
        ``(..., H, W)`` or ``(..., D, H, W)`` -> ``Decoded`` with ``coords``
        ``(..., spatial_dims)`` ordered (x, y[, z]).

    Example:
        >>> import torch
        >>> decode(torch.eye(3), "argmax").coords.tolist()
        [0.0, 0.0]
    """
    info = DECODERS.get(decoder)
    if info is None:
        raise ValueError(f"unknown decoder {decoder!r}; choose from {', '.join(DECODERS)}")
    given = {"beta": beta, "normalize": normalize, "radius": radius, "sigma": sigma}
    options = {name: given[name] for name in info.options}
    return info.function(heatmaps, spatial_dims=spatial_dims, coords=coords, **options)
