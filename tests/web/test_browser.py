"""The console in a real browser: Debian's Chromium driven by Playwright against a running daemon.

A ``tessera-daemon demo straggler`` subprocess on a free port (short warm-up, fast-forwarded), then
headless Chromium loads ``/``: the fault must appear on the map and in the incident list, the
incident's evidence chart must have data, and there must be no console error, no failed request and
no request to any host but the daemon (every other request is aborted and recorded). Screenshots of
each view go to build/screenshots/ (git-ignored). Never ``playwright install``: the browser is
``/usr/bin/chromium`` (``make test`` apt-gets it).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tessera_daemon.config import load_config
from tessera_daemon.sim import ClusterSim
from tests.servers import free_port

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
SHOTS = Path(__file__).resolve().parents[2] / "build" / "screenshots"
ENV = {
    "TESSERA_DETECTOR__WARMUP_WINDOWS": "20",
    "TESSERA_DETECTOR__WARMUP_MAX_WINDOWS": "40",
    "TESSERA_LOG__LEVEL": "warning",
    "TESSERA_LOG__FORMAT": "json",
}
FIRING_RGB = (0xE5, 0x48, 0x4D)


@pytest.fixture
def demo_daemon(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A demo daemon subprocess; yields (base URL, the straggler's shard)."""
    port = free_port()
    env = {**os.environ, **ENV, "TESSERA_HTTP__PORT": str(port)}
    truth = ClusterSim(
        load_config(None, {**ENV, "TESSERA_SIM__SCENARIO": "straggler"}).sim, scenario="straggler"
    ).labels()["faults"][0]["shards"][0]
    log = (tmp_path / "daemon.log").open("w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from tessera_daemon.cli import main; sys.exit(main())",
            "demo",
            "straggler",
            "--no-browser",
            "--speed",
            "20",
            "--fast-forward",
            "200",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(base + "/healthz", timeout=1):
                    break
            except OSError as exc:
                if proc.poll() is not None or time.monotonic() > deadline:
                    tail = (tmp_path / "daemon.log").read_text()[-2000:]
                    raise AssertionError(f"daemon did not serve: {tail}") from exc
                time.sleep(0.2)
        yield base, truth
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def test_console_in_chromium_shows_the_fault_offline(demo_daemon: tuple[str, str]) -> None:
    if not CHROMIUM.exists():
        pytest.skip("chromium is not installed (make test installs it with apt-get)")
    sync_api = pytest.importorskip("playwright.sync_api")
    base, truth = demo_daemon
    own = urlsplit(base).netloc
    SHOTS.mkdir(parents=True, exist_ok=True)
    external: list[str] = []
    failed: list[str] = []
    errors: list[str] = []

    def gate(route: object) -> None:
        url = route.request.url  # type: ignore[attr-defined]
        if urlsplit(url).netloc == own or url.startswith("data:"):
            route.continue_()  # type: ignore[attr-defined]
        else:
            external.append(url)
            route.abort()  # type: ignore[attr-defined]

    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM))
        try:
            # the page's CSP (script-src 'self') would also stop the test's own wait_for_function probes
            page = browser.new_context(viewport={"width": 1400, "height": 900}, bypass_csp=True).new_page()
            page.route("**/*", gate)
            page.on("console", lambda m: errors.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
            page.on("requestfailed", lambda r: failed.append(f"{r.url} {r.failure}"))
            page.on("response", lambda r: failed.append(f"{r.url} HTTP {r.status}") if r.status >= 400 else None)

            page.goto(base + "/")
            page.wait_for_function("window.__tessera && window.__tessera.firstPaintMs !== null", timeout=20_000)
            # the fault on the map (its cell drawn in the firing colour) and in the incident list
            page.wait_for_function(
                "s => { const p = window.__tessera.probe(s, 'any'); return p && p.state === 'firing'; }",
                arg=truth,
                timeout=45_000,
            )
            page.wait_for_selector(f"#incidents-side .inc.open:has-text('{truth}')", timeout=15_000)
            page.wait_for_timeout(300)
            probe = page.evaluate("s => window.__tessera.probe(s, 'any')", truth)
            assert tuple(probe["rgb"]) == FIRING_RGB, probe
            page.screenshot(path=str(SHOTS / "fleet.png"))

            page.click(f"#incidents-side .inc.open:has-text('{truth}')")
            page.wait_for_function(
                "() => { const c = document.getElementById('evidence-chart');"
                " return c && Number(c.dataset.points) > 2; }",
                timeout=10_000,
            )
            assert "TesseraShardFault" in page.inner_text("#incident")
            assert page.get_attribute("#firing-json", "href").startswith("/v1/firings/")
            page.screenshot(path=str(SHOTS / "incident.png"), full_page=True)

            for view, ready in (
                ("incidents", "#incidents-full .inc"),
                (f"shard/{truth}", "#shard .charts canvas"),
                ("events", "#daemon dl"),
                ("scenarios", "#scenario-list table"),
            ):
                page.evaluate("h => { location.hash = h; }", "#" + view)
                page.wait_for_selector(ready, timeout=10_000)
                page.wait_for_timeout(400)
                page.screenshot(path=str(SHOTS / f"{view.split('/')[0]}.png"), full_page=True)
            assert truth in page.inner_text("#scenario-now")

            page.set_viewport_size({"width": 390, "height": 844})  # a phone
            page.evaluate("() => { location.hash = '#fleet'; }")
            page.wait_for_timeout(600)
            page.screenshot(path=str(SHOTS / "phone.png"), full_page=True)
            width = page.evaluate("() => document.documentElement.scrollWidth")
            assert width <= 400, f"the page scrolls sideways on a phone ({width} px)"

            stats = page.evaluate("() => ({updates: window.__tessera.updates.length, errors: window.__tessera.errors})")
            assert stats["updates"] > 0 and stats["errors"] == []
        finally:
            browser.close()
    assert external == [], f"requests to other hosts: {external}"
    assert failed == [], f"failed requests: {failed}"
    assert errors == [], f"console errors: {errors}"
