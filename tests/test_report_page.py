"""``report.html``: one self-contained page per run, checked as HTML and in a
real headless Chromium (loaded from ``file://``: no console errors, the
gallery's images load, the table sorts, filters and pages)."""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from heatdecode.cli import main
from heatdecode.compare import read_run
from heatdecode.report_page import REPORT_NAME, render_page, write_report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


@pytest.fixture(scope="module")
def sample_run(tmp_path_factory) -> Path:
    """The sample folder, plus a flat and a two-peak map, decoded by four decoders,
    with overlays."""
    from heatdecode.sample import write_sample

    root = tmp_path_factory.mktemp("report")
    write_sample(root / "in", seed=0)
    odd = np.zeros((2, 24, 40), np.float32)  # a flat map, and one with two equal peaks
    odd[1, 5, 6] = odd[1, 18, 33] = 1.0
    np.save(root / "in" / "odd.npy", odd)
    out = root / "out"
    decoders = ["-d", "argmax", "-d", "softargmax", "-d", "parabola", "-d", "dark"]
    assert main(["run", str(root / "in"), "--out", str(out), "-q", *decoders]) in (0, 1)
    write_report(out)
    return out


@pytest.fixture(scope="module")
def big_run(tmp_path_factory) -> Path:
    """12,000 maps (120 × 100 of 9×14): beyond one page many times over."""
    root = tmp_path_factory.mktemp("big")
    rng = np.random.default_rng(7)
    maps = rng.random((120, 100, 9, 14), dtype=np.float32)
    np.save(root / "many.npy", maps)
    out = root / "out"
    args = ["run", str(root / "many.npy"), "--out", str(out), "-q", "-d", "argmax", "-d", "dark"]
    assert main([*args, "--no-overlays"]) in (0, 1)
    write_report(out)
    return out


def _data(page: str) -> dict:
    found = re.search(r'<script type="application/json" id="maps-data">(.*?)</script>', page, re.S)
    assert found is not None
    return json.loads(found.group(1))


def test_the_page_is_self_contained_and_links_only_overlays(sample_run):
    page = (sample_run / REPORT_NAME).read_text(encoding="utf-8")
    assert "<style>" in page and "<svg" in page
    links = re.findall(r'(?:src|href)="([^"]*)"', page)
    assert links, "the gallery links its overlays"
    for link in links:
        assert not re.match(r"[a-z]+://", link), link  # no network, no CDN
        assert link == "data:," or (sample_run / link).is_file(), link


def test_the_page_carries_every_map_and_the_status_counts(sample_run):
    page = (sample_run / REPORT_NAME).read_text(encoding="utf-8")
    document = json.loads((sample_run / "coordinates.json").read_text())
    data = _data(page)
    assert len(data["columns"]["file"]) == document["summary"]["maps"]
    assert set(data["distances"]) == {"softargmax", "parabola", "dark"}
    for label, counts in document["summary"]["status_counts"].items():
        for status, n in counts.items():
            assert re.search(rf"<td>{label}</td>.*?<td class=num>{n}</td>", page), (label, status)


def test_names_that_look_like_html_are_escaped_everywhere(sample_run):
    run = read_run(sample_run)
    document = json.loads((sample_run / "coordinates.json").read_text())
    weird = "</script><img src=x onerror=alert(1)>.npy"
    record = run.records[0]
    files = [replace(f, name=weird) for f in record.files]
    points = [replace(p, file=weird) for p in record.points]
    run.records[0] = replace(record, files=files, points=points)
    page = render_page(run, document)
    assert "<img src=x" not in page
    assert page.count("</script>") == 2  # the data's and the script's own
    assert weird in _data(page)["files"]


