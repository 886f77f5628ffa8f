"""--overlays all|flagged|worst|none, --overlay-count, overlays/index.json,
hollow markers and physical aspect."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from heatdecode.overlays import MARKERS, colorize, render_overlay

WHITE = np.array(MARKERS["argmax"][1])
CYAN = np.array(MARKERS["softargmax"][1])


def index_of(out: Path) -> dict:
    return json.loads((out / "overlays" / "index.json").read_text())


def drawn_maps(out: Path) -> list[tuple[str, int, int]]:
    return [
        (m["file"], m["sample"], m["channel"]) for i in index_of(out)["images"] for m in i["maps"]
    ]


def peaks_folder(folder: Path, files: int = 3, channels: int = 4) -> Path:
    """Files of Gaussian peaks off the pixel grid: softargmax lands a different
    distance from argmax on every map."""
    folder.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[0:24, 0:24]
    rng = np.random.default_rng(3)
    for f in range(files):
        maps = np.zeros((channels, 24, 24), np.float32)
        for c in range(channels):
            cx, cy = rng.uniform(6, 18, 2)
            maps[c] = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * rng.uniform(1, 3) ** 2))
        np.save(folder / f"f{f}.npy", maps)
    return folder


# ------------------------------------------------------------------ markers


def test_hollow_markers_leave_the_peak_pixel_visible():
    maps = np.zeros((1, 20, 20))
    maps[0, 10, 10] = 1.0
    points = {"argmax": np.array([[10.0, 10.0]]), "softargmax": np.array([[10.0, 10.0]])}
    image = np.asarray(render_overlay(maps, points, "t"))
    bare = np.asarray(render_overlay(maps, {}, "t"))
    peak_colour = colorize(maps[0])[10, 10]
    # panel at (6, 30 + 16 caption), zoom 10: pixel (10, 10) covers screen 106..115, 146..155
    centre = image[146 + 3 : 146 + 7, 106 + 3 : 106 + 7]
    assert (centre == peak_colour).all()  # neither the + nor the circle covers it
    assert (centre == bare[146 + 3 : 146 + 7, 106 + 3 : 106 + 7]).all()
    assert (image != bare).any(-1).sum() > 50  # and the markers are drawn around it


def test_two_decoders_a_third_of_a_pixel_apart_give_distinguishable_marks():
    maps = np.zeros((1, 20, 20))
    maps[0, 10, 10] = 1.0

    def centres(soft_x: float) -> tuple[np.ndarray, np.ndarray]:
        points = {"argmax": np.array([[10.0, 10.0]]), "softargmax": np.array([[soft_x, 10.0]])}
        image = np.asarray(render_overlay(maps, points, "t"))[40:-30]
        white = np.argwhere((image == WHITE).all(-1)).mean(0)
        cyan = np.argwhere((image == CYAN).all(-1)).mean(0)
        return white, cyan

    white, cyan = centres(10.3)
    same_white, same_cyan = centres(10.0)
    assert same_cyan[1] == pytest.approx(same_white[1], abs=0.5)  # same point: centred
    assert cyan[1] - same_cyan[1] == pytest.approx(0.3 * 10, abs=1.0)  # zoom 10: 3 screen px
    assert white[1] == pytest.approx(same_white[1], abs=1.0)  # the + stays where argmax is
    assert (cyan - white)[1] - (same_cyan - same_white)[1] >= 2  # the gap shows


# ------------------------------------------------------------------- aspect


def panel_boxes(image) -> list[tuple[int, int]]:
    """(width, height) of each run of panel columns holding the colour map's low colour."""
    low = (np.asarray(image) == colorize(np.zeros((1, 1)))[0, 0]).all(-1)
    columns = np.flatnonzero(low.any(0))
    runs = np.split(columns, np.flatnonzero(np.diff(columns) > 1) + 1)
    return [(len(r), int(low[:, r[0]].sum())) for r in runs]


def test_anisotropic_spacing_draws_projections_in_physical_aspect():
    volume = np.zeros((1, 10, 20, 20))  # D=10, H=20, W=20
    plain = panel_boxes(render_overlay(volume, {}, "t"))
    assert [round(h / w, 2) for w, h in plain] == [1.0, 0.5, 2.0]  # in voxels
    # z voxels three times as long as x, y: x-z is 20 wide by 30 high (mm), z-y 30 by 20
    boxes = panel_boxes(render_overlay(volume, {}, "t", spacing=(0.5, 0.5, 1.5)))
    assert [round(h / w, 2) for w, h in boxes] == [1.0, 1.5, 0.67]


def test_spacing_stretches_a_2d_map_and_keeps_markers_on_their_pixel():
    maps = np.zeros((1, 20, 20))
    points = {"argmax": np.array([[15.0, 5.0]])}
    image = render_overlay(maps, points, "t", spacing=(2.0, 1.0))
    [(w, h)] = panel_boxes(image)
    assert w == pytest.approx(2 * h, abs=2)
    white = np.argwhere((np.asarray(image)[40:-30] == WHITE).all(-1)).mean(0)
    assert white[1] - 6 == pytest.approx((15.5 / 20) * w, abs=2)
    assert white[0] + 40 - 46 == pytest.approx((5.5 / 20) * h, abs=2)


