"""heatdecode: turn heatmaps into coordinates (hard argmax, soft-argmax), 2D and 3D."""

from heatdecode.decoders import (
    Decoded,
    SoftArgmax,
    argmax_decode,
    hard_argmax,
    soft_argmax,
    softargmax_decode,
)
from heatdecode.family import DECODERS, decode
from heatdecode.refine import (
    LocalSoftArgmax,
    dark_decode,
    local_soft_argmax,
    local_softargmax_decode,
    parabola_decode,
    quarter_decode,
)

__version__ = "0.1.0"

__all__ = [
    "DECODERS",
    "Decoded",
    "LocalSoftArgmax",
    "SoftArgmax",
    "__version__",
    "argmax_decode",
    "dark_decode",
    "decode",
    "hard_argmax",
    "local_soft_argmax",
    "local_softargmax_decode",
    "parabola_decode",
    "quarter_decode",
    "soft_argmax",
    "softargmax_decode",
]
