"""The HTML report in a real browser: Debian's headless Chromium, driven by
Playwright pointed at that executable (Playwright's own browser download is not
used). The page must load with no console error and no request but its own, and
draw one graph node per step in the status's colour; search and links work.

Skipped where Chromium or Playwright is missing, except under CI (CI=true), where
.ci/run installs both and a skip would hide a broken report. With
ZENCACHE_SCREENSHOTS=1 the digits report's screenshot is written to
docs/images/report.png (the one docs/results.md shows).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = Path(sys.executable).parent / "zencache"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Debian's package puts the browser at /usr/bin/chromium.
COLOURS = {
    "executed": "rgb(47, 111, 219)",
    "cached": "rgb(46, 157, 87)",
    "failed": "rgb(214, 59, 59)",
    "skipped": "rgb(138, 143, 152)",
}


def _chromium() -> str | None:
    for candidate in (os.environ.get("ZENCACHE_CHROMIUM"), "/usr/bin/chromium"):
        if candidate and Path(candidate).exists():
            return candidate
    return shutil.which("chromium")


def _missing(what: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{what} is missing under CI: .ci/run should have installed it")
    pytest.skip(f"{what} is not installed (apt-get install chromium; pip install playwright)")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("the playwright package")
    executable = _chromium()
    if executable is None:
        _missing("chromium")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


def cli(cwd: Path, *args: str) -> str:
    command = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "zencache"]
    env = {k: v for k, v in os.environ.items() if k != "ZENCACHE_DIR"}
    done = subprocess.run(
        [*command, "--cache-dir", str(cwd / "cache"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert done.returncode in (0, 1), done.stderr
    return done.stdout


class Page:
    """A report opened in a fresh page, with everything it asked for and said."""

    def __init__(self, browser: Any, path: Path) -> None:
        self.page = browser.new_page(viewport={"width": 1200, "height": 900})
        self.requests: list[str] = []
        self.console: list[tuple[str, str]] = []
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.on("console", lambda m: self.console.append((m.type, m.text)))
        self.page.on("pageerror", lambda e: self.console.append(("pageerror", str(e))))
        self.url = path.resolve().as_uri()
        self.page.goto(self.url, wait_until="load")

    def nodes(self) -> list[list[str]]:
        return self.page.eval_on_selector_all(
            "#graph .node",
            """ns => ns.map(n => [n.dataset.step, n.dataset.status,
                 getComputedStyle(n.querySelector('rect')).stroke])""",
        )

    def check_loaded_alone(self) -> None:
        assert self.requests == [self.url]
        assert [m for m in self.console if m[0] in ("error", "pageerror", "warning")] == []


def test_the_digits_report_loads_alone_and_draws_every_step(browser: Any, tmp_path: Path) -> None:
    shutil.copytree(REPO / "examples" / "digits", tmp_path / "examples" / "digits")
    example = "examples/digits/pipeline.py"
    cli(tmp_path, "run", f"{example}:digits")
    cli(tmp_path, "run", f"{example}:digits", "-p", "gamma=0.01")
    report = tmp_path / "report.html"
    cli(tmp_path, "report", "digits@latest", "-o", str(report), "--diff", "digits@latest~1")

    opened = Page(browser, report)
    opened.check_loaded_alone()
    nodes = opened.nodes()
    assert [(n[0], n[1]) for n in nodes] == [
        ("importer", "cached"),
        ("svc_trainer", "executed"),
        ("evaluator", "executed"),
    ]
    for _, status, stroke in nodes:
        if status == "cached":  # changed steps are outlined in the "changed" colour
            assert stroke == COLOURS[status]
    page = opened.page
    assert page.locator("#timeline rect").count() == 3
    assert "Changes since run" in page.inner_text("body")
    page.click('#graph a[href="#s1"]')
    assert page.locator("#s1").get_attribute("open") is not None
    assert "gamma" in page.inner_text("#s1")
    shot = tmp_path / "report.png"
    if os.environ.get("ZENCACHE_SCREENSHOTS") == "1":
        shot = REPO / "docs" / "images" / "report.png"
        shot.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    opened.check_loaded_alone()


def test_a_1000_step_report_with_every_status_is_searchable(browser: Any, tmp_path: Path) -> None:
    (tmp_path / "big.py").write_text(
        "from zencache import pipeline, step\n\n\n"
        "@step\ndef inc(x: int) -> int:\n    return x + 1\n\n\n"
        "@step\ndef explode(x: int) -> int:\n    raise ValueError('no')\n\n\n"
        "@pipeline\ndef big(start: int = 0):\n"
        "    x = inc(x=start)\n"
        "    for _ in range(996):\n        x = inc(x=x)\n"
        "    return inc(x=explode(x=inc(x=start)))\n"
    )
    cli(tmp_path, "run", "big.py:big")
    cli(tmp_path, "run", "big.py:big", "-p", "start=1")
    report = tmp_path / "big.html"
    cli(tmp_path, "report", "-o", str(report))
    assert report.stat().st_size < 2 * 1024 * 1024

    opened = Page(browser, report)
    opened.check_loaded_alone()
    nodes = opened.nodes()
    assert len(nodes) == 1000
    statuses = {n[1] for n in nodes}
    assert statuses == {"executed", "cached", "failed", "skipped"}
    for _, status, stroke in nodes:
        assert stroke == COLOURS[status]
    page = opened.page
    assert page.locator("details.step[open]").count() == 0  # collapsed
    page.fill("#q", "ValueError")  # only the failed step's error says it
    assert page.locator("details.step:visible").count() == 1
    assert page.locator("details.step:visible").get_attribute("data-status") == "failed"
    assert page.inner_text("#count") == "1 of 1000 steps"
    page.fill("#q", "inc_99")
    shown = page.eval_on_selector_all(
        "details.step", "ds => ds.filter(d => d.style.display !== 'none').map(d => d.dataset.name)"
    )
    assert {"inc_99", "inc_990", "inc_100"} <= set(shown) and "inc_5" not in shown
    assert page.locator("#graph .node.hit").count() == len(shown)
    visible = len(shown)
    page.click("#open")
    assert page.locator("details.step[open]").count() == visible
    page.fill("#q", "")
    assert page.inner_text("#count") == "1000 of 1000 steps"
    opened.check_loaded_alone()
