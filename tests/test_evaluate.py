"""Scoring against ground truth: hand-computed statistics, missing keys, files in and out."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from heatdecode.cli.render import metrics_table
from heatdecode.evaluate import (
    FIELD_DESCRIPTIONS,
    METRICS_COLUMNS,
    METRICS_SCHEMA,
    Evaluation,
    evaluate,
    read_points,
    read_truth,
    write_metrics,
)
from heatdecode.results import PointRecord
from heatdecode.sample import write_sample, write_synthetic
from heatdecode.writers import write_csv


def truth_row(file, x, y, z=None, sample=0, channel=0):
    return {"file": file, "sample": sample, "channel": channel, "x": x, "y": y, "z": z}


def row(file, decoder, x, y, z=None, sample=0, channel=0, status="ok"):
    """A decoded point; no x/y (None, or an empty CSV cell) means not decoded."""
    empty = x in (None, "") or y in (None, "")
    coords = None if empty else tuple(float(v) for v in (x, y, z) if v is not None)
    return PointRecord(file, sample, channel, decoder, 0, coords, 1.0, None, status)


# Five maps whose argmax is off by (dx, dy) = (0, 0), (0.5, 0), (0, -1), (-2, 0), (3, 4):
# Euclidean errors 0, 0.5, 1, 2, 5, so
#   mean 8.5 / 5 = 1.7, median 1, max 5,
#   p95 (linear, rank 0.95·4 = 3.8): 2 + 0.8·(5 − 2) = 4.4,
#   bias x (0 + 0.5 + 0 − 2 + 3) / 5 = 0.3, bias y (0 + 0 − 1 + 0 + 4) / 5 = 0.6,
# plus a sixth map that wasn't decoded (NaN in it): PCK over 6 maps:
#   ≤0.5: 2/6, ≤1: 3/6, ≤2: 4/6.
OFFSETS = [(0.0, 0.0), (0.5, 0.0), (0.0, -1.0), (-2.0, 0.0), (3.0, 4.0)]


@pytest.fixture
def hand_made():
    truth = [truth_row("maps.npy", 10.0 + k, 20.0, sample=k) for k in range(6)]
    rows = [
        row("maps.npy", "argmax", 10.0 + k + dx, 20.0 + dy, sample=k)
        for k, (dx, dy) in enumerate(OFFSETS)
    ]
    rows.append(row("maps.npy", "argmax", None, None, sample=5, status="nonfinite"))
    return rows, truth


def test_statistics_match_the_hand_computed_numbers(hand_made):
    rows, truth = hand_made
    result = evaluate(rows, truth)
    assert list(result.decoders) == ["argmax"]
    m = result.decoders["argmax"]
    assert (m.count, m.undecoded) == (6, 1)
    assert m.mean == pytest.approx(1.7)
    assert m.median == pytest.approx(1.0)
    assert m.p95 == pytest.approx(4.4)
    assert m.max == pytest.approx(5.0)
    assert (m.bias_x, m.bias_y, m.bias_z) == (pytest.approx(0.3), pytest.approx(0.6), None)
    assert m.pck == {
        0.5: pytest.approx(2 / 6),
        1.0: pytest.approx(3 / 6),
        2.0: pytest.approx(4 / 6),
    }
    assert result.missing_truth == [] and result.missing_maps == []


def test_decoders_are_scored_separately_in_order_of_appearance(hand_made):
    rows, truth = hand_made
    # a second decoder, exact on every map
    exact = [row("maps.npy", "softargmax", t["x"], t["y"], sample=t["sample"]) for t in truth]
    mixed = [r for pair in zip(rows, exact, strict=True) for r in pair]
    result = evaluate(mixed, truth)
    assert list(result.decoders) == ["argmax", "softargmax"]
    assert result.decoders["argmax"].mean == pytest.approx(1.7)
    soft = result.decoders["softargmax"]
    assert (soft.count, soft.undecoded, soft.mean, soft.max) == (6, 0, 0.0, 0.0)
    assert soft.pck == {0.5: 1.0, 1.0: 1.0, 2.0: 1.0}


def test_an_error_on_a_threshold_counts_as_within_it():
    truth = [truth_row("a.png", 0.0, 0.0)]
    result = evaluate([row("a.png", "d", 0.3, 0.4)], truth)  # hypot is 0.5000000000000001
    assert result.decoders["d"].pck[0.5] == 1.0


def test_undecoded_rows_are_misses_not_errors():
    truth = [truth_row("a.npy", 1.0, 1.0, sample=k) for k in range(4)]
    rows = [row("a.npy", "d", 1.0, 2.0, sample=0)]  # error 1
    rows += [row("a.npy", "d", None, None, sample=1, status="nonfinite")]
    rows += [row("a.npy", "d", "", "", sample=2, status="nonfinite")]  # as read from a CSV
    rows += [row("a.npy", "d", math.nan, math.nan, sample=3)]
    m = evaluate(rows, truth).decoders["d"]
    assert (m.count, m.undecoded, m.mean, m.median, m.max) == (4, 3, 1.0, 1.0, 1.0)
    assert m.pck == {0.5: 0.0, 1.0: 0.25, 2.0: 0.25}


def test_a_decoder_with_nothing_decoded_has_no_statistics():
    m = evaluate([row("a.npy", "d", None, None)], [truth_row("a.npy", 1.0, 1.0)]).decoders["d"]
    assert (m.count, m.undecoded) == (1, 1)
    assert [m.mean, m.median, m.p95, m.max, m.bias_x, m.bias_y, m.bias_z] == [None] * 7
    assert m.pck == {0.5: 0.0, 1.0: 0.0, 2.0: 0.0}


def test_missing_rows_are_listed_both_ways_never_dropped():
    truth = [
        truth_row("a.npy", 1.0, 1.0),
        truth_row("a.npy", 1.0, 1.0, channel=1),  # no map
        truth_row("gone.png", 1.0, 1.0),  # no map
    ]
    rows = [
        row("a.npy", "argmax", 1.0, 1.0),
        row("a.npy", "softargmax", 1.0, 1.0),
        row("extra.npy", "argmax", 5.0, 5.0, sample=2),  # no truth
        row("extra.npy", "softargmax", 5.0, 5.0, sample=2),
        row("a.npy", "argmax", 5.0, 5.0, sample=1),  # no truth (other sample)
    ]
    result = evaluate(rows, truth)
    assert result.missing_truth == [("extra.npy", 2, 0), ("a.npy", 1, 0)]
    assert result.missing_maps == [("a.npy", 0, 1), ("gone.png", 0, 0)]
    # the unmatched maps are not scored
    assert result.decoders["argmax"].count == 1 and result.decoders["argmax"].mean == 0.0


def test_a_decoder_whose_maps_all_lack_truth_is_still_reported():
    result = evaluate([row("x.npy", "argmax", 1.0, 1.0)], [truth_row("y.npy", 1.0, 1.0)])
    m = result.decoders["argmax"]
    assert (m.count, m.mean, m.pck) == (0, None, {0.5: None, 1.0: None, 2.0: None})
    assert result.missing_truth == [("x.npy", 0, 0)]
    assert result.missing_maps == [("y.npy", 0, 0)]


def test_3d_bias_includes_z():
    truth = [truth_row("v.npy", 5.0, 6.0, 7.0, sample=k) for k in range(4)]
    dz = [1.0, 1.0, -0.5, 0.5]
    rows = [row("v.npy", "d", 5.0, 6.0, 7.0 + d, sample=k) for k, d in enumerate(dz)]
    m = evaluate(rows, truth).decoders["d"]
    assert (m.bias_x, m.bias_y, m.bias_z) == (0.0, 0.0, 0.5)
    assert (m.mean, m.median, m.max) == (0.75, 0.75, 1.0)
    assert m.p95 == pytest.approx(1.0)  # rank 2.85 of [0.5, 0.5, 1, 1]
    assert m.pck == {0.5: 0.5, 1.0: 1.0, 2.0: 1.0}


def test_3d_error_is_euclidean_over_three_axes():
    truth = [truth_row("v.npy", 0.0, 0.0, 0.0)]
    m = evaluate([row("v.npy", "d", 1.0, 2.0, 2.0)], truth).decoders["d"]
    assert m.mean == 3.0 and (m.bias_x, m.bias_y, m.bias_z) == (1.0, 2.0, 2.0)


def test_bias_z_averages_over_the_3d_maps_only():
    truth = [truth_row("img.png", 1.0, 1.0), truth_row("v.npy", 1.0, 1.0, 1.0)]
    rows = [row("img.png", "d", 2.0, 1.0), row("v.npy", "d", 2.0, 1.0, 3.0)]
    m = evaluate(rows, truth).decoders["d"]
    assert (m.bias_x, m.bias_y, m.bias_z) == (1.0, 0.0, 2.0)
    assert m.mean == pytest.approx((1.0 + math.sqrt(5)) / 2)


def test_points_read_back_from_a_coordinates_csv_score_the_same(hand_made, tmp_path):
    rows, truth = hand_made
    write_csv(tmp_path / "coordinates.csv", rows)
    back = read_points(tmp_path / "coordinates.csv")
    assert [p.key for p in back] == [p.key for p in rows]
    assert evaluate(back, truth) == evaluate(rows, truth)


def test_a_coordinates_csv_with_a_bad_cell_names_its_line(tmp_path):
    path = tmp_path / "coordinates.csv"
    path.write_text(
        "file,sample,channel,decoder,x,y\na.npy,0,0,argmax,1.0,2.0\na.npy,x,0,argmax,1,2\n"
    )
    with pytest.raises(ValueError, match="coordinates.csv: line 3: could not convert"):
        read_points(path)


def test_rows_may_be_a_generator(hand_made):
    rows, truth = hand_made
    assert evaluate(iter(rows), iter(truth)) == evaluate(rows, truth)


@pytest.mark.parametrize(
    ("rows", "truth", "message"),
    [
        ([], [truth_row("a", 0, 0), truth_row("a", 1, 1)], "given twice"),
        ([row("a", "d", 0, 0), row("a", "d", 1, 1)], [truth_row("a", 0, 0)], "two d rows"),
        ([row("a", "d", 0, 0, 0)], [truth_row("a", 0, 0)], "3D coordinates, truth 2D"),
        ([row("a", "d", 0, 0)], [truth_row("a", 0, 0, 0)], "2D coordinates, truth 3D"),
        ([], [truth_row("a", None, 0)], "no finite x, y"),
        ([], [truth_row("a", 0, 0, sample=-1)], "integer >= 0"),
    ],
)
def test_inconsistent_input_is_a_value_error(rows, truth, message):
    with pytest.raises(ValueError, match=message):
        evaluate(rows, truth)


def test_each_channel_is_scored_alone_against_a_float64_reference(rng):
    truth, points, errors = [], [], {}
    for sample in range(6):
        for channel in range(3):
            t = rng.uniform(0, 40, size=2)
            truth.append(truth_row("m.npy", *t, sample=sample, channel=channel))
            for decoder, noise in (("argmax", 0.6), ("dark", 0.2)):
                xy = t + rng.normal(0, noise * (channel + 1), size=2)
                points.append(
                    PointRecord("m.npy", sample, channel, decoder, 0, tuple(xy), 1, None, "ok")
                )
                errors.setdefault((channel, decoder), []).append(np.hypot(*(xy - t)))
    result = evaluate(points, truth)
    assert sorted(result.by_channel) == [0, 1, 2]
    for (channel, decoder), e in errors.items():
        m = result.by_channel[channel][decoder]
        assert m.count == 6
        assert m.mean == pytest.approx(np.mean(e), rel=1e-12)
        assert m.pck[1.0] == pytest.approx(np.mean(np.asarray(e) <= 1.0))
    rows = result.channel_rows()
    assert [(r["channel"], r["decoder"]) for r in rows][:3] == [
        (0, "argmax"),
        (0, "dark"),
        (1, "argmax"),
    ]


def test_beyond_forty_channels_there_is_no_per_channel_breakdown():
    truth = [truth_row("m.npy", 1.0, 1.0, channel=c) for c in range(41)]
    points = [PointRecord("m.npy", 0, c, "argmax", 0, (1.0, 1.0), 1, None, "ok") for c in range(41)]
    result = evaluate(points, truth)
    assert result.by_channel is None and result.channel_rows() is None
    assert result.decoders["argmax"].count == 41


def test_custom_thresholds():
    result = evaluate([row("a", "d", 0.0, 3.0)], [truth_row("a", 0.0, 0.0)], thresholds=[3, 5])
    assert result.thresholds == (3.0, 5.0)
    assert result.decoders["d"].pck == {3.0: 1.0, 5.0: 1.0}
    assert list(result.rows()[0])[-2:] == ["pck_3", "pck_5"]


# ---------------------------------------------------------------------------
# metrics.csv / metrics.json
# ---------------------------------------------------------------------------


@pytest.fixture
def written(hand_made, tmp_path):
    rows, truth = hand_made
    rows = rows + [row("extra.npy", "argmax", 1.0, 1.0), row("none.npy", "other", 1.0, 1.0)]
    truth = truth + [truth_row("gone.npy", 1.0, 2.0, sample=3, channel=4)]
    result = evaluate(rows, truth)
    paths = write_metrics(tmp_path / "out", result)
    return result, paths, tmp_path / "out"


def test_write_metrics_returns_both_paths_and_leaves_no_temporary_files(written):
    _, paths, out = written
    assert paths == [out / "metrics.csv", out / "metrics.json"]
    assert sorted(p.name for p in out.iterdir()) == ["metrics.csv", "metrics.json"]


def test_metrics_csv_round_trip(written):
    result, paths, _ = written
    with open(paths[0], newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        assert tuple(reader.fieldnames) == METRICS_COLUMNS
        back = list(reader)
    assert [r["decoder"] for r in back] == ["argmax", "other"]
    for line, expected in zip(back, result.rows(), strict=True):
        for column in METRICS_COLUMNS:
            value = expected[column]
            if value is None:
                assert line[column] == "", column
            elif isinstance(value, str):
                assert line[column] == value
            else:
                assert float(line[column]) == pytest.approx(value, abs=1e-6), column
    assert back[0]["count"] == "6" and back[0]["p95"] == "4.400000"
    assert back[1]["count"] == "0" and back[1]["mean"] == "" and back[1]["pck_1"] == ""


def test_metrics_json_round_trip(written):
    result, paths, _ = written
    document = json.loads(paths[1].read_text(encoding="utf-8"))
    assert document["schema"] == METRICS_SCHEMA
    assert document["columns"] == list(METRICS_COLUMNS)
    assert document["thresholds"] == [0.5, 1.0, 2.0]
    assert document["decoders"] == result.rows()  # full precision, None as null
    assert document["decoders"][1]["mean"] is None
    assert document["missing_truth"] == [
        {"file": "extra.npy", "sample": 0, "channel": 0},
        {"file": "none.npy", "sample": 0, "channel": 0},
    ]
    assert document["missing_maps"] == [{"file": "gone.npy", "sample": 3, "channel": 4}]
    described = set(document["fields"])
    for column in METRICS_COLUMNS:
        assert column in described or column.startswith("pck_") and "pck_T" in described
    assert {"missing_truth", "missing_maps"} <= described
    assert document["fields"] == FIELD_DESCRIPTIONS


def test_metrics_table_shows_every_decoder_and_the_missing_counts(written):
    import io

    from rich.console import Console

    result, _, _ = written
    buffer = io.StringIO()
    Console(file=buffer, width=160).print(metrics_table(result))
    text = buffer.getvalue()
    assert "argmax" in text and "other" in text
    assert "4.400" in text and "+0.300" in text and "33.3%" in text
    assert "bias z" not in text  # no 3D map
    caption = metrics_table(result).caption  # rendered, it wraps at the table's width
    assert "2 decoded map(s) without a truth row" in caption
    assert "1 truth row(s) without a decoded map" in caption


def test_metrics_tables_of_six_decoders_fit_80_columns_uncut(rng):
    import io

    from rich.console import Console

    from heatdecode.cli.render import channel_metrics_tables
    from heatdecode.family import DECODERS

    truth, points = [], []
    for channel in range(17):
        truth.append(truth_row("m.npy", 10.0, 20.0, channel=channel))
        for decoder in DECODERS:
            xy = (10.0 + rng.normal(0, 0.3), 20.0 + rng.normal(0, 0.3))
            points.append(PointRecord("m.npy", 0, channel, decoder, 0, xy, 1.0, None, "ok"))
    result = evaluate(points, truth)
    buffer = io.StringIO()
    console = Console(file=buffer, width=80)
    for table in [metrics_table(result), *channel_metrics_tables(result.by_channel)]:
        console.print(table)
    text = buffer.getvalue()
    assert "…" not in text
    assert max(len(line) for line in text.splitlines()) <= 80
    for decoder, m in result.decoders.items():
        assert f"{m.mean:.3f}" in text, decoder
    assert text.count("\n│      16 │") == 2  # the last keypoint, in both per-channel tables


def test_metrics_table_of_an_empty_evaluation():
    table = metrics_table(Evaluation(decoders={}))
    assert len(table.columns) == 1  # the statistic names, and no decoder


# ---------------------------------------------------------------------------
# reading truth files
# ---------------------------------------------------------------------------


def test_read_truth_reads_what_the_generators_write(tmp_path):
    for rows, folder in [
        (write_sample(tmp_path / "s"), tmp_path / "s"),
        (write_synthetic(tmp_path / "2d", count=3), tmp_path / "2d"),
        (write_synthetic(tmp_path / "3d", count=3, shape=(8, 10, 12)), tmp_path / "3d"),
    ]:
        back = read_truth(folder / "truth.csv")
        key = ("file", "sample", "channel", "x", "y", "z")
        expected = sorted(rows, key=lambda r: (r["file"], r["sample"], r["channel"]))
        assert [{k: r[k] for k in key} for r in back] == [{k: r[k] for k in key} for r in expected]
        assert {r["decoder"] for r in back} == {"truth"}


def test_read_truth_tolerates_bom_spaces_extra_columns_order_and_blank_lines(tmp_path):
    path = tmp_path / "t.csv"
    text = "\ufeffnote, y ,x,channel,sample,file\nhello,2.5,1,3,2.0,a b.png\n\n,,,,,\n"
    path.write_text(text, encoding="utf-8")
    assert read_truth(path) == [
        {"file": "a b.png", "sample": 2, "channel": 3, "decoder": "truth"}
        | {"x": 1.0, "y": 2.5, "z": None}
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty file"),
        ("file,sample,channel,x\nm.npy,0,0,1\n", "line 1: missing column y"),
        ("name,sample,channel,y\n", "line 1: missing columns file, x"),
        ("file,sample,channel,x,y\nm.npy,0,0,1,2\nm.npy,1,0,abc,2\n", "line 3: x is not a number"),
        ("file,sample,channel,x,y\nm.npy,0,0,1,\n", "line 2: y is empty"),
        ("file,sample,channel,x,y\nm.npy,0,0,1\n", "line 2: y is empty"),  # short line
        ("file,sample,channel,x,y\nm.npy,0,0,nan,1\n", "line 2: x is empty"),
        ("file,sample,channel,x,y\nm.npy,0,0,inf,1\n", "line 2: x is not finite"),
        ("file,sample,channel,x,y,z\nm.npy,0,0,1,1,z\n", "line 2: z is not a number"),
        ("file,sample,channel,x,y\nm.npy,-1,0,1,1\n", "line 2: sample must be an integer"),
        ("file,sample,channel,x,y\nm.npy,0,1.5,1,1\n", "line 2: channel must be an integer"),
        ("file,sample,channel,x,y\nm.npy,0,,1,1\n", "line 2: channel must be an integer"),
        ("file,sample,channel,x,y\n,0,0,1,1\n", "line 2: empty file name"),
        (
            "file,sample,channel,x,y\nm.npy,0,0,1,1\nm.npy,1,0,1,1\nm.npy,0,0,2,2\n",
            "line 4: m.npy sample 0 channel 0 is given twice \\(first on line 2\\)",
        ),
    ],
)
def test_bad_truth_files_name_the_file_and_line(tmp_path, text, message):
    path = tmp_path / "bad_truth.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError, match=message) as info:
        read_truth(path)
    assert str(info.value).startswith(f"{path}: ")


def test_truth_that_is_not_utf8_is_a_value_error(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes("file,sample,channel,x,y\ncafé.png,0,0,1,1\n".encode("latin-1"))
    with pytest.raises(ValueError, match="not UTF-8"):
        read_truth(path)


def test_a_missing_truth_file_is_an_os_error(tmp_path):
    with pytest.raises(OSError):
        read_truth(tmp_path / "nope.csv")


# ---------------------------------------------------------------------------
# end to end: synthetic maps -> heatdecode run -> coordinates.csv -> metrics
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "knobs",
    [{}, {"quantize8": True}, {"shape": (12, 16, 20)}],
    ids=["npy-2d", "png8", "volume"],
)
def test_synthetic_truth_lines_up_with_a_real_run(tmp_path, knobs):
    from heatdecode.runner import RunConfig, run

    data = tmp_path / "data"
    write_synthetic(data, count=8, seed=2, **knobs)
    run([data], tmp_path / "out", RunConfig(overlays=False, formats=("csv",), workers=1))
    points = read_points(tmp_path / "out" / "coordinates.csv")
    result = evaluate(points, read_truth(data / "truth.csv"))
    assert result.missing_truth == [] and result.missing_maps == []
    argmax = result.decoders["argmax"]
    assert (argmax.count, argmax.undecoded) == (8, 0)
    # clean maps: the argmax is the nearest pixel, within half a pixel per axis
    assert argmax.max <= 0.5 * math.sqrt(len(knobs.get("shape", (0, 0)))) + 1e-6
    assert result.decoders["softargmax"].mean < 0.1


def truth_run(tmp_path, truth: str, capsys) -> tuple[int, str]:
    from heatdecode.cli import main

    np.save(tmp_path / "m.npy", np.eye(6, dtype=np.float32))
    code = main(["run", str(tmp_path / "m.npy"), "--out", str(tmp_path / "out"), "-q",
                 "--truth", truth])  # fmt: skip
    return code, capsys.readouterr().err


def test_a_truth_cell_over_the_csv_limit_is_one_line(tmp_path, capsys):
    path = tmp_path / "truth.csv"
    path.write_text("file,sample,channel,x,y\nm.npy,0,0,1," + "2" * 200_000 + "\n")
    code, err = truth_run(tmp_path, str(path), capsys)
    assert code == 2 and "line 2" in err and "field larger than field limit" in err
    assert len(err.strip().splitlines()) == 1


def test_a_truth_line_over_a_megabyte_is_refused(tmp_path, capsys):
    path = tmp_path / "truth.csv"
    path.write_text("file,sample,channel,x,y\nm.npy,0,0,1,2" + ",3" * 600_000 + "\n")
    code, err = truth_run(tmp_path, str(path), capsys)
    assert code == 2 and "line 2: over 1,048,576 characters" in err


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="no /dev/zero")
def test_truth_must_be_a_regular_file(tmp_path, capsys):
    code, err = truth_run(tmp_path, "/dev/zero", capsys)
    assert code == 2 and "/dev/zero: not a regular file" in err


def test_a_truth_file_over_the_size_limit_is_refused_before_reading(tmp_path, monkeypatch):
    import heatdecode.readers as module

    path = tmp_path / "truth.csv"
    path.write_text("file,sample,channel,x,y\nm.npy,0,0,1,2\n")
    monkeypatch.setattr(module, "MAX_TRUTH_BYTES", 10)
    with pytest.raises(ValueError, match="over the 10 a truth file may hold"):
        read_truth(path)
