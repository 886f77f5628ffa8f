"""heatdecode.registry: every decoder by name; heatdecode.family, its old name, re-exports it."""

from __future__ import annotations

import pytest
import torch

from heatdecode import registry
from heatdecode.options import SAVED_MAP_DEFAULTS
from heatdecode.registry import DECODERS, RegistryEntry, decode

FRAMES = ("pixel", "half-pixel", "normalized", "normalized-edges")


def test_family_is_the_registry_under_its_old_name():
    from heatdecode import family
    from heatdecode.family import DECODERS as OLD_DECODERS
    from heatdecode.family import DecoderInfo, check_options, resolve_options
    from heatdecode.family import decode as old_decode

    assert OLD_DECODERS is DECODERS and old_decode is decode
    assert check_options is registry.check_options and resolve_options is registry.resolve_options
    assert DecoderInfo is RegistryEntry is family.RegistryEntry
    assert set(family.__all__) == set(registry.__all__)


def test_the_top_level_decode_and_decoders_are_the_registrys():
    import heatdecode

    assert heatdecode.decode is decode and heatdecode.DECODERS is DECODERS


def test_every_entry_is_a_registry_entry():
    for name, entry in DECODERS.items():
        assert isinstance(entry, RegistryEntry), name
        assert callable(entry.function) and entry.summary


@pytest.mark.parametrize("decoder", list(DECODERS))
@pytest.mark.parametrize("frame", FRAMES)
def test_decode_takes_frame_or_its_old_name_coords(decoder, frame):
    maps = torch.rand(3, 7, 9, generator=torch.Generator().manual_seed(5))
    new = decode(maps, decoder, frame=frame, flags=False)
    old = decode(maps, decoder, coords=frame, flags=False)
    # decode's defaults are the CLI's (SAVED_MAP_DEFAULTS), the functions' the library's
    cli = registry.resolve_options(decoder, **SAVED_MAP_DEFAULTS.get(decoder, {}))
    direct = DECODERS[decoder].function(maps, frame=frame, **cli)
    for a, b, c in zip(new, old, direct, strict=True):
        assert (a is None and b is None and c is None) or (torch.equal(a, b) and torch.equal(a, c))
    with pytest.raises(TypeError, match="not both"):
        decode(maps, decoder, frame=frame, coords=frame)


def test_decode_defaults_to_the_pixel_frame():
    maps = torch.rand(2, 5, 6, generator=torch.Generator().manual_seed(6))
    for decoder in DECODERS:
        assert torch.equal(
            decode(maps, decoder).coords, decode(maps, decoder, frame="pixel").coords
        )


def test_an_unknown_decoder_is_named_before_a_bad_frame():
    with pytest.raises(ValueError, match="unknown decoder"):
        decode(torch.zeros(3, 4), "centroid", frame="grid")
    with pytest.raises(ValueError, match="coords must be one of"):
        decode(torch.zeros(3, 4), "argmax", frame="grid")
