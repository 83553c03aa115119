"""The lists caseworkers get: only their own children, one owner per alert, safe in a
spreadsheet, triaged, with a feedback template, and alert ids that survive relinking."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pandas as pd

from pipelines.csvsafe import FORMULA_STARTERS, neutralise
from pipelines.synth.generator import generate_city
from tests.conftest import AS_OF, Run, plumbline_env, run_cli

STAMP = f"{AS_OF:%Y%m%d}"
KINDS = ("health", "housing", "schools")
DBT_PROJECT = Path(__file__).resolve().parent.parent / "dbt_project"


def lists(data: Path) -> dict[str, pd.DataFrame]:
    return {p.parent.name: pd.read_csv(p, dtype=str, keep_default_na=False)
            for p in sorted((data / "outbox").glob(f"*/alerts_{STAMP}.csv"))}


def open_alerts(data: Path) -> pd.DataFrame:
    with duckdb.connect(str(data / "warehouse.duckdb"), read_only=True) as con:
        return con.execute("select * from marts.lead_alerts where status = 'OPEN'").df()


def formula_cells(data: Path) -> list[str]:
    """Every cell of every CSV under the outbox that a spreadsheet would run as a formula."""
    found = []
    for path in (data / "outbox").rglob("*.csv"):
        with open(path, newline="", encoding="utf-8") as fh:
            for line, row in enumerate(csv.reader(fh), start=1):
                found += [f"{path.name}:{line}" for cell in row
                          if cell.startswith(FORMULA_STARTERS)]
    return found


def test_a_cell_that_starts_a_formula_is_neutralised_and_numbers_stay_numbers() -> None:
    assert neutralise("=HYPERLINK(\"x\")") == "'=HYPERLINK(\"x\")"
    assert [neutralise(v) for v in ("+1", "-1", "@a", "\tx", "\rx")] == [
        "'+1", "'-1", "'@a", "'\tx", "'\rx"]
    assert neutralise("Peña") == "Peña" and neutralise(-3) == -3 and neutralise(2.5) == 2.5


def test_every_open_alert_is_on_exactly_one_list_or_held_back(pipeline_run: Run) -> None:
    data = pipeline_run.data_dir
    alerts, listed = open_alerts(data), lists(data)
    seen: list[str] = []
    held = 0
    for organisation, frame in listed.items():
        seen += list(frame.alert_id)
        summary = json.loads((data / "outbox" / organisation / f"alerts_{STAMP}.json").read_text())
        assert summary["alerts_on_list"] == len(frame)
        assert summary["new_since_last_list"] + summary["due_this_week"] + summary["backlog"] \
            == len(frame)
        held += summary["held_back"]
    assert len(seen) == len(set(seen)), "an alert is on two lists"
    assert set(seen) <= set(alerts.alert_id)
    assert len(seen) + held == len(alerts)
    # the case-management alerts went to the providers that serve the children, or to health
    cm = alerts[alerts.rule_code == "CASE_MANAGEMENT_OVERDUE"]
    assert set(cm.assigned_organisation) - {"health"} <= {"HHN", "FSC", "WIC"}
    assert (cm[cm.is_referral].assigned_organisation == "health").all()


def test_a_provider_list_holds_only_its_own_clients(pipeline_run: Run) -> None:
    data = pipeline_run.data_dir
    providers = {o: f for o, f in lists(data).items() if o not in KINDS}
    assert len(providers) >= 2
    with duckdb.connect(str(data / "vault.duckdb"), read_only=True) as con:
        clients = con.execute(
            "select provider_code, client_id from raw.providers__services").df()
    assert sum(not f.empty for f in providers.values()) >= 2
    for code, frame in providers.items():
        own = set(clients[clients.provider_code == code].client_id)
        served = frame[frame.is_referral == "False"]
        assert (served.client_id != "").all(), code
        assert set(served.client_id) <= own, f"{code} sees another provider's clients"
        if len(served):
            assert "Your client" in (data / "outbox" / code / f"alerts_{STAMP}.html").read_text()
    # receipts sit with each provider, not in a shared folder
    for code in providers:
        names = [json.loads(p.read_text())["receipt_for"]
                 for p in (data / "outbox" / code / "receipts").glob("*.json")]
        assert names and all(f"_{code}_" in n or n.startswith("cohort_") for n in names)


def test_schools_list_names_the_student_and_says_only_what_the_reason_needs(
        pipeline_run: Run) -> None:
    schools = lists(pipeline_run.data_dir)["schools"]
    assert not schools.empty
    assert set(schools.rule_code) == {"LEARNING_SUPPORT_REVIEW_OVERDUE"}
    for column in ("StudentID", "FirstName", "LastName", "GradeLevel", "SchoolName"):
        assert column in schools.columns
    assert not {"TEST_ID", "PAT_ADDRESS", "HomeAddress", "LAB_NAME", "client_id"} & set(
        schools.columns)
    assert schools.reason.str.contains(
        r"^The health department recorded a confirmed elevated blood lead level \(band [A-D], "
        r"\d{4}\)").all()
    assert not schools.reason.str.contains("µg/dL|ug/dL|venous|capillary|lab", case=False).any()


def test_each_list_has_a_feedback_template_and_a_page_that_says_how(pipeline_run: Run) -> None:
    data = pipeline_run.data_dir
    for organisation, frame in lists(data).items():
        template = pd.read_csv(data / "outbox" / organisation / f"alert_feedback_{STAMP}.csv",
                               dtype=str, keep_default_na=False)
        assert list(template.columns) == ["alert_id", "status", "note", "recorded_by",
                                          "recorded_at"]
        assert list(template.alert_id) == list(frame.alert_id)
        assert (template.status == "").all()
        page = (data / "outbox" / organisation / f"alerts_{STAMP}.html").read_text()
        assert f"feedback/{organisation}/alert_feedback_YYYYMMDD.csv" in page
        assert f"alert_feedback_{STAMP}.csv" in page and "counter(page)" in page


def test_housing_always_gets_an_address_or_says_it_is_unknown(pipeline_run: Run) -> None:
    housing = lists(pipeline_run.data_dir)["housing"]
    assert (housing.address_to_inspect != "").all()
    assert (housing.address_from != "").all()


def test_no_csv_cell_in_the_outbox_starts_a_formula(pipeline_run: Run) -> None:
    assert formula_cells(pipeline_run.data_dir) == []


HOSTILE = {"PAT_FIRST_NAME": '=HYPERLINK("http://evil.example","Open")',
           "PAT_LAST_NAME": "-2+3", "GUARDIAN_NAME": "+SUM(A1:A9)",
           "ORDERING_PROVIDER": "@cmd|' /C calc'!A0", "LAB_NAME": "<script>alert(1)</script>",
           "client_first_name": "=1+1", "client_last_name": "<b onmouseover=alert(2)>x</b>",
           "FirstName": "@SUM(1)", "LastName": "\t=evil", "GuardianName": "=cmd",
           "first_name": "+44", "last_name": "<img src=x onerror=alert(3)>"}


def _poison(landing: Path) -> int:
    """Put formula starters and HTML in every free-text name field of every delivery."""
    n = 0
    for path in landing.rglob("*.csv"):
        with open(path, newline="", encoding="utf-8", errors="surrogateescape") as fh:
            rows = list(csv.reader(fh))
        header = rows[0]
        cols = [i for i, h in enumerate(header) if h in HOSTILE]
        if not cols:
            continue
        for row in rows[1::3]:  # every third row, so linkage still has the rest
            for i in cols:
                if i < len(row) and row[i]:
                    row[i] = HOSTILE[header[i]]
                    n += 1
        with open(path, "w", newline="", encoding="utf-8", errors="surrogateescape") as fh:
            csv.writer(fh).writerows(rows)
    return n


def test_hostile_names_reach_no_spreadsheet_formula_and_no_live_html(tmp_path: Path) -> None:
    generate_city(tmp_path / "city", people=600, seed=5, as_of=AS_OF)
    landing = tmp_path / "city" / "landing"
    assert _poison(landing) > 50
    proc = run_cli("run", env=plumbline_env(tmp_path / "data", landing))
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = tmp_path / "data"
    listed = lists(data)
    cells = [v for f in listed.values() for v in f.to_numpy().ravel().tolist()]
    assert any(str(v).startswith("'=") or str(v).startswith("'+") for v in cells), \
        "the hostile names should reach the lists, neutralised"
    assert formula_cells(data) == []
    for page in (data / "outbox").rglob("*.html"):
        text = page.read_text()
        for tag in ("<script>alert", "<b onmouseover", "<img src=x"):
            assert tag not in text, page.name
    assert "&lt;b onmouseover=alert(2)&gt;" in "".join(
        p.read_text() for p in (data / "outbox").rglob("alerts_*.html"))


def test_alert_ids_and_feedback_survive_a_merge_and_a_split(pipeline_run: Run,
                                                            tmp_path: Path) -> None:
    """Linkage merges two people and splits another: the alerts that stay open keep their ids
    and their feedback. The person_ids are changed in the pseudonymous warehouse and `dbt build`
    runs again, as the next weekly run would after linkage changed them."""
    data = tmp_path / "data"
    shutil.copytree(pipeline_run.data_dir, data, ignore=shutil.ignore_patterns("dagster_home"))
    before = open_alerts(data)
    with duckdb.connect(str(data / "warehouse.duckdb")) as con:
        tests = con.execute("select person_id, count(distinct test_key) as n from "
                            "src.health_tests group by 1 order by n desc, 1").df()
        with_alerts = set(before.person_id)
        keen = [p for p in tests.person_id if p in with_alerts]
        merged_into, merged_from, split = keen[0], keen[1], keen[2]
        tables = [t for (t,) in con.execute(
            "select table_name from information_schema.columns where table_schema = 'src' "
            "and column_name = 'person_id'").fetchall()]
        for table in tables:  # merge: the second child's records join the first's
            con.execute(f"update src.{table} set person_id = ? where person_id = ?",
                        [merged_into, merged_from])
        con.execute(  # split: half of a child's tests become another person
            "update src.health_tests set person_id = 'P-split-off' where person_id = ? and "
            "test_key in (select test_key from src.health_tests where person_id = ? "
            "order by test_key limit (select count(*) // 2 from src.health_tests "
            "where person_id = ?))", [split, split, split])
        # feedback given on every open alert before the relink (none was given in this city)
        assert con.execute("select count(*) from src.alert_feedback").fetchall()[0][0] == 0
        con.execute("create or replace table src.alert_feedback as select alert_id, "
                    "assigned_organisation as agency, 'IN_PROGRESS' as status, "
                    "timestamp '2026-06-29 10:00:00' as recorded_at, "
                    "date '2026-06-29' as extract_date "
                    "from marts.lead_alerts where status = 'OPEN'")
    env = plumbline_env(data, pipeline_run.city.landing)
    dbt = Path(sys.executable).parent / "dbt"
    proc = subprocess.run([str(dbt), "build", "--vars", json.dumps({"as_of": AS_OF.isoformat()}),
                           "--exclude", "resource_type:unit_test", "--project-dir", str(DBT_PROJECT),
                           "--profiles-dir", str(DBT_PROJECT), "--target-path",
                           str(tmp_path / "target")],
                          env=env, capture_output=True, text=True, check=False, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:]
    after = open_alerts(data)
    touched = before[before.person_id.isin([merged_into, merged_from, split])]
    assert len(touched) >= 2
    # every alert open before and after (the same rule and episode) kept its id and feedback
    key = ["rule_code", "evidence_test_key"]
    was, now = before.set_index(key).alert_id, after.set_index(key)
    common = was.index.intersection(now.index)
    assert len(common) >= 0.9 * len(before)
    assert (now.loc[common, "alert_id"] == was[common]).all()
    assert (now.loc[common, "contact_attempts"] >= 1).all()
    assert set(touched.alert_id) & set(after.alert_id), "the relinked children's alerts remain"
    assert (after[after.alert_id.isin(touched.alert_id)].contact_attempts >= 1).all()


def test_each_listed_test_is_found_whether_or_not_the_vault_links_as_the_warehouse_did(
        pipeline_run: Run, tmp_path: Path) -> None:
    """The lists look an alert's evidence up among its own child's records first (a tenth of
    the city's), and among every record when the vault's linkage has moved on since the
    warehouse was built: the same tests either way."""
    from pipelines.outbox import write_alert_lists
    from pipelines.stores import Settings

    data = tmp_path / "data"
    shutil.copytree(pipeline_run.data_dir, data, ignore=shutil.ignore_patterns("dagster_home"))
    settings = Settings(landing=pipeline_run.city.landing, data_dir=data, as_of=AS_OF,
                        pseudonym_key=b"test-key-not-secret")

    def listed() -> list[tuple]:
        with duckdb.connect(str(data / "vault.duckdb")) as vault:
            rows = vault.execute("select alert_id, agency, evidence_test_id from "
                                 "delivery.list_items order by all").fetchall()
            vault.execute("delete from delivery.list_items")
        return rows

    first = listed()
    assert sum(1 for *_, test in first if test) > 5
    write_alert_lists(settings)
    assert listed() == first
    with duckdb.connect(str(data / "vault.duckdb")) as vault:  # relinked, warehouse not rebuilt
        vault.execute("update linkage.person_crosswalk set person_id = 'P' || person_id")
    write_alert_lists(settings)
    assert listed() == first
