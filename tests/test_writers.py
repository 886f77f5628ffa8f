"""CSV/JSON writing: columns, number formats, awkward names, atomic replacement."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest

from heatdecode.frames import Frame
from heatdecode.pipeline import DecodedArray, DecoderOutput
from heatdecode.writers import (
    CSV_COLUMNS,
    atomic_write,
    display_name,
    iter_rows,
    json_rows,
    write_csv,
    write_json,
)


def decoded(
    name: str, coords: np.ndarray, spatial: tuple[int, ...], channels: int = 1
) -> DecodedArray:
    m = len(coords)
    return DecodedArray(
        name=name,
        source=name.partition(":")[0],
        layout="CHW",
        shape=(channels, *spatial),
        samples=m // channels,
        channels=channels,
        spatial_shape=spatial,
        warnings=[],
        outputs={
            "argmax": output(np.round(coords), np.full(m, np.nan)),
            "softargmax": output(coords, np.full(m, 0.5)),
        },
        flat=np.zeros(m, bool),
        finite=np.ones(m, bool),
        multimodal=np.zeros(m, bool),
    )


def output(coords: np.ndarray, spread: np.ndarray) -> DecoderOutput:
    m = len(coords)
    none = np.zeros(m, bool)
    return DecoderOutput(coords, np.ones(m), spread, none.copy(), none.copy(), none.copy())


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
    result.multimodal[:] = True
    soft = result.outputs["softargmax"]
    soft.low_contrast[1:] = True
    soft.skipped[2:] = True
    soft.border[3] = True
    statuses = [r["status"] for r in iter_rows([result]) if r["decoder"] == "softargmax"]
    assert statuses == ["multimodal", "low-contrast", "unrefined", "border"]
    result.flat[0] = True
    result.finite[1] = False
    statuses = [r["status"] for r in iter_rows([result]) if r["decoder"] == "argmax"]
    assert statuses == ["flat", "nonfinite", "multimodal", "multimodal"]


def test_nonfinite_maps_have_empty_numbers():
    result = decoded("f.npy", np.array([[1.0, 1.0], [2.0, 2.0]]), (4, 4))
    result.finite[1] = False
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
    write_csv(tmp_path / "c.csv", iter_rows([result]))
    with open(tmp_path / "c.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert [r["file"] for r in rows] == [name, name]
    assert (rows[1]["x"], rows[1]["y"], rows[1]["spread"]) == ("1.500000", "2.250000", "0.500000")
    write_json(tmp_path / "c.json", {"rows": json_rows(iter_rows([result]))})
    assert json.loads((tmp_path / "c.json").read_text(encoding="utf-8"))["rows"][0]["file"] == name


def test_json_turns_nan_into_null(tmp_path):
    write_json(tmp_path / "x.json", {"rows": json_rows([{"x": float("nan"), "y": 1.0}])})
    assert json.loads((tmp_path / "x.json").read_text()) == {"rows": [{"x": None, "y": 1.0}]}


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "out.csv"
    target.write_text("old complete content\n")

    def broken(fh) -> None:
        fh.write("half a ")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, broken)
    assert target.read_text() == "old complete content\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv"]  # no temp file left


def test_atomic_write_honours_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write(tmp_path / "f.txt", lambda fh: fh.write("x"))
    finally:
        os.umask(old)
    assert (Path(tmp_path / "f.txt").stat().st_mode & 0o777) == 0o644


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


def test_atomic_write_takes_any_legal_name(tmp_path):
    """The temporary name is short, so a 255-byte final name still works."""
    path = tmp_path / ("n" * 255)
    atomic_write(path, lambda fh: fh.write("ok"))
    assert path.read_text() == "ok"
    assert os.listdir(tmp_path) == [path.name]


def test_atomic_write_under_a_root_never_follows_a_symlinked_folder(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    root = tmp_path / "out"
    (root / "overlays").mkdir(parents=True)
    (root / "overlays" / "sub").symlink_to(elsewhere)
    with pytest.raises(OSError, match="symlink"):
        atomic_write(root / "overlays" / "sub" / "x.png", lambda fh: fh.write("x"), root=root)
    assert list(elsewhere.iterdir()) == []
    # missing folders are created, one by one
    atomic_write(root / "overlays" / "new" / "deep" / "x.png", lambda fh: fh.write("x"), root=root)
    assert (root / "overlays" / "new" / "deep" / "x.png").read_text() == "x"


def test_atomic_write_replaces_a_planted_symlink_instead_of_writing_through_it(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    root = tmp_path / "out"
    root.mkdir()
    (root / "coordinates.csv").symlink_to(victim)
    atomic_write(root / "coordinates.csv", lambda fh: fh.write("new"), root=root)
    assert victim.read_text() == "precious"
    assert not (root / "coordinates.csv").is_symlink()
    assert (root / "coordinates.csv").read_text() == "new"
