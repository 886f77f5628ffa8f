"""What the report page shows, computed from a run's records: the table of
every map, the histograms and the gallery."""

from __future__ import annotations

import numpy as np
import pytest

from heatdecode.frames import Frame
from heatdecode.report_data import (
    gallery,
    histograms,
    map_table,
    overlay_images,
    reference_label,
)
from heatdecode.results import FileRecord, PointRecord, SourceRecord


def _file(name: str, samples: int, channels: int, shape=(20, 30), overlay=None) -> FileRecord:
    return FileRecord(
        name, name, "NCHW", (samples, channels, *shape), samples, channels, shape, overlay=overlay
    )


def _point(file, sample, channel, decoder, xy, status="ok", score=1.0, point=0) -> PointRecord:
    return PointRecord(file, sample, channel, decoder, point, xy, score, None, status)


@pytest.fixture
def records(rng):
    """Two files; argmax at integers, softargmax and parabola offset at random."""
    out = []
    for name, samples, channels in (("a.npy", 2, 3), ("b.npy", 1, 2)):
        points = []
        for s in range(samples):
            for c in range(channels):
                base = rng.integers(2, 15, size=2).astype(float)
                points.append(_point(name, s, c, "argmax", tuple(base)))
                for label in ("softargmax", "parabola"):
                    offset = rng.normal(0, 0.5, size=2)
                    points.append(_point(name, s, c, label, tuple(base + offset)))
        out.append(SourceRecord(name, [_file(name, samples, channels)], points, []))
    return out


def test_the_reference_is_argmax_when_it_ran_else_the_first_decoder():
    assert reference_label(["softargmax", "argmax"]) == "argmax"
    assert reference_label(["dark", "parabola"]) == "dark"
    assert reference_label([]) is None


def test_map_table_has_one_row_per_map_with_each_distance_to_argmax(records):
    table = map_table(records, ["argmax", "softargmax", "parabola"], Frame())
    assert table.rows == 8
    assert table.files == ["a.npy", "b.npy"]
    assert set(table.distances) == {"softargmax", "parabola"}
    by_key = {}
    for record in records:
        for p in record.points:
            by_key.setdefault((p.file, p.sample, p.channel), {})[p.decoder] = np.array(p.coords)
    for i in range(table.rows):
        file = table.files[table.columns["file"][i]]
        key = (file, table.columns["sample"][i], table.columns["channel"][i])
        for label in ("softargmax", "parabola"):
            want = np.hypot(*(by_key[key][label] - by_key[key]["argmax"]))
            assert table.distances[label][i] == pytest.approx(want, abs=1e-4)


def test_map_table_gives_each_map_its_most_serious_status_and_none_for_no_coordinates():
    points = [
        _point("m.npy", 0, 0, "argmax", (3.0, 4.0), status="multimodal"),
        _point("m.npy", 0, 0, "dark", (3.0, 4.0), status="unrefined"),
        _point("m.npy", 0, 1, "argmax", None, status="nonfinite", score=None),
        _point("m.npy", 0, 1, "dark", None, status="nonfinite", score=None),
    ]
    record = SourceRecord("m.npy", [_file("m.npy", 1, 2)], points, [])
    table = map_table([record], ["argmax", "dark"], Frame())
    from heatdecode.status import STATUSES

    assert [STATUSES[s] for s in table.columns["status"]] == ["unrefined", "nonfinite"]
    assert table.distances["dark"] == [0.0, None]
    assert table.columns["score"] == [1.0, None]


def test_distances_are_in_heatmap_pixels_whatever_the_output_frame():
    frame = Frame(coords="normalized")
    # normalized x of a 30-wide map runs from -1 at the first pixel's centre to
    # +1 at the last's: one pixel is 2 / 29
    points = [
        _point("m.npy", 0, 0, "argmax", (0.0, 0.0)),
        _point("m.npy", 0, 0, "dark", (2 / 29, 0.0)),
    ]
    record = SourceRecord("m.npy", [_file("m.npy", 1, 1)], points, [])
    assert map_table([record], ["argmax", "dark"], frame).distances["dark"] == [
        pytest.approx(1.0, abs=1e-4)
    ]


def test_histograms_count_every_distance_with_shared_edges_and_an_overflow_bin(records):
    table = map_table(records, ["argmax", "softargmax", "parabola"], Frame())
    table.distances["softargmax"][0] = 500.0  # one wild map
    plots = histograms(table, bins=10)
    assert plots["softargmax"]["edges"] == plots["parabola"]["edges"]
    for h in plots.values():
        assert sum(h["counts"]) == table.rows
        assert len(h["counts"]) == 10
    assert plots["softargmax"]["edges"][-1] == 500.0
    assert plots["softargmax"]["overflow"] < 500.0
    assert plots["softargmax"]["counts"][-1] >= 1


def test_gallery_lists_the_worst_maps_then_the_flagged_ones_each_with_its_overlay():
    points = []
    for c, (dx, status) in enumerate([(0.1, "ok"), (3.0, "ok"), (0.2, "multimodal"), (0, "flat")]):
        points.append(_point("m.npy", 0, c, "argmax", (5.0, 5.0), status=status))
        points.append(_point("m.npy", 0, c, "dark", (5.0 + dx, 5.0), status=status))
    record = SourceRecord("m.npy", [_file("m.npy", 1, 4, overlay="overlays/m.png")], points, [])
    images = overlay_images([record], None)
    items = gallery([record], Frame(), images, count=2)
    assert [(i.channel, i.why) for i in items] == [(1, "worst"), (2, "worst"), (3, "flagged")]
    assert items[0].distance == pytest.approx(3.0)
    assert items[2].status == "flat"
    assert {i.image for i in items} == {"overlays/m.png"}


def test_overlay_images_come_from_the_index_when_the_run_wrote_one(records):
    maps = [
        {"file": "a.npy", "sample": 1, "channel": 2},
        {"file": "a.npy", "sample": 0, "channel": 1, "panel": {"index": 4, "row": 1, "column": 0}},
    ]
    index = [{"image": "overlays/worst.png", "maps": maps}]
    assert overlay_images(records, index) == {
        ("a.npy", 1, 2): "overlays/worst.png",
        ("a.npy", 0, 1): "overlays/worst.png#5",
    }
    assert overlay_images(records, None) == {}  # no file has an overlay
