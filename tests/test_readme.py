"""The README's Python examples run as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)


def test_readme_has_python_examples():
    assert len(BLOCKS) >= 2


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example_runs(index):
    exec(compile(BLOCKS[index], f"README.md block {index}", "exec"), {})


def test_readme_gives_the_two_fresh_machine_commands():
    text = README.read_text(encoding="utf-8")
    assert "heatdecode run sample_data --out out" in text
    assert "python -m pytest" in text
    assert "python -m pytest" in (README.parent / ".ci" / "run").read_text()
