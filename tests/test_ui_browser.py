"""The Dagster UI in a real browser: `dagster dev` on localhost, Debian's Chromium headless.

Chromium comes from the project's setup (`make test` installs Debian's package); Playwright
drives it through `executable_path` and never downloads a browser.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from pipelines.synth.generator import generate_city
from tests.conftest import AS_OF, plumbline_env, run_cli

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SCREENSHOTS = Path(os.environ.get("PLUMBLINE_SCREENSHOTS", "screenshots"))
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ui(tmp_path_factory: pytest.TempPathFactory):
    assert Path(CHROMIUM).exists(), "Debian's chromium is missing: run `make test`, which installs it"
    root = tmp_path_factory.mktemp("ui")
    generate_city(root / "city", people=300, seed=13, as_of=AS_OF)
    env = plumbline_env(root / "data", root / "city" / "landing")
    assert run_cli("run", env=env).returncode == 0  # a run to inspect, in the same instance
    os.environ["PLUMBLINE_UI_DATA"] = str(root / "data")
    port = free_port()
    dagster = Path(sys.executable).parent / "dagster"
    proc = subprocess.Popen(
        [str(dagster), "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"{url}/server_info", timeout=2)
                break
            except OSError:
                time.sleep(1)
        else:
            raise AssertionError("dagster dev did not come up within 120 s")
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def last_run_id(ui: str) -> str:
    query = '{"query": "{ runsOrError { ... on Runs { results { runId status } } } }"}'
    req = urllib.request.Request(f"{ui}/graphql", data=query.encode(),
                                 headers={"Content-Type": "application/json"})
    runs = json.loads(urllib.request.urlopen(req, timeout=30).read())["data"]["runsOrError"]
    ok = [r["runId"] for r in runs["results"] if r["status"] == "SUCCESS"]
    assert ok, runs
    return ok[0]


def open_page(page, url: str) -> None:
    page.goto(url, wait_until="networkidle", timeout=90_000)
    skip = page.get_by_role("button", name="Skip")
    if skip.count():
        skip.first.click()  # the first-visit community dialog
        page.get_by_text("Join the Dagster community").wait_for(state="hidden")


def test_asset_graph_shows_the_stages_and_a_materialization_can_be_inspected(ui: str) -> None:
    from playwright.sync_api import expect, sync_playwright

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        open_page(page, f"{ui}/asset-groups")
        for stage in ("ingest", "linkage", "warehouse", "rules", "marts", "delivery", "datalab"):
            expect(page.get_by_text(stage, exact=True).first).to_be_visible(timeout=30_000)
        page.screenshot(path=str(SCREENSHOTS / "asset_graph.png"))

        # the linkage asset: its last materialization and its health checks
        open_page(page, f"{ui}/assets/person_crosswalk")
        expect(page.get_by_text("Latest materialization").first).to_be_visible(timeout=30_000)
        expect(page.get_by_text("linked_share").first).to_be_visible()
        page.screenshot(path=str(SCREENSHOTS / "person_crosswalk.png"))
        open_page(page, f"{ui}/assets/person_crosswalk?view=checks")
        expect(page.get_by_text("cluster_size_bound").first).to_be_visible(timeout=30_000)
        expect(page.get_by_text("match_rate_stable").first).to_be_visible()
        page.screenshot(path=str(SCREENSHOTS / "person_crosswalk_checks.png"))

        # the data lab's erasure and its check, after the run answered the city's requests
        open_page(page, f"{ui}/assets/datalab_erasure?view=checks")
        expect(page.get_by_text("nothing_left_behind").first).to_be_visible(timeout=30_000)
        page.screenshot(path=str(SCREENSHOTS / "datalab_erasure_checks.png"))

        # a dbt model is as first-class as the Python assets: owner, row count, columns
        open_page(page, f"{ui}/assets/marts/lead_alerts")
        expect(page.get_by_text("Latest materialization").first).to_be_visible(timeout=30_000)
        expect(page.get_by_text(re.compile(r"row count", re.IGNORECASE)).first).to_be_visible()
        expect(page.get_by_text("assigned_organisation").first).to_be_visible()
        page.screenshot(path=str(SCREENSHOTS / "dbt_lead_alerts.png"), full_page=True)

        # the run that `plumbline run` made is there, and it succeeded
        run_id = last_run_id(ui)
        open_page(page, f"{ui}/runs/{run_id}")
        expect(page.get_by_text("Success").first).to_be_visible(timeout=30_000)
        expect(page.get_by_text("alert_lists").first).to_be_visible()
        page.screenshot(path=str(SCREENSHOTS / "run.png"))
        browser.close()
    assert (SCREENSHOTS / "asset_graph.png").stat().st_size > 10_000


def test_indicators_page_and_an_agency_chart_render(ui: str, tmp_path) -> None:
    """The static pages, opened as files: no server is needed to read them."""
    from playwright.sync_api import sync_playwright

    outbox = Path(os.environ["PLUMBLINE_UI_DATA"]) / "outbox"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1300, "height": 1400})
        for name, url in (("indicators.png", outbox / "public" / "index.html"),
                          ("provider_personal_best.png",
                           next(outbox.glob("[A-Z]*/personal_best.html")))):
            page.goto(url.as_uri())
            sizes = page.eval_on_selector_all(
                "img", "imgs => imgs.map(i => i.complete ? i.naturalWidth : 0)")
            assert sizes and all(w > 300 for w in sizes), sizes
            page.screenshot(path=str(SCREENSHOTS / name), full_page=True)
        page.goto((outbox / "public" / "index.html").as_uri())
        assert page.get_by_text("What each contract bought").count() == 1
        assert page.locator("a[href^='ocds/']").count() == 1
        browser.close()
