"""The runs whose outputs are frozen in tests/golden/expected/ (see tests/test_golden.py).

Each scenario runs heatdecode from the folder holding ``sample_data`` and
``tests/golden`` (relative paths, so the outputs name no temporary folder), on
the CPU (a GPU's float rounding differs in the last digits), and
returns its outputs by name, as bytes, with what differs between any two runs
of the same code taken out: the JSON's timings, the torch version and the
partial JSON's record of the inputs' absolute paths and modification times.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from heatdecode.cli import main
from heatdecode.runner import Interrupted, RunConfig, run

ROOT = Path(__file__).resolve().parents[2]
INPUTS = "tests/golden/inputs"
TRUTH = "tests/golden/truth.csv"
EVERY_DECODER = ["argmax", "softargmax", "local-softargmax", "quarter", "parabola", "dark"]
TIMINGS = ("seconds", "maps_per_second")


@contextmanager
def _at_root():
    before = os.getcwd()
    os.chdir(ROOT)
    try:
        yield
    finally:
        os.chdir(before)


def comparable(path: Path) -> bytes:
    """An output's bytes; a JSON document without its timings and torch version."""
    if path.suffix != ".json":
        return path.read_bytes()
    document = json.loads(path.read_text(encoding="utf-8"))
    document.pop("torch_version", None)
    document.pop("resume_inputs", None)  # absolute paths and modification times
    for key in TIMINGS:
        document.get("summary", {}).pop(key, None)
    return (json.dumps(document, indent=1, ensure_ascii=False) + "\n").encode()


def _collect(out: Path, prefix: str) -> dict[str, bytes]:
    found = {}
    for path in sorted(out.iterdir()):
        if path.is_file() and path.suffix in (".csv", ".json"):
            found[f"{prefix}.{path.name}"] = comparable(path)
    overlays = sorted(p.relative_to(out).as_posix() for p in out.glob("overlays/**/*.png"))
    if overlays:
        found[f"{prefix}.overlays.txt"] = ("\n".join(overlays) + "\n").encode()
    return found


def _cli(out: Path, *args: str) -> int:
    with _at_root():
        return main([*args, "--out", str(out), "--device", "cpu", "-q"])


def sample_data(out: Path) -> dict[str, bytes]:
    """`heatdecode run sample_data`, as the README's first command runs it."""
    assert _cli(out, "run", "sample_data") == 0
    return _collect(out, "sample_data")


def every_decoder(out: Path) -> dict[str, bytes]:
    """Every decoder with --truth on maps that are NaN, flat, on the border, two-peaked, 3D,
    8-bit, and a broken file."""
    decoders = [a for d in EVERY_DECODER for a in ("-d", d)]
    code = _cli(out, "run", INPUTS, *decoders, "--truth", TRUTH, "--no-overlays")
    assert code == 1  # the broken file and the NaN map
    return _collect(out, "every_decoder")


def frames(out: Path) -> dict[str, bytes]:
    """Options given explicitly, and a frame other than pixels."""
    args = ["-d", "argmax", "-d", "softargmax", "-d", "local-softargmax"]
    args += ["--beta", "8", "--normalize", "max", "--radius", "3", "--coords", "half-pixel"]
    args += ["--stride", "4", "--stride-offset", "none", "--spacing", "0.5", "--no-overlays"]
    assert _cli(out, "run", INPUTS, *args) == 1
    return _collect(out, "frames")


def _stop_after(count: int) -> Callable:
    seen = []

    def loaded(source, items) -> None:
        seen.append(source)
        if len(seen) == count:
            raise KeyboardInterrupt

    return loaded


def resumed(out: Path) -> dict[str, bytes]:
    """every_decoder interrupted when the fourth file is read (its partial outputs), then
    --resume."""
    # one map per batch: the files before the fourth are decoded when it is read
    config = RunConfig(truth=Path(TRUTH), overlays=False, workers=1, prefetch=1, batch_size=1)
    config = replace(config, device="cpu")
    config = _with_decoders(config, EVERY_DECODER)
    with _at_root():
        try:
            run([INPUTS], out, config, on_loaded=_stop_after(4))
            raise AssertionError("the run was not interrupted")
        except Interrupted:
            pass
    found = _collect(out, "resumed.partial")
    decoders = [a for d in EVERY_DECODER for a in ("-d", d)]
    code = _cli(out, "run", INPUTS, *decoders, "--truth", TRUTH, "--no-overlays", "--resume")
    assert code == 1
    return found | _collect(out, "resumed")


def _with_decoders(config: RunConfig, decoders: list[str]) -> RunConfig:
    return replace(config, settings=replace(config.settings, decoders=tuple(decoders)))


def sweep(out: Path) -> dict[str, bytes]:
    """`heatdecode sweep` over two decoders, two normalisations and three βs."""
    args = ["-d", "softargmax", "-d", "local-softargmax", "--normalize", "minmax"]
    args += ["--normalize", "none", "--beta", "2,8,30", "--truth", TRUTH]
    _cli(out, "sweep", INPUTS, *args)
    return _collect(out, "sweep")


SCENARIOS: dict[str, Callable[[Path], dict[str, bytes]]] = {
    "sample_data": sample_data,
    "every_decoder": every_decoder,
    "frames": frames,
    "resumed": resumed,
    "sweep": sweep,
}
