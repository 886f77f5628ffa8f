"""End to end: ``heatdecode run`` and ``heatdecode sample`` as a user runs them."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from heatdecode.cli import main
from heatdecode.family import DECODERS
from heatdecode.writers import CSV_COLUMNS


def read_rows(out: Path) -> list[dict[str, str]]:
    with open(out / "coordinates.csv", newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def reference_softargmax(heatmap: np.ndarray, beta: float, normalize: str) -> np.ndarray:
    """Σ i·softmax(β·x̂)_i in float64, written from the formula, returned as (x, y[, z])."""
    x = heatmap.astype(np.float64)
    if normalize == "minmax":
        span = x.max() - x.min()
        x = (x - x.min()) / span if span > 0 else np.zeros_like(x)
    elif normalize == "max":
        peak = np.abs(x).max()
        x = x / peak if peak > 0 else np.zeros_like(x)
    logits = beta * x
    weights = np.exp(logits - logits.max())
    weights /= weights.sum()
    grids = np.indices(x.shape, dtype=np.float64)  # array order: (z,) y, x
    return np.array([(weights * g).sum() for g in grids[::-1]])


@pytest.fixture(scope="module")
def sample_run(sample_set, tmp_path_factory) -> tuple[Path, Path, int]:
    folder, _ = sample_set
    out = tmp_path_factory.mktemp("run") / "out"
    code = main(["run", str(folder), "--out", str(out), "--quiet"])
    return folder, out, code


def test_sample_run_exits_zero_and_writes_everything(sample_run):
    _, out, code = sample_run
    assert code == 0
    assert (out / "coordinates.csv").is_file()
    assert (out / "coordinates.json").is_file()
    overlays = sorted(p.relative_to(out).as_posix() for p in (out / "overlays").rglob("*.png"))
    assert "overlays/volume_ncdhw.npy.png" in overlays
    assert "overlays/maps.npz__left.png" in overlays
    assert len(overlays) == 10  # one per decoded array
    for path in (out / "overlays").rglob("*.png"):
        with Image.open(path) as image:
            image.verify()
        with Image.open(path) as image:
            assert min(image.size) >= 200  # big enough to see the markers


def test_csv_header_and_one_row_per_map_and_decoder(sample_run, sample_set):
    _, out, _ = sample_run
    header = (out / "coordinates.csv").read_text().splitlines()[0]
    assert header.startswith("file,sample,channel,decoder,x,y,z,score")
    assert tuple(header.split(",")) == CSV_COLUMNS
    rows = read_rows(out)
    _, truth = sample_set
    assert len(rows) == 2 * len(truth)
    keys = {(r["file"], int(r["sample"]), int(r["channel"])) for r in rows}
    assert keys == {(t["file"], t["sample"], t["channel"]) for t in truth}


def test_argmax_equals_numpy_argmax_on_every_map(sample_run, read_map):
    folder, out, _ = sample_run
    for row in read_rows(out):
        if row["decoder"] != "argmax":
            continue
        heatmap = read_map(folder, row["file"], int(row["sample"]), int(row["channel"]))
        index = np.unravel_index(np.argmax(heatmap), heatmap.shape)[::-1]  # (x, y[, z])
        got = [float(row[k]) for k in "xyz"[: heatmap.ndim]]
        assert got == [float(i) for i in index], row
        assert float(row["score"]) == pytest.approx(float(heatmap.max()), rel=1e-6)
        assert row["z"] == ("" if heatmap.ndim == 2 else row["z"])


def test_softargmax_matches_float64_formula(sample_run, read_map):
    folder, out, _ = sample_run
    settings = json.loads((out / "coordinates.json").read_text())["settings"]
    beta, normalize = settings["beta"], settings["normalize"]
    checked_3d = 0
    for row in read_rows(out):
        if row["decoder"] != "softargmax":
            continue
        heatmap = read_map(folder, row["file"], int(row["sample"]), int(row["channel"]))
        expected = reference_softargmax(heatmap, beta, normalize)
        got = np.array([float(row[k]) for k in "xyz"[: heatmap.ndim]])
        tolerance = 1e-4 if heatmap.ndim == 2 else 1e-3
        np.testing.assert_allclose(got, expected, atol=tolerance, err_msg=str(row))
        checked_3d += heatmap.ndim == 3
    assert checked_3d == 2


def test_decoders_land_near_the_true_peaks(sample_run, sample_set):
    _, out, _ = sample_run
    _, truth = sample_set
    where = {(t["file"], t["sample"], t["channel"]): t for t in truth}
    for row in read_rows(out):
        t = where[(row["file"], int(row["sample"]), int(row["channel"]))]
        dims = "xyz" if t["z"] is not None else "xy"
        error = np.linalg.norm([float(row[k]) - t[k] for k in dims])
        bound = 0.9 if row["decoder"] == "argmax" else 0.3
        assert error < bound, (row, t)


def test_json_records_settings_layouts_and_rows(sample_run):
    _, out, _ = sample_run
    doc = json.loads((out / "coordinates.json").read_text())
    assert doc["schema"] == "heatdecode.coordinates/1"
    assert doc["complete"] is True
    assert doc["settings"]["decoders"] == ["argmax", "softargmax"]
    assert doc["settings"]["device"] == "cpu"
    layouts = {f["file"]: f["layout"] for f in doc["files"]}
    assert layouts["volume_ncdhw.npy"] == "NCDHW"
    assert layouts["pose_nchw.npy"] == "NCHW"
    assert layouts["maps.npz:left"] == "CHW"
    assert layouts["png8/peak_0.png"] == "HW"
    assert doc["failures"] == []
    csv_rows = read_rows(out)
    assert len(doc["rows"]) == len(csv_rows)
    first = doc["rows"][1]
    assert first["decoder"] == "softargmax"
    assert first["x"] == pytest.approx(float(csv_rows[1]["x"]), abs=1e-6)
    assert doc["summary"]["maps"] == len(csv_rows) // 2


def make_good_and_bad(folder: Path) -> None:
    folder.mkdir()
    good = np.zeros((3, 9, 14), np.float32)
    good[0, 2, 11] = good[1, 7, 1] = good[2, 4, 4] = 1.0
    np.save(folder / "a_good.npy", good)
    (folder / "b_corrupt.npy").write_bytes(b"\x93NUMPY garbage")
    np.save(folder / "c_pickled.npy", np.array([{"x": 1}], dtype=object), allow_pickle=True)
    (folder / "d_empty.png").write_bytes(b"")
    Image.fromarray(np.eye(6, 10, dtype=np.uint8) * 200).save(folder / "e_good.png")


def test_bad_files_are_reported_and_good_files_still_written(tmp_path, capsys):
    make_good_and_bad(tmp_path / "in")
    out = tmp_path / "out"
    code = main(["run", str(tmp_path / "in"), "--out", str(out), "--quiet"])
    assert code == 1
    err = capsys.readouterr().err
    assert "b_corrupt.npy: not a valid .npy file" in err
    assert "c_pickled.npy: holds Python objects" in err
    assert "d_empty.png: empty file" in err
    assert "Traceback" not in err
    assert all(line.startswith(("error:", "warning:")) for line in err.splitlines())
    rows = read_rows(out)
    assert {r["file"] for r in rows} == {"a_good.npy", "e_good.png"}
    assert len(rows) == 2 * (3 + 1)
    doc = json.loads((out / "coordinates.json").read_text())
    assert [f["file"] for f in doc["failures"]] == ["b_corrupt.npy", "c_pickled.npy", "d_empty.png"]


def test_strict_stops_at_the_first_bad_file(tmp_path, capsys):
    make_good_and_bad(tmp_path / "in")
    out = tmp_path / "out"
    code = main(
        ["run", str(tmp_path / "in"), "--out", str(out), "--quiet", "--strict", "--workers", "1"]
    )
    assert code == 1
    assert "--strict" in capsys.readouterr().err
    assert {r["file"] for r in read_rows(out)} == {"a_good.npy"}
    assert json.loads((out / "coordinates.json").read_text())["complete"] is False


def test_nonfinite_map_is_reported_not_decoded(tmp_path, capsys):
    maps = np.zeros((2, 3, 8, 5))
    maps[:, :, 3, 2] = 1.0  # one clean peak per map
    maps[1, 2, 4, 4] = np.nan
    np.save(tmp_path / "nan.npy", maps)
    out = tmp_path / "out"
    code = main(["run", str(tmp_path / "nan.npy"), "--out", str(out), "--quiet"])
    assert code == 1
    assert "nan.npy: sample 1 channel 2: map contains NaN or Inf" in capsys.readouterr().err
    rows = [r for r in read_rows(out) if (r["sample"], r["channel"]) == ("1", "2")]
    assert len(rows) == 2
    assert all(r["status"] == "nonfinite" and r["x"] == "" for r in rows)
    others = [r for r in read_rows(out) if r["status"] == "ok"]
    assert len(others) == 2 * 5


def test_constant_map_is_flagged_flat(tmp_path):
    np.save(tmp_path / "flat.npy", np.full((6, 9), 3.0))
    out = tmp_path / "out"
    assert main(["run", str(tmp_path / "flat.npy"), "--out", str(out), "--quiet"]) == 0
    argmax, soft = read_rows(out)
    assert argmax["status"] == soft["status"] == "flat"
    assert (float(argmax["x"]), float(argmax["y"])) == (0.0, 0.0)
    assert (float(soft["x"]), float(soft["y"])) == (4.0, 2.5)


def test_layout_option_reads_channels_last_and_volume_last(tmp_path):
    hwc = np.zeros((10, 16, 2), np.float32)
    hwc[3, 12, 0] = hwc[8, 1, 1] = 1
    np.save(tmp_path / "hwc.npy", hwc)
    out = tmp_path / "out"
    assert main(["run", str(tmp_path / "hwc.npy"), "--out", str(out), "--layout", "HWC", "-q"]) == 0
    rows = [r for r in read_rows(out) if r["decoder"] == "argmax"]
    assert [(r["channel"], r["x"], r["y"]) for r in rows] == [
        ("0", "12.000000", "3.000000"),
        ("1", "1.000000", "8.000000"),
    ]
    nchwd = np.zeros((1, 1, 6, 7, 5), np.float32)  # saved as (N, C, H, W, D)
    nchwd[0, 0, 4, 2, 3] = 1  # h=4, w=2, d=3
    np.save(tmp_path / "vol.npy", nchwd)
    out2 = tmp_path / "out2"
    assert (
        main(["run", str(tmp_path / "vol.npy"), "--out", str(out2), "--layout", "NCHWD", "-q"]) == 0
    )
    argmax = read_rows(out2)[0]
    assert (argmax["x"], argmax["y"], argmax["z"]) == ("2.000000", "4.000000", "3.000000")


def test_layout_mismatch_is_an_error_for_that_file(tmp_path, capsys):
    np.save(tmp_path / "three.npy", np.ones((2, 4, 5)))
    np.save(tmp_path / "four.npy", np.ones((1, 2, 4, 5)))
    out = tmp_path / "out"
    code = main(["run", str(tmp_path), "--out", str(out), "--layout", "CHW", "-q"])
    assert code == 1
    err = capsys.readouterr().err
    assert "four.npy: layout CHW has 3 axes but the array has 4" in err
    assert {r["file"] for r in read_rows(out)} == {"three.npy"}


def test_normalized_coords_and_single_format(tmp_path):
    maps = np.zeros((5, 9), np.float32)
    maps[4, 0] = 1
    np.save(tmp_path / "m.npy", maps)
    out = tmp_path / "out"
    args = ["run", str(tmp_path / "m.npy"), "--out", str(out), "--coords", "normalized"]
    assert main([*args, "--format", "csv", "--decoder", "argmax", "-q", "--no-overlays"]) == 0
    assert not (out / "coordinates.json").exists()
    assert not (out / "overlays").exists()
    (row,) = read_rows(out)
    assert (row["decoder"], float(row["x"]), float(row["y"])) == ("argmax", -1.0, 1.0)


def test_existing_outputs_need_overwrite(tmp_path, capsys):
    np.save(tmp_path / "m.npy", np.eye(4, 6))
    out = tmp_path / "out"
    args = ["run", str(tmp_path / "m.npy"), "--out", str(out), "-q"]
    assert main(args) == 0
    before = (out / "coordinates.csv").read_bytes()
    assert main(args) == 2
    assert "pass --overwrite" in capsys.readouterr().err
    assert (out / "coordinates.csv").read_bytes() == before
    assert main([*args, "--overwrite"]) == 0


def test_output_folder_inside_the_input_folder_is_not_read_back(tmp_path):
    np.save(tmp_path / "m.npy", np.eye(4, 6))
    out = tmp_path / "results"
    assert main(["run", str(tmp_path), "--out", str(out), "-q"]) == 0
    assert main(["run", str(tmp_path), "--out", str(out), "-q", "--overwrite"]) == 0
    assert {r["file"] for r in read_rows(out)} == {"m.npy"}


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--beta", "0"], "--beta must be a finite number > 0"),
        (["--beta", "nan"], "--beta must be a finite number > 0"),
        (["--beta", "-3"], "--beta must be a finite number > 0"),
        (["--batch-size", "0"], "--batch-size must be at least 1"),
        (
            ["--device", "cuda:7"]
            if not __import__("torch").cuda.is_available()
            else ["--device", "cuda:99"],
            "not available",
        ),
        (["--device", "tpu"], "unknown device"),
        (["--layout", "HHW"], "repeats the letter H"),
        (["--layout", "XYZ"], "unknown letter"),
        (["--decoder", "median"], "median"),
        (["--normalize", "sqrt"], "sqrt"),
    ],
)
def test_bad_options_are_usage_errors_before_any_work(tmp_path, capsys, extra, message):
    np.save(tmp_path / "m.npy", np.eye(4, 6))
    out = tmp_path / "out"
    code = main(["run", str(tmp_path / "m.npy"), "--out", str(out), *extra])
    assert code == 2
    err = capsys.readouterr().err
    assert message in err
    assert len(err.strip().splitlines()) == 1
    assert "Traceback" not in err
    assert not out.exists()


def test_nothing_to_decode_and_out_is_a_file(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["run", str(tmp_path / "empty"), "--out", str(tmp_path / "o")]) == 2
    assert "nothing to decode" in capsys.readouterr().err
    assert main(["run", str(tmp_path / "missing"), "--out", str(tmp_path / "o")]) == 2
    np.save(tmp_path / "m.npy", np.eye(3))
    (tmp_path / "file").write_text("x")
    assert main(["run", str(tmp_path / "m.npy"), "--out", str(tmp_path / "file")]) == 2
    assert "is a file" in capsys.readouterr().err


def test_a_missing_argument_beside_good_ones_is_reported(tmp_path, capsys):
    np.save(tmp_path / "m.npy", np.eye(3))
    out = tmp_path / "out"
    code = main(
        ["run", str(tmp_path / "m.npy"), str(tmp_path / "nope.npy"), "--out", str(out), "-q"]
    )
    assert code == 1
    assert "nope.npy: no such file or folder" in capsys.readouterr().err
    assert {r["file"] for r in read_rows(out)} == {"m.npy"}


def test_batch_size_does_not_change_the_csv(sample_set, tmp_path):
    folder, _ = sample_set
    outputs = []
    for size in ("1", "7", "1000"):
        out = tmp_path / size
        assert (
            main(
                ["run", str(folder), "--out", str(out), "-q", "--batch-size", size, "--no-overlays"]
            )
            == 0
        )
        outputs.append((out / "coordinates.csv").read_bytes())
    assert outputs[0] == outputs[1] == outputs[2]


def test_summary_table_and_version(tmp_path, capsys):
    np.save(tmp_path / "m.npy", np.eye(4, 6))
    assert main(["run", str(tmp_path / "m.npy"), "--out", str(tmp_path / "out")]) == 0
    shown = capsys.readouterr().out
    for text in ("files", "maps", "argmax ↔ softargmax", "maps/s", "layouts used", "HW"):
        assert text in shown
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("heatdecode ")


def test_sample_command_writes_truth_and_files(tmp_path):
    assert main(["sample", str(tmp_path / "s")]) == 0
    with open(tmp_path / "s" / "truth.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["file", "sample", "channel", "decoder", "x", "y", "z", "score"]
    assert {r["decoder"] for r in rows} == {"truth"}
    assert any(r["z"] for r in rows) and any(not r["z"] for r in rows)


def test_python_dash_m_runs_as_a_real_process(tmp_path):
    np.save(tmp_path / "m.npy", np.eye(4, 6))
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "heatdecode",
            "run",
            str(tmp_path / "m.npy"),
            "--out",
            str(tmp_path / "o"),
            "--beta",
            "-1",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr.strip().startswith("heatdecode: error:")
    assert "Traceback" not in done.stderr


def _truncated_npy(path: Path) -> None:
    np.save(path, np.ones((8, 8), np.float32))
    path.write_bytes(path.read_bytes()[:-40])


def _truncated_png(path: Path) -> None:
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), np.uint8)).save(path)
    path.write_bytes(path.read_bytes()[:2000])


BAD_FILES = {
    "truncated.npy": (_truncated_npy, "truncated"),
    "corrupt.npz": (lambda p: p.write_bytes(b"PK\x03\x04 not really a zip"), "not a valid .npz"),
    "corrupt.png": (_truncated_png, "corrupt or truncated"),
    "junk.png": (lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n broken"), "not a readable image"),
    "text.png": (lambda p: p.write_text("hello"), "not a readable image"),
    "empty.npy": (lambda p: p.write_bytes(b""), "empty file"),
    "pickled.npy": (
        lambda p: np.save(p, np.array([None, 1], dtype=object), allow_pickle=True),
        "holds Python objects",
    ),
    "strings.npy": (lambda p: np.save(p, np.array([["a", "b"]])), "non-numeric dtype"),
    "complex.npy": (lambda p: np.save(p, np.ones((3, 3), complex)), "complex dtype"),
    "bool.npy": (lambda p: np.save(p, np.ones((3, 3), bool)), "boolean dtype"),
    "zero.npy": (lambda p: np.save(p, np.ones((0, 4, 4))), "empty axis"),
    "onedim.npy": (lambda p: np.save(p, np.ones(5)), "cannot guess the layout"),
}


@pytest.mark.parametrize("bad", sorted(BAD_FILES))
def test_each_bad_file_gets_one_line_and_the_good_files_are_written(tmp_path, capsys, bad):
    folder = tmp_path / "in"
    folder.mkdir()
    good = np.zeros((2, 5, 7), np.float32)
    good[0, 1, 6] = good[1, 4, 0] = 1
    np.save(folder / "a_good.npy", good)
    np.save(folder / "z_good.npy", good[0])
    make, reason = BAD_FILES[bad]
    make(folder / bad)
    out = tmp_path / "out"
    code = main(["run", str(folder), "--out", str(out), "-q"])
    err = capsys.readouterr().err
    assert code == 1
    assert err.splitlines() == [line for line in err.splitlines() if line.startswith("error: ")]
    (line,) = err.splitlines()
    assert line.startswith(f"error: {bad}: ") and reason in line, line
    rows = read_rows(out)
    assert [(r["file"], r["decoder"]) for r in rows] == [
        ("a_good.npy", "argmax"),
        ("a_good.npy", "softargmax"),
        ("a_good.npy", "argmax"),
        ("a_good.npy", "softargmax"),
        ("z_good.npy", "argmax"),
        ("z_good.npy", "softargmax"),
    ]
    failures = json.loads((out / "coordinates.json").read_text())["failures"]
    assert [f["file"] for f in failures] == [bad]
    assert reason in failures[0]["reason"]


@pytest.fixture(scope="module")
def clean_set(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("clean") / "data"
    assert main(["sample", str(folder), "--kind", "clean", "--count", "24", "--seed", "3"]) == 0
    return folder


def test_truth_adds_metrics_files_and_table(clean_set, tmp_path, capsys):
    out = tmp_path / "out"
    all_decoders = [a for name in DECODERS for a in ("-d", name)]
    args = ["run", str(clean_set), "--out", str(out), "--truth", str(clean_set / "truth.csv")]
    assert main([*args, *all_decoders, "--no-overlays"]) == 0
    shown = capsys.readouterr().out
    assert "pck" in shown.lower() or "PCK" in shown
    with open(out / "metrics.csv", newline="") as fh:
        metrics = {r["decoder"]: r for r in csv.DictReader(fh)}
    assert set(metrics) == set(DECODERS)
    assert all(int(m["count"]) == 24 for m in metrics.values())
    assert float(metrics["parabola"]["mean"]) < 0.01
    assert float(metrics["dark"]["mean"]) < 0.01
    assert float(metrics["local-softargmax"]["mean"]) < 0.05
    assert 0.3 < float(metrics["argmax"]["mean"]) < 0.5
    doc = json.loads((out / "metrics.json").read_text())
    assert doc["missing_truth"] == [] and doc["missing_maps"] == []


def test_truth_with_rows_missing_both_ways_is_reported(clean_set, tmp_path):
    truth = tmp_path / "truth.csv"
    lines = (clean_set / "truth.csv").read_text().splitlines()
    extra = "ghost.npy,0,0,truth,1.0,2.0,,1.0"
    truth.write_text("\n".join([*lines[:-3], extra]) + "\n")
    out = tmp_path / "out"
    args = ["run", str(clean_set), "--out", str(out), "--truth", str(truth), "-q"]
    assert main([*args, "--no-overlays"]) == 0
    doc = json.loads((out / "metrics.json").read_text())
    assert len(doc["missing_truth"]) == 3
    assert doc["missing_maps"] == [{"file": "ghost.npy", "sample": 0, "channel": 0}]


def test_a_bad_truth_file_is_a_usage_error_before_any_work(clean_set, tmp_path, capsys):
    truth = tmp_path / "truth.csv"
    truth.write_text("file,sample,x\nmaps.npy,0,1\n")
    out = tmp_path / "out"
    assert main(["run", str(clean_set), "--out", str(out), "--truth", str(truth)]) == 2
    assert "--truth" in capsys.readouterr().err
    assert not out.exists()


def test_sweep_writes_csv_plot_and_names_the_best_beta(clean_set, tmp_path, capsys):
    out = tmp_path / "sweep"
    args = ["sweep", str(clean_set), "--truth", str(clean_set / "truth.csv"), "--out", str(out)]
    code = main([*args, "--beta", "5,15,50", "-d", "softargmax", "-d", "local-softargmax"])
    assert code == 0
    shown = capsys.readouterr().out
    assert "best: " in shown
    with open(out / "sweep.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["decoder"], r["beta"]) for r in rows][:3] == [
        ("softargmax", "5"),
        ("softargmax", "15"),
        ("softargmax", "50"),
    ]
    soft = {r["beta"]: float(r["mean"]) for r in rows if r["decoder"] == "softargmax"}
    assert soft["15"] < soft["50"] < soft["5"]  # too hot and too cold both hurt
    with Image.open(out / "sweep.png") as image:
        assert image.size[0] > 400


def test_sweep_refuses_a_decoder_without_beta(clean_set, tmp_path, capsys):
    args = ["sweep", str(clean_set), "--truth", str(clean_set / "truth.csv")]
    assert main([*args, "--out", str(tmp_path / "o"), "-d", "dark"]) == 2
    assert "no β to sweep" in capsys.readouterr().err


@pytest.mark.parametrize("kind", ["noisy", "low-contrast", "two-peaks", "border", "anisotropic"])
def test_sample_kinds_run_end_to_end(kind, tmp_path):
    data = tmp_path / "data"
    assert main(["sample", str(data), "--kind", kind, "--count", "4", "--dims", "3"]) == 0
    out = tmp_path / "out"
    args = ["run", str(data), "--out", str(out), "--truth", str(data / "truth.csv"), "-q"]
    assert main([*args, "--no-overlays"]) == 0
    assert (out / "metrics.csv").is_file()


def test_sample_refuses_a_non_empty_folder_and_unknown_kinds(tmp_path, capsys):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x.txt").write_text("x")
    assert main(["sample", str(tmp_path / "full")]) == 2
    assert main(["sample", str(tmp_path / "new"), "--kind", "fuzzy"]) == 2
    assert "unknown --kind" in capsys.readouterr().err


def test_stride_and_coords_options_reach_the_csv(tmp_path):
    maps = np.zeros((12, 16), np.float32)
    maps[11, 15] = 1.0
    np.save(tmp_path / "m.npy", maps)
    out = tmp_path / "out"
    args = ["run", str(tmp_path / "m.npy"), "--out", str(out), "-q", "-d", "argmax"]
    assert main([*args, "--stride", "4", "--coords", "half-pixel"]) == 0
    (row,) = read_rows(out)
    assert (row["x"], row["y"]) == ("62.000000", "46.000000")  # 15·4 + 1.5, then + 0.5
    doc = json.loads((out / "coordinates.json").read_text())
    assert doc["settings"]["stride"] == [4.0] and doc["settings"]["coords"] == "half-pixel"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--stride", "0"], "--stride"),
        (["--spacing", "1,2,3,4"], "--spacing"),
        (["--coords", "normalized", "--spacing", "1"], "normalized"),
        (["--radius", "0"], "--radius"),
        (["--sigma", "-1"], "--sigma"),
    ],
)
def test_bad_frame_and_decoder_options(tmp_path, capsys, extra, message):
    np.save(tmp_path / "m.npy", np.eye(4, 6))
    assert main(["run", str(tmp_path / "m.npy"), "--out", str(tmp_path / "o"), *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_bench_prints_every_decoder_and_refuses_bad_shapes(capsys):
    assert main(["bench", "--shape", "2,3,12,10", "--repeats", "2", "--device", "cpu"]) == 0
    shown = capsys.readouterr().out
    for name in DECODERS:
        assert name in shown
    assert "maps/s" in shown
    assert main(["bench", "--shape", "3,x"]) == 2
    assert main(["bench", "--shape", "2,2,4,4,4", "--spatial-dims", "4"]) == 2


def test_hostile_names_reach_the_terminal_escaped_never_as_markup_or_controls(tmp_path, capsys):
    """Names pass through rich with markup and emoji off, and every control,
    C1 or bidi character escaped: in the summary table and in messages alike."""
    folder = tmp_path / "in"
    folder.mkdir()
    good = np.zeros((6, 5), np.float32)
    good[2, 3] = 1
    np.savez(folder / "a.npz", **{"[/oops]": good, "[bold]x": good})  # first: the table's example
    with zipfile.ZipFile(folder / "a.npz", "a") as archive:
        archive.writestr("[/bad].npy", b"not an array")
    np.save(folder / "b\x1b]0;PWNED\x07.npy", good)
    (folder / "report:warning:\u202e\x9b.npy").write_bytes(b"not an array")
    code = main(["run", str(folder), "--out", str(tmp_path / "out")])
    captured = capsys.readouterr()
    assert code == 1
    shown = captured.out + captured.err
    assert "\x1b" not in shown and "\x07" not in shown and "\x9b" not in shown
    assert "\u202e" not in shown and "⚠" not in shown
    assert "error: report:warning:\\u202e\\x9b.npy: not a valid .npy file" in captured.err
    assert "error: a.npz:[/bad]: not a valid .npy file" in captured.err
    assert "a.npz:[/oops]" in captured.out
    rows = read_rows(tmp_path / "out")
    names = {"a.npz:[/oops]", "a.npz:[bold]x", "b\x1b]0;PWNED\x07.npy"}
    assert names == {r["file"] for r in rows}


def _one_peak_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    peak = np.zeros((6, 6), np.float32)
    peak[2, 3] = 1
    np.save(folder / "a.npy", peak)
    return folder


@pytest.mark.parametrize(
    "extra, message",
    [
        (["-d", "softargmax", "--beta", "4e38"], "--beta must be"),
        (["-d", "softargmax", "--beta", "1e308"], "at most 1e+06"),
        (["--stride", "1e308"], "--stride takes"),
        (["--spacing", "1e308"], "--spacing takes"),
        (["-d", "dark", "--sigma", "1e300"], "--sigma must be"),
        (["-d", "dark", "--sigma", "1e10"], "from 0 to 10000 px"),
        (["-d", "local-softargmax", "--radius", "1e20"], "--radius"),
        (["--batch-bytes", "0"], "--batch-bytes"),
    ],
)
def test_options_whose_result_cant_be_finite_exit_2_with_one_line(tmp_path, capsys, extra, message):
    """Issue 8, items 3 and 8: β·x̂ overflowing float32, strides and spacings
    that make every coordinate ±inf, kernels of 320 GB: refused before any work."""
    folder = _one_peak_folder(tmp_path)
    out = tmp_path / "out"
    assert main(["run", str(folder), "--out", str(out), "-q", *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert "Traceback" not in err
    assert not out.exists()


def test_a_radius_far_beyond_the_map_is_clamped_to_it(tmp_path):
    """Issue 8, item 3: --radius 100000 once enumerated (2r+1)² offsets in Python
    (23 GB); a window can't exceed the map, so r = 10⁶ is r = 5 on a 6×6 map."""
    folder = _one_peak_folder(tmp_path)
    rows = {}
    for radius in ("5", "1000000"):
        out = tmp_path / f"out{radius}"
        args = ["run", str(folder), "--out", str(out), "-q", "--no-overlays"]
        assert main([*args, "-d", "local-softargmax", "--radius", radius]) == 0
        rows[radius] = [{k: v for k, v in r.items()} for r in read_rows(out)]
    assert rows["5"] == rows["1000000"]


