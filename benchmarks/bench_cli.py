"""How fast the CLI answers: `--help`, `--version` and a usage error, in fresh processes.

Each command runs as a new interpreter (``python -m heatdecode ...``), like a
user's shell starts it; the table gives the median wall time of ``--repeats``
runs (interleaved, after one warm-up run each) and its ratio to
``python -c "import typer"``, the floor of any typer CLI. A one-option typer
app's ``--help`` and ``python -c "import torch"`` are timed beside them for
context: none of heatdecode's answers below should import torch.

Run: ``python benchmarks/bench_cli.py [--repeats 7]``
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

TINY_APP = """
import typer
app = typer.Typer(add_completion=False)
@app.command()
def hello(name: str = "world") -> None:
    print(name)
app()
"""


def targets(scratch: Path) -> dict[str, tuple[list[str], int]]:
    """What to time: a label, the command line after ``python``, its exit code."""
    heatdecode = ["-m", "heatdecode"]
    sample = str(ROOT / "sample_data")
    return {
        'python -c "import typer"': (["-c", "import typer"], 0),
        "a one-option typer app --help": (["-c", TINY_APP, "--help"], 0),
        "heatdecode --help": ([*heatdecode, "--help"], 0),
        "heatdecode run --help": ([*heatdecode, "run", "--help"], 0),
        "heatdecode --version": ([*heatdecode, "--version"], 0),
        "heatdecode run ... --beta -1 (usage error)": (
            [*heatdecode, "run", sample, "--out", str(scratch / "out"), "--beta", "-1"],
            2,
        ),
        "heatdecode run missing.npy (usage error)": (
            [*heatdecode, "run", str(scratch / "missing.npy"), "--out", str(scratch / "out")],
            2,
        ),
        'python -c "import torch"': (["-c", "import torch"], 0),
    }


def timed(args: list[str], code: int) -> float:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, *args], capture_output=True, cwd=ROOT, timeout=300, check=False
    )
    seconds = time.perf_counter() - started
    if done.returncode != code:
        raise SystemExit(
            f"{args} exited {done.returncode}, not {code}: {done.stderr.decode()[-500:]}"
        )
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="timed runs per command")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="heatdecode-cli-") as scratch:
        jobs = targets(Path(scratch))
        for argv, code in jobs.values():  # warm-up: .pyc files written, disk cache filled
            timed(argv, code)
        times: dict[str, list[float]] = {label: [] for label in jobs}
        for _ in range(args.repeats):
            for label, (argv, code) in jobs.items():
                times[label].append(timed(argv, code))
    medians = {label: statistics.median(t) for label, t in times.items()}
    floor = medians['python -c "import typer"']
    print(f"median of {args.repeats} fresh processes each, Python {sys.version.split()[0]}\n")
    print("| command | median ms | × import typer |")
    print("|---|---:|---:|")
    for label, seconds in medians.items():
        print(f"| {label} | {seconds * 1000:.0f} | {seconds / floor:.1f}× |")


if __name__ == "__main__":
    main()
