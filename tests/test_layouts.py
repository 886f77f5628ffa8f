"""Axis layouts: parsing layout strings and bringing arrays to canonical order.

The canonical order is ``(N, C, H, W)`` for images and ``(N, C, D, H, W)`` for
volumes. The expected arrays here are built independently of the library: every
element encodes its own (n, c, d, h, w) position as a number, so an array that
comes out with two axes swapped (even two of equal size) can't match.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from heatdecode.layouts import (
    AUTO,
    LayoutError,
    parse_layout,
    resolve_layout,
    spatial_dims,
    to_canonical,
)

# Distinct, non-square/non-cubic sizes: a swapped axis changes the shape too.
SIZES = {"N": 2, "C": 3, "D": 4, "H": 5, "W": 7}
# Each axis position gets its own decimal digit (all sizes are below 10).
WEIGHTS = {"N": 10_000, "C": 1_000, "D": 100, "H": 10, "W": 1}


def encoded(layout: str, sizes: dict[str, int]) -> np.ndarray:
    """An array saved in ``layout`` whose element at (n, c, d, h, w) is the number ncdhw."""
    shape = [sizes[letter] for letter in layout]
    grids = np.indices(shape)
    return sum((grids[i] * WEIGHTS[letter] for i, letter in enumerate(layout)), np.zeros(shape))


def canonical_of(layout: str) -> str:
    return "NCDHW" if "D" in layout else "NCHW"


def expected_canonical(layout: str, sizes: dict[str, int]) -> np.ndarray:
    """What ``to_canonical`` must return: a missing N or C is an axis of size 1."""
    full = {letter: (sizes[letter] if letter in layout else 1) for letter in "NCDHW"}
    return encoded(canonical_of(layout), full)


# --------------------------------------------------------------------------- parse_layout


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("HW", "HW"),
        ("chw", "CHW"),
        ("Nchw", "NCHW"),
        ("  nhwc ", "NHWC"),
        ("NCHWD", "NCHWD"),
        ("dhw", "DHW"),
        ("WH", "WH"),
    ],
)
def test_parse_layout_accepts_any_order_of_distinct_letters_and_upper_cases_it(text, expected):
    assert parse_layout(text) == expected


@pytest.mark.parametrize("text", ["auto", "AUTO", " Auto "])
def test_parse_layout_auto_in_any_case(text):
    assert parse_layout(text) == AUTO == "auto"


@pytest.mark.parametrize(
    ("text", "mentions"),
    [
        ("XHW", "'X'"),
        ("CHWT", "'T'"),
        ("NC HW", "' '"),
        ("C1HW", "'1'"),
        ("HWÄ", "'Ä'"),
    ],
)
def test_parse_layout_rejects_unknown_letters_naming_the_letter(text, mentions):
    with pytest.raises(LayoutError, match="unknown letter") as info:
        parse_layout(text)
    assert mentions in str(info.value)
    assert "N, C, D, H, W" in str(info.value)


@pytest.mark.parametrize(("text", "letter"), [("HHW", "H"), ("CHWC", "C"), ("nchwn", "N")])
def test_parse_layout_rejects_repeated_letters_naming_the_letter(text, letter):
    with pytest.raises(LayoutError, match=f"repeats the letter {letter}"):
        parse_layout(text)


@pytest.mark.parametrize("text", ["", "   ", "H", "W", "CH", "NCW", "NCD", "DW"])
def test_parse_layout_needs_both_h_and_w(text):
    with pytest.raises(LayoutError, match="needs both H and W"):
        parse_layout(text)


def test_layout_error_is_a_value_error_with_a_one_line_message():
    with pytest.raises(ValueError) as info:
        parse_layout("HHW")
    assert isinstance(info.value, LayoutError)
    assert "\n" not in str(info.value)


# --------------------------------------------------------------------------- resolve_layout


@pytest.mark.parametrize(("ndim", "expected"), [(2, "HW"), (3, "CHW"), (4, "NCHW"), (5, "NCDHW")])
def test_auto_layout_by_number_of_axes(ndim, expected):
    assert resolve_layout(AUTO, ndim) == expected


@pytest.mark.parametrize("ndim", [0, 1, 6, 7])
def test_auto_layout_cannot_guess_other_numbers_of_axes(ndim):
    with pytest.raises(LayoutError, match=f"cannot guess the layout of a {ndim}-D array"):
        resolve_layout(AUTO, ndim)


def test_auto_layout_prefers_a_formats_default_of_the_right_length():
    # A multi-page TIFF is a volume: DHW, not CHW.
    assert resolve_layout(AUTO, 3, default="DHW") == "DHW"
    # A default that doesn't fit the array is ignored.
    assert resolve_layout(AUTO, 2, default="DHW") == "HW"
    assert resolve_layout(AUTO, 4, default="DHW") == "NCHW"


def test_explicit_layout_wins_over_the_default():
    assert resolve_layout("CHW", 3, default="DHW") == "CHW"


@pytest.mark.parametrize(("layout", "ndim"), [("HW", 3), ("CHW", 2), ("NCHW", 5), ("NCDHW", 4)])
def test_explicit_layout_must_have_one_letter_per_axis(layout, ndim):
    with pytest.raises(LayoutError) as info:
        resolve_layout(layout, ndim)
    message = str(info.value)
    assert message == f"layout {layout} has {len(layout)} axes but the array has {ndim}"


@pytest.mark.parametrize(
    ("layout", "dims"), [("HW", 2), ("NCHW", 2), ("HWC", 2), ("DHW", 3), ("NCHWD", 3)]
)
def test_spatial_dims_is_three_exactly_when_there_is_a_depth_axis(layout, dims):
    assert spatial_dims(layout) == dims


# --------------------------------------------------------------------------- to_canonical

LAYOUT_FAMILIES = [
    # images
    "HW",
    "WH",
    "CHW",
    "HWC",
    "HCW",
    "WHC",
    "NHW",
    "NCHW",
    "NHWC",
    "CNHW",
    "HWNC",
    "WCNH",
    # volumes
    "DHW",
    "HWD",
    "WDH",
    "CDHW",
    "DHWC",
    "NDHW",
    "NCDHW",
    "NDHWC",
    "NCHWD",
    "CNWHD",
    "WHDCN",
]


@pytest.mark.parametrize("layout", LAYOUT_FAMILIES)
def test_to_canonical_puts_every_element_where_the_layout_says(layout):
    saved = encoded(layout, SIZES)
    out = to_canonical(saved, layout)
    expected = expected_canonical(layout, SIZES)
    assert out.shape == expected.shape
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("layout", LAYOUT_FAMILIES)
def test_to_canonical_undoes_a_transpose_from_canonical(layout):
    # Build the canonical array first, save it in `layout` with np.transpose, read it back.
    canonical = canonical_of(layout)
    rng = np.random.default_rng(0)
    full = {letter: (SIZES[letter] if letter in layout else 1) for letter in "NCDHW"}
    original = rng.random([full[letter] for letter in canonical])
    # drop the size-1 N/C axes the saved layout doesn't have, then reorder
    kept = "".join(letter for letter in canonical if letter in layout)
    squeezed = original.reshape([full[letter] for letter in kept])
    saved = np.transpose(squeezed, [kept.index(letter) for letter in layout])
    assert saved.shape == tuple(SIZES[letter] for letter in layout)
    np.testing.assert_array_equal(to_canonical(saved, layout), original)


@pytest.mark.parametrize(
    ("shape", "layout", "expected"),
    [
        ((5, 7), "HW", (1, 1, 5, 7)),
        ((7, 5), "WH", (1, 1, 5, 7)),
        ((3, 5, 7), "CHW", (1, 3, 5, 7)),
        ((5, 7, 3), "HWC", (1, 3, 5, 7)),
        ((2, 5, 7), "NHW", (2, 1, 5, 7)),
        ((2, 5, 7, 3), "NHWC", (2, 3, 5, 7)),
        ((4, 5, 7), "DHW", (1, 1, 4, 5, 7)),
        ((2, 3, 5, 7, 4), "NCHWD", (2, 3, 4, 5, 7)),
    ],
)
def test_to_canonical_shapes(shape, layout, expected):
    assert to_canonical(np.zeros(shape), layout).shape == expected


def test_to_canonical_returns_a_view_not_a_copy():
    saved = encoded("NHWC", SIZES)
    out = to_canonical(saved, "NHWC")
    assert np.shares_memory(out, saved)


@pytest.mark.parametrize(("shape", "layout"), [((5, 7), "CHW"), ((3, 5, 7), "HW"), ((5,), "HW")])
def test_to_canonical_rejects_a_layout_of_the_wrong_length(shape, layout):
    with pytest.raises(LayoutError, match=f"has {len(layout)} axes but the array has {len(shape)}"):
        to_canonical(np.zeros(shape), layout)


@st.composite
def layouts_and_sizes(draw):
    """A random layout (H and W, optionally N, C, D, in any order) and random axis sizes."""
    letters = ["H", "W"] + [letter for letter in "NCD" if draw(st.booleans())]
    layout = "".join(draw(st.permutations(letters)))
    sizes = {letter: draw(st.integers(1, 4)) for letter in "NCDHW"}
    return layout, sizes


@settings(max_examples=150, deadline=None)
@given(layouts_and_sizes())
def test_to_canonical_random_layouts_and_sizes(layout_and_sizes):
    # Sizes may repeat or be 1 here; the encoded values still tell every axis apart.
    layout, sizes = layout_and_sizes
    assert parse_layout(layout.lower()) == layout
    out = to_canonical(encoded(layout, sizes), layout)
    expected = expected_canonical(layout, sizes)
    assert out.shape == expected.shape
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize(
    ("shape", "hint"),
    [
        ((6, 32, 24, 5), "--layout NHWC"),  # pose maps saved channels last
        ((32, 24, 5), "--layout HWC"),
        ((5, 40, 48, 48), "--layout CDHW"),  # a CT-shaped C, D, H, W set
    ],
)
def test_an_auto_guess_that_looks_wrong_is_warned_about_and_recorded(tmp_path, capsys, shape, hint):
    import json

    from heatdecode.cli import main

    np.save(tmp_path / "m.npy", np.random.default_rng(0).random(shape, dtype=np.float32))
    out = tmp_path / "out"
    assert main(["run", str(tmp_path / "m.npy"), "--out", str(out), "-q", "--no-overlays"]) == 0
    assert hint in capsys.readouterr().err
    [entry] = json.loads((out / "coordinates.json").read_text())["files"]
    assert any(hint in w for w in entry["warnings"])


@pytest.mark.parametrize("shape", [(6, 17, 32, 24), (17, 32, 24), (2, 3, 20, 28, 36)])
def test_ordinary_shapes_get_no_layout_warning(shape):
    from heatdecode.layouts import AUTO_LAYOUTS, doubtful_guess

    assert doubtful_guess(shape, AUTO_LAYOUTS[len(shape)]) is None