def test_batch_bytes_does_not_change_the_csv(sample_set, tmp_path):
    """Issue 8, item 4: batches bounded by bytes give the same bytes out."""
    folder, _ = sample_set
    outs = []
    for limit in ("256M", "1"):  # 1 byte: every map is a batch of its own
        out = tmp_path / f"out{limit}"
        args = ["run", str(folder), "--out", str(out), "-q", "--no-overlays", "--format", "csv"]
        assert main([*args, "-d", "argmax", "-d", "dark", "--batch-bytes", limit]) == 0
        outs.append((out / "coordinates.csv").read_bytes())
    assert outs[0] == outs[1]


@pytest.mark.parametrize(
    "args, message",
    [
        (["bench", "--shape", "100000,100000,100000,100000"], "the most bench makes is 1 GiB"),
        (["bench", "--shape", "1,1,1000000,1000000"], "bytes of float32"),
        (["bench", "--shape", "2,8,8", "--repeats", "100000000000"], "--repeats must be"),
        (["sample", "{out}", "--kind", "clean", "--count", str(10**12)], "count must be"),
        (["sample", "{out}", "--kind", "clean", "--count", "100000"], "512 MiB"),
        (["sample", "{out}", "--kind", "clean", "--sigma", "1e300"], "sigma must be"),
        (["sample", "{out}", "--kind", "noisy", "--noise", "1e308"], "noise must be"),
        (["sample", "{out}", "--kind", "clean", "--offset", "1e308"], "offset must be"),
    ],
)
def test_sample_and_bench_refuse_huge_sizes_with_one_line(tmp_path, capsys, args, message):
    """Issue 8, item 13: sizes are checked before anything is allocated."""
    out = tmp_path / "samples"
    args = [a.format(out=out) for a in args]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not out.exists() or not any(out.iterdir())


