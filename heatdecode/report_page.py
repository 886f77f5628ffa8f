"""``report.html``: one self-contained page about a finished run.

Everything is inline (CSS, the script, the histograms as SVG, the data of
every map as JSON); only the overlay images are linked, relative to the run's
folder, so the page works from ``file://`` with no network. It shows the
run's settings, failures, the rows by status, the distances to the reference
decoder (per decoder and per channel), their histograms, a gallery of the
worst and the flagged maps with their overlays, and a table of every map that
sorts, filters and pages in the browser.

:func:`write_report` reads ``OUT/coordinates.json`` (and
``OUT/overlays/index.json`` when the run drew overlays) and writes
``OUT/report.html`` atomically.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np

from heatdecode.atomic import atomic_write
from heatdecode.compare import FinishedRun, read_run
from heatdecode.comparison import distance_stats, map_distances, per_channel, status_counts
from heatdecode.preflight import REPORT_NAME
from heatdecode.report_data import (
    GalleryItem,
    MapTable,
    gallery,
    histograms,
    map_table,
    overlay_images,
    reference_label,
)
from heatdecode.status import STATUSES

OVERLAY_INDEX = "overlays/index.json"


def write_report(out_dir: Path, gallery_size: int = 12) -> Path:
    """Write ``out_dir/report.html`` for the run there; returns its path.

    Raises:
        ValueError: no readable ``coordinates.json`` in ``out_dir`` (one line).
    """
    out_dir = Path(out_dir)
    run = read_run(out_dir)
    document = json.loads((out_dir / "coordinates.json").read_text(encoding="utf-8"))
    metrics = _read_json(out_dir / "metrics.json")
    page = render_page(run, document, _overlay_index(out_dir), gallery_size, metrics)
    path = out_dir / REPORT_NAME
    atomic_write(path, lambda fh: fh.write(page))
    return path


def _read_json(path: Path) -> Any:
    """A JSON file's content, or None where there is none (or it can't be read:
    what it would add to the page is left out)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _overlay_index(out_dir: Path) -> list[dict[str, Any]] | None:
    """The overlay index's entries (the page then links each file's overlay
    where there is none)."""
    index = _read_json(out_dir / OVERLAY_INDEX)
    entries = index.get("images") if isinstance(index, dict) else index
    return entries if isinstance(entries, list) else None


def render_page(
    run: FinishedRun,
    document: Mapping[str, Any],
    index: Sequence[Mapping[str, Any]] | None = None,
    gallery_size: int = 12,
    metrics: Mapping[str, Any] | None = None,
) -> str:
    """The page's HTML (see the module docstring); ``metrics``: the run's
    ``metrics.json``, when it had ``--truth``."""
    distances = map_distances(run.records, run.frame)
    table = map_table(run.records, run.labels, run.frame)
    images = overlay_images(run.records, index)
    items = gallery(run.records, run.frame, images, gallery_size, distances)
    sections = [
        _header(run, document),
        _section("Settings", _key_values(run.settings)),
        _failures(document.get("failures") or []),
        _section("Rows by status", _status_table(run)),
        _section(f"Distance to {reference_label(run.labels)} (px)", _distance_table(table)),
        _channels(run, distances),
        *_metrics(metrics),
        _section("Histograms of the distances", _histograms(table)),
        _section("Maps to look at", _gallery(items)),
        _section("Every map", _map_table(table)),
    ]
    return _TEMPLATE.format(
        title=html.escape(f"heatdecode report: {', '.join(run.labels)}"),
        css=_asset("report.css"),
        body="\n".join(s for s in sections if s),
        data=_json_for_script(_table_data(table)),
        script=_asset("report.js"),
    )


