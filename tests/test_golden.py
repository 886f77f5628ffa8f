"""Outputs frozen byte for byte: a change that means to keep behaviour must keep these.

The expected files in tests/golden/expected/ were written by tests/golden/freeze.py
from the scenarios in tests/golden/scenarios.py (sample_data, every decoder with
--truth on awkward maps, an explicit frame, --resume after an interrupt, a sweep).
A JSON document is compared without its timings and torch version.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

GOLDEN = Path(__file__).parent / "golden"
sys.path.insert(0, str(GOLDEN))
from scenarios import SCENARIOS  # noqa: E402


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_outputs_are_byte_identical_to_the_frozen_ones(name, tmp_path):
    produced = SCENARIOS[name](tmp_path / name)
    expected = {p.name: p.read_bytes() for p in (GOLDEN / "expected").glob(f"{name}.*")}
    assert sorted(produced) == sorted(expected)
    for file, data in produced.items():
        assert data == expected[file], f"{file} differs from tests/golden/expected/{file}"
