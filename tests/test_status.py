"""Every status a row can carry, each produced by a map that deserves it."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

from heatdecode.cli import main
from heatdecode.sample import gaussian
from heatdecode.status import (
    STATUSES,
    decoder_low_contrast,
    low_contrast,
    multimodal,
    row_status,
    with_flags,
)


def peak(shape=(30, 40), centre=(12.3, 14.6), sigma=2.0) -> np.ndarray:
    return gaussian(shape, np.array(centre), sigma)


def test_one_gaussian_is_not_multimodal_even_when_broad_or_3d():
    maps = torch.tensor(np.stack([peak(sigma=s) for s in (1.0, 2.0, 5.0)]))
    assert multimodal(maps).tolist() == [False, False, False]
    volume = torch.tensor(gaussian((12, 14, 16), np.array([7.2, 6.1, 5.5]), 2.0))[None]
    assert multimodal(volume).tolist() == [False]


def test_a_second_peak_counts_only_when_half_as_high_and_separated():
    main_peak = peak(centre=(10.0, 15.0))
    second = peak(centre=(30.0, 15.0))
    maps = torch.tensor(np.stack([main_peak + 0.6 * second, main_peak + 0.4 * second]))
    assert multimodal(maps).tolist() == [True, False]
    # heights count above the map's minimum: an offset changes nothing
    assert multimodal(maps + 100.0).tolist() == [True, False]
    # two touching Gaussians 2 px apart merge into one peak
    merged = torch.tensor(peak(centre=(14.0, 15.0)) + peak(centre=(16.0, 15.0)))[None]
    assert multimodal(merged).tolist() == [False]


def test_flat_and_random_maps():
    assert multimodal(torch.zeros(1, 8, 8)).tolist() == [False]
    noise = torch.rand(1, 32, 32, generator=torch.Generator().manual_seed(0))
    assert multimodal(noise).tolist() == [True]


@pytest.mark.parametrize(
    ("beta", "normalize", "expected"),
    [(5.0, "minmax", True), (20.0, "minmax", False), (5.0, "none", True), (8.0, "none", False)],
)
def test_low_contrast_compares_beta_times_range_with_log_n(beta, normalize, expected):
    maps = torch.tensor(peak())[None]  # 1200 px: ln N = 7.09; the range is 1.0
    assert low_contrast(maps, beta, normalize).tolist() == [expected]


def test_low_contrast_of_a_small_window_uses_its_own_size():
    maps = torch.tensor(peak())[None]
    assert low_contrast(maps, 5.0, "minmax").item()
    assert not low_contrast(maps, 5.0, "minmax", support=25).item()  # ln 25 = 3.2 < 5


def test_decoder_low_contrast_counts_the_positions_its_softmax_runs_over():
    maps = torch.tensor(peak())[None]  # 30×40
    assert decoder_low_contrast(maps, {}) is None  # no softmax, no flag
    whole = decoder_low_contrast(maps, {"beta": 5.0, "normalize": "minmax"})
    window = decoder_low_contrast(maps, {"beta": 5.0, "normalize": "minmax", "radius": 2})
    assert whole.tolist() == low_contrast(maps, 5.0, "minmax").tolist() == [True]
    assert window.tolist() == low_contrast(maps, 5.0, "minmax", support=25).tolist() == [False]
    huge = {"beta": 5.0, "normalize": "minmax", "radius": 10**6}  # clamped to the map
    assert decoder_low_contrast(maps, huge).tolist() == [True]


def test_flags_of_an_empty_batch_are_empty():
    from heatdecode import decode

    assert multimodal(torch.zeros(0, 5, 6)).shape == (0,)
    assert low_contrast(torch.zeros(0, 5, 6), 1.0, "none").shape == (0,)
    out = decode(torch.zeros(0, 3, 5, 6), "softargmax")
    assert out.status.shape == (0, 3) and out.multimodal.shape == (0, 3)
    empty = with_flags(out._replace(multimodal=None), torch.zeros(0, 3, 5, 6), 2, {})
    assert empty.low_contrast is None and empty.multimodal.shape == (0, 3)


def rows_for(tmp_path, array: np.ndarray, *args: str) -> list[dict[str, str]]:
    np.save(tmp_path / "m.npy", array)
    out = tmp_path / "out"
    main(["run", str(tmp_path / "m.npy"), "--out", str(out), "-q", "--no-overlays", *args])
    with open(out / "coordinates.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_every_status_is_produced_by_a_real_run(tmp_path):
    maps = np.zeros((6, 30, 40))
    maps[0] = peak()  # ok
    maps[1] = 3.0  # flat
    maps[2] = peak()
    maps[2, 0, 0] = np.nan  # nonfinite
    maps[3] = peak(centre=(0.0, 14.0))  # on the left edge: border for refiners
    maps[4] = peak(centre=(10.0, 15.0)) + 0.6 * peak(centre=(30.0, 15.0))  # multimodal
    maps[5] = peak(sigma=8.0) * 0.05 + 1.0  # a broad, faint bump: low contrast for β=3
    rows = rows_for(
        tmp_path, maps, "-d", "argmax", "-d", "softargmax", "-d", "parabola", "--beta", "3"
    )
    status = {(int(r["channel"]), r["decoder"]): r["status"] for r in rows}
    assert status[(0, "parabola")] == "ok"
    assert status[(1, "argmax")] == "flat"
    assert status[(2, "softargmax")] == "nonfinite"
    assert status[(3, "parabola")] == "border"
    assert status[(3, "argmax")] == "ok"  # argmax has nothing to refine at the edge
    assert status[(4, "argmax")] == "multimodal"
    assert status[(5, "softargmax")] == "low-contrast"
    seen = set(status.values())
    assert seen <= set(STATUSES)


def test_unrefined_when_the_parabola_has_nothing_to_fit(tmp_path):
    maps = np.full((1, 9, 9), -1.0)
    maps[0, 4, 4] = -0.5  # the peak is negative: there is no log to fit
    rows = rows_for(tmp_path, maps, "-d", "parabola")
    assert rows[0]["status"] == "unrefined"
    assert (rows[0]["x"], rows[0]["y"]) == ("4.000000", "4.000000")


@pytest.mark.parametrize("kind", ["flat", "noisy", "flat-top"])
def test_multimodal_tests_candidates_in_slabs_not_all_at_once(monkeypatch, kind):
    """Issue 8, item 4: flat or noisy maps made every pixel a candidate, whose
    indices took ~30 bytes a pixel (1.4 GB for a 144 MB map). Candidates are now
    tested a slab at a time (and constant maps not at all), with the same answers."""
    import heatdecode.status as status

    rng = np.random.default_rng(0)
    maps = {
        "flat": np.zeros((3, 60, 70)),
        "noisy": rng.random((3, 60, 70)),
        "flat-top": np.pad(np.ones((3, 20, 20)), ((0, 0), (20, 20), (25, 25))),
    }[kind]
    maps = torch.from_numpy(maps.astype(np.float32))
    expected = multimodal(maps)
    seen: list[int] = []
    original = status._local_maxima_at

    def counting(x, where):
        seen.append(len(where))
        return original(x, where)

    monkeypatch.setattr(status, "_local_maxima_at", counting)
    monkeypatch.setattr(status, "_CANDIDATE_CHUNK", 500, raising=False)
    assert torch.equal(multimodal(maps), expected)
    assert max(seen, default=0) <= 500
    if kind == "flat":
        assert seen == []  # a constant map has no peak to test


@pytest.mark.parametrize(
    ("serious", "lesser"),
    [(a, b) for i, a in enumerate(STATUSES[:-1]) for b in STATUSES[i + 1 : -1]],
)
def test_the_more_serious_status_wins_when_a_row_carries_two(serious, lesser):
    assert row_status({serious: True, lesser: True}) == serious
    assert row_status({lesser: True, serious: False}) == lesser


def test_every_flag_at_once_is_nonfinite_and_none_is_ok():
    assert row_status(dict.fromkeys(STATUSES[:-1], True)) == "nonfinite"
    assert row_status(dict.fromkeys(STATUSES[:-1], False)) == "ok"
    with pytest.raises(ValueError, match="unknown status flag"):
        row_status({"ok": True})


def test_a_refined_peak_on_the_border_of_a_two_peak_map_is_border_not_multimodal(tmp_path):
    maps = np.zeros((1, 20, 30))
    maps[0, 0, 10] = 1.0  # the highest peak on the top edge
    maps[0, 12, 25] = 0.8  # a second one, far away
    rows = rows_for(tmp_path, maps, "-d", "argmax", "-d", "parabola")
    status = {r["decoder"]: r["status"] for r in rows}
    assert status == {"argmax": "multimodal", "parabola": "border"}
