"""What is published: contract outcomes, open contracting data, charts, a warehouse to query."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import time
from datetime import timedelta
from pathlib import Path

import duckdb
import jsonschema
import pandas as pd

from pipelines.suppression import disclosed_small_cells
from tests.conftest import AS_OF, PLUMBLINE, Run, plumbline_env

# The parts of the OCDS 1.1 release package schema our package must meet (the full schema is
# fetched from the web by OCDS tools, which this machine cannot do): required fields and types.
OCDS_PACKAGE = {
    "type": "object",
    "required": ["uri", "version", "publishedDate", "publisher", "releases"],
    "properties": {
        "version": {"const": "1.1"},
        "publisher": {"type": "object", "required": ["name"]},
        "releases": {"type": "array", "minItems": 1, "items": {
            "type": "object",
            "required": ["ocid", "id", "date", "tag", "initiationType"],
            "properties": {
                "ocid": {"type": "string", "pattern": "^ocds-"},
                "tag": {"type": "array", "items": {"enum": [
                    "planning", "tender", "award", "contract", "implementation"]}},
                "initiationType": {"const": "tender"},
                "parties": {"type": "array", "items": {"required": ["id", "name", "roles"]}},
                "awards": {"type": "array", "items": {"required": ["id"]}},
                "contracts": {"type": "array", "items": {
                    "type": "object", "required": ["id", "awardID"],
                    "properties": {
                        "value": {"type": "object", "required": ["amount", "currency"]},
                        "period": {"type": "object", "required": ["startDate", "endDate"]},
                        "items": {"type": "array", "items": {"required": ["id"]}},
                        "implementation": {"type": "object"}}}},
            }}},
    },
}


def test_contract_outcomes_rows_and_suppression(pipeline_run: Run) -> None:
    with duckdb.connect(str(pipeline_run.data_dir / "warehouse.duckdb"), read_only=True) as con:
        table = con.execute("select * from marts.contract_outcomes").df()
        contracts = con.execute("select distinct contract_id from src.provider_contracts").df()
    assert set(table.contract_id) == set(contracts.contract_id)
    assert not table.duplicated(["contract_id", "month"]).any()
    measures = ["services", "services_lead_case_mgmt", "services_home_visit",
                "services_nutrition", "services_dev_screen", "services_other",
                "children_served", "lead_referred_children", "case_management_in_time",
                "next_test_lower"]
    pairs = [("lead_referred_children", "case_management_in_time"),
             ("lead_referred_children", "next_test_lower")]
    assert disclosed_small_cells(table, ["contract_id"], "month", measures, pairs) == []
    shown = table.services.dropna()
    assert len(shown) and ((shown == 0) | (shown >= 11)).all()  # 0 discloses nobody
    assert (table.monthly_amount_usd > 0).all()


def test_ocds_package_is_valid_release_package(pipeline_run: Run) -> None:
    path = pipeline_run.data_dir / "outbox" / "public" / "ocds" / f"release_package_{AS_OF:%Y%m%d}.json"
    package = json.loads(path.read_text())
    jsonschema.validate(package, OCDS_PACKAGE)
    ocids = [r["ocid"] for r in package["releases"]]
    assert len(ocids) == len(set(ocids)) == 3
    hhn = next(r for r in package["releases"] if r["ocid"].endswith("HHN-2025-014"))
    assert [i["description"] for i in hhn["contracts"][0]["items"]] == [
        "LEAD_CASE_MGMT", "HOME_VISIT"]
    metrics = {m["id"] for m in hhn["contracts"][0]["implementation"]["metrics"]}
    assert {"case_management_in_time", "next_test_lower"} <= metrics


def test_one_personal_best_chart_per_organisation(pipeline_run: Run) -> None:
    """Each provider its own past, never three pooled; nobody's page names another."""
    outbox = pipeline_run.data_dir / "outbox"
    organisations = {p.parent.name for p in outbox.glob("*/personal_best.png")}
    assert {"health", "housing"} <= organisations and "providers" not in organisations
    assert organisations & {"HHN", "FSC", "WIC"}
    for organisation in organisations:
        png = outbox / organisation / "personal_best.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        page = (outbox / organisation / "personal_best.html").read_text()
        assert "data:image/png;base64," in page
        for other in organisations - {organisation}:
            assert f">{other}" not in page and f"{other}:" not in page


