"""Which β? Decode at every β (and normalisation, and decoder) and score against truth.

``heatdecode sweep`` is ``heatdecode run --truth`` with one decoder run per
(decoder, normalize, β), all in a single pass over the files. It writes
``sweep.csv`` (one row per combination), ``metrics.csv``/``metrics.json`` (the
full metrics, one row per combination) and ``sweep.png`` (mean error against
β, log scale, one line per decoder and normalisation; needs matplotlib).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Any

from heatdecode.atomic import atomic_write
from heatdecode.evaluate import DecoderMetrics, pck_column
from heatdecode.family import DECODERS
from heatdecode.options import check_beta, check_decoder, takes
from heatdecode.pipeline import DecoderRun, DecodeSettings
from heatdecode.runner import RunConfig, RunReport, UsageError, run

SWEEP_NAMES = ("sweep.csv", "sweep.png")


@dataclass(frozen=True)
class SweepPoint:
    """One (decoder, normalize, β) combination and how it scored."""

    decoder: str
    normalize: str
    beta: float
    metrics: DecoderMetrics


@dataclass
class SweepReport:
    points: list[SweepPoint]
    run: RunReport
    outputs: list[Path]
    plot_error: str | None  # why sweep.png wasn't drawn, if it wasn't


def parse_betas(text: str) -> tuple[float, ...]:
    """``"1,2,5"`` → (1.0, 2.0, 5.0); every β in range (an :class:`OptionError`
    if not), no repeats.

    Example:
        >>> parse_betas("1, 2,5,10")
        (1.0, 2.0, 5.0, 10.0)
    """
    try:
        betas = tuple(float(b) for b in text.split(","))
    except ValueError:
        raise UsageError(f"--beta takes numbers separated by commas, got {text!r}") from None
    for beta in betas:
        check_beta(beta)
    return tuple(dict.fromkeys(betas))


def label(decoder: str, normalize: str, beta: float) -> str:
    """The name a combination's rows carry, e.g. ``softargmax minmax beta=20``."""
    return f"{decoder} {normalize} beta={beta:g}"


def sweep_runs(
    decoders: Sequence[str],
    normalizes: Sequence[str],
    betas: Sequence[float],
    radius: int | None = None,
) -> tuple[DecoderRun, ...]:
    """One :class:`DecoderRun` per combination; only decoders that take β make sense.

    Example:
        >>> [r.label for r in sweep_runs(["softargmax"], ["minmax"], [5.0, 20.0])]
        ['softargmax minmax beta=5', 'softargmax minmax beta=20']
    """
    for name in decoders:
        try:
            check_decoder(name)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        if not takes(name, "beta"):
            raise UsageError(
                f"decoder {name!r} has no β to sweep; use softargmax or local-softargmax"
            )
    return tuple(
        DecoderRun(label(d, n, b), d, beta=b, normalize=n, radius=radius)
        for d in decoders
        for n in normalizes
        for b in betas
    )


def run_sweep(
    paths: Sequence[str | os.PathLike[str]],
    out_dir: Path,
    truth: Path,
    runs: Sequence[DecoderRun],
    config: RunConfig = RunConfig(),
    **callbacks: Callable[..., None],
) -> SweepReport:
    """Decode ``paths`` under every run, score against ``truth``, write the sweep outputs."""
    out_dir = Path(out_dir)
    if not config.overwrite:
        taken = [n for n in SWEEP_NAMES if (out_dir / n).exists()]
        if taken:
            raise UsageError(f"{out_dir} already holds {', '.join(taken)}; pass --overwrite")
    sweep_config = replace(
        config,
        settings=DecodeSettings(runs=tuple(runs)),
        truth=truth,
        formats=(),
        overlays=False,
    )
    report = run(paths, out_dir, sweep_config, **callbacks)
    assert report.evaluation is not None  # run() evaluates whenever truth is given
    points = [
        SweepPoint(r.decoder, r.normalize, r.beta, report.evaluation.decoders[r.label])
        for r in runs
        if r.label in report.evaluation.decoders
    ]
    outputs = list(report.outputs)
    outputs.append(write_sweep_csv(out_dir / "sweep.csv", points))
    plot_error = None
    try:
        outputs.append(plot_sweep(out_dir / "sweep.png", points))
    except ImportError:
        plot_error = "sweep.png not drawn: matplotlib is missing (pip install 'heatdecode[plot]')"
    return SweepReport(points, report, outputs, plot_error)


