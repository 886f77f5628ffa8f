"""Interruptions, --resume, the output lock and write failures: nothing lost, nothing doubled."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import heatdecode.runner as runner
from heatdecode.cli import main
from heatdecode.resume import output_lock


@pytest.fixture(scope="module")
def many_files(tmp_path_factory) -> Path:
    """Enough files that a real run takes a few seconds (so it can be interrupted)."""
    folder = tmp_path_factory.mktemp("many")
    rng = np.random.default_rng(5)
    for i in range(150):
        maps = np.zeros((3, 96, 128), np.float32)
        maps[:, rng.integers(4, 92), rng.integers(4, 124)] = 1.0
        maps += rng.random(maps.shape, dtype=np.float32) * 0.01
        np.save(folder / f"f{i:04d}.npy", maps)
    return folder


def run_cli(*args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "heatdecode", "run", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def test_sigterm_saves_finished_files_and_resume_equals_an_uninterrupted_run(many_files, tmp_path):
    reference = tmp_path / "reference"
    assert main(["run", str(many_files), "--out", str(reference), "-q", "--no-overlays"]) == 0
    reference_rows = json.loads((reference / "coordinates.json").read_text())["rows"]

    out = tmp_path / "out"
    # overlays and one worker make the run last several seconds on any machine
    args = [str(many_files), "--out", str(out), "-q", "--batch-size", "8", "--workers", "1"]
    process = run_cli(*args)
    partial_csv = out / "coordinates.partial.csv"
    # wait until decoding has started (the lock file exists once the run owns --out)
    deadline = time.monotonic() + 60
    while not (out / ".heatdecode.lock").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    process.send_signal(signal.SIGTERM)
    stopped_at = time.monotonic()
    _out, err = process.communicate(timeout=60)
    assert time.monotonic() - stopped_at < 5, "a run must stop within a second or two"
    if process.returncode == 0:
        pytest.skip("the run finished before the signal arrived (machine too fast)")
    assert process.returncode == 130, (process.returncode, err)
    assert "--resume" in err and "Traceback" not in err
    assert partial_csv.is_file()
    assert not (out / "coordinates.csv").exists()  # never under the final names
    partial = json.loads((out / "coordinates.partial.json").read_text())
    assert partial["complete"] is False and partial["stopped"] == "interrupted"
    saved = partial["complete_sources"]
    assert 0 < len(saved) < 150
    assert len(partial["rows"]) == len(saved) * 3 * 2  # whole files only

    assert main(["run", *args, "--resume", "--no-overlays"]) == 0
    assert (out / "coordinates.csv").read_bytes() == (reference / "coordinates.csv").read_bytes()
    final = json.loads((out / "coordinates.json").read_text())
    assert final["complete"] is True and "complete_sources" not in final
    assert final["rows"] == reference_rows
    assert not partial_csv.exists()


def test_resume_refuses_other_settings(many_files, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "coordinates.partial.json").write_text(
        json.dumps(
            {
                "complete_sources": [],
                "settings": {"runs": [], "coords": "pixel", "layout": "auto"},
            }
        )
    )
    assert main(["run", str(many_files), "--out", str(out), "--resume", "-q"]) == 2
    assert "can't resume" in capsys.readouterr().err


def test_resume_without_a_partial_run_just_runs(tmp_path):
    np.save(tmp_path / "m.npy", np.eye(4, 6))
    out = tmp_path / "out"
    assert main(["run", str(tmp_path / "m.npy"), "--out", str(out), "--resume", "-q"]) == 0
    assert (out / "coordinates.csv").is_file()


def test_a_second_run_into_the_same_folder_is_refused(tmp_path, capsys):
    np.save(tmp_path / "m.npy", np.eye(4, 6))
    out = tmp_path / "out"
    out.mkdir()
    with output_lock(out):  # as if another process were running
        code = main(["run", str(tmp_path / "m.npy"), "--out", str(out)])
    assert code == 2
    err = capsys.readouterr().err
    assert "another heatdecode run" in err and len(err.strip().splitlines()) == 1
    assert not (out / "coordinates.csv").exists()
    assert main(["run", str(tmp_path / "m.npy"), "--out", str(out), "-q"]) == 0  # lock released


def test_two_real_processes_do_not_interleave(many_files, tmp_path):
    out = tmp_path / "out"
    # the folder three times over: the first run must outlast the second's start-up
    args = [str(many_files)] * 3 + ["--out", str(out), "-q", "--workers", "1"]
    first = run_cli(*args)
    deadline = time.monotonic() + 60
    while not (out / ".heatdecode.lock").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    second = run_cli(*args)
    _, err2 = second.communicate(timeout=120)
    first.send_signal(signal.SIGTERM)  # no need to wait for it to finish
    first.communicate(timeout=60)
    if first.returncode == 0:
        pytest.skip("the first run finished before the second started")
    assert second.returncode == 2 and "another heatdecode run" in err2
    assert first.returncode == 130


def test_a_full_disk_is_one_line_and_keeps_the_previous_outputs(tmp_path, capsys, monkeypatch):
    np.save(tmp_path / "m.npy", np.eye(4, 6))
    out = tmp_path / "out"
    assert main(["run", str(tmp_path / "m.npy"), "--out", str(out), "-q"]) == 0
    before = (out / "coordinates.csv").read_bytes()

    def full(path, rows):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(runner, "write_csv", full)
    code = main(["run", str(tmp_path / "m.npy"), "--out", str(out), "-q", "--overwrite"])
    assert code == 1
    err = capsys.readouterr().err
    assert "No space left on device" in err and len(err.strip().splitlines()) == 1
    assert (out / "coordinates.csv").read_bytes() == before


def test_an_output_folder_that_cannot_be_created_is_a_usage_error(tmp_path, capsys):
    np.save(tmp_path / "m.npy", np.eye(4, 6))
    (tmp_path / "file").write_text("x")
    assert main(["run", str(tmp_path / "m.npy"), "--out", str(tmp_path / "file" / "sub")]) == 2
    assert "error" in capsys.readouterr().err


def test_problems_in_the_resumed_part_still_count(tmp_path):
    """A bad file or a NaN map decoded before the interruption keeps the exit code at 1."""
    folder = tmp_path / "in"
    folder.mkdir()
    maps = np.zeros((2, 6, 8), np.float32)
    maps[:, 3, 4] = 1.0
    maps[1, 0, 0] = np.nan
    np.save(folder / "a.npy", maps)
    (folder / "b.npy").write_bytes(b"")
    out = tmp_path / "out"
    assert main(["run", str(folder), "--out", str(out), "-q", "--no-overlays"]) == 1
    # turn the finished run into an interrupted one that had done everything
    document = json.loads((out / "coordinates.json").read_text())
    document |= {"complete": False, "complete_sources": ["a.npy", "b.npy"]}
    (out / "coordinates.partial.json").write_text(json.dumps(document))
    (out / "coordinates.csv").rename(out / "coordinates.partial.csv")
    (out / "coordinates.json").unlink()

    assert main(["run", str(folder), "--out", str(out), "-q", "--no-overlays", "--resume"]) == 1
    final = json.loads((out / "coordinates.json").read_text())
    assert final["summary"]["failed_files"] == 1
    assert final["summary"]["nonfinite_maps"] == 1
    assert [f["file"] for f in final["failures"]] == ["b.npy"]