def test_published_warehouse_is_queryable_while_a_run_writes(pipeline_run: Run,
                                                             tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(pipeline_run.data_dir, data, ignore=shutil.ignore_patterns("dagster_home"))
    published = data / "published" / "plumbline.duckdb"
    env = plumbline_env(data, pipeline_run.city.landing, as_of=AS_OF + timedelta(days=1))
    with duckdb.connect(str(published), read_only=True) as con:
        (before,), = con.execute("select version from about").fetchall()
    run = subprocess.Popen([str(PLUMBLINE), "run"], env=env, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True)
    answers = []
    while run.poll() is None:
        with duckdb.connect(str(published), read_only=True) as con:
            answers.append(con.execute(
                "select count(*) from policy_lead_followup_by_zip").fetchall()[0][0])
        time.sleep(0.2)
    assert run.returncode == 0, run.stderr.read()[-2000:]
    assert len(answers) > 5 and all(a > 0 for a in answers)
    with duckdb.connect(str(published), read_only=True) as con:
        (after,), = con.execute("select version from about").fetchall()
    assert after > before  # the run swapped in a new snapshot
    tables = pd.read_parquet(next((data / "published" / "versions").iterdir())
                             / "contract_outcomes.parquet")
    assert len(tables) > 0


def test_the_published_folder_reads_the_same_when_copied_and_cleans_up_after_a_kill(
        pipeline_run: Run, tmp_path: Path) -> None:
    from pipelines.publish import publish_snapshot

    moved = tmp_path / "elsewhere"
    shutil.copytree(pipeline_run.data_dir / "published", moved)
    shutil.rmtree(moved / "versions")  # the copy must not lean on the original's files
    with duckdb.connect(str(moved / "plumbline.duckdb"), read_only=True) as con:
        assert con.execute("select count(*) from policy_lead_followup_by_zip").fetchall()[0][0]
    (moved / ".plumbline.20260101T000000.duckdb").write_bytes(b"half a file")  # a killed run
    publish_snapshot(moved, {"t": pd.DataFrame({"n": [1]})})
    assert not list(moved.glob(".plumbline.*"))


def test_the_public_folder_stands_alone_and_passes_its_suppression_check(
        pipeline_run: Run, tmp_path: Path) -> None:
    import re

    from dagster import AssetCheckKey, AssetKey, DagsterInstance

    public = tmp_path / "public"
    shutil.copytree(pipeline_run.data_dir / "outbox" / "public", public)
    page = (public / "index.html").read_text()
    # shares as percentages and money as dollars, never raw decimals such as 0.576 or 28000.0
    assert "$" in page and not re.search(r">\d+\.0<|>0\.\d+<", page)
    links = re.findall(r'href="([^"]+)"', page)
    assert any("personal_best/" in link for link in links)
    assert {"data/policy_lead_followup_by_zip.csv", "data/contract_outcomes.csv"} <= set(links)
    for link in links:
        target = (public / link).resolve()
        assert public.resolve() in target.parents and target.is_file(), link
    with DagsterInstance.from_config(str(pipeline_run.data_dir / "dagster_home")) as instance:
        record = instance.event_log_storage.get_latest_asset_check_execution_by_key(
            [AssetCheckKey(AssetKey("published_outputs"), "no_small_cells_published")])
    (execution,) = record.values()
    assert execution.status.value == "SUCCEEDED"
    assert execution.event.asset_check_evaluation.passed


def test_no_suppressed_count_can_be_worked_out_across_the_published_tables(
        pipeline_run: Run) -> None:
    """The differencing audit (tests/differencing_audit.py, written apart from the
    suppression and pooling code): monthly by ZIP and band, city totals, pooled quarters and
    years, and each organisation's monthly and pooled timeliness, read together."""
    from tests.differencing_audit import followup_disclosures, timeliness_disclosures

    with duckdb.connect(str(pipeline_run.data_dir / "warehouse.duckdb"), read_only=True) as wh:
        assert followup_disclosures(wh, 11) == []
        assert timeliness_disclosures(wh, 11) == []
        pooled = wh.execute("select * from marts.policy_followup_pooled").df()
    assert set(pooled["grain"]) <= {"month", "quarter", "year"}
    # every published pooled figure could be published on its own
    assert disclosed_small_cells(pooled, ["measure"], "period",
                                 ["steps_due", "steps_in_time"],
                                 [("steps_due", "steps_in_time")]) == []


def test_the_audit_catches_a_pooled_quarter_that_gives_a_month_away() -> None:
    """The audit can fail: a quarter published beside two of its three months."""
    from tests.differencing_audit import System, _audit

    s = System()
    months = {"2026-01": (20, 12), "2026-02": (25, 15), "2026-03": (6, 2)}
    for m, (due, in_time) in months.items():
        s.var((m, "due"), due)
        s.var((m, "in_time"), in_time)
    for m in ("2026-01", "2026-02"):
        s.publish(s.index[(m, "due")])
        s.publish(s.index[(m, "in_time")])
    pairs = [(s.index[(m, "due")], s.index[(m, "in_time")]) for m in months]
    assert _audit(s, pairs, 11, "t") == []
    s.known({s.index[(m, "due")]: 1.0 for m in months})  # the quarter's steps due
    assert _audit(s, pairs, 11, "t") == ["t: ('2026-03', 'due') can be worked out"]


def test_charts_drawn_early_are_published_only_when_drawn_from_what_is_published(
        pipeline_run: Run, tmp_path: Path) -> None:
    """`plumbline run` draws the charts as soon as dbt is done (pipelines.publish.draw_early);
    the publication takes that drawing only when its tables are the ones drawn, else it draws
    its own: a chart never shows other data than the page it is published with."""
    from pipelines import publish
    from pipelines.charts import draw
    from pipelines.stores import Settings

    data_dir = tmp_path / "data"
    shutil.copytree(pipeline_run.data_dir, data_dir, ignore=shutil.ignore_patterns("*.lock"))
    settings = Settings(landing=pipeline_run.city.landing, data_dir=data_dir, as_of=AS_OF,
                        pseudonym_key=b"test-key-not-secret")
    wh_path = str(data_dir / "warehouse.duckdb")
    publish.DRAW_EARLY = True
    try:
        with duckdb.connect(wh_path, read_only=True) as wh:
            publish.draw_early(wh)
        assert "charts" in publish._early
        publish.publish_all(settings)
        assert not publish._early  # taken by the publication
        with duckdb.connect(wh_path, read_only=True) as wh:
            publish.draw_early(wh)
        early = publish._early["charts"][1].result()
        with duckdb.connect(wh_path) as wh:  # the marts change after the early drawing
            wh.execute("update marts.policy_lead_followup_by_zip set children_tested = "
                       "coalesce(children_tested, 0) + 100 where zip5 = 'ALL'")
            tables = publish.published_tables(wh)
        publish.publish_all(settings)
        assert not publish._early
    finally:
        publish.DRAW_EARLY = False
        publish._early.clear()
    now = draw(publish.chart_inputs(tables))
    assert now["tested"] != early["tested"]
    page = (data_dir / "outbox" / "public" / "index.html").read_text()
    assert base64.b64encode(now["tested"]).decode() in page
    assert base64.b64encode(early["tested"]).decode() not in page
