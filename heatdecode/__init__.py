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

__version__ = "0.1.0"

__all__ = [
    "DECODERS",
    "Decoded",
    "SoftArgmax",
    "__version__",
    "argmax_decode",
    "decode",
    "hard_argmax",
    "soft_argmax",
    "softargmax_decode",
]
