"""Overlay pictures: markers where the decoders landed, panels per map and per projection."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from heatdecode.overlays import MARKERS, MAX_PANELS, colorize, overlay_path, render_overlay

WHITE = np.array(MARKERS["argmax"][1])
CYAN = np.array(MARKERS["softargmax"][1])


def pixels_of(image, colour: np.ndarray, bottom: int) -> np.ndarray:
    """(row, col) of every pixel of exactly ``colour`` between the title and the legend."""
    top = 30  # the title strip, also drawn in white
    array = np.asarray(image)[top:bottom]
    return np.argwhere((array == colour).all(-1)) + [top, 0]


def test_argmax_cross_is_drawn_over_its_pixel():
    maps = np.zeros((1, 12, 20))
    maps[0, 3, 5] = 1
    image = render_overlay(maps, {"argmax": np.array([[5.0, 3.0]])}, "t")
    white = pixels_of(image, WHITE, image.height - 26)
    # panel origin (6, 30), a 16 px caption, zoom 10: pixel centre (5, 3) is at (61, 81)
    row, col = white.mean(0)
    assert col == pytest.approx(61, abs=1.5)
    assert row == pytest.approx(81, abs=1.5)


def test_decoders_get_distinct_markers_and_a_legend():
    maps = np.zeros((1, 30, 40))
    maps[0, 10, 10] = 1
    points = {"argmax": np.array([[10.0, 10.0]]), "softargmax": np.array([[25.0, 20.0]])}
    image = render_overlay(maps, points, "t", legend={"softargmax": "soft-argmax"})
    legend_strip = np.asarray(image)[image.height - 26 :]
    assert (legend_strip == CYAN).all(-1).any() and (legend_strip == WHITE).all(-1).any()
    cyan = pixels_of(image, CYAN, image.height - 26)
    white = pixels_of(image, WHITE, image.height - 26)
    assert cyan[:, 1].mean() > white[:, 1].mean()  # soft-argmax is to the right (x=25 vs 10)
    assert cyan[:, 0].mean() > white[:, 0].mean()  # and lower (y=20 vs 10)


def test_non_finite_points_are_not_drawn():
    maps = np.zeros((1, 10, 10))
    image = render_overlay(maps, {"argmax": np.array([[np.nan, np.nan]])}, "t")
    assert len(pixels_of(image, WHITE, image.height - 26)) == 0


def test_volumes_get_three_projections_side_by_side():
    volume = render_overlay(np.zeros((1, 10, 20, 30)), {}, "t")
    # x-y (20x30) and x-z (10x30) panels are 200 px wide, z-y (20x10) 100 px
    assert volume.width >= 200 + 200 + 100


def test_many_maps_are_capped_and_say_so():
    image = render_overlay(np.random.default_rng(0).random((MAX_PANELS + 10, 8, 8)), {}, "many")
    assert image.width * image.height < 4000 * 4000


def test_colorize_stretches_each_map_and_blacks_out_nan():
    rgb = colorize(np.array([[0.0, 5.0], [10.0, np.nan]]))
    assert rgb.shape == (2, 2, 3) and rgb.dtype == np.uint8
    assert rgb[0, 0].sum() < rgb[0, 1].sum() < rgb[1, 0].sum()
    assert (rgb[1, 1] == 0).all()
    assert (colorize(np.full((3, 3), 7.0)) == colorize(np.zeros((3, 3)))).all()


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("a.npy", "o/overlays/a.npy.png"),
        ("sub/dir/b.png", "o/overlays/sub/dir/b.png.png"),
        ("m.npz:key", "o/overlays/m.npz__key.png"),
        ("/abs/path/x.npy", "o/overlays/abs/path/x.npy.png"),
        ("../../escape.npy", "o/overlays/escape.npy.png"),
    ],
)
def test_overlay_paths_stay_inside_the_output_folder(name, expected):
    assert overlay_path(Path("o"), name).as_posix() == expected


def test_overlay_path_of_a_name_too_long_for_a_file_is_cut_and_hashed():
    import os

    long = "é" * 120 + ".npy"  # 244 bytes: legal, with .png it is not
    path = overlay_path(Path("out"), f"sub/{long}")
    assert path.parent == Path("out/overlays/sub")
    assert len(os.fsencode(path.name)) <= 255 and path.name.endswith(".png")
    assert path.name.startswith("é" * 50)
    other = overlay_path(Path("out"), f"sub/{long[:-5]}x.npy")
    assert other != path  # the hash tells names with the same prefix apart
    assert overlay_path(Path("out"), "a" * 247 + ".npy").name == "a" * 247 + ".npy.png"  # fits


def test_the_legend_wraps_so_every_decoder_drawn_is_listed():
    from heatdecode.overlays import _legend_layout

    entries = tuple(
        (name, f"{name} (beta=20, minmax, r=2)")
        for name in ("argmax", "softargmax", "local-softargmax", "quarter", "parabola", "dark")
    )
    places, height = _legend_layout(entries, 360, 6)
    assert len(places) == 6 and len({y for _, y in places}) > 1
    assert all(x < 360 for x, _ in places)
    assert height > 26


def test_a_panel_title_carries_the_score_and_a_flagged_status(tmp_path):
    from heatdecode.loading import Source
    from heatdecode.options import DecoderSelection
    from heatdecode.overlay_writer import _caption
    from heatdecode.pipeline import decode_sources

    maps = np.zeros((2, 20, 24), np.float32)
    maps[:, 5, 6] = 0.75
    maps[1, 15, 20] = 0.7  # a second peak: multimodal
    np.save(tmp_path / "m.npy", maps)
    only = DecoderSelection(decoders=("argmax",))
    done = decode_sources([Source(tmp_path / "m.npy", "m.npy")], only)
    result = done.results[0]
    assert _caption(result, 0) == "c0 0.75"
    assert _caption(result, 1) == "c1 0.75 multimodal"


def test_flagged_overlays_draw_only_files_with_a_flagged_map_and_it_comes_first(tmp_path):
    from heatdecode.cli import main
    from heatdecode.loading import Source
    from heatdecode.options import DecoderSelection
    from heatdecode.overlay_writer import panel_order
    from heatdecode.pipeline import decode_sources

    clean = np.zeros((3, 20, 24), np.float32)
    clean[:, 5, 6] = 1.0
    odd = clean.copy()
    odd[2, 15, 20] = 0.9  # channel 2 has a second peak: multimodal
    np.save(tmp_path / "clean.npy", clean)
    np.save(tmp_path / "odd.npy", odd)
    out = tmp_path / "out"
    args = ["run", str(tmp_path), "--out", str(out), "-q", "-d", "argmax"]
    assert main([*args, "--overlays", "flagged"]) == 0
    assert [p.name for p in (out / "overlays").glob("*.png")] == ["odd.npy.png"]
    only = DecoderSelection(decoders=("argmax",))
    result = decode_sources([Source(tmp_path / "odd.npy", "odd.npy")], only).results[0]
    assert panel_order(result).tolist() == [2, 0, 1]
