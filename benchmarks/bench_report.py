"""How report.html copes with many maps: its size, and load, sort, filter and
page times in headless Chromium.

Decodes a small run, writes its report, then swaps the page's data for N
synthetic maps (three decoders' distances, statuses mostly ok), as a run of N
maps would write them, and times the page in Debian's chromium through
selenium (``pip install -e ".[test]"``; ``apt-get install chromium
chromium-driver``).

Run: ``python benchmarks/bench_report.py --maps 1000000`` (about a minute).
"""

from __future__ import annotations

import argparse
import re
import tempfile
import time
from pathlib import Path

import numpy as np

from heatdecode.cli import main as cli
from heatdecode.report_page import _json_for_script, write_report
from heatdecode.sample import write_sample
from heatdecode.status import STATUSES


def synthetic(n: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)

    def rounded(values: np.ndarray) -> list[float]:
        return np.round(values, 4).tolist()

    ok, multimodal, unrefined = (STATUSES.index(s) for s in ("ok", "multimodal", "unrefined"))
    index = np.arange(n)
    return {
        "files": [f"plate_{i:04d}.npy" for i in range(max(n // 1000, 1))],
        "statuses": list(STATUSES),
        "columns": {
            "file": (index // 1000).tolist(),
            "sample": (index % 1000 // 17).tolist(),
            "channel": (index % 17).tolist(),
            "peak": [0] * n,
            "score": rounded(rng.random(n)),
            "status": rng.choice([ok, ok, ok, multimodal, unrefined], n).tolist(),
        },
        "distances": {k: rounded(rng.gamma(2, 0.2, n)) for k in ("softargmax", "parabola", "dark")},
    }


def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


def timed(step) -> float:
    start = time.perf_counter()
    step()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--maps", type=int, default=1_000_000)
    args = parser.parse_args()
    from selenium.webdriver.support.ui import Select

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_sample(root / "in", seed=0)
        decoders = ["-d", "argmax", "-d", "softargmax", "-d", "parabola", "-d", "dark"]
        cli(["run", str(root / "in"), "--out", str(root / "out"), "-q", *decoders])
        page = write_report(root / "out").read_text(encoding="utf-8")
        data = _json_for_script(synthetic(args.maps))
        pattern = r'(<script type="application/json" id="maps-data">).*?(</script>)'
        page = re.sub(pattern, lambda m: m.group(1) + data + m.group(2), page, flags=re.S)
        path = root / "out" / "big.html"
        path.write_text(page, encoding="utf-8")
        driver = browser()
        try:
            load = timed(lambda: driver.get(path.as_uri()))
            assert driver.execute_script("return document.body.dataset.ready") == "true"
            sort = timed(driver.find_element("css selector", 'th[data-field="d:dark"]').click)
            status = Select(driver.find_element("id", "filter-status"))
            keep = timed(lambda: status.select_by_value("flagged"))
            turn = timed(driver.find_element("id", "next").click)
            errors = driver.get_log("browser")
        finally:
            driver.quit()
    print("| maps | page MB | load s | sort s | filter s | next page s | console errors |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    size = len(page.encode()) / 1e6
    cells = [f"{args.maps:,}", f"{size:.1f}", *(f"{t:.2f}" for t in (load, sort, keep, turn))]
    print("| " + " | ".join([*cells, str(len(errors))]) + " |")


if __name__ == "__main__":
    main()
