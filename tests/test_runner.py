"""A whole run as a library call, without the command line."""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch

import heatdecode.runner as runner
from heatdecode.pipeline import DecodeSettings
from heatdecode.runner import RunConfig, UsageError, check_out_dir, resolve_device, run


def test_run_writes_outputs_and_reports(tmp_path):
    maps = np.zeros((2, 6, 9), np.float32)
    maps[0, 1, 7] = maps[1, 5, 0] = 1
    np.save(tmp_path / "m.npy", maps)
    report = run([tmp_path / "m.npy"], tmp_path / "out")
    assert report.ok and report.maps == 2 and report.device == "cpu"
    assert [p.name for p in report.outputs] == ["coordinates.csv", "coordinates.json"]
    doc = json.loads((tmp_path / "out" / "coordinates.json").read_text())
    assert doc["files"][0]["overlay"] == "overlays/m.npy.png"
    assert (tmp_path / "out" / "overlays" / "m.npy.png").is_file()
    assert report.distances()["softargmax"].max() < 0.5


def test_run_with_one_decoder_has_no_distances(tmp_path):
    np.save(tmp_path / "m.npy", np.eye(5))
    config = RunConfig(settings=DecodeSettings(decoders=("argmax",)), overlays=False)
    report = run([tmp_path / "m.npy"], tmp_path / "out", config)
    assert report.distances() == {}
    assert not (tmp_path / "out" / "overlays").exists()


@pytest.mark.parametrize(
    ("config", "message"),
    [
        # an option out of range names the parameter (the CLI names the flag)
        (RunConfig(batch_size=0), "^batch_size must be at least 1, got 0$"),
        (RunConfig(workers=0), "^workers must be at least 1"),
        (RunConfig(settings=DecodeSettings(beta=float("inf"))), "beta"),
        (RunConfig(settings=DecodeSettings(decoders=())), "no decoder"),
        (RunConfig(device="quantum"), "unknown device"),
    ],
)
def test_bad_configs_raise_value_errors_and_write_nothing(tmp_path, config, message):
    # UsageError and OptionError are both ValueErrors
    np.save(tmp_path / "m.npy", np.eye(5))
    with pytest.raises(ValueError, match=message):
        run([tmp_path / "m.npy"], tmp_path / "out", config)
    assert not (tmp_path / "out").exists()


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else None
    if expected is None and not torch.backends.mps.is_available():
        assert resolve_device("auto") == torch.device("cpu")
        with pytest.raises(UsageError, match="not available"):
            resolve_device("cuda")
        with pytest.raises(UsageError, match="not available"):
            resolve_device("mps")
    with pytest.raises(UsageError, match="unknown device"):
        resolve_device("gpu0")


def test_check_out_dir(tmp_path):
    check_out_dir(tmp_path / "new" / "deeper", ("csv",), overwrite=False)  # created later
    (tmp_path / "coordinates.csv").write_text("x")
    with pytest.raises(UsageError, match="--overwrite"):
        check_out_dir(tmp_path, ("csv", "json"), overwrite=False)
    check_out_dir(tmp_path, ("json",), overwrite=False)  # only the formats asked for count
    check_out_dir(tmp_path, ("csv",), overwrite=True)


def peak(path, x: int = 3) -> None:
    maps = np.zeros((6, 6), np.float32)
    maps[2, x] = 1.0
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, maps)


def test_outputs_another_run_finished_before_the_lock_are_not_replaced(tmp_path, monkeypatch):
    """The check for existing outputs is made again once the lock is held."""
    peak(tmp_path / "in" / "a.npy")
    out = tmp_path / "out"
    real = runner.output_lock

    @contextmanager
    def late(folder):
        (folder / "coordinates.csv").write_text("another run's\n")  # it finished just now
        with real(folder):
            yield

    monkeypatch.setattr(runner, "output_lock", late)
    with pytest.raises(UsageError, match="--overwrite"):
        run([tmp_path / "in"], out, RunConfig(overlays=False))
    assert (out / "coordinates.csv").read_text() == "another run's\n"


def test_out_equal_to_the_input_folder_keeps_its_subfolders(tmp_path, monkeypatch):
    peak(tmp_path / "in" / "a.npy")
    peak(tmp_path / "in" / "sub" / "b.npy")
    monkeypatch.chdir(tmp_path / "in")
    report = run(["."], Path("."))
    assert sorted(r.name for r in report.results) == ["a.npy", "sub/b.npy"]
    # a second run into the same folder doesn't read the first one's overlays back
    report = run(["."], Path("."), RunConfig(overwrite=True))
    assert sorted(r.name for r in report.results) == ["a.npy", "sub/b.npy"]
    assert report.notes == []


def test_an_earlier_runs_output_folder_inside_the_input_is_skipped_with_a_note(tmp_path):
    peak(tmp_path / "in" / "a.npy")
    run([tmp_path / "in"], tmp_path / "in" / "old")
    report = run([tmp_path / "in"], tmp_path / "new")
    assert [r.name for r in report.results] == ["a.npy"]  # not old/overlays/a.npy.png
    assert len(report.notes) == 1 and "old" in report.notes[0]


def test_symlinked_output_entries_are_refused_and_nothing_is_written_through_them(tmp_path):
    peak(tmp_path / "in" / "a.npy")
    peak(tmp_path / "in" / "sub" / "b.npy")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    (out / "overlays").symlink_to(elsewhere)
    with pytest.raises(UsageError, match="symlink"):
        run([tmp_path / "in"], out)
    (out / "overlays").unlink()
    (out / "overlays").mkdir()
    (out / "overlays" / "sub").symlink_to(elsewhere)
    report = run([tmp_path / "in"], out)
    assert [f.name for f in report.overlay_errors] == ["sub/b.npy"]
    assert "symlink" in report.overlay_errors[0].reason
    assert list(elsewhere.iterdir()) == []
    assert (out / "overlays" / "a.npy.png").is_file()


def test_long_names_and_colliding_overlay_names(tmp_path):
    long = "m" * 251 + ".npy"  # 255 bytes: legal, but name.png is not
    for name in (long, "a:b.npy", "a__b.npy"):
        peak(tmp_path / "in" / name)
    report = run([tmp_path / "in"], tmp_path / "out")
    assert report.ok, report.overlay_errors
    doc = json.loads((tmp_path / "out" / "coordinates.json").read_text())
    overlays = {f["file"]: f["overlay"] for f in doc["files"]}
    assert len(set(overlays.values())) == 3  # one PNG each, none overwritten
    for path in overlays.values():
        assert (tmp_path / "out" / path).is_file()
        assert len(os.fsencode(Path(path).name)) <= 255
    assert overlays["a:b.npy"] == "overlays/a__b.npy.png"  # the first keeps the plain name


def test_an_input_folder_that_was_an_earlier_out_has_its_overlays_skipped(tmp_path):
    peak(tmp_path / "in" / "a.npy")
    run([tmp_path / "in"], tmp_path / "in")  # overlays/a.npy.png lands in the input
    report = run([tmp_path / "in"], tmp_path / "new")
    assert [r.name for r in report.results] == ["a.npy"]
    assert len(report.notes) == 1 and "overlays" in report.notes[0]
