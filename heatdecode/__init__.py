"""heatdecode: turn heatmaps into coordinates (hard argmax, soft-argmax), 2D and 3D.

The public API below is imported on first use (PEP 562), so ``import
heatdecode`` and the CLI's ``--help`` don't pay for torch; ``from heatdecode
import soft_argmax`` works as always.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: each public name and the module it lives in
_LAZY = {
    "Decoded": "heatdecode.decoders",
    "PointEstimates": "heatdecode.decoders",
    "SoftArgmax": "heatdecode.decoders",
    "argmax_decode": "heatdecode.decoders",
    "hard_argmax": "heatdecode.decoders",
    "soft_argmax": "heatdecode.decoders",
    "softargmax_decode": "heatdecode.decoders",
    "Peaks": "heatdecode.peaks",
    "find_peaks": "heatdecode.peaks",
    "BackgroundDominatedWarning": "heatdecode.status",
    "DECODERS": "heatdecode.registry",
    "decode": "heatdecode.registry",
    "LocalSoftArgmax": "heatdecode.refine",
    "dark_decode": "heatdecode.refine",
    "local_soft_argmax": "heatdecode.refine",
    "local_softargmax_decode": "heatdecode.refine",
    "parabola_decode": "heatdecode.refine",
    "quarter_decode": "heatdecode.refine",
}

__all__ = [
    "DECODERS",
    "BackgroundDominatedWarning",
    "Decoded",
    "LocalSoftArgmax",
    "Peaks",
    "PointEstimates",
    "SoftArgmax",
    "__version__",
    "argmax_decode",
    "dark_decode",
    "decode",
    "find_peaks",
    "hard_argmax",
    "local_soft_argmax",
    "local_softargmax_decode",
    "parabola_decode",
    "quarter_decode",
    "soft_argmax",
    "softargmax_decode",
]

if TYPE_CHECKING:  # what type checkers and IDEs see; at run time, __getattr__
    from heatdecode.decoders import (
        Decoded,
        PointEstimates,
        SoftArgmax,
        argmax_decode,
        hard_argmax,
        soft_argmax,
        softargmax_decode,
    )
    from heatdecode.peaks import Peaks, find_peaks
    from heatdecode.refine import (
        LocalSoftArgmax,
        dark_decode,
        local_soft_argmax,
        local_softargmax_decode,
        parabola_decode,
        quarter_decode,
    )
    from heatdecode.registry import DECODERS, decode
    from heatdecode.status import BackgroundDominatedWarning


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'heatdecode' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # next time, a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
