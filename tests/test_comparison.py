"""Where the decoders disagree: status counts, distance statistics, per channel, the worst maps."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from rich.console import Console

from heatdecode.cli import main, render
from heatdecode.comparison import (
    distance_stats,
    map_distances,
    per_channel,
    status_counts,
    worst_maps,
)
from heatdecode.frames import Frame
from heatdecode.results import FileRecord, PointRecord, SourceRecord


def point(decoder, x, y, channel=0, status="ok", sample=0):
    return PointRecord("m.npy", sample, channel, decoder, 0, (x, y), 1.0, None, status)


def record(points):
    file = FileRecord("m.npy", "m.npy", "NCHW", (2, 3, 8, 10), 2, 3, (8, 10))
    return SourceRecord("m.npy", files=[file], points=points)


RECORD = record(
    [
        point("argmax", 1, 1),
        point("softargmax", 4, 5),  # 5 px away
        point("argmax", 2, 2, channel=1),
        point("softargmax", 2, 3, channel=1, status="multimodal"),  # 1 px
        point("argmax", 3, 3, channel=2, status="unrefined"),
        point("softargmax", 3, 3, channel=2, status="low-contrast"),  # 0 px
    ]
)


def test_distances_are_per_point_in_heatmap_pixels_even_in_another_frame():
    assert map_distances([RECORD], Frame()) == {
        ("m.npy", 0, 0, 0): {"softargmax": 5.0},
        ("m.npy", 0, 1, 0): {"softargmax": 1.0},
        ("m.npy", 0, 2, 0): {"softargmax": 0.0},
    }
    halved = record([point("argmax", 0, 0), point("softargmax", 1.5, 2.0)])
    # stride 2: 2.5 output units are 1.25 heatmap pixels
    assert map_distances([halved], Frame(stride=(2.0,))) == {
        ("m.npy", 0, 0, 0): {"softargmax": pytest.approx(1.25)}
    }


def test_distance_stats_give_mean_p95_and_max():
    stats = distance_stats(np.array([0.0, 1.0, 5.0]))
    assert stats == {"mean": 2.0, "p95": pytest.approx(4.6), "max": 5.0}


def test_every_status_is_counted_per_decoder():
    counts = status_counts(RECORD.points, ["argmax", "softargmax"])
    assert counts == {
        "argmax": {"unrefined": 1, "ok": 2},
        "softargmax": {"low-contrast": 1, "multimodal": 1, "ok": 1},
    }
    assert list(counts["softargmax"]) == ["low-contrast", "multimodal", "ok"]  # status order


def test_per_channel_means_and_none_beyond_forty_channels():
    assert per_channel([RECORD], Frame()) == {
        0: {"softargmax": 5.0},
        1: {"softargmax": 1.0},
        2: {"softargmax": 0.0},
    }
    many = record(
        [p for c in range(41) for p in (point("argmax", 0, 0, c), point("dark", 0, 1, c))]
    )
    assert per_channel([many], Frame()) is None


def test_worst_maps_come_by_disagreement_then_flagged():
    worst = worst_maps([RECORD], Frame(), count=2)
    assert [(w.channel, w.distance, w.decoder) for w in worst] == [
        (0, 5.0, "softargmax"),
        (1, 1.0, "softargmax"),
    ]
    assert worst[1].status == "multimodal"
    flagged = worst_maps([RECORD], Frame(), count=5)
    assert [w.channel for w in flagged] == [0, 1, 2]
    assert flagged[2].status == "unrefined"  # the most serious of its rows


def test_the_json_summary_counts_every_status_and_the_p95(tmp_path):
    maps = np.zeros((2, 3, 20, 24), np.float32)
    maps[:, :, 5, 6] = 1.0
    maps[1, 2, 15, 20] = 0.9  # two peaks: multimodal
    np.save(tmp_path / "m.npy", maps)
    out = tmp_path / "out"
    assert main(["run", str(tmp_path / "m.npy"), "--out", str(out), "-q", "--no-overlays"]) == 0
    summary = json.loads((out / "coordinates.json").read_text())["summary"]
    assert summary["status_counts"]["argmax"] == {"multimodal": 1, "ok": 5}
    assert set(summary["distance_to_argmax_px"]["softargmax"]) == {"mean", "p95", "max"}


def test_the_summary_tables_fit_in_80_columns(tmp_path):
    rng = np.random.default_rng(0)
    maps = rng.random((3, 17, 16, 12), dtype=np.float32)
    np.save(tmp_path / "a_rather_long_file_name_for_a_pose_model.npy", maps)
    out = tmp_path / "out"
    decoders = [a for d in ("argmax", "softargmax", "local-softargmax", "dark") for a in ("-d", d)]
    assert main(["run", str(tmp_path), "--out", str(out), "-q", "--no-overlays", *decoders]) == 0
    from heatdecode.options import DecoderSelection
    from heatdecode.runner import RunConfig, run, summary

    labels = ("argmax", "softargmax", "local-softargmax", "dark")
    config = RunConfig(settings=DecoderSelection(decoders=labels), overlays=False, overwrite=True)
    report = run([tmp_path / "a_rather_long_file_name_for_a_pose_model.npy"], out, config)
    buffer = io.StringIO()
    console = Console(file=buffer, width=80, highlight=False, markup=False)
    for table in render.agreement_tables(report, summary(report)):
        console.print(table)
    text = buffer.getvalue()
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "local-softargm" in text
    # nothing cut by the table itself: the only "…" is the long file name's own shortening
    assert all(line.startswith("│ …me_for") for line in text.splitlines() if "…" in line)
