"""``heatdecode compare OUT``: a finished run's decoders compared from its outputs alone."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from heatdecode.cli import main
from heatdecode.compare import read_run


@pytest.fixture
def finished(tmp_path):
    maps = np.zeros((2, 3, 20, 24), np.float32)
    maps[:, :, 5, 6] = 1.0
    maps[:, :, 5, 7] = 0.5  # every refinement moves toward x = 7
    np.save(tmp_path / "m.npy", maps)
    out = tmp_path / "out"
    args = ["run", str(tmp_path / "m.npy"), "--out", str(out), "-q", "--no-overlays"]
    assert main([*args, "-d", "argmax", "-d", "parabola", "-d", "quarter"]) == 0
    return out


def test_compare_writes_a_row_per_map_with_every_pair_and_status(finished, capsys):
    assert main(["compare", str(finished)]) == 0
    shown = capsys.readouterr().out
    assert "distance between decoders" in shown and "argmax~parabola" in shown
    with open(finished / "comparison.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 6
    assert list(rows[0])[:5] == ["file", "sample", "channel", "peak", "score"]
    assert float(rows[0]["argmax~quarter"]) == pytest.approx(0.25)
    parabola = float(rows[0]["argmax~parabola"])
    assert float(rows[0]["parabola~quarter"]) == pytest.approx(abs(parabola - 0.25), abs=1e-6)
    assert rows[0]["status:parabola"] == "ok"


def test_compare_reads_the_run_back_as_records(finished):
    run = read_run(finished)
    assert run.labels == ("argmax", "parabola", "quarter")
    assert sum(len(r.points) for r in run.records) == 18


def test_compare_can_keep_some_decoders_and_group_by_file(finished, capsys):
    assert main(["compare", str(finished), "--decoders", "argmax,quarter", "--by", "file"]) == 0
    with open(finished / "comparison.csv", newline="") as fh:
        header = next(csv.reader(fh))
    assert "argmax~quarter" in header and "argmax~parabola" not in header
    assert "by file" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--decoders", "dark"], "dark did not run"),
        (["--worst", "-1"], "--worst must be at least 0"),
    ],
)
def test_compare_refuses_what_the_run_cannot_answer(finished, capsys, args, message):
    assert main(["compare", str(finished), *args]) == 2
    assert message in capsys.readouterr().err


def test_compare_of_a_folder_without_a_run_is_one_line(tmp_path, capsys):
    assert main(["compare", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "coordinates.json: not found" in err and "Traceback" not in err


def test_compare_with_truth_adds_each_decoders_error_against_it(finished, tmp_path, capsys):
    truth = tmp_path / "truth.csv"
    lines = ["file,sample,channel,x,y"]
    lines += [f"m.npy,{s},{c},6.25,5.0" for s in range(2) for c in range(3) if (s, c) != (1, 2)]
    truth.write_text("\n".join(lines) + "\n")
    assert main(["compare", str(finished), "--truth", str(truth)]) == 0
    text = capsys.readouterr().out
    assert "error against truth" in text and "mean error, by channel" in text
    with open(finished / "comparison.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    coords = {}
    with open(finished / "coordinates.csv", newline="") as fh:
        for r in csv.DictReader(fh):
            coords[(r["sample"], r["channel"], r["decoder"])] = (float(r["x"]), float(r["y"]))
    for row in rows:
        for decoder in ("argmax", "parabola", "quarter"):
            cell = row[f"error:{decoder}"]
            if (row["sample"], row["channel"]) == ("1", "2"):
                assert cell == ""  # no truth row for that map
                continue
            x, y = coords[(row["sample"], row["channel"], decoder)]
            assert float(cell) == pytest.approx(np.hypot(x - 6.25, y - 5.0), abs=2e-6)


def test_compare_with_a_bad_truth_file_is_one_line_and_exit_2(finished, tmp_path, capsys):
    bad = tmp_path / "truth.csv"
    bad.write_text("file,sample,x\nm.npy,0,1\n")
    assert main(["compare", str(finished), "--truth", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--truth" in err and "truth.csv" in err