def test_report_of_a_folder_without_a_run_is_one_line_and_exit_2(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "coordinates.json" in err
    assert not (tmp_path / REPORT_NAME).exists()


def test_report_command_writes_the_page(sample_run, capsys):
    (sample_run / REPORT_NAME).unlink()
    assert main(["report", str(sample_run), "--gallery", "4"]) == 0
    assert (sample_run / REPORT_NAME).is_file()
    assert "report.html" in capsys.readouterr().out


# ------------------------------------------------------------ in a browser


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None or CHROMEDRIVER is None:
        pytest.skip(
            "Chromium and ChromeDriver are not installed (Debian: chromium chromium-driver)"
        )
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium (the test extra)")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"]
    flags += ["--disable-background-networking", "--disable-component-update", "--disable-sync"]
    for flag in [*flags, "--window-size=1280,1800"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def _open(browser, out: Path) -> None:
    browser.get((out / REPORT_NAME).resolve().as_uri())
    assert browser.execute_script("return document.body.dataset.ready") == "true"


def _column(browser, index: int) -> list[str]:
    rows = "[...document.querySelectorAll('#maps tbody tr')]"
    return browser.execute_script(f"return {rows}.map(r => r.cells[{index}].textContent)")


def _heads(browser) -> list[str]:
    return browser.execute_script(
        "return [...document.querySelectorAll('#maps th')].map(h => h.dataset.field)"
    )


def test_the_page_loads_from_file_with_no_console_errors_and_its_images_load(browser, sample_run):
    _open(browser, sample_run)
    assert browser.get_log("browser") == []
    images = browser.execute_script(
        "return [...document.querySelectorAll('#gallery img')]"
        ".map(i => [i.complete, i.naturalWidth])"
    )
    assert images and all(done and width > 0 for done, width in images)


def test_clicking_a_distance_column_sorts_it_largest_first_then_reverses(browser, sample_run):
    _open(browser, sample_run)
    heads = _heads(browser)
    column = heads.index("d:softargmax")
    browser.find_element("css selector", 'th[data-field="d:softargmax"]').click()
    values = [float(v) for v in _column(browser, column)]
    maps = json.loads((sample_run / "coordinates.json").read_text())["summary"]["maps"]
    assert values == sorted(values, reverse=True) and len(values) == maps
    browser.find_element("css selector", 'th[data-field="d:softargmax"]').click()
    values = [float(v) for v in _column(browser, column)]
    assert values == sorted(values)


def test_filters_keep_the_maps_of_a_status_a_file_and_a_distance(browser, sample_run):
    from selenium.webdriver.support.ui import Select

    _open(browser, sample_run)
    data = _data((sample_run / REPORT_NAME).read_text(encoding="utf-8"))
    Select(browser.find_element("id", "filter-status")).select_by_value("flagged")
    flagged = sum(data["statuses"][s] != "ok" for s in data["columns"]["status"])
    assert len(_column(browser, 0)) == flagged >= 1
    Select(browser.find_element("id", "filter-status")).select_by_value("")
    browser.find_element("id", "filter-file").send_keys("pose")
    files = _column(browser, 0)
    assert files and all("pose" in f for f in files)
    browser.find_element("id", "filter-file").clear()
    browser.find_element("id", "filter-distance").send_keys("0.5")
    rows = len(_column(browser, 0))
    largest = [
        max((ds[i] for ds in data["distances"].values() if ds[i] is not None), default=None)
        for i in range(len(data["columns"]["file"]))
    ]
    assert rows == sum(d is not None and d >= 0.5 for d in largest)


def test_twelve_thousand_maps_are_paged_a_hundred_at_a_time(browser, big_run):
    _open(browser, big_run)
    assert len(_column(browser, 0)) == 100
    assert browser.find_element("id", "shown").text == "12,000 of 12,000 maps"
    assert browser.find_element("id", "page").text == "page 1 of 120"
    first = _column(browser, 1)
    browser.find_element("id", "next").click()
    assert browser.find_element("id", "page").text == "page 2 of 120"
    assert _column(browser, 1) != first
    heads = _heads(browser)
    browser.find_element("css selector", 'th[data-field="d:dark"]').click()
    top = float(_column(browser, heads.index("d:dark"))[0])
    data = _data((big_run / REPORT_NAME).read_text(encoding="utf-8"))
    assert top == pytest.approx(
        max(d for d in data["distances"]["dark"] if d is not None), abs=1e-3
    )
    assert browser.find_element("id", "page").text == "page 1 of 120"  # a new order starts over
    assert browser.get_log("browser") == []


def test_run_with_report_writes_the_page_beside_the_coordinates(tmp_path, capsys):
    maps = np.zeros((2, 3, 20, 24), np.float32)
    maps[:, :, 5, 6] = 1.0
    np.save(tmp_path / "m.npy", maps)
    out = tmp_path / "out"
    assert main(["run", str(tmp_path / "m.npy"), "--out", str(out), "--report"]) == 0
    assert (out / REPORT_NAME).is_file()
    assert len(_data((out / REPORT_NAME).read_text(encoding="utf-8"))["columns"]["file"]) == 6
    assert "report.html" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--format", "csv"], "--report reads coordinates.json"),
        (["--format", "json"], "already holds report.html"),
    ],
)
def test_run_report_refuses_before_any_work(tmp_path, capsys, extra, message):
    np.save(tmp_path / "m.npy", np.eye(5, 6, dtype=np.float32))
    out = tmp_path / "out"
    out.mkdir()
    (out / REPORT_NAME).write_text("an older page")
    assert main(["run", str(tmp_path / "m.npy"), "--out", str(out), "--report", *extra]) == 2
    assert message in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == [REPORT_NAME]


def test_a_run_with_truth_shows_its_scores_per_decoder_and_per_channel(tmp_path):
    from heatdecode.sample import write_sample

    write_sample(tmp_path / "in", seed=0)
    out = tmp_path / "out"
    truth = str(tmp_path / "in" / "truth.csv")
    assert main(["run", str(tmp_path / "in"), "--out", str(out), "-q", "--truth", truth]) == 0
    page = write_report(out).read_text(encoding="utf-8")
    metrics = json.loads((out / "metrics.json").read_text())
    assert "Error against the truth" in page
    for row in metrics["decoders"]:
        assert f"<td class=num>{row['mean']:.3f}</td>" in page
    assert "Mean error by channel" in page and "PCK@1 by channel" in page
    for row in metrics["by_channel"]:
        assert f"<td class=num>{row['pck_1']:.3f}</td>" in page
