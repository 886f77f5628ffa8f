"""What the commands print: consoles, one-line messages, tables (the progress
bar: :mod:`heatdecode.cli.progress`).

Size: every table the commands print lives here, one home for their 80-column rules.

rich is imported inside the functions that draw, so the error path of a usage
mistake and ``--version`` don't pay for it until they print.

Markup and emoji codes are off: a file named ``[bold]x.npy`` or
``a:warning:.npy`` is shown as it is, and every name also passes through
:func:`display_name`, so no control or bidi character reaches the terminal raw.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from heatdecode.display import display_name

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from heatdecode.cli.progress import Tracker
    from heatdecode.evaluate import Evaluation
    from heatdecode.runner import RunReport

_PLAIN = {"highlight": False, "markup": False, "emoji": False}


def ignore_pillow_warnings() -> None:
    """Pillow's decompression-bomb warning off, for a command about to read images.

    Large images are refused by the loader with a one-line reason; Pillow's own
    warning on the way would only add a second, noisier line. Called inside
    :func:`heatdecode.cli.main`'s ``warnings.catch_warnings()``, which restores
    the filters on the way out (and already ignores warnings from ``PIL.``
    modules: this names the category too, Pillow being imported by now).
    """
    import warnings

    from PIL import Image

    warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


def out_console() -> Console:
    """Standard output; when it is a file or a pipe, wide enough for the metrics table."""
    from rich.console import Console

    console = Console(**_PLAIN)
    return console if console.is_terminal else Console(**_PLAIN, width=160)


def err_console() -> Console:
    from rich.console import Console

    return Console(stderr=True, soft_wrap=True, **_PLAIN)


def say(console: Console, text: str) -> None:
    """Print one line with every character that could act on the terminal escaped."""
    console.print(display_name(text))


def saved(report: RunReport, read: int) -> str:
    """What an interrupted run saved, in the progress bar's terms (files read):
    ``512 of the 787 files read were finished``, and those of an earlier run."""
    new = report.saved_sources - report.resumed_sources
    text = f"{new} of the {read} files read were finished"
    if report.resumed_sources:
        text += f" (and {report.resumed_sources} more, by the run resumed)"
    return text


def progress_bar(err: Console, quiet: bool) -> AbstractContextManager[Tracker]:
    """:func:`heatdecode.cli.progress.progress_bar`, imported (with rich) when drawn."""
    from heatdecode.cli.progress import progress_bar as bar

    return bar(err, quiet)


def run_summary(report: RunReport, numbers: dict[str, Any]) -> Table:
    """``heatdecode run``'s summary: ``numbers`` is :func:`heatdecode.runner.summary`'s."""
    from rich.table import Table

    table = Table(title="heatdecode run", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column(justify="right")
    table.add_row("files", str(numbers["files"]))
    table.add_row("arrays decoded", str(numbers["arrays"]))
    table.add_row("maps", str(numbers["maps"]))
    table.add_row("failed files", str(numbers["failed_files"]))
    table.add_row("maps with NaN/Inf", str(numbers["nonfinite_maps"]))
    table.add_row("flat (constant) maps", str(numbers["flat_maps"]))
    if "peaks_per_map" in numbers:
        per_map = numbers["peaks_per_map"]
        table.add_row("peaks per map", f"mean {per_map['mean']:.1f}, max {per_map['max']}")
        table.add_row("maps without a peak", str(numbers["no_peak_maps"]))
        if numbers["truncated_maps"]:
            table.add_row("maps over --max-peaks", str(numbers["truncated_maps"]))
    for label, dist in numbers["distance_to_argmax_px"].items():
        spread = f"mean {dist['mean']:.3f}, p95 {dist['p95']:.3f}, max {dist['max']:.3f} px"
        table.add_row(f"argmax ↔ {label}", spread)
    table.add_row("device", report.device)
    table.add_row("time", f"{report.elapsed:.2f} s")
    if numbers["maps_per_second"] is not None:
        table.add_row("maps/s", f"{numbers['maps_per_second']:,.0f}")
    return table


def agreement_tables(report: RunReport, numbers: dict[str, Any]) -> list[Table]:
    """Where the decoders disagree: rows of each status per decoder, the mean
    distance to argmax per channel (at most 40 channels), the worst maps.
    Each fits in 80 columns."""
    from heatdecode.comparison import map_distances, per_channel, worst_maps

    tables = [status_table(numbers["status_counts"])]
    distances = map_distances(report.records, report.frame)  # once, for both tables
    channels = per_channel(report.records, report.frame, distances)
    if channels is not None and len(channels) > 1:
        tables.append(channel_table(channels))
    worst = worst_maps(report.records, report.frame, distances=distances)
    if worst:
        tables.append(worst_table(worst))
    return tables


def status_table(counts: dict[str, dict[str, int]]) -> Table:
    """Rows of each status, one line per decoder; only statuses that occur."""
    from rich.table import Table

    from heatdecode.status import STATUSES

    present = [s for s in STATUSES if any(s in c for c in counts.values())]
    table = Table(title="rows by status", title_justify="left")
    table.add_column("decoder")
    for status in present:
        table.add_column(status, justify="right")
    for label, c in counts.items():
        table.add_row(display_name(label), *(str(c.get(s, 0)) for s in present))
    return table


def channel_table(channels: dict[int, dict[str, float]]) -> Table:
    """Mean distance to argmax (px) per channel, one column per decoder."""
    from rich.table import Table

    labels = list(dict.fromkeys(label for c in channels.values() for label in c))
    table = Table(title="mean px to argmax, by channel", title_justify="left")
    table.add_column("channel", justify="right")
    for label in labels:
        table.add_column(display_name(label)[:14], justify="right")
    for channel, by_label in channels.items():
        table.add_row(str(channel), *(_show(by_label.get(label)) for label in labels))
    return table


def channel_metrics_tables(by_channel: dict[int, dict[str, Any]]) -> list[Table]:
    """Mean error, then PCK@1, per channel (keypoint): one column per decoder.

    Example:
        >>> from types import SimpleNamespace as Fake  # stands for DecoderMetrics
        >>> error, pck = channel_metrics_tables({0: {"dark": Fake(mean=0.25, pck={1.0: 0.9})}})
        >>> list(error.columns[1].cells), list(pck.columns[1].cells)
        (['0.250'], ['90.0%'])
    """
    from rich.table import Table

    labels = list(dict.fromkeys(label for c in by_channel.values() for label in c))
    shown = {
        "mean error, by channel": lambda m: _show(m.mean),
        "PCK@1, by channel": lambda m: _share(m.pck.get(1.0)),
    }
    tables = []
    for title, cell in shown.items():
        table = Table(title=title, title_justify="left")
        table.add_column("channel", justify="right")
        for label in labels:
            table.add_column(display_name(label), justify="right", overflow="fold")
        for channel, by_label in by_channel.items():
            values = [cell(by_label[x]) if x in by_label else "" for x in labels]
            table.add_row(str(channel), *values)
        tables.append(table)
    return tables


def worst_table(worst: list[Any]) -> Table:
    """The maps where the decoders disagree most, then flagged ones."""
    from rich.table import Table

    table = Table(
        title="maps to look at (largest disagreement, then flagged)", title_justify="left"
    )
    for name in ("file", "n", "c", "peak", "px", "decoder", "status"):
        table.add_column(name, justify="left" if name in ("file", "decoder", "status") else "right")
    for w in worst:
        name = display_name(w.file)
        name = name if len(name) <= 24 else "…" + name[-23:]
        distance = "–" if w.distance is None else f"{w.distance:.2f}"
        decoder = "–" if w.decoder is None else display_name(w.decoder)[:16]
        table.add_row(
            name, str(w.sample), str(w.channel), str(w.point), distance, decoder, w.status
        )
    return table


def layouts_table(report: RunReport) -> Table:
    """Which layouts and map shapes the run read, with an example array of each."""
    from rich.table import Table

    layouts: dict[tuple[str, tuple[int, ...]], list[str]] = {}
    for r in report.results:
        layouts.setdefault((r.layout, r.spatial_shape), []).append(r.name)
    shapes = Table(title="layouts used", title_justify="left")
    for column in ("layout", "map shape", "arrays", "example"):
        shapes.add_column(column)
    for (lay, spatial), names in layouts.items():
        shapes.add_row(lay, "×".join(map(str, spatial)), str(len(names)), display_name(names[0]))
    return shapes


def print_run_summary(report: RunReport, numbers: dict[str, Any], out: Path) -> None:
    console = out_console()
    console.print(run_summary(report, numbers))
    console.print(layouts_table(report))
    for extra in agreement_tables(report, numbers):
        console.print(extra)
    if report.evaluation is not None and report.peaks_mode:
        console.print(matching_table(report.evaluation))
    elif report.evaluation is not None:
        console.print(metrics_table(report.evaluation))
        for table in channel_metrics_tables(report.evaluation.by_channel or {}):
            console.print(table)
    for path in report.outputs:
        say(console, f"wrote {path}")
    if report.results and (out / "overlays").is_dir():
        say(console, f"wrote overlays under {out / 'overlays'}")


def matching_table(evaluation: Any) -> Table:
    """Peaks mode's scores against truth: per decoder and cutoff, pooled over maps
    (``evaluation`` is a :class:`heatdecode.peak_evaluation.PeakEvaluation`)."""
    from rich.table import Table

    table = Table(title="Matching against truth (pooled over maps)")
    for name in ("decoder", "cutoff", "TP", "FP", "FN", "precision", "recall", "F1", "mean d"):
        table.add_column(name, justify="left" if name == "decoder" else "right")
    for decoder, metrics in evaluation.decoders.items():
        for s in metrics.pooled:
            cells = [decoder, f"{s.cutoff:g}", str(s.tp), str(s.fp), str(s.fn)]
            cells += [_show(v) for v in (s.precision, s.recall, s.f1, s.mean_distance)]
            table.add_row(*cells)
    integrals = ", ".join(
        f"{d} {_show(m.f1_integral_pooled)}" for d, m in evaluation.decoders.items()
    )
    notes = [f"F1 integral over cutoffs 0..3: {integrals}"]
    if evaluation.missing_truth:
        notes.append(f"{len(evaluation.missing_truth)} decoded map(s) without truth: not scored")
    if evaluation.missing_maps:
        notes.append(f"{len(evaluation.missing_maps)} map(s) in the truth not decoded")
    table.caption = "\n".join(notes)
    return table


def sweep_table(winners: dict[tuple[str, str], Any]) -> Table:
    """The best β of each (decoder, normalisation): ``winners`` is ``sweep.best``'s."""
    from rich.table import Table

    table = Table(title="best β per decoder and normalisation", title_justify="left")
    for column in ("decoder", "normalize", "best β", "mean error", "median", "PCK@1"):
        table.add_column(column)
    for (name, norm), point in winners.items():
        m = point.metrics
        pck = m.pck.get(1.0)
        table.add_row(
            name,
            norm,
            f"{point.beta:g}",
            f"{m.mean:.4f} px",
            f"{m.median:.4f} px",
            "" if pck is None else f"{pck:.1%}",
        )
    return table


