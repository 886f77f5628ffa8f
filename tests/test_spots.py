"""``heatdecode sample --kind spots``: many spots per map, each one where truth.csv says."""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from heatdecode.cli import main
from heatdecode.sample import KINDS, PRESET_NAMES, TRUTH_COLUMNS, anisotropic_gaussian
from heatdecode.spots import (
    SPOT_FILES,
    SPOT_SHAPES,
    SPOTS_PER_MAP,
    place_spots,
    render_spots,
    spot_margin,
    write_spots,
)

SIGMA = 1.5
COUNT = 3


def spots(tmp_path_factory, **knobs):
    """Write a spots set; returns (folder, truth rows, maps as (count, *spatial) float64)."""
    folder = tmp_path_factory.mktemp("spots")
    truth = write_spots(folder, **{"count": COUNT, "seed": 5, **knobs})
    maps = np.load(folder / SPOT_FILES[knobs.get("dims", 2)])[:, 0].astype(np.float64)
    return folder, truth, maps


@pytest.fixture(scope="module")
def clean2d(tmp_path_factory):
    return spots(tmp_path_factory)


@pytest.fixture(scope="module")
def clean3d(tmp_path_factory):
    return spots(tmp_path_factory, dims=3)


def xyz(rows):
    return np.array([[r["x"], r["y"]] + ([r["z"]] if r["z"] is not None else []) for r in rows])


def per_map(truth, sample):
    return [r for r in truth if r["sample"] == sample]


def test_kinds_are_the_presets_and_spots():
    assert KINDS == (*PRESET_NAMES, "spots")


@pytest.mark.parametrize(("which", "dims"), [("clean2d", 2), ("clean3d", 3)])
def test_files_shapes_and_truth_csv(request, which, dims):
    folder, truth, _ = request.getfixturevalue(which)
    name = {2: "spots.npy", 3: "spot_volumes.npy"}[dims]
    stored = np.load(folder / name)
    assert stored.dtype == np.float32
    assert stored.shape == (COUNT, 1, *SPOT_SHAPES[dims])
    assert stored.shape[2:] == ((256, 256) if dims == 2 else (48, 64, 64))  # D×H×W non-cubic
    with open(folder / "truth.csv", newline="") as fh:
        lines = list(csv.reader(fh))
    assert tuple(lines[0]) == TRUTH_COLUMNS
    assert len(lines) - 1 == len(truth) == COUNT * SPOTS_PER_MAP[dims]
    assert [(f, int(n), int(c), d) for f, n, c, d, *_ in lines[1:]] == [
        (name, r["sample"], 0, "truth") for r in truth
    ]
    assert [float(line[4]) for line in lines[1:]] == [r["x"] for r in truth]  # full precision
    assert all((r["z"] is None) == (dims == 2) for r in truth)
    # by sample, then by score (the amplitude) highest first
    keys = [(r["sample"], -r["score"]) for r in truth]
    assert keys == sorted(keys) and (truth[0]["sample"], truth[-1]["sample"]) == (0, COUNT - 1)


@pytest.mark.parametrize("which", ["clean2d", "clean3d"])
def test_every_spot_is_the_maximum_of_a_window_around_its_truth(request, which):
    """Argmax of ±2 px around each truth point is the nearest pixel (neighbours' tails,
    ≥ 4σ away, move a maximum by < 0.01 px), and a log-parabola fit through it
    and its neighbours (exact for one Gaussian) gives the truth within 0.02 px."""
    _, truth, maps = request.getfixturevalue(which)
    for row in truth:
        heatmap, true = maps[row["sample"]], xyz([row])[0]
        near = np.rint(true).astype(int)[::-1]  # array order
        window = heatmap[tuple(slice(a - 2, a + 3) for a in near)]
        peak = np.array(np.unravel_index(window.argmax(), window.shape)) + near - 2
        assert np.all(np.abs(peak[::-1] - true) <= 0.5 + 0.01), row
        fitted = []
        for axis in range(heatmap.ndim):
            step = np.eye(heatmap.ndim, dtype=int)[axis]
            lo, mid, hi = (np.log(heatmap[tuple(peak + k * step)]) for k in (-1, 0, 1))
            fitted.append(peak[axis] + 0.5 * (lo - hi) / (lo - 2 * mid + hi))
        assert np.all(np.abs(np.array(fitted[::-1]) - true) < 0.02), row
        # the nearest pixel is at most √dims / 2 px off; the neighbours add < 0.01
        lowest = row["score"] * np.exp(-heatmap.ndim / 8 / SIGMA**2)
        assert lowest - 0.01 <= heatmap[tuple(peak)] <= row["score"] + 0.01, row


