"""Deprecated: the old name of :mod:`heatdecode.registry`, kept so existing imports work.

``from heatdecode.family import DECODERS, decode, check_options, resolve_options``
keeps working; new code imports them from :mod:`heatdecode.registry` (or
``DECODERS`` and ``decode`` from :mod:`heatdecode`).

Pure core: imports only the standard library, numpy, torch and other core
modules; no I/O and no module state, so it can be used without the CLI stack
(``tests/test_package.py``).
"""

from __future__ import annotations

from heatdecode.registry import (
    DECODERS,
    DecoderInfo,
    RegistryEntry,
    check_options,
    decode,
    resolve_options,
)

__all__ = [
    "DECODERS",
    "DecoderInfo",
    "RegistryEntry",
    "check_options",
    "decode",
    "resolve_options",
]
