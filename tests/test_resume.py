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

import heatdecode.batching as batching
import heatdecode.runner as runner
from heatdecode.cli import main
from heatdecode.resume import input_record, output_lock


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


def comparable(out: Path) -> dict:
    """coordinates.json without what differs between any two runs (timings)."""
    document = json.loads((out / "coordinates.json").read_text())
    for key in ("seconds", "maps_per_second"):
        document["summary"].pop(key)
    return document


def overlay_set(out: Path) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*.png")}


def test_sigterm_saves_finished_files_and_resume_equals_an_uninterrupted_run(many_files, tmp_path):
    # overlays of every file and one worker make the run last several seconds on any machine
    options = ["-q", "--batch-size", "8", "--workers", "1", "--overlays", "all"]
    reference = tmp_path / "reference"
    assert main(["run", str(many_files), "--out", str(reference), *options]) == 0

    out = tmp_path / "out"
    args = [str(many_files), "--out", str(out), *options]
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
    # every file saved has its overlay: overlays are part of "finished"
    assert all(f["overlay"] and (out / f["overlay"]).is_file() for f in partial["files"])

    assert main(["run", *args, "--resume"]) == 0
    assert (out / "coordinates.csv").read_bytes() == (reference / "coordinates.csv").read_bytes()
    final = comparable(out)
    assert final["complete"] is True and "complete_sources" not in final
    assert final == comparable(reference)  # rows, files, overlays and summary alike
    assert overlay_set(out) == overlay_set(reference)
    assert not partial_csv.exists()


def interrupt_after(monkeypatch, arrays: int) -> None:
    """Make the next run stop as Ctrl-C would, right as array number ``arrays``
    completes: before its overlay is queued, the moment that used to lose it."""
    real = runner.decode_sources

    def decode(todo, settings, **kwargs):
        inner, seen = kwargs["on_complete"], []

        def on_complete(result, maps):
            seen.append(result.name)
            if len(seen) == arrays:
                raise KeyboardInterrupt
            inner(result, maps)

        monkeypatch.setattr(runner, "decode_sources", real)  # only this once
        return real(todo, settings, **{**kwargs, "on_complete": on_complete})

    monkeypatch.setattr(runner, "decode_sources", decode)


def small_folder(folder: Path, count: int = 4) -> Path:
    folder.mkdir()
    for i in range(count):
        maps = np.zeros((2, 6, 8), np.float32)
        maps[0, 1 + i, 2] = maps[1, 4, 1 + i] = 1.0
        np.save(folder / f"m{i}.npy", maps)
    return folder


def test_resume_after_an_interrupt_keeps_every_overlay_and_the_whole_summary(tmp_path, monkeypatch):
    folder = small_folder(tmp_path / "in")
    np.save(folder / "flat.npy", np.ones((1, 6, 8), np.float32))
    reference, out = tmp_path / "reference", tmp_path / "out"
    options = ["-q", "--batch-size", "1", "--workers", "1"]
    assert main(["run", str(folder), "--out", str(reference), *options]) == 0

    interrupt_after(monkeypatch, 3)
    assert main(["run", str(folder), "--out", str(out), *options]) == 130
    partial = json.loads((out / "coordinates.partial.json").read_text())
    assert partial["complete_sources"] == ["flat.npy", "m0.npy"]  # not m1: no overlay yet
    assert main(["run", str(folder), "--out", str(out), *options, "--resume"]) == 0
    final = comparable(out)
    assert final == comparable(reference)
    assert final["summary"]["arrays"] == 5 and final["summary"]["flat_maps"] == 1
    assert overlay_set(out) == overlay_set(reference)


QUICK = ["-q", "--batch-size", "1", "--no-overlays"]


def interrupted_run(folder: Path, out: Path, monkeypatch) -> None:
    """A run of ``folder`` into ``out`` (options :data:`QUICK`) stopped after 3 batches."""
    interrupt_after(monkeypatch, 3)
    assert main(["run", str(folder), "--out", str(out), *QUICK]) == 130