def bench_table(title: str, rows: list[Any]) -> Table:
    """``heatdecode bench``'s timings: one row per decoder."""
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for column in ("decoder", "median ms", "maps/s"):
        table.add_column(column, justify="left" if column == "decoder" else "right")
    for row in rows:
        table.add_row(row.decoder, f"{row.median_ms:.3f}", f"{row.maps_per_s:,.0f}")
    return table


def metrics_table(evaluation: Evaluation) -> Table:
    """The evaluation as a rich table: a row per statistic, a column per decoder
    (six decoders fit in 80 columns; a row per decoder takes 110), missing keys
    in the caption.

    The evaluation as the CLI draws it (rich lives only in the CLI), so the
    library's evaluation needs no rich.

    Example:
        >>> from types import SimpleNamespace as Fake  # stands for DecoderMetrics, Evaluation
        >>> m = Fake(decoder="argmax", count=1, undecoded=0, mean=0.5, median=0.5, p95=0.5,
        ...          max=0.5, bias_x=0.0, bias_y=0.5, bias_z=None, pck={0.5: 1.0})
        >>> evaluation = Fake(decoders={"argmax": m}, thresholds=(0.5,), missing_truth=[],
        ...                   missing_maps=[])
        >>> table = metrics_table(evaluation)
        >>> list(table.columns[0].cells)[2:7]
        ['mean', 'median', 'p95', 'max', 'bias x']
        >>> list(table.columns[1].cells)[2], list(table.columns[1].cells)[-1]
        ('0.500', '100.0%')
    """
    from rich.table import Table

    metrics = list(evaluation.decoders.values())
    has_z = any(m.bias_z is not None for m in metrics)
    table = Table(title="error against truth", title_justify="left")
    table.add_column("")
    for m in metrics:
        table.add_column(display_name(m.decoder), justify="right", overflow="fold")
    rows: list[tuple[str, list[str]]] = [
        ("maps", [str(m.count) for m in metrics]),
        ("undecoded", [str(m.undecoded) for m in metrics]),
    ]
    for name in ("mean", "median", "p95", "max"):
        rows.append((name, [_show(getattr(m, name)) for m in metrics]))
    for axis in ("x", "y", "z") if has_z else ("x", "y"):
        rows.append(
            (f"bias {axis}", [_show(getattr(m, f"bias_{axis}"), signed=True) for m in metrics])
        )
    for t in evaluation.thresholds:
        rows.append((f"PCK@{t:g}", [_share(m.pck.get(t)) for m in metrics]))
    for name, cells in rows:
        table.add_row(name, *cells)
    notes = ["errors in the coordinates' units;", "undecoded maps count as misses in PCK"]
    if evaluation.missing_truth:
        notes.append(f"{len(evaluation.missing_truth)} decoded map(s) without a truth row")
    if evaluation.missing_maps:
        notes.append(f"{len(evaluation.missing_maps)} truth row(s) without a decoded map")
    table.caption = "\n".join(notes)
    table.caption_justify = "left"
    return table