def test_main_leaves_no_process_wide_trace(tmp_path):
    """Warnings filters and the SIGTERM handler are set inside main() and restored."""
    filters, handler = list(warnings.filters), signal.getsignal(signal.SIGTERM)
    folder = tmp_path / "in"
    folder.mkdir()
    np.save(folder / "m.npy", np.eye(4, dtype=np.float32))
    assert main(["run", str(folder), "--out", str(tmp_path / "out"), "-q"]) == 0
    assert main(["run", "--bogus"]) == 2
    assert main(["--version"]) == 0
    assert list(warnings.filters) == filters
    assert signal.getsignal(signal.SIGTERM) == handler


def test_sweep_without_the_plot_extra_exits_0_with_a_warning(
    clean_set, tmp_path, capsys, monkeypatch
):
    import heatdecode.sweep as sweep

    def no_matplotlib(path, points):
        raise ImportError("No module named 'matplotlib'")

    monkeypatch.setattr(sweep, "plot_sweep", no_matplotlib)
    out = tmp_path / "sweep"
    args = ["sweep", str(clean_set), "--truth", str(clean_set / "truth.csv"), "--out", str(out)]
    assert main([*args, "--beta", "5,15", "-q"]) == 0
    assert "pip install 'heatdecode[plot]'" in capsys.readouterr().err
    assert (out / "sweep.csv").exists() and not (out / "sweep.png").exists()


@pytest.mark.parametrize("command", [[], ["run"], ["sweep"], ["bench"], ["sample"]])
def test_dash_h_is_help(command, capsys):
    assert main([*command, "-h"]) == 0
    assert "Usage: heatdecode" in capsys.readouterr().out