def test_resume_refuses_changed_inputs(tmp_path, monkeypatch, capsys):
    folder = small_folder(tmp_path / "a")
    out = tmp_path / "out"
    options = QUICK
    interrupted_run(folder, out, monkeypatch)
    saved = json.loads((out / "coordinates.partial.json").read_text())["complete_sources"]
    assert saved == ["m0.npy", "m1.npy", "m2.npy"]
    capsys.readouterr()

    other = small_folder(tmp_path / "b")  # same names, other maps
    assert main(["run", str(other), "--out", str(out), *options, "--resume"]) == 2
    err = capsys.readouterr().err
    assert "can't resume: the inputs differ" in err and len(err.strip().splitlines()) == 1

    maps = np.zeros((2, 6, 8), np.float32)
    maps[:, 3, 7] = 1.0  # peak elsewhere, same name (and, here, the same size)
    np.save(folder / "m1.npy", maps)
    os.utime(folder / "m1.npy", ns=(1, 1))
    assert main(["run", str(folder), "--out", str(out), *options, "--resume"]) == 2
    err = capsys.readouterr().err
    assert "can't resume: m1.npy changed" in err and "m0.npy" not in err

    assert main(["run", str(folder), "--out", str(out), *options, "--overwrite"]) == 0
    rows = json.loads((out / "coordinates.json").read_text())["rows"]
    assert {r["x"] for r in rows if r["file"] == "m1.npy" and r["decoder"] == "argmax"} == {7}


def test_a_partial_json_missing_a_key_is_one_line(tmp_path, monkeypatch, capsys):
    folder = small_folder(tmp_path / "in")
    out = tmp_path / "out"
    options = QUICK
    interrupted_run(folder, out, monkeypatch)
    path = out / "coordinates.partial.json"
    document = json.loads(path.read_text())
    del document["files"][1]["source"]
    path.write_text(json.dumps(document))
    capsys.readouterr()
    assert main(["run", str(folder), "--out", str(out), *options, "--resume"]) == 2
    err = capsys.readouterr().err
    assert "missing key 'source' in files[1]" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


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
    names = {"a.npy": folder / "a.npy", "b.npy": folder / "b.npy"}
    document |= {
        "complete": False,
        "complete_sources": ["a.npy", "b.npy"],
        "resume_inputs": input_record([str(folder)], names),
    }
    (out / "coordinates.partial.json").write_text(json.dumps(document))
    (out / "coordinates.csv").rename(out / "coordinates.partial.csv")
    (out / "coordinates.json").unlink()

    assert main(["run", str(folder), "--out", str(out), "-q", "--no-overlays", "--resume"]) == 1
    final = json.loads((out / "coordinates.json").read_text())
    assert final["summary"]["failed_files"] == 1
    assert final["summary"]["nonfinite_maps"] == 1
    assert [f["file"] for f in final["failures"]] == ["b.npy"]


def one_map(folder: Path) -> Path:
    folder.mkdir(exist_ok=True)
    maps = np.zeros((6, 6), np.float32)
    maps[2, 3] = 1.0
    np.save(folder / "a.npy", maps)
    return folder


def test_a_symlinked_lock_is_refused_and_its_target_untouched(tmp_path, capsys):
    folder, out = one_map(tmp_path / "in"), tmp_path / "out"
    out.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    (out / ".heatdecode.lock").symlink_to(victim)
    assert main(["run", str(folder), "--out", str(out), "-q"]) == 2
    err = capsys.readouterr().err
    assert "lock file" in err and "symlink" in err and len(err.strip().splitlines()) == 1
    assert victim.read_text() == "precious\n"
    assert not (out / "coordinates.csv").exists()


def test_a_lock_that_is_a_folder_is_one_line(tmp_path, capsys):
    folder, out = one_map(tmp_path / "in"), tmp_path / "out"
    (out / ".heatdecode.lock").mkdir(parents=True)
    assert main(["run", str(folder), "--out", str(out), "-q"]) == 2
    err = capsys.readouterr().err
    assert "lock file" in err and "folder" in err and len(err.strip().splitlines()) == 1


