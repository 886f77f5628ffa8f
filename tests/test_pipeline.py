"""Batching and decoding: order, batch independence, bounded read-ahead, devices."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

import heatdecode.batching as batching
import heatdecode.pipeline as pipeline
from heatdecode.loading import Source
from heatdecode.pipeline import DecodeSettings, decode_sources

SETTINGS = DecodeSettings(beta=20.0, normalize="minmax")


@pytest.fixture
def mixed_folder(tmp_path, rng):
    """Files of three map shapes, interleaved, so batches mix files and flush at the end."""
    sources = []
    for i in range(9):
        shape = [(3, 11, 7), (2, 1, 6, 9), (5, 8)][i % 3]
        np.save(tmp_path / f"f{i}.npy", rng.random(shape).astype(np.float32))
        sources.append(Source(tmp_path / f"f{i}.npy", f"f{i}.npy"))
    return sources


def test_results_come_back_in_source_order_with_every_map(mixed_folder):
    decoding = decode_sources(mixed_folder, SETTINGS, batch_size=4)
    done, failed, stopped = decoding.results, decoding.failures, decoding.stopped
    assert [r.name for r in done] == [s.name for s in mixed_folder]
    assert [r.maps for r in done] == [3, 2, 1] * 3
    assert failed == [] and stopped is None
    assert decoding.complete == [s.name for s in mixed_folder]


def test_results_do_not_depend_on_batch_size_or_workers(mixed_folder):
    def coords(batch_size: int, workers: int) -> list[np.ndarray]:
        done = decode_sources(
            mixed_folder, SETTINGS, batch_size=batch_size, workers=workers
        ).results
        return [r.columns[d].coords for r in done for d in ("argmax", "softargmax")]

    reference = coords(1, 1)
    for batch_size, workers in ((3, 2), (64, 4)):
        for a, b in zip(reference, coords(batch_size, workers), strict=True):
            np.testing.assert_array_equal(a, b)


def test_every_array_is_completed_once_with_its_maps(mixed_folder):
    seen = []
    done = decode_sources(
        mixed_folder,
        SETTINGS,
        batch_size=5,
        on_complete=lambda result, maps: seen.append((result.name, maps.shape)),
    ).results
    assert sorted(name for name, _ in seen) == sorted(r.name for r in done)
    shapes = dict(seen)
    assert shapes["f0.npy"] == (1, 3, 11, 7)
    assert shapes["f1.npy"] == (2, 1, 6, 9)
    assert shapes["f2.npy"] == (1, 1, 5, 8)


def test_read_ahead_is_bounded_by_prefetch(mixed_folder, monkeypatch):
    lock = threading.Lock()
    state = {"started": 0, "consumed": 0, "worst": 0}
    real = pipeline.load_source

    def counting(source, *args):
        with lock:
            state["started"] += 1
            state["worst"] = max(state["worst"], state["started"] - state["consumed"])
        return real(source, *args)

    def consumed(source, items):
        with lock:
            state["consumed"] += 1

    monkeypatch.setattr(pipeline, "load_source", counting)
    decode_sources(mixed_folder, SETTINGS, prefetch=2, workers=4, on_loaded=consumed)
    assert state["started"] == len(mixed_folder)
    assert state["worst"] <= 2


def test_strict_stops_after_the_first_bad_file(tmp_path):
    np.save(tmp_path / "a.npy", np.eye(4))
    (tmp_path / "b.npy").write_bytes(b"nope")
    np.save(tmp_path / "c.npy", np.eye(4))
    sources = [Source(tmp_path / n, n) for n in ("a.npy", "b.npy", "c.npy")]
    decoding = decode_sources(sources, SETTINGS, strict=True, prefetch=1)
    done, failed, stopped = decoding.results, decoding.failures, decoding.stopped
    assert [r.name for r in done] == ["a.npy"]
    assert [(source, f.name) for f in failed for source in [f.source]] == [("b.npy", "b.npy")]
    assert stopped == "strict"


def test_argmax_matches_numpy_for_every_map(mixed_folder):
    done = decode_sources(mixed_folder, SETTINGS, batch_size=4).results
    for source, result in zip(mixed_folder, done, strict=True):
        array = np.load(source.path)
        maps = array.reshape(-1, *array.shape[-2:])
        for m, heatmap in enumerate(maps):
            y, x = np.unravel_index(heatmap.argmax(), heatmap.shape)
            assert result.columns["argmax"].coords[m].tolist() == [x, y]
            assert result.columns["argmax"].score[m] == pytest.approx(heatmap.max())


def test_batch_size_must_be_positive(mixed_folder):
    with pytest.raises(ValueError, match="batch_size"):
        decode_sources(mixed_folder, SETTINGS, batch_size=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_gives_the_cpu_answer(mixed_folder):
    cpu = decode_sources(mixed_folder, SETTINGS, device="cpu").results
    gpu = decode_sources(mixed_folder, SETTINGS, device="cuda").results
    for a, b in zip(cpu, gpu, strict=True):
        np.testing.assert_array_equal(a.columns["argmax"].coords, b.columns["argmax"].coords)
        np.testing.assert_allclose(
            a.columns["softargmax"].coords, b.columns["softargmax"].coords, atol=1e-4
        )


def test_batches_are_bounded_by_bytes_and_results_dont_change(tmp_path, monkeypatch):
    """Issue 8, item 4: a batch was 256 maps whatever their size (24 maps of
    64 MB took 4.2 GB); now it also holds at most batch_bytes of maps, and a
    map bigger than that is a batch of its own."""
    rng = np.random.default_rng(1)
    sources = []
    for i, shape in enumerate([(5, 12, 10), (1, 12, 10), (7, 12, 10), (2, 30, 20)]):
        np.save(tmp_path / f"m{i}.npy", rng.random(shape).astype(np.float32))
        sources.append(Source(tmp_path / f"m{i}.npy", f"m{i}.npy"))
    settings = DecodeSettings(decoders=("argmax", "softargmax", "dark", "local-softargmax"))
    sizes: list[int] = []
    original = batching.Batcher._compute

    def recording(self, parts):
        sizes.append(sum(len(p) for p in parts))
        return original(self, parts)

    reference = decode_sources(sources, settings, workers=1)
    monkeypatch.setattr(batching.Batcher, "_compute", recording)
    per_map = 12 * 10 * 4
    bounded = decode_sources(sources, settings, workers=1, batch_bytes=3 * per_map)
    assert max(sizes) == 3 and sum(sizes) == 5 + 1 + 7 + 2
    sizes.clear()
    alone = decode_sources(sources, settings, workers=1, batch_bytes=1)
    assert set(sizes) == {1}
    for other in (bounded, alone):
        for a, b in zip(reference.results, other.results, strict=True):
            for label, out in a.columns.items():
                assert np.array_equal(out.coords, b.columns[label].coords)
                assert np.array_equal(out.spread, b.columns[label].spread, equal_nan=True)
            assert np.array_equal(a.per_map.multimodal, b.per_map.multimodal)
    with pytest.raises(ValueError, match="batch_bytes"):
        decode_sources(sources, settings, batch_bytes=0)


def test_a_row_whose_coordinates_are_not_finite_is_never_ok(tmp_path):
    """Issue 8, item 8, the backstop: whatever overflows (an option past the
    CLI's checks, a library caller's frame), a row with NaN/Inf coordinates
    gets status nonfinite and empty numbers, and the JSON writer doesn't crash."""
    from heatdecode.frames import Frame
    from heatdecode.results import iter_points
    from heatdecode.writers import iter_rows, json_rows, write_csv, write_json

    maps = np.zeros((2, 6, 6), np.float32)
    maps[:, 2, 3] = 1
    np.save(tmp_path / "a.npy", maps)
    done = decode_sources([Source(tmp_path / "a.npy", "a.npy")], DecodeSettings())
    result = done.results[0]
    result.columns["softargmax"].coords[1] = [np.inf, np.nan]
    frame = Frame()
    object.__setattr__(frame, "stride", (1e308,))  # past Frame's own check
    rows = list(iter_rows(done.results, Frame()))
    bad = [r for r in rows if r["channel"] == 1 and r["decoder"] == "softargmax"]
    assert bad[0]["status"] == "nonfinite" and bad[0]["x"] is None
    assert all(r["status"] != "nonfinite" for r in rows if r is not bad[0])
    overflowing = list(iter_rows(done.results, frame))
    assert {r["status"] for r in overflowing} == {"nonfinite"}
    points = list(iter_points(done.results, frame))
    write_csv(tmp_path / "c.csv", points)
    write_json(tmp_path / "c.json", {"rows": json_rows(points)})
