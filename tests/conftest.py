"""Shared fixtures: a fresh sample folder, a seeded random generator, a CLI runner."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from heatdecode.sample import write_sample


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


def _read_map(folder: Path, name: str, sample: int, channel: int) -> np.ndarray:
    """The map a ``file,sample,channel`` row names, read straight with numpy/Pillow.

    Uses the auto layouts (HW, CHW, NCHW, NCDHW), independently of heatdecode's loader.
    """
    file, _, key = name.partition(":")
    path = folder / file
    if path.suffix == ".png":
        with Image.open(path) as image:
            return np.asarray(image)
    if key:
        with np.load(path) as archive:
            array = archive[key]
    else:
        array = np.load(path)
    if array.ndim == 2:
        return array
    if array.ndim == 3:
        return array[channel]
    return array[sample, channel]


@pytest.fixture(scope="session")
def read_map():
    """``read_map(folder, file, sample, channel)``: one map, read without heatdecode."""
    return _read_map


@pytest.fixture(scope="session")
def sample_set(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    """The sample folder that ``heatdecode sample`` writes, and its truth rows (read-only)."""
    folder = tmp_path_factory.mktemp("sample")
    truth = write_sample(folder, seed=0)
    return folder, truth