_TEMPLATE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>{title}</title>
<style>{css}</style></head>
<body>
{body}
<script type="application/json" id="maps-data">{data}</script>
<script>{script}</script>
</body></html>
"""


def _asset(name: str) -> str:
    return resources.files("heatdecode").joinpath("report_assets", name).read_text("utf-8")


def _json_for_script(value: Any) -> str:
    """JSON that can't end its <script> element early (``</script>`` in a file name)."""
    text = json.dumps(value, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _table_data(table: MapTable) -> dict[str, Any]:
    return {
        "files": table.files,
        "statuses": list(STATUSES),
        "columns": table.columns,
        "distances": table.distances,
    }


def _e(value: Any) -> str:
    return html.escape(str(value))


def _section(title: str, content: str) -> str:
    return f'<section id="{_slug(title)}"><h2>{_e(title)}</h2>\n{content}\n</section>'


def _slug(title: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in title.lower()).strip("-")


def _header(run: FinishedRun, document: Mapping[str, Any]) -> str:
    summary = document.get("summary") or {}
    complete = "" if document.get("complete", True) else " (incomplete run)"
    facts = [
        f"{summary.get('files', len(run.records))} files",
        f"{summary.get('maps', '?')} maps",
        f"{summary.get('failed_files', 0)} failed",
        f"decoders: {', '.join(run.labels)}",
    ]
    version = document.get("heatdecode_version", "?")
    return (
        f"<header><h1>heatdecode report{_e(complete)}</h1>"
        f'<p class="muted">{_e(" · ".join(facts))} · heatdecode {_e(version)}, '
        f"torch {_e(document.get('torch_version', '?'))}</p></header>"
    )


def _table(head: Sequence[str], rows: Sequence[Sequence[Any]], numeric_from: int = 1) -> str:
    """A plain HTML table; cells from column ``numeric_from`` on are right-aligned."""

    def cells(tag: str, values: Sequence[Any]) -> str:
        return "".join(
            f"<{tag}{' class=num' if i >= numeric_from else ''}>{_e(v)}</{tag}>"
            for i, v in enumerate(values)
        )

    body = "".join(f"<tr>{cells('td', r)}</tr>" for r in rows)
    return f"<table><thead><tr>{cells('th', head)}</tr></thead><tbody>{body}</tbody></table>"


def _key_values(settings: Mapping[str, Any]) -> str:
    def shown(v: Any) -> Any:
        if v is None:
            return "–"
        return json.dumps(v) if isinstance(v, (list, dict)) else v

    rows = [(k, shown(v)) for k, v in settings.items()]
    return _table(("setting", "value"), rows, numeric_from=99)


def _failures(failures: Sequence[Mapping[str, Any]]) -> str:
    if not failures:
        return ""
    rows = [(f.get("file", ""), f.get("kind", ""), f.get("reason", "")) for f in failures]
    return _section("Failures", _table(("file", "kind", "reason"), rows, numeric_from=99))


def _status_table(run: FinishedRun) -> str:
    points = [p for r in run.records for p in r.points]
    counts = status_counts(points, run.labels)
    present = [s for s in STATUSES if any(s in c for c in counts.values())]
    rows = [(label, *(counts[label].get(s, 0) for s in present)) for label in run.labels]
    return _table(("decoder", *present), rows)


def _distance_table(table: MapTable) -> str:
    rows = []
    for label, ds in table.distances.items():
        values = [d for d in ds if d is not None]
        if values:
            stats = distance_stats(np.asarray(values))
            rows.append((label, len(values), *(f"{stats[k]:.3f}" for k in ("mean", "p95", "max"))))
    if not rows:
        return '<p class="muted">Only one decoder ran: nothing to compare.</p>'
    return _table(("decoder", "maps", "mean", "p95", "max"), rows)


def _channels(run: FinishedRun, distances: Mapping[Any, dict[str, float]]) -> str:
    channels = per_channel(run.records, run.frame, distances)
    if not channels:
        return ""
    labels = [label for label in run.labels if any(label in c for c in channels.values())]
    rows = [
        (c, *(f"{v[label]:.3f}" if label in v else "" for label in labels))
        for c, v in channels.items()
    ]
    return _section("Mean distance by channel (px)", _table(("channel", *labels), rows))


def _metrics(metrics: Mapping[str, Any] | None) -> list[str]:
    """The scores against --truth: per decoder, and mean error / PCK per channel."""
    if not isinstance(metrics, Mapping) or not isinstance(metrics.get("decoders"), list):
        return []
    pck = [c for c in metrics.get("columns", []) if str(c).startswith("pck_")]
    heads = ("decoder", "count", "mean", "median", "p95", "max", *pck)
    rows = [[_number(r.get(h)) for h in heads] for r in metrics["decoders"]]
    sections = [_section("Error against the truth", _table(heads, rows))]
    by_channel = metrics.get("by_channel")
    if isinstance(by_channel, list) and by_channel:
        labels = list(dict.fromkeys(r["decoder"] for r in by_channel))
        for column, title in (("mean", "Mean error by channel"), ("pck_1", "PCK@1 by channel")):
            cells: dict[int, dict[str, Any]] = {}
            for r in by_channel:
                cells.setdefault(r["channel"], {})[r["decoder"]] = _number(r.get(column))
            table = [(c, *(v.get(label, "") for label in labels)) for c, v in cells.items()]
            sections.append(_section(title, _table(("channel", *labels), table)))
    return sections


def _number(value: Any) -> Any:
    return f"{value:.3f}" if isinstance(value, float) else ("–" if value is None else value)


def _histograms(table: MapTable) -> str:
    parts = [_svg_histogram(label, h) for label, h in histograms(table).items()]
    return "".join(parts) or '<p class="muted">No distances to plot.</p>'


def _svg_histogram(label: str, h: Mapping[str, list], width: int = 320, height: int = 140) -> str:
    """Counts on a log scale (one map in a bin stays visible beside 10⁵)."""
    counts, edges = h["counts"], h["edges"]
    top = math.log10(1 + max(counts, default=0)) or 1.0
    bar = width / max(len(counts), 1)
    rects = []
    for i, n in enumerate(counts):
        if n:
            tall = (height - 20) * math.log10(1 + n) / top
            y = height - 14 - tall
            beyond = h.get("overflow") is not None and i == len(counts) - 1
            colour = "#b3261e" if beyond else "#3b6fb6"
            rects.append(
                f'<rect x="{i * bar:.1f}" y="{y:.1f}" width="{max(bar - 1, 1):.1f}" '
                f'height="{tall:.1f}" fill="{colour}">'
                f"<title>{edges[i]:.3f}–{edges[i + 1]:.3f} px: {n}</title></rect>"
            )
    right = f"≥ {h['overflow']:.2f} px" if h.get("overflow") else f"{edges[-1]:.2f} px"
    axis = (
        f'<text x="0" y="{height - 2}" font-size="10">0</text>'
        f'<text x="{width}" y="{height - 2}" font-size="10" text-anchor="end">'
        f"{_e(right)}</text>"
    )
    return (
        f'<figure class="hist"><svg width="{width}" height="{height}" role="img" '
        f'aria-label="{_e(label)} distances">{"".join(rects)}{axis}</svg>'
        f"<figcaption>{_e(label)}: maps per distance bin (log scale)</figcaption></figure>"
    )


def _gallery(items: Sequence[GalleryItem]) -> str:
    if not items:
        return '<p class="muted">No map disagrees or is flagged.</p>'
    return '<div class="grid" id="gallery">' + "".join(_card(i) for i in items) + "</div>"


def _card(item: GalleryItem) -> str:
    where = f"{item.file} · n {item.sample} · c {item.channel}"
    if item.point:
        where += f" · peak {item.point}"
    what = item.status if item.why == "flagged" else f"{item.distance:.2f} px ({item.decoder})"
    if item.why == "worst" and item.status != "ok":
        what += f" · {item.status}"
    if item.image:
        image, _, panel = item.image.partition("#")
        href = quote(image)
        picture = f'<a href="{href}"><img src="{href}" alt="overlay of {_e(item.file)}"></a>'
        if panel:
            what += f" · panel {panel}"
    else:
        picture = '<p class="muted">no overlay drawn for this map</p>'
    return f"<figure>{picture}<figcaption>{_e(where)}<br>{_e(what)}</figcaption></figure>"


def _map_table(table: MapTable) -> str:
    fields = ["file", "sample", "channel", "peak", "score", "status"]
    heads = fields + [f"d:{label}" for label in table.distances]
    names = fields + [f"{label} px" for label in table.distances]
    options = "".join(f'<option value="{s}">{s}</option>' for s in STATUSES)
    controls = (
        '<div id="controls">'
        '<label>status <select id="filter-status"><option value="">any</option>'
        f'<option value="flagged">not ok</option>{options}</select></label>'
        '<label>file <input id="filter-file" type="search" placeholder="part of a name"></label>'
        '<label>largest distance ≥ <input id="filter-distance" type="number" min="0" '
        'step="0.1" placeholder="px"></label>'
        '<span id="shown"></span>'
        '<span id="pager"><button id="prev" type="button">previous</button>'
        '<span id="page"></span><button id="next" type="button">next</button></span></div>'
    )
    th = "".join(
        f'<th data-field="{_e(h)}" aria-sort="none">{_e(n)}</th>'
        for h, n in zip(heads, names, strict=True)
    )
    return (
        f'{controls}<table id="maps"><thead><tr>{th}</tr></thead><tbody></tbody></table>'
        '<p class="muted">Distances are to the reference decoder, in heatmap pixels; '
        "click a column to sort (again to reverse); 100 maps a page.</p>"
    )
