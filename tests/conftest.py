"""Shared fixtures: a fresh sample folder, a seeded random generator, a CLI runner."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from heatdecode.sample import write_sample


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture(scope="session")
def sample_set(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    """The sample folder that ``heatdecode sample`` writes, and its truth rows (read-only)."""
    folder = tmp_path_factory.mktemp("sample")
    truth = write_sample(folder, seed=0)
    return folder, truth
