"""Coordinate frames, stride and spacing: encode a peak at a known point, decode, get it back."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from heatdecode.family import decode
from heatdecode.frames import Frame, apply_frame, parse_per_axis
from heatdecode.sample import gaussian

SHAPE_2D = (37, 52)  # H, W
SHAPE_3D = (19, 26, 33)  # D, H, W


def to_pixel(point: np.ndarray, sizes_xyz: np.ndarray, coords: str) -> np.ndarray:
    """Each convention's definition, inverted by hand (independent of heatdecode)."""
    if coords == "pixel":
        return point
    if coords == "half-pixel":
        return point - 0.5
    if coords == "normalized":  # ±1 at the outer pixel centres
        return (point + 1) / 2 * (sizes_xyz - 1)
    if coords == "normalized-edges":  # ±1 at the outer pixel edges
        return ((point + 1) * sizes_xyz - 1) / 2
    raise AssertionError(coords)


def decode_pixel(heatmap: np.ndarray) -> np.ndarray:
    """The peak in the pixel frame; parabola is exact on a Gaussian."""
    out = decode(torch.tensor(heatmap)[None], "parabola", spatial_dims=heatmap.ndim)
    return out.coords[0].numpy()


@pytest.mark.parametrize("coords", ["pixel", "half-pixel", "normalized", "normalized-edges"])
@pytest.mark.parametrize("shape", [SHAPE_2D, SHAPE_3D])
def test_round_trip_in_every_convention(coords, shape, rng):
    sizes = np.array(shape[::-1], dtype=float)
    for _ in range(5):
        pixel_truth = rng.uniform(4, sizes - 5)
        point = apply_frame(pixel_truth[None], shape, Frame(coords=coords))[0]
        np.testing.assert_allclose(to_pixel(point, sizes, coords), pixel_truth, atol=1e-9)
        heatmap = gaussian(shape, pixel_truth, 2.0)
        got = apply_frame(decode_pixel(heatmap)[None], shape, Frame(coords=coords))[0]
        np.testing.assert_allclose(got, point, atol=1e-6)


@pytest.mark.parametrize(("offset", "shift"), [("centre", 1.5), ("none", 0.0)])
def test_stride_maps_heatmap_pixels_to_image_pixels(offset, shift, rng):
    stride = 4.0
    image_point = rng.uniform(20, 150, size=2)
    # a heatmap target rendered the way each convention assumes
    heatmap_point = (image_point - shift) / stride
    heatmap = gaussian(SHAPE_2D, heatmap_point, 2.0)
    frame = Frame(stride=(stride,), stride_offset=offset)
    got = apply_frame(decode_pixel(heatmap)[None], SHAPE_2D, frame)[0]
    np.testing.assert_allclose(got, image_point, atol=1e-6)


def test_stride_per_axis_and_normalized_relative_to_the_image():
    corners = np.array([[0.0, 0.0], [51.0, 36.0]])  # first and last heatmap pixel
    frame = Frame(coords="normalized-edges", stride=(4.0, 2.0))
    got = apply_frame(corners, SHAPE_2D, frame)
    # image: 208 x 74 px; heatmap pixel 0 covers image pixels 0..3 (x) and 0..1 (y)
    expected_first = [(2 * 1.5 + 1) / 208 - 1, (2 * 0.5 + 1) / 74 - 1]
    np.testing.assert_allclose(got[0], expected_first)
    np.testing.assert_allclose(got[1], [-expected_first[0], -expected_first[1]])


def test_spacing_gives_physical_units():
    point = np.array([[10.0, 4.0, 2.0]])
    got = apply_frame(point, SHAPE_3D, Frame(spacing=(0.5, 0.5, 2.5)))
    np.testing.assert_allclose(got, [[5.0, 2.0, 5.0]])
    with pytest.raises(ValueError, match="normalized"):
        Frame(coords="normalized", spacing=(1.0,))


def test_bad_frames_are_refused():
    with pytest.raises(ValueError, match="coords"):
        Frame(coords="mm")
    with pytest.raises(ValueError, match="stride"):
        Frame(stride=(0.0,))
    with pytest.raises(ValueError, match="3 axes"):
        apply_frame(np.zeros((1, 3)), SHAPE_3D, Frame(stride=(2.0, 2.0)))
    assert parse_per_axis("4", "--stride") == (4.0,)
    for bad in ("", "a,b", "1,2,3,4", "-1", "nan"):
        with pytest.raises(ValueError, match="--stride"):
            parse_per_axis(bad, "--stride")


@pytest.mark.parametrize("name", ["stride", "spacing"])
def test_strides_and_spacings_whose_coordinates_overflow_are_refused(name):
    """Issue 8, item 8: --stride 1e308 turned every coordinate into ±inf/NaN,
    written as empty numbers with status ok; the cap is 1e12."""
    from heatdecode.frames import SCALE_MAX

    with pytest.raises(ValueError, match="at most 1e\\+12"):
        Frame(**{name: (1e308,)})
    with pytest.raises(ValueError, match="at most 1e\\+12"):
        parse_per_axis("1e308", f"--{name}")
    frame = Frame(stride=(SCALE_MAX,), spacing=(SCALE_MAX,))
    corner = np.array([[1e6, 1e6, 1e6]])  # far corner of a huge volume
    assert np.isfinite(apply_frame(corner, (10**6 + 1,) * 3, frame)).all()
