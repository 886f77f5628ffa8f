"""One device resolver for run, sweep and bench: names, auto, and clear refusals."""

from __future__ import annotations

import pytest
import torch

from heatdecode import bench, devices


def test_names_and_devices_resolve_alike():
    assert devices.resolve_device("cpu") == torch.device("cpu")
    assert devices.resolve_device(torch.device("cpu")) == torch.device("cpu")


def test_auto_prefers_cuda_then_mps_then_cpu():
    if torch.cuda.is_available():
        expected = "cuda"
    elif torch.backends.mps.is_available():
        expected = "mps"
    else:
        expected = "cpu"
    assert devices.resolve_device("auto").type == expected


@pytest.mark.parametrize(
    ("name", "reason"), [("tpu", "unknown device 'tpu'"), ("gpu0", "unknown device")]
)
def test_unknown_devices_are_a_value_error_naming_them(name, reason):
    with pytest.raises(ValueError, match=reason):
        devices.resolve_device(name)


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is present")
def test_an_unavailable_device_is_refused_in_bench_too():
    with pytest.raises(ValueError, match="not available"):
        devices.resolve_device("cuda")
    assert bench.resolve_device is devices.resolve_device  # one resolver, not two