# -------------------------------------------------------------------- modes


def test_default_is_worst_and_draws_the_largest_disagreements_first(tmp_path):
    from heatdecode.comparison import worst_maps
    from heatdecode.runner import RunConfig, run

    folder = peaks_folder(tmp_path / "in")
    out = tmp_path / "out"
    assert RunConfig().overlays == "worst" and RunConfig().overlay_count == 24
    report = run([folder], out, RunConfig(overlay_count=5))
    index = index_of(out)
    assert index["mode"] == "worst" and index["count"] == 5 and index["complete"] is True
    chosen = worst_maps(report.records, report.frame, 5)
    assert drawn_maps(out) == sorted(
        [(w.file, w.sample, w.channel) for w in chosen],
        key=lambda k: [i for i, w in enumerate(chosen) if w.file == k[0]][0],
    )
    distances = [m["distance"] for i in index["images"] for m in i["maps"]]
    firsts = [i["maps"][0]["distance"] for i in index["images"]]
    assert firsts == sorted(firsts, reverse=True) and len(distances) == 5
    doc = json.loads((out / "coordinates.json").read_text())
    drawn = {i["file"]: i["image"] for i in index["images"]}
    assert {f["file"]: f["overlay"] for f in doc["files"] if f["overlay"]} == drawn
    for entry in index["images"]:
        assert (out / entry["image"]).is_file()
        assert [m["panel"]["index"] for m in entry["maps"]] == list(range(len(entry["maps"])))


def test_flagged_draws_only_maps_whose_status_is_not_ok(tmp_path):
    from heatdecode.runner import RunConfig, run

    clean = np.zeros((3, 20, 24), np.float32)
    clean[:, 5, 6] = 1.0
    odd = clean.copy()
    odd[2, 15, 20] = 0.9  # channel 2 has a second peak: multimodal
    (tmp_path / "in").mkdir()
    np.save(tmp_path / "in" / "clean.npy", clean)
    np.save(tmp_path / "in" / "odd.npy", odd)
    out = tmp_path / "out"
    run([tmp_path / "in"], out, RunConfig(overlays="flagged"))
    assert sorted(p.name for p in (out / "overlays").glob("*.png")) == ["odd.npy.png"]
    [image] = index_of(out)["images"]
    assert image["image"] == "overlays/odd.npy.png"
    assert [(m["channel"], m["status"], m["point"]) for m in image["maps"]] == [
        (2, "multimodal", 0)
    ]


def test_all_draws_every_file_and_lists_every_panel_in_a_grid(tmp_path):
    from heatdecode.runner import RunConfig, run

    folder = peaks_folder(tmp_path / "in", files=2, channels=5)
    out = tmp_path / "out"
    run([folder], out, RunConfig(overlays="all"))
    index = index_of(out)
    assert [i["image"] for i in index["images"]] == ["overlays/f0.npy.png", "overlays/f1.npy.png"]
    panels = [m["panel"] for m in index["images"][0]["maps"]]
    # 5 maps: a grid 3 wide
    assert [(p["row"], p["column"]) for p in panels] == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1)]
    assert index["count"] is None and index["mode"] == "all"


def test_none_and_the_old_boolean_switch(tmp_path):
    from heatdecode.runner import RunConfig, run

    folder = peaks_folder(tmp_path / "in", files=1)
    run([folder], tmp_path / "a", RunConfig(overlays="none"))
    run([folder], tmp_path / "b", RunConfig(overlays=False))
    assert not (tmp_path / "a" / "overlays").exists()
    assert not (tmp_path / "b" / "overlays").exists()
    run([folder], tmp_path / "c", RunConfig(overlays=True))
    assert index_of(tmp_path / "c")["mode"] == "all"


def test_unknown_mode_and_bad_count_are_refused_before_anything_is_read(tmp_path):
    from heatdecode.options import OptionError
    from heatdecode.runner import RunConfig, run

    with pytest.raises(OptionError, match="overlays must be one of"):
        run([tmp_path], tmp_path / "out", RunConfig(overlays="some"))
    with pytest.raises(OptionError, match="overlay_count"):
        run([tmp_path], tmp_path / "out", RunConfig(overlay_count=0))
    assert not (tmp_path / "out").exists()