def _share(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


def _show(value: float | None, digits: int = 3, signed: bool = False) -> str:
    if value is None:
        return "–"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def print_comparison(
    run: Any, columns: list[str], rows: list[dict[str, Any]], worst: int, by: str, chosen: Any
) -> None:
    """``heatdecode compare``'s tables: decoder pairs, rows by status, by channel
    or file, and the worst maps."""
    import numpy as np

    from heatdecode.comparison import map_distances, per_channel, status_counts, worst_maps

    console = out_console()
    console.print(pair_table(columns, rows))
    labels = [x for x in run.labels if chosen is None or x in chosen]
    distances = map_distances(run.records, run.frame)  # once, for both tables
    points = [p for r in run.records for p in r.points]
    console.print(status_table(status_counts(points, labels)))
    if by == "channel":
        channels = per_channel(run.records, run.frame, distances)
        if channels is not None:
            console.print(channel_table(channels))
    else:
        console.print(file_table(columns, rows, np))
    if worst:
        found = worst_maps(run.records, run.frame, worst, distances)
        if found:
            console.print(worst_table(found))


def print_truth_comparison(run: Any, truth: list[dict[str, Any]], chosen: Any) -> None:
    """``compare --truth``: each decoder's error against the truth, overall and
    by channel (the tables ``run --truth`` prints)."""
    from heatdecode.evaluate import evaluate

    points = [p for r in run.records for p in r.points if chosen is None or p.decoder in chosen]
    evaluation = evaluate(points, truth)
    console = out_console()
    console.print(metrics_table(evaluation))
    for table in channel_metrics_tables(evaluation.by_channel or {}):
        console.print(table)


def pair_table(columns: list[str], rows: list[dict[str, Any]]) -> Table:
    """Distance statistics (px) of every pair of decoders, over the points both decoded."""
    import numpy as np
    from rich.table import Table

    table = Table(title="distance between decoders (px)", title_justify="left")
    for name in ("pair", "points", "mean", "median", "p95", "max"):
        table.add_column(name, justify="left" if name == "pair" else "right")
    for pair in (c for c in columns if "~" in c):
        values = np.asarray([r[pair] for r in rows if r[pair] is not None], dtype=np.float64)
        if not len(values):
            table.add_row(display_name(pair)[:32], "0", "–", "–", "–", "–")
            continue
        stats = (values.mean(), np.median(values), np.percentile(values, 95), values.max())
        table.add_row(display_name(pair)[:32], str(len(values)), *(f"{v:.3f}" for v in stats))
    return table


def file_table(columns: list[str], rows: list[dict[str, Any]], np: Any) -> Table:
    """Mean distance (px) of every decoder pair, file by file."""
    from rich.table import Table

    pairs = [c for c in columns if "~" in c]
    table = Table(title="mean px between decoders, by file", title_justify="left")
    table.add_column("file")
    for pair in pairs:
        table.add_column(display_name(pair)[:20], justify="right")
    files: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        files.setdefault(row["file"], []).append(row)
    for file, group in files.items():
        means = []
        for pair in pairs:
            values = [r[pair] for r in group if r[pair] is not None]
            means.append(_show(float(np.mean(values))) if values else "–")
        name = display_name(file)
        table.add_row(name if len(name) <= 24 else "…" + name[-23:], *means)
    return table


def comparison_png(path: Path, columns: list[str], rows: list[dict[str, Any]]) -> Path | None:
    """Histograms of every decoder pair's distances (log counts); ``None``
    without matplotlib (the plot extra), after a warning."""
    try:
        import matplotlib
    except ImportError:
        say(err_console(), "warning: comparison.png not drawn: pip install 'heatdecode[plot]'")
        return None
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    from heatdecode.atomic import atomic_write

    pairs = [c for c in columns if "~" in c]
    fig, axes = plt.subplots(1, max(1, len(pairs)), figsize=(3.2 * max(1, len(pairs)), 2.8))
    for ax, pair in zip(list(getattr(axes, "flat", [axes])), pairs, strict=False):
        ax.hist([r[pair] for r in rows if r[pair] is not None], bins=40, log=True)
        ax.set_title(pair, fontsize=8)
        ax.set_xlabel("px")
    fig.tight_layout()
    atomic_write(path, lambda fh: fig.savefig(fh, format="png"), binary=True)
    plt.close(fig)
    return path
