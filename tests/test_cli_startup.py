"""A CLI that answers at once: ``--help``, ``--version`` and every usage error that
can be found without reading data finish without importing torch.

Each case runs ``heatdecode.cli.main(ARGS)`` in a fresh interpreter (all cases at
once, in parallel) and reports whether torch was imported on the way.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

import heatdecode
from heatdecode.cli import params, render

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "numpy", "PIL", "rich", "matplotlib")

PROBE = f"""
import json, sys
from heatdecode.cli import main
code = main(sys.argv[1:])
heavy = sorted({{m.split(".")[0] for m in sys.modules}} & set({HEAVY!r}))
print("\\n" + json.dumps({{"code": code, "heavy": heavy}}))
"""

BETA_RANGE = r"must be a finite number > 0 and at most 1e\+06"

#: (id, arguments, the start of stdout): exit code 0
HELP = [
    ("help", ["--help"], "Usage: heatdecode [OPTIONS] COMMAND"),
    ("run-help", ["run", "--help"], "Usage: heatdecode run [OPTIONS]"),
    ("sweep-help", ["sweep", "--help"], "Usage: heatdecode sweep [OPTIONS]"),
    ("bench-help", ["bench", "--help"], "Usage: heatdecode bench [OPTIONS]"),
    ("sample-help", ["sample", "--help"], "Usage: heatdecode sample [OPTIONS]"),
    ("version", ["--version"], f"heatdecode {heatdecode.__version__}"),
]
RUN = ["run", "{good}", "--out", "{out}"]
SWEEP = ["sweep", "{good}", "--out", "{out}", "--truth", "{truth}"]
#: (id, arguments, a pattern for stderr's one line): exit code 2. Each check
#: (callback, command-body check, preflight) at least once; their messages in
#: every variant are tested in-process by test_cli.py and test_bad_inputs.py.
ERRORS = [
    ("unknown-command", ["frobnicate"], r"No such command 'frobnicate'"),
    ("unknown-option", [*RUN, "--bogus"], r"No such option: --bogus"),
    ("no-paths", ["run", "--out", "{out}"], r"Missing argument"),
    ("beta-negative", [*RUN, "--beta", "-1"], rf"--beta {BETA_RANGE}, got -1\.0"),
    ("beta-word", [*RUN, "--beta", "hot"], r"Invalid value for '--beta'"),
    ("batch-size", [*RUN, "--batch-size", "0"], r"--batch-size must be at least 1, got 0"),
    ("workers", [*RUN, "--workers", "0"], r"--workers must be at least 1, got 0"),
    ("layout-letter", [*RUN, "--layout", "XYZ"], r"layout 'XYZ' has the unknown letter 'X'"),
    ("coords", [*RUN, "--coords", "foo"], r"'foo' is not one of"),
    ("decoder", [*RUN, "-d", "median"], r"'median' is not one of"),
    ("stride", [*RUN, "--stride", "0"], r"--stride takes 1 to 3 numbers > 0"),
    ("spacing-normalized", [*RUN, "--coords", "normalized", "--spacing", "1"], r"normalized"),
    ("radius", [*RUN, "--radius", "0"], r"--radius must be an integer >= 1, got 0"),
    ("sigma", [*RUN, "--sigma", "-1"], r"--sigma must be a number from 0 to 10000 px"),
    ("max-map-bytes", [*RUN, "--max-map-bytes", "12Q"], r"--max-map-bytes: '12Q' is not a size"),
    ("batch-bytes-0", [*RUN, "--batch-bytes", "0"], r"--batch-bytes must be at least 1 byte"),
    (
        "missing-paths",
        ["run", "{missing}", "{missing2}", "--out", "{out}"],
        r"^heatdecode: error: nothing to decode \(.*nope\.npy: no such file or folder; ",
    ),
    ("out-is-a-file", ["run", "{good}", "--out", "{taken}"], r"--out .*taken is a file"),
    ("out-holds-outputs", ["run", "{good}", "--out", "{done}"], r"already holds coordinates"),
    ("sweep-betas", [*SWEEP, "--beta", "1,x"], r"--beta takes numbers separated by commas"),
    ("sweep-beta-range", [*SWEEP, "--beta", "5,0"], rf"--beta {BETA_RANGE}, got 0\.0"),
    ("sweep-no-beta", [*SWEEP, "-d", "dark"], r"decoder 'dark' has no β to sweep"),
    ("sweep-missing", ["sweep", "{missing}", "--out", "{out}", "--truth", "t"], r"nothing to"),
    ("sweep-out-file", ["sweep", "{good}", "--out", "{taken}", "--truth", "t"], r"is a file"),
    ("bench-shape", ["bench", "--shape", "3,x"], r"--shape takes integers separated by commas"),
    ("bench-axes", ["bench", "--shape", "5"], r"--shape needs at least 2 axes"),
    ("bench-dims", ["bench", "--shape", "2,2,4,4,4", "--spatial-dims", "4"], r"--spatial-dims"),
    ("sample-file", ["sample", "{taken}"], r"taken is a file, not a folder"),
    ("sample-kind", ["sample", "{new}", "--kind", "fuzzy"], r"unknown --kind 'fuzzy'"),
    ("sample-dims", ["sample", "{new}", "--kind", "clean", "--dims", "4"], r"--dims must be 2"),
]


@pytest.fixture(scope="module")
def places(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("startup")
    np.save(root / "good.npy", np.eye(4, dtype=np.float32))
    (root / "taken").write_text("a file, not a folder")
    (root / "done").mkdir()
    (root / "done" / "coordinates.csv").write_text("file\n")
    (root / "truth.csv").write_text("file,sample,channel,x,y\n")
    names = ("good.npy", "taken", "done", "truth.csv")
    found = {name.split(".")[0]: str(root / name) for name in names}
    more = {"out": root / "out", "new": root / "new", "missing": root / "nope.npy"}
    return found | {k: str(v) for k, v in more.items()} | {"missing2": str(root / "gone")}


def run_probe(args: list[str], timeout: float = 120) -> tuple[subprocess.CompletedProcess, dict]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env={**os.environ, "COLUMNS": "100"},
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.rstrip().splitlines()[-1])
    return done, report


@pytest.fixture(scope="module")
def answers(places) -> dict[str, tuple[subprocess.CompletedProcess, dict]]:
    """Every case of HELP and ERRORS, each in its own interpreter, run side by side."""
    cases = {case: args for case, args, _ in HELP + ERRORS}
    with ThreadPoolExecutor(8) as pool:
        futures = {
            case: pool.submit(run_probe, [a.format(**places) for a in args])
            for case, args in cases.items()
        }
        return {case: future.result() for case, future in futures.items()}


@pytest.mark.parametrize(("case", "args", "start"), HELP, ids=[c for c, _, _ in HELP])
def test_help_and_version_answer_without_torch(answers, case, args, start):
    done, report = answers[case]
    assert report == {"code": 0, "heavy": report["heavy"]}, done.stderr
    assert "torch" not in report["heavy"]
    assert done.stdout.lstrip().startswith(start), done.stdout[:300]
    assert done.stderr == ""


@pytest.mark.parametrize(("case", "args", "pattern"), ERRORS, ids=[c for c, _, _ in ERRORS])
def test_usage_errors_answer_without_torch_in_one_line(answers, places, case, args, pattern):
    done, report = answers[case]
    assert report["code"] == 2, done.stderr
    assert "torch" not in report["heavy"], case
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("heatdecode: error: "), lines
    assert re.search(pattern, lines[0]), (pattern, lines[0])
    assert not Path(places["out"]).exists() and not Path(places["new"]).exists()


def test_version_needs_neither_numpy_nor_rich(answers):
    """The lightest answer: typer and the standard library only."""
    assert answers["version"][1]["heavy"] == []


def test_importing_the_cli_imports_nothing_heavy():
    code = "import sys, heatdecode.cli; print(sorted({m.split('.')[0] for m in sys.modules}))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert not set(HEAVY) & set(eval(done.stdout))


def test_missing_inputs_get_the_message_the_runner_gives(places, tmp_path):
    from heatdecode.preflight import UsageError
    from heatdecode.runner import RunConfig, run

    paths = [places["missing"], places["missing2"]]
    with pytest.raises(UsageError) as caught:
        run(paths, tmp_path / "out", RunConfig())
    done, report = run_probe(["run", *paths, "--out", str(tmp_path / "out")])
    assert report["code"] == 2 and "torch" not in report["heavy"]
    assert done.stderr.strip() == f"heatdecode: error: {caught.value}"


def test_a_real_run_still_decodes_after_the_checks(tmp_path):
    out = tmp_path / "out"
    args = ["run", str(ROOT / "sample_data"), "--out", str(out), "-q", "--no-overlays"]
    done, report = run_probe(args, timeout=300)
    assert report["code"] == 0, done.stderr
    assert "torch" in report["heavy"]  # the probe sees torch once a command needs it
    assert done.stderr == ""
    rows = (out / "coordinates.csv").read_text().splitlines()
    assert rows[0].startswith("file,sample,channel,decoder,x,y,z")
    assert len(rows) > 10 and (out / "coordinates.json").is_file()


def test_the_clis_defaults_are_the_runners():
    from heatdecode.runner import RunConfig

    defaults = RunConfig()
    assert params.DEFAULT_DECODERS == defaults.settings.decoders
    assert params.DEFAULT_DEVICE == defaults.device
    assert params.DEFAULT_BATCH_SIZE == defaults.batch_size
    assert params.DEFAULT_WORKERS == defaults.workers


def test_every_name_shown_passes_through_the_one_display_name():
    """The CLI and the writers escape names with one function, which needs only
    the standard library."""
    from heatdecode import display, writers

    assert render.display_name is display.display_name is writers.display_name
    code = "import sys, heatdecode.display; print(sorted({'torch', 'numpy'} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "[]", done.stderr


def test_the_package_api_is_imported_on_first_use():
    code = (
        "import sys, heatdecode; before = 'torch' in sys.modules; "
        "from heatdecode import soft_argmax, DECODERS; "
        "print(before, 'torch' in sys.modules, callable(soft_argmax), 'argmax' in DECODERS)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "True", "True", "True"]
    for name in heatdecode.__all__:
        assert getattr(heatdecode, name) is not None, name
    assert set(heatdecode.__all__) <= set(dir(heatdecode))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        heatdecode.nope  # noqa: B018
