"""A whole run as a library call, without the command line."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

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
        (RunConfig(batch_size=0), "batch-size"),
        (RunConfig(settings=DecodeSettings(beta=float("inf"))), "beta"),
        (RunConfig(settings=DecodeSettings(decoders=())), "no decoder"),
        (RunConfig(device="quantum"), "unknown device"),
    ],
)
def test_bad_configs_raise_usage_errors_and_write_nothing(tmp_path, config, message):
    np.save(tmp_path / "m.npy", np.eye(5))
    with pytest.raises(UsageError, match=message):
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