def test_worst_reports_a_file_that_changed_before_it_could_be_drawn(tmp_path, monkeypatch):
    from heatdecode import overlay_worst
    from heatdecode.runner import RunConfig, run

    folder = peaks_folder(tmp_path / "in", files=1)
    real = overlay_worst.draw_worst

    def shrink_then_draw(*args):
        np.save(folder / "f0.npy", np.zeros((2, 8, 8), np.float32))
        return real(*args)

    monkeypatch.setattr(overlay_worst, "draw_worst", shrink_then_draw)
    report = run([folder], tmp_path / "out", RunConfig())
    [failure] = report.overlay_errors
    assert failure.kind == "overlay" and "changed since it was decoded" in failure.reason
    assert report.results and not report.ok  # coordinates kept, the failure counted


def test_worst_with_resume_ranks_the_whole_run(tmp_path, monkeypatch):
    from heatdecode import runner
    from heatdecode.runner import Interrupted, RunConfig, run

    folder = peaks_folder(tmp_path / "in", files=4, channels=3)
    config = RunConfig(overlay_count=6, workers=1, prefetch=1, batch_size=1)
    reference = tmp_path / "reference"
    run([folder], reference, config)

    real = runner.decode_sources

    def decode(todo, settings, **kwargs):
        inner, seen = kwargs["on_complete"], []

        def on_complete(result, maps):
            seen.append(result.name)
            if len(seen) == 3:
                raise KeyboardInterrupt
            inner(result, maps)

        monkeypatch.setattr(runner, "decode_sources", real)
        return real(todo, settings, **{**kwargs, "on_complete": on_complete})

    monkeypatch.setattr(runner, "decode_sources", decode)
    out = tmp_path / "out"
    with pytest.raises(Interrupted):
        run([folder], out, config)
    partial = index_of(out)
    assert partial["complete"] is False and partial["images"] == []  # drawn once it's whole
    run([folder], out, RunConfig(**{**config.__dict__, "resume": True}))
    assert index_of(out) == index_of(reference)
    for entry in index_of(out)["images"]:
        image = entry["image"]
        assert (out / image).read_bytes() == (reference / image).read_bytes()


def test_all_with_resume_keeps_the_interrupted_runs_entries(tmp_path, monkeypatch):
    from heatdecode import runner
    from heatdecode.runner import Interrupted, RunConfig, run

    folder = peaks_folder(tmp_path / "in", files=4, channels=2)
    config = RunConfig(overlays="all", workers=1, prefetch=1, batch_size=1)
    reference = tmp_path / "reference"
    run([folder], reference, config)
    real = runner.decode_sources

    def decode(todo, settings, **kwargs):
        kwargs["on_complete"] = _stop_at(kwargs["on_complete"], 3)
        monkeypatch.setattr(runner, "decode_sources", real)
        return real(todo, settings, **kwargs)

    monkeypatch.setattr(runner, "decode_sources", decode)
    out = tmp_path / "out"
    with pytest.raises(Interrupted):
        run([folder], out, config)
    assert 0 < len(index_of(out)["images"]) < 4
    run([folder], out, RunConfig(**{**config.__dict__, "resume": True}))
    assert index_of(out) == index_of(reference)


def _stop_at(inner, count: int):
    seen = []

    def on_complete(result, maps):
        seen.append(result.name)
        if len(seen) == count:
            raise KeyboardInterrupt
        inner(result, maps)

    return on_complete


# ---------------------------------------------------------------------- CLI


def test_cli_overlays_option_the_hidden_alias_and_count(tmp_path, capsys):
    from heatdecode.cli import main

    folder = peaks_folder(tmp_path / "in", files=2)
    args = ["run", str(folder), "-q"]
    assert main([*args, "--out", str(tmp_path / "a"), "--no-overlays"]) == 0
    assert not (tmp_path / "a" / "overlays").exists()
    assert main([*args, "--out", str(tmp_path / "b"), "--overlays", "none"]) == 0
    assert not (tmp_path / "b" / "overlays").exists()
    assert main([*args, "--out", str(tmp_path / "c"), "--overlay-count", "2"]) == 0
    assert len(drawn_maps(tmp_path / "c")) == 2
    assert main([*args, "--out", str(tmp_path / "d"), "--overlays", "all"]) == 0
    assert len(drawn_maps(tmp_path / "d")) == 8
    capsys.readouterr()
    assert main([*args, "--out", str(tmp_path / "e"), "--overlays", "all", "--no-overlays"]) == 2
    assert "--no-overlays contradicts --overlays all" in capsys.readouterr().err
    bad = ["--out", str(tmp_path / "f"), "--overlays", "flagged", "--overlay-count", "3"]
    assert main([*args, *bad]) == 2
    assert "--overlay-count is for --overlays worst" in capsys.readouterr().err
    assert main([*args, "--out", str(tmp_path / "g"), "--overlay-count", "0"]) == 2
    assert "--overlay-count must be at least 1" in capsys.readouterr().err


def test_cli_overlay_defaults_match_run_config():
    from heatdecode.cli import run as cli_run
    from heatdecode.runner import RunConfig

    assert cli_run.DEFAULT_OVERLAYS == RunConfig().overlays
    assert cli_run.DEFAULT_OVERLAY_COUNT == RunConfig().overlay_count