def best(points: Sequence[SweepPoint]) -> dict[tuple[str, str], SweepPoint]:
    """The β with the lowest mean error for each (decoder, normalize)."""
    winners: dict[tuple[str, str], SweepPoint] = {}
    for p in points:
        if p.metrics.mean is None:
            continue
        key = (p.decoder, p.normalize)
        if key not in winners or p.metrics.mean < winners[key].metrics.mean:
            winners[key] = p
    return winners


SWEEP_COLUMNS = (
    "decoder",
    "normalize",
    "beta",
    "count",
    "undecoded",
    "mean",
    "median",
    "p95",
    "max",
)


def write_sweep_csv(path: Path, points: Sequence[SweepPoint]) -> Path:
    """``sweep.csv``: one row per combination, the error statistics and PCK."""
    thresholds = list(points[0].metrics.pck) if points else []

    def cell(value: Any) -> str:
        return "" if value is None else (f"{value:.6g}" if isinstance(value, float) else str(value))

    def write(fh: IO[str]) -> None:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow([*SWEEP_COLUMNS, *(pck_column(t) for t in thresholds)])
        for p in points:
            m = p.metrics
            stats = [m.count, m.undecoded, m.mean, m.median, m.p95, m.max]
            pck = [m.pck.get(t) for t in thresholds]
            writer.writerow([cell(v) for v in (p.decoder, p.normalize, p.beta, *stats, *pck)])

    atomic_write(path, write)
    return path


_LINESTYLES = {"minmax": "-", "max": "--", "none": ":"}
_MARKERS = ("o", "s", "^", "D", "v", "P")


def plot_sweep(path: Path, points: Sequence[SweepPoint]) -> Path:
    """``sweep.png``: mean error (px) against β, log axes, one line per decoder and normalize.

    Raises:
        ImportError: matplotlib is not installed.
    """
    import matplotlib

    matplotlib.use("Agg")  # no display; must come before pyplot
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.8), dpi=110)
    lines: dict[tuple[str, str], list[SweepPoint]] = {}
    for p in points:
        lines.setdefault((p.decoder, p.normalize), []).append(p)
    for (decoder, normalize), series in lines.items():
        series = sorted((p for p in series if p.metrics.mean is not None), key=lambda p: p.beta)
        if not series:
            continue
        # line style by normalisation, marker by decoder: coinciding lines
        # (max and minmax agree on maps whose minimum is 0) stay visible
        ax.plot(
            [p.beta for p in series],
            [max(p.metrics.mean, 1e-4) for p in series],
            linestyle=_LINESTYLES.get(normalize, "-"),
            marker=_MARKERS[list(DECODERS).index(decoder) % len(_MARKERS)],
            markerfacecolor="none",
            label=f"{decoder}, {normalize}",
        )
    for p in best(points).values():
        ax.annotate(
            f"β={p.beta:g}: {p.metrics.mean:.3f}",
            (p.beta, max(p.metrics.mean, 1e-4)),
            textcoords="offset points",
            xytext=(4, -12),
            fontsize=8,
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    betas = sorted({p.beta for p in points})
    ax.set_xticks(betas, [f"{b:g}" for b in betas])
    ax.minorticks_off()
    ax.set_xlabel("β (inverse temperature)")
    ax.set_ylabel("mean error (px)")
    ax.set_title("Soft-argmax error against ground truth")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    atomic_write(path, lambda fh: fig.savefig(fh, format="png"), binary=True)
    plt.close(fig)
    return path
