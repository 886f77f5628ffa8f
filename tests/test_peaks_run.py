"""``heatdecode run --peaks``: every peak of each map, each decoder at each, scored by matching."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from heatdecode.cli import main
from heatdecode.writers import CSV_COLUMNS


def spots(shape: tuple[int, int], centres: list[tuple[float, float]], sigma: float = 1.5):
    """A map with a unit Gaussian at each (x, y) centre, and those centres."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    image = np.zeros(shape)
    for x, y in centres:
        image += np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma**2))
    return image.astype(np.float32)


CENTRES = [(10.3, 8.6), (30.8, 9.2), (20.1, 25.7), (45.5, 30.4)]


@pytest.fixture
def folder(tmp_path) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    maps = np.zeros((4, 40, 56), np.float32)
    maps[0] = spots((40, 56), CENTRES)
    maps[1] = np.nan  # not decoded
    maps[2] = 0.5  # flat
    maps[3] = spots((40, 56), CENTRES[:1]) * 0.1  # one weak peak, below an absolute threshold
    np.save(data / "m.npy", maps)
    with open(tmp_path / "truth.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["file", "sample", "channel", "x", "y"])
        for x, y in CENTRES:
            writer.writerow(["m.npy", 0, 0, x, y])
        writer.writerow(["m.npy", 0, 3, *CENTRES[0]])
    return data


def rows(out: Path) -> list[dict[str, str]]:
    with open(out / "coordinates.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_every_peak_gets_a_row_per_decoder_and_maps_without_peaks_say_why(folder, tmp_path):
    out = tmp_path / "out"
    args = ["run", str(folder), "--out", str(out), "--peaks", "--threshold", "0.3", "-q"]
    assert main([*args, "-d", "argmax", "-d", "parabola"]) == 1  # the NaN map
    found = rows(out)
    assert tuple(found[0]) == CSV_COLUMNS and CSV_COLUMNS[:8] == (
        "file", "sample", "channel", "decoder", "x", "y", "z", "score",
    )  # fmt: skip
    first = [r for r in found if r["channel"] == "0" and r["decoder"] == "parabola"]
    assert [r["peak"] for r in first] == ["0", "1", "2", "3"]
    got = sorted((float(r["x"]), float(r["y"])) for r in first)
    for (x, y), (tx, ty) in zip(got, sorted(CENTRES), strict=True):
        assert abs(x - tx) < 0.1 and abs(y - ty) < 0.1
    by_channel = {r["channel"]: r for r in found if r["channel"] != "0"}
    assert by_channel["1"]["status"] == "nonfinite" and by_channel["1"]["x"] == ""
    assert by_channel["2"]["status"] == "flat" and by_channel["2"]["x"] == ""
    assert by_channel["3"]["status"] == "no-peak" and by_channel["3"]["score"] != ""
    document = json.loads((out / "coordinates.json").read_text())
    assert document["settings"]["peaks"]["threshold_abs"] == 0.3
    assert document["summary"]["peaks_per_map"]["max"] == 4
    assert [p.name for p in (out / "overlays").glob("*.png")] == ["m.npy.png"]


def test_whole_map_softargmax_is_a_usage_error_in_peaks_mode(folder, tmp_path, capsys):
    code = main(["run", str(folder), "--out", str(tmp_path / "o"), "--peaks", "-d", "softargmax"])
    assert code == 2
    assert "no meaning at one peak" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_peak_options_without_peaks_are_a_usage_error(folder, tmp_path, capsys):
    assert main(["run", str(folder), "--out", str(tmp_path / "o"), "--min-distance", "3"]) == 2
    assert "--min-distance needs --peaks" in capsys.readouterr().err


def test_a_map_with_more_peaks_than_max_peaks_keeps_the_highest_and_warns(tmp_path, capsys):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "noise.npy", rng.random((1, 200, 300), dtype=np.float32))
    out = tmp_path / "out"
    args = ["run", str(tmp_path / "noise.npy"), "--out", str(out), "--peaks", "-d", "argmax"]
    assert main([*args, "--max-peaks", "50", "--threshold-rel", "0", "-q"]) == 0
    assert len(rows(out)) == 50
    assert "more than 50 peaks" in capsys.readouterr().err


def test_truth_with_many_points_per_map_is_scored_by_matching(folder, tmp_path):
    pytest.importorskip("scipy")
    out = tmp_path / "out"
    args = ["run", str(folder), "--out", str(out), "--peaks", "--threshold", "0.3", "-q"]
    args += ["-d", "argmax", "-d", "parabola", "--truth", str(tmp_path / "truth.csv")]
    assert main([*args, "--no-overlays"]) == 1
    with open(out / "metrics.csv", newline="") as fh:
        metrics = list(csv.DictReader(fh))
    pooled = {(r["decoder"], float(r["cutoff"])): r for r in metrics if r["scope"] == "pooled"}
    # channel 0: 4 of 4 found; channel 3: its one truth point has no peak above 0.3
    assert pooled["parabola", 1.0]["tp"] == "4" and pooled["parabola", 1.0]["fn"] == "1"
    assert pooled["parabola", 1.0]["fp"] == "0"
    assert float(pooled["parabola", 0.5]["mean_distance"]) < 0.1
    document = json.loads((out / "metrics.json").read_text())
    assert document["schema"] == "heatdecode.peak-metrics/1"


def test_single_point_runs_write_peak_zero(folder, tmp_path):
    out = tmp_path / "out"
    assert main(["run", str(folder), "--out", str(out), "-q", "--no-overlays"]) == 1
    assert {r["peak"] for r in rows(out)} == {"0"}


def test_resume_in_peaks_mode_equals_an_uninterrupted_run(tmp_path):
    from heatdecode.options import DecoderSelection, PeakOptions
    from heatdecode.runner import Interrupted, RunConfig, run

    data = tmp_path / "data"
    data.mkdir()
    for i in range(4):
        np.save(data / f"f{i}.npy", spots((40, 56), CENTRES[: i + 1])[None])
    settings = DecoderSelection(decoders=("argmax", "parabola"))
    config = RunConfig(
        settings=settings, peaks=PeakOptions(), overlays=False, workers=1, prefetch=1, batch_size=1
    )
    whole = tmp_path / "whole"
    run([data], whole, config)

    seen = []

    def stop(source, items):
        seen.append(source)
        if len(seen) == 3:
            raise KeyboardInterrupt

    out = tmp_path / "out"
    with pytest.raises(Interrupted):
        run([data], out, config, on_loaded=stop)
    assert (out / "coordinates.partial.csv").exists()
    from dataclasses import replace

    run([data], out, replace(config, resume=True))
    assert (out / "coordinates.csv").read_bytes() == (whole / "coordinates.csv").read_bytes()
    a, b = (json.loads((d / "coordinates.json").read_text()) for d in (out, whole))
    assert a["rows"] == b["rows"] and a["settings"] == b["settings"]


def test_many_peaks_are_drawn_small_enough_to_tell_apart(tmp_path):
    from heatdecode.overlays import _marker_radius

    assert _marker_radius((512, 512), 1) >= 7
    assert 3 <= _marker_radius((512, 512), 150) <= 11


def test_crowded_noisy_spots_reach_the_accuracy_the_readme_reports():
    """256² maps, 300 spots of σ = 1.5, noise 0.15, threshold 0.45, min_distance 2
    (benchmarks/accuracy_peaks.py, on 3 of its maps): the best refinement reaches
    F1 ≥ 0.86 at 1 px with a mean matched error ≤ 0.45 px, and F1 at 3 px is
    scikit-image's integer peaks' within 0.005."""
    import sys

    skimage = pytest.importorskip("skimage.feature")
    pytest.importorskip("scipy")
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from accuracy_peaks import scores, spot_set

    from heatdecode.peaks import find_peaks

    images, truth = spot_set(3, 0.15, seed=0)
    options = {"min_distance": 2, "threshold_abs": 0.45, "exclude_border": False}
    found = find_peaks(torch.from_numpy(images), refine="local-softargmax", **options)
    coords, index = found.coords.double().numpy(), found.map_index.numpy()
    best = scores([coords[index == i] for i in range(3)], truth)
    reference = [skimage.peak_local_max(m, **options)[:, ::-1].astype(float) for m in images]
    integer = scores(reference, truth)
    assert best["f1@1"] >= 0.86 and best["mean@1"] <= 0.45
    assert abs(best["f1@3"] - integer["f1@3"]) <= 0.005