@pytest.mark.parametrize("which", ["clean2d", "clean3d"])
def test_spots_are_4_sigma_apart_inside_the_margin_with_amplitudes_in_range(request, which):
    _, truth, maps = request.getfixturevalue(which)
    shape = maps.shape[1:]
    last = np.array(shape[::-1]) - 1
    margin = spot_margin(shape, SIGMA)
    assert np.allclose(margin, 3 * SIGMA)
    for sample in range(COUNT):
        centres = xyz(per_map(truth, sample))
        distance = np.linalg.norm(centres[:, None] - centres[None], axis=-1)
        np.fill_diagonal(distance, np.inf)
        assert distance.min() >= 4 * SIGMA
        assert np.all(centres >= margin) and np.all(centres <= last - margin)
    scores = np.array([r["score"] for r in truth])
    assert scores.min() >= 0.5 and scores.max() < 1.0
    assert scores.min() < 0.55 and scores.max() > 0.95  # spread over the range
    assert len({tuple(c) for c in xyz(truth) % 1}) == len(truth)  # sub-pixel, all different


def test_a_map_is_the_sum_of_its_spots(clean2d):
    """Overlapping tails add: the map's integral is each spot's, summed."""
    _, truth, maps = clean2d
    for sample in range(COUNT):
        heights = np.array([r["score"] for r in per_map(truth, sample)])
        # 3σ from the edge, each spot keeps > 99.7 % of its mass on the map
        expected = heights.sum() * 2 * np.pi * SIGMA**2
        assert maps[sample].sum() == pytest.approx(expected, rel=3e-3)


def test_render_adds_spots_drawn_within_4_sigma_windows():
    shape = (20, 30, 40)
    a, b = np.array([10.3, 12.6, 9.1]), np.array([13.9, 10.2, 8.4])  # x, y, z, 4 px apart
    both = render_spots(shape, np.array([a, b]), np.array([0.9, 0.6]), SIGMA)
    one = render_spots(shape, a[None], np.array([0.9]), SIGMA)
    other = render_spots(shape, b[None], np.array([0.6]), SIGMA)
    np.testing.assert_allclose(both, one + other, rtol=0, atol=1e-15)
    full = 0.9 * anisotropic_gaussian(shape, a, (SIGMA,) * 3)
    assert np.abs(one - full).max() < 0.9 * np.exp(-8)  # only the tails beyond 4σ are gone
    drawn = np.argwhere(one > 0)[:, ::-1]  # x, y, z of every drawn voxel
    assert np.abs(drawn - a).max() <= 6 and np.abs(drawn - a).min() < 1  # ⌈4 · 1.5⌉ = 6 px


def test_noise_and_offset_change_no_spot(tmp_path_factory, clean2d):
    _, truth, maps = spots(tmp_path_factory, noise=0.05, offset=0.2)
    _, clean_truth, clean = clean2d
    assert truth == [dict(r, score=r["score"] + 0.2) for r in clean_truth]
    residual = maps - clean - 0.2
    assert residual.std() == pytest.approx(0.05, rel=0.02) and abs(residual.mean()) < 0.002


