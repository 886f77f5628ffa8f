"""Batching and decoding: order, batch independence, bounded read-ahead, devices."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

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
        return [r.outputs[d].coords for r in done for d in ("argmax", "softargmax")]

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

    def counting(source, layout):
        with lock:
            state["started"] += 1
            state["worst"] = max(state["worst"], state["started"] - state["consumed"])
        return real(source, layout)

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
    assert [(source, f.name) for source, f in failed] == [("b.npy", "b.npy")]
    assert stopped == "strict"


def test_argmax_matches_numpy_for_every_map(mixed_folder):
    done = decode_sources(mixed_folder, SETTINGS, batch_size=4).results
    for source, result in zip(mixed_folder, done, strict=True):
        array = np.load(source.path)
        maps = array.reshape(-1, *array.shape[-2:])
        for m, heatmap in enumerate(maps):
            y, x = np.unravel_index(heatmap.argmax(), heatmap.shape)
            assert result.outputs["argmax"].coords[m].tolist() == [x, y]
            assert result.outputs["argmax"].score[m] == pytest.approx(heatmap.max())


def test_batch_size_must_be_positive(mixed_folder):
    with pytest.raises(ValueError, match="batch_size"):
        decode_sources(mixed_folder, SETTINGS, batch_size=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_gives_the_cpu_answer(mixed_folder):
    cpu = decode_sources(mixed_folder, SETTINGS, device="cpu").results
    gpu = decode_sources(mixed_folder, SETTINGS, device="cuda").results
    for a, b in zip(cpu, gpu, strict=True):
        np.testing.assert_array_equal(a.outputs["argmax"].coords, b.outputs["argmax"].coords)
        np.testing.assert_allclose(
            a.outputs["softargmax"].coords, b.outputs["softargmax"].coords, atol=1e-4
        )
