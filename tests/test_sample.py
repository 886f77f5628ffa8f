"""The sample generator: peaks where truth.csv says, every format, reproducible."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from PIL import Image

from heatdecode.sample import gaussian, write_sample


def test_gaussian_peaks_at_its_centre_in_xy_order():
    g = gaussian((9, 13), np.array([10.0, 2.0]), 1.5)  # x=10 (column), y=2 (row)
    assert np.unravel_index(g.argmax(), g.shape) == (2, 10)
    g3 = gaussian((5, 6, 7), np.array([6.0, 1.0, 3.0]), 1.0)  # x, y, z
    assert np.unravel_index(g3.argmax(), g3.shape) == (3, 1, 6)


def test_every_truth_row_sits_within_half_a_pixel_of_its_map_maximum(sample_set, read_map):
    folder, truth = sample_set
    assert len(truth) == 22
    for row in truth:
        heatmap = read_map(folder, row["file"], row["sample"], row["channel"])
        peak = np.unravel_index(heatmap.argmax(), heatmap.shape)[::-1]
        true = [row["x"], row["y"]] + ([row["z"]] if row["z"] is not None else [])
        assert np.all(np.abs(np.array(peak) - true) <= 0.5 + 1e-9), row


def test_formats_and_shapes(sample_set):
    folder, _ = sample_set
    assert Image.open(folder / "png8/peak_0.png").mode == "L"
    assert Image.open(folder / "png16/peak_0.png").mode.startswith("I;16")
    assert np.load(folder / "pose_nchw.npy").shape == (2, 5, 48, 40)
    volume = np.load(folder / "volume_ncdhw.npy")
    assert volume.ndim == 5 and len(set(volume.shape[2:])) == 3  # non-cubic
    with np.load(folder / "maps.npz") as archive:
        assert sorted(archive.files) == ["left", "right"]


def test_same_seed_same_bytes(tmp_path):
    write_sample(tmp_path / "a", seed=3)
    write_sample(tmp_path / "b", seed=3)
    for path in sorted((tmp_path / "a").rglob("*")):
        if path.is_file():
            twin = tmp_path / "b" / path.relative_to(tmp_path / "a")
            assert path.read_bytes() == twin.read_bytes()


def test_shipped_sample_data_is_what_the_generator_writes(tmp_path):
    from pathlib import Path

    shipped = Path(__file__).resolve().parents[1] / "sample_data"
    if not shipped.is_dir():
        pytest.skip("no sample_data/ beside the tests")
    write_sample(tmp_path / "fresh", seed=0)
    with open(shipped / "truth.csv", newline="") as a, open(tmp_path / "fresh" / "truth.csv") as b:
        assert list(csv.reader(a)) == list(csv.reader(b))
