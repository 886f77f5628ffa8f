"""Freezes the outputs of tests/golden/scenarios.py into tests/golden/expected/.

Only for a change that means to change the outputs: say so in its commit.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from scenarios import SCENARIOS  # noqa: E402

EXPECTED = Path(__file__).parent / "expected"


def main() -> None:
    shutil.rmtree(EXPECTED, ignore_errors=True)
    EXPECTED.mkdir()
    with tempfile.TemporaryDirectory() as tmp:
        for name, scenario in SCENARIOS.items():
            for file, data in scenario(Path(tmp) / name).items():
                (EXPECTED / file).write_bytes(data)
                print(file, len(data))


if __name__ == "__main__":
    main()
