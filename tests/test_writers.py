"""CSV/JSON writing: columns, number formats, awkward names, atomic replacement."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from heatdecode.frames import Frame
from heatdecode.results import (
    ArrayResult,
    DecoderColumns,
    FileRecord,
    MapColumns,
    PointRecord,
    iter_points,
)
from heatdecode.writers import (
    CSV_COLUMNS,
    display_name,
    iter_rows,
    json_rows,
    write_csv,
    write_json,
)


def decoded(
    name: str, coords: np.ndarray, spatial: tuple[int, ...], channels: int = 1
) -> ArrayResult:
    m = len(coords)
    record = FileRecord(
        name=name,
        source=name.partition(":")[0],
        layout="CHW",
        shape=(channels, *spatial),
        samples=m // channels,
        channels=channels,
        spatial_shape=spatial,
    )
    columns = {
        "argmax": output(np.round(coords), np.full(m, np.nan)),
        "softargmax": output(coords, np.full(m, 0.5)),
    }
    return ArrayResult(record, columns, MapColumns.empty(m))


def output(coords: np.ndarray, spread: np.ndarray) -> DecoderColumns:
    m = len(coords)
    none = np.zeros(m, bool)
    return DecoderColumns(coords, np.ones(m), spread, none.copy(), none.copy(), none.copy())


def test_rows_come_per_map_then_decoder_with_sample_and_channel():
    result = decoded("f.npy", np.array([[1.2, 2.6], [3.0, 4.4], [0.1, 0.2], [5.5, 1.0]]), (6, 8), 2)
    rows = list(iter_rows([result]))
    assert [(r["sample"], r["channel"], r["decoder"]) for r in rows] == [
        (0, 0, "argmax"),
        (0, 0, "softargmax"),
        (0, 1, "argmax"),
        (0, 1, "softargmax"),
        (1, 0, "argmax"),
        (1, 0, "softargmax"),
        (1, 1, "argmax"),
        (1, 1, "softargmax"),
    ]
    assert rows[1]["x"] == pytest.approx(1.2) and rows[1]["z"] is None


def test_normalized_rows_use_the_map_shape():
    result = decoded("f.npy", np.array([[0.0, 5.0], [7.0, 0.0]]), (6, 8))
    frame = Frame(coords="normalized")
    rows = [r for r in iter_rows([result], frame) if r["decoder"] == "softargmax"]
    assert (rows[0]["x"], rows[0]["y"]) == (-1.0, 1.0)
    assert (rows[1]["x"], rows[1]["y"]) == (1.0, -1.0)


def test_status_takes_the_most_serious_flag():
    result = decoded("f.npy", np.zeros((4, 2)), (5, 5))
    result.per_map.multimodal[:] = True
    soft = result.columns["softargmax"]
    soft.low_contrast[1:] = True
    soft.skipped[2:] = True
    soft.border[3] = True
    statuses = [r["status"] for r in iter_rows([result]) if r["decoder"] == "softargmax"]
    assert statuses == ["multimodal", "low-contrast", "unrefined", "border"]
    result.per_map.flat[0] = True
    result.per_map.finite[1] = False
    statuses = [r["status"] for r in iter_rows([result]) if r["decoder"] == "argmax"]
    assert statuses == ["flat", "nonfinite", "multimodal", "multimodal"]


def test_nonfinite_maps_have_empty_numbers():
    result = decoded("f.npy", np.array([[1.0, 1.0], [2.0, 2.0]]), (4, 4))
    result.per_map.finite[1] = False
    rows = list(iter_rows([result]))
    assert rows[2]["status"] == "nonfinite" and rows[2]["x"] is None and rows[2]["score"] is None
    assert rows[0]["status"] == "ok"


@pytest.mark.parametrize(
    "name",
    [
        "plain.npy",
        "with,comma.npy",
        'quote"d.npy',
        "new\nline.npy",
        "carriage\rreturn.npy",  # csv leaves a lone \r bare unless the field is quoted
        "cr\r\nlf.npy",
        "=formula.npy",  # written as it is: see the README on spreadsheets
        "sp ace.npz:key",
        "ü.png",
    ],
)
def test_csv_and_json_round_trip_awkward_file_names(tmp_path, name):
    result = decoded(name, np.array([[1.5, 2.25]]), (4, 4))
    write_csv(tmp_path / "c.csv", iter_points([result]))
    with open(tmp_path / "c.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert [r["file"] for r in rows] == [name, name]
    assert (rows[1]["x"], rows[1]["y"], rows[1]["spread"]) == ("1.500000", "2.250000", "0.500000")
    write_json(tmp_path / "c.json", {"rows": json_rows(iter_points([result]))})
    assert json.loads((tmp_path / "c.json").read_text(encoding="utf-8"))["rows"][0]["file"] == name


def test_json_turns_nan_into_null(tmp_path):
    point = PointRecord("a.npy", 0, 0, "d", 0, (float("nan"), 1.0), float("inf"), None, "ok")
    write_json(tmp_path / "x.json", {"rows": json_rows([point])})
    [row] = json.loads((tmp_path / "x.json").read_text())["rows"]
    assert (row["x"], row["y"], row["score"]) == (None, 1.0, None)


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("\x1b[31mred.npy", "\\x1b[31mred.npy"),  # ANSI colour
        ("\x1b]0;PWNED\x07.npy", "\\x1b]0;PWNED\\x07.npy"),  # OSC: retitles the window
        ("c1\x9b2J.npy", "c1\\x9b2J.npy"),  # C1 CSI
        ("del\x7f.npy", "del\\x7f.npy"),
        ("evil\u202egnp.npy", "evil\\u202egnp.npy"),  # right-to-left override
        ("zero\u200bwidth.npy", "zero\\u200bwidth.npy"),
        ("line\u2028sep.npy", "line\\u2028sep.npy"),
        ("tab\tand\rcr.npy", "tab\\tand\\rcr.npy"),
        ("[bold]x.npy", "[bold]x.npy"),  # shown as it is: consoles print without markup
        ("ü 名.npy", "ü 名.npy"),
    ],
)
def test_display_name_escapes_everything_that_acts_on_a_terminal(name, shown):
    assert display_name(name) == shown
    assert display_name(shown) == shown  # idempotent: escaping twice changes nothing
    assert all(c.isprintable() for c in display_name(name))