def test_same_seed_same_bytes_and_map_i_whatever_the_count(tmp_path, clean3d):
    a = write_spots(tmp_path / "a", seed=5, count=2, dims=3, noise=0.1)
    b = write_spots(tmp_path / "b", seed=5, count=2, dims=3, noise=0.1)
    c = write_spots(tmp_path / "c", seed=6, count=2, dims=3, noise=0.1)
    assert a == b and a != c
    for name in ("spot_volumes.npy", "truth.csv"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
        assert (tmp_path / "a" / name).read_bytes() != (tmp_path / "c" / name).read_bytes()
    assert a == clean3d[1][: len(a)]  # seed 5, count 3, no noise: the same spots


def test_place_spots_keeps_every_candidate_far_enough_in_order():
    rng = np.random.default_rng(0)
    centres, tries = place_spots(rng, 30, np.zeros(2), np.full(2, 40.0), 6.0)
    assert len(centres) == 30 and tries >= 30
    distance = np.linalg.norm(centres[:, None] - centres[None], axis=-1)
    assert distance[~np.eye(30, dtype=bool)].min() >= 6.0
    again, _ = place_spots(np.random.default_rng(0), 30, np.zeros(2), np.full(2, 40.0), 6.0)
    np.testing.assert_array_equal(centres, again)


@pytest.mark.parametrize(
    ("knobs", "message"),
    [
        ({"spots_per_map": 5000}, r"5000 spots at least 6 px \(4σ\) apart can't fit in a 256×256"),
        ({"sigma": 10.0, "spots_per_map": 40}, r"placed only \d+ of 40 spots at least 40 px"),
        ({"dims": 4}, "dims must be 2 or 3"),
        ({"spots_per_map": 0}, "spots_per_map must be an integer from 1"),
        ({"spots_per_map": 2.5}, "spots_per_map must be an integer"),
        ({"spots_per_map": True}, "spots_per_map must be an integer"),
        ({"sigma": (1.0, 2.0)}, "sigma must be one number"),
        ({"sigma": 0.0}, "sigma must be > 0"),
        ({"count": 0}, "count must be"),
        ({"count": 2000, "spots_per_map": 200}, "400000 spots"),
        ({"noise": -1.0}, "noise must be"),
        ({"offset": float("inf")}, "offset must be"),
    ],
)
def test_bad_knobs_are_value_errors_before_anything_is_written(tmp_path, knobs, message):
    started = time.perf_counter()
    with pytest.raises(ValueError, match=message):
        write_spots(tmp_path / "s", **{"count": 1, **knobs})
    assert time.perf_counter() - started < 2
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("dims", [2, 3])
def test_cli_writes_the_spots_and_truth(tmp_path, capsys, dims):
    out = tmp_path / "s"
    args = ["sample", str(out), "--kind", "spots", "--dims", str(dims), "--count", "2"]
    assert main([*args, "--spots-per-map", "25", "--noise", "0.05", "--seed", "3"]) == 0
    assert capsys.readouterr().out.startswith("wrote 2 maps with 50 spots and ")
    assert np.load(out / SPOT_FILES[dims]).shape == (2, 1, *SPOT_SHAPES[dims])
    with open(out / "truth.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 50 and {r["decoder"] for r in rows} == {"truth"}
    assert main(["sample", str(tmp_path / "d"), "--kind", "spots", "--count", "1"]) == 0
    assert len((tmp_path / "d" / "truth.csv").read_text().splitlines()) == 1 + SPOTS_PER_MAP[2]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--kind", "clean", "--spots-per-map", "5"], "--spots-per-map is only for --kind spots"),
        (["--spots-per-map", "5"], "--spots-per-map is only for --kind spots"),
        (["--kind", "spots", "--spots-per-map", "0"], "--spots-per-map must be at least 1, got 0"),
        (["--kind", "spots", "--count", "1", "--spots-per-map", "9000"], "9000 spots at least"),
        (["--kind", "spots", "--spots-per-map", "99999"], "--spots-per-map must be an integer"),
        (["--kind", "spots", "--dims", "4"], "--dims must be 2 or 3"),
        (["--kind", "spots", "--sigma", "-1"], "sigma must be > 0"),
        (["--kind", "spotz"], "unknown --kind 'spotz'; choose from clean, .*, spots"),
    ],
)
def test_cli_bad_combinations_exit_2_in_one_line(tmp_path, capsys, extra, message):
    out = tmp_path / "s"
    assert main(["sample", str(out), *extra]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("heatdecode: error: "), lines
    assert re.search(message, lines[0]), lines
    assert not out.exists()


def test_cli_refuses_spots_per_map_without_spots_and_without_torch(tmp_path):
    probe = (
        "import json, sys\n"
        "from heatdecode.cli import main\n"
        "code = main(sys.argv[1:])\n"
        "print(json.dumps([code, 'torch' in sys.modules]))\n"
    )
    args = ["sample", str(tmp_path / "s"), "--kind", "noisy", "--spots-per-map", "5"]
    done = subprocess.run(
        [sys.executable, "-c", probe, *args], capture_output=True, text=True, timeout=120
    )
    assert json.loads(done.stdout.strip().splitlines()[-1]) == [2, False], done.stderr
    assert done.stderr.strip() == "heatdecode: error: --spots-per-map is only for --kind spots"
    assert not Path(tmp_path / "s").exists()