def test_a_full_disk_while_taking_the_lock_is_one_line(tmp_path, capsys, monkeypatch):
    folder, out = one_map(tmp_path / "in"), tmp_path / "out"

    def full(fd, data, offset):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "pwrite", full)
    assert main(["run", str(folder), "--out", str(out), "-q"]) == 2
    err = capsys.readouterr().err
    assert "No space left on device" in err and len(err.strip().splitlines()) == 1


def test_an_interrupt_while_writing_the_outputs_replaces_neither(tmp_path, capsys, monkeypatch):
    folder, out = one_map(tmp_path / "in"), tmp_path / "out"
    assert main(["run", str(folder), "--out", str(out), "-q", "--no-overlays"]) == 0
    before = {name: (out / name).read_bytes() for name in ("coordinates.csv", "coordinates.json")}
    real = runner.write_json

    def interrupted(path, document):
        raise KeyboardInterrupt  # the CSV is written (under a temporary name) by now

    monkeypatch.setattr(runner, "write_json", interrupted)
    np.save(folder / "b.npy", np.eye(6, dtype=np.float32))
    args = ["run", str(folder), "--out", str(out), "-q", "--no-overlays", "--overwrite"]
    assert main(args) == 130
    err = capsys.readouterr().err
    assert "none was replaced" in err and len(err.strip().splitlines()) == 1
    assert {name: (out / name).read_bytes() for name in before} == before
    assert sorted(p.name for p in out.iterdir()) == [".heatdecode.lock", *sorted(before)]

    # a signal during the renames waits for them: then both outputs are the new ones
    monkeypatch.setattr(runner, "write_json", real)
    real_replace = os.replace

    def replace(src, dst, **kwargs):
        if os.fspath(dst).endswith("coordinates.csv"):  # the first final rename
            signal.raise_signal(signal.SIGTERM)
        real_replace(src, dst, **kwargs)

    monkeypatch.setattr(runner.os, "replace", replace)
    assert main(args) == 130
    err = capsys.readouterr().err
    assert "after every output was written" in err and "coordinates.json" in err
    monkeypatch.setattr(runner.os, "replace", real_replace)
    document = json.loads((out / "coordinates.json").read_text())
    assert [f["file"] for f in document["files"]] == ["a.npy", "b.npy"]
    assert "b.npy" in (out / "coordinates.csv").read_text()


def test_running_out_of_memory_saves_what_is_finished_for_resume(tmp_path, monkeypatch, capsys):
    """A batch the device can't hold stops the run like an interrupt (partial
    outputs, one line saying what to lower), exit 1; --resume then finishes it."""
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(5):
        m = np.zeros((6, 7), np.float32)
        m[i % 6, i] = 1
        np.save(folder / f"m{i}.npy", m)
    whole = tmp_path / "whole"
    assert main(["run", str(folder), "--out", str(whole), "-q", "--no-overlays"]) == 0

    real, calls = batching.multimodal, []

    def failing(maps):
        calls.append(1)
        if len(calls) == 3:  # torch's own words for a failed CPU allocation
            raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to ...")
        return real(maps)

    monkeypatch.setattr(batching, "multimodal", failing)
    out = tmp_path / "out"
    args = ["run", str(folder), "--out", str(out), "-q", "--no-overlays", "--batch-size", "1"]
    assert main(args) == 1
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("heatdecode: error: out of memory on cpu decoding a batch of 1 map(s)")
    assert "lower --batch-bytes or --batch-size" in line and "--resume" in line
    partial = json.loads((out / "coordinates.partial.json").read_text())
    assert partial["stopped"] == "out-of-memory" and partial["complete"] is False
    assert not (out / "coordinates.csv").exists()

    monkeypatch.setattr(batching, "multimodal", real)
    assert main([*args, "--resume"]) == 0
    assert (out / "coordinates.csv").read_bytes() == (whole / "coordinates.csv").read_bytes()
    assert not (out / "coordinates.partial.json").exists()
