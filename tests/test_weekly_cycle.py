"""Two weekly cycles, as partners and caseworkers live them: deliveries, lists, feedback, new
deliveries, and what each agency's second list shows."""

from __future__ import annotations

import json
import re
import shutil
from datetime import timedelta
from pathlib import Path

import duckdb
import pandas as pd

from pipelines.synth.generator import generate_city
from tests.conftest import AS_OF, plumbline_env, run_cli

WEEK1 = AS_OF - timedelta(days=7)


def extract_date(path: Path) -> str:
    return re.findall(r"(\d{8})\.csv$", path.name)[0]


def copy_deliveries(src: Path, dst: Path, keep) -> None:
    for f in src.rglob("*.csv"):
        if keep(f):
            target = dst / f.relative_to(src)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f, target)


def lists(data: Path, day) -> dict[str, pd.DataFrame]:
    """Every organisation's list for that day: health, housing, schools, each provider."""
    return {p.parent.name: pd.read_csv(p, dtype=str)
            for p in sorted((data / "outbox").glob(f"*/alerts_{day:%Y%m%d}.csv"))}


def provider_lists(all_lists: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    return {o: f for o, f in all_lists.items() if o not in ("health", "housing", "schools")}


def feedback(landing: Path, agency: str, rows: list[tuple[str, str]],
             blank: tuple[str, ...] = ()) -> None:
    """The organisation's answers, written into its template's columns; `blank` rows are
    template rows left unanswered."""
    folder = landing / "feedback" / agency
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["alert_id,status,note,recorded_by,recorded_at"] + [
        f"{a},{s},called the family,cw-{agency[:2]}-7,{WEEK1 + timedelta(days=2)}T10:30:00"
        for a, s in rows] + [f"{a},,,," for a in blank]
    (folder / f"alert_feedback_{AS_OF:%Y%m%d}.csv").write_text("\n".join(lines) + "\n")


def test_two_weekly_cycles(tmp_path: Path, monkeypatch) -> None:
    generate_city(tmp_path / "city", people=1200, seed=21, as_of=AS_OF)
    source, landing, data = tmp_path / "city" / "landing", tmp_path / "landing", tmp_path / "data"
    week1 = f"{WEEK1:%Y%m%d}"
    # week 1: everything extracted up to a week ago, but housing's inspections stop a week early
    copy_deliveries(source, landing, lambda f: extract_date(f) <= week1
                    and f.name != f"inspections_{week1}.csv")
    first = run_cli("run", env=plumbline_env(data, landing, as_of=WEEK1))
    assert first.returncode == 0, first.stderr[-2000:]
    one = lists(data, WEEK1)
    assert len(one["health"]) >= 3 and len(one["housing"]) >= 2, {a: len(v) for a, v in one.items()}
    assert len(one["schools"]) >= 1

    # caseworkers answer
    h_resolved, h_unable = one["health"].alert_id[:2]
    s_na, s_progress = one["housing"].alert_id[:2]
    provider, own_client = next((o, f[f.client_id.notna()])
                                for o, f in provider_lists(one).items() if f.client_id.notna().any())
    p_wrong = own_client.alert_id.iloc[0]
    feedback(landing, "health", [(h_resolved, "RESOLVED"), (h_unable, "UNABLE_TO_CONTACT"),
                                 (s_na, "RESOLVED"), ("0123456789abcdef", "RESOLVED")],
             blank=(one["health"].alert_id.iloc[2],))
    school_resolved = one["schools"].alert_id.iloc[0]
    feedback(landing, "schools", [(school_resolved, "RESOLVED")])
    feedback(landing, "housing", [(s_na, "NOT_APPLICABLE"), (s_progress, "IN_PROGRESS")])
    feedback(landing, provider, [(p_wrong, "WRONG_PERSON")])
    with duckdb.connect(str(data / "vault.duckdb"), read_only=True) as con:
        items = con.execute("select * from delivery.list_items where alert_id = ?",
                            [p_wrong]).df()
        test_id = items.evidence_test_id.iloc[0]
        person = items.person_id.iloc[0]
        client_records = con.execute(
            "select record_key from linkage.person_crosswalk where person_id = ? "
            "and source = 'providers'", [person]).df().record_key.tolist()
    assert client_records

    # week 2: this week's deliveries arrive, still no inspections (the last is two weeks old)
    copy_deliveries(source, landing, lambda f: extract_date(f) > week1
                    and not f.name.startswith("inspections_"))
    second = run_cli("run", env=plumbline_env(data, landing, as_of=AS_OF))
    assert second.returncode == 0, second.stderr[-2000:]
    two = lists(data, AS_OF)
    # a new week's date made dbt parse nothing again, and its models were built for this week
    build = max((data / "dbt_runs").glob("plumbline_dbt-*"), key=lambda p: p.stat().st_mtime)
    assert "no changes found, skipping parsing" in (build / "dbt.log").read_text()
    alerts_sql = (build / "compiled" / "plumbline" / "models" / "marts" / "lead_alerts.sql")
    assert f"date '{AS_OF.isoformat()}'" in alerts_sql.read_text()
    assert f"date '{WEEK1.isoformat()}'" not in alerts_sql.read_text()
    # the rule tables were loaded in week 1 and are unchanged: week 2 did not load them again
    built = {r["unique_id"].split(".")[0]
             for r in json.loads((build / "run_results.json").read_text())["results"]}
    assert "seed" not in built and "model" in built and "test" in built
    seeds_were_skipped(data, monkeypatch)

    # health: resolved is gone; unable-to-contact stays, with its attempt
    assert h_resolved not in set(two["health"].alert_id)
    row = two["health"][two["health"].alert_id == h_unable]
    assert len(row) == 1 and row.contact_attempts.iloc[0] == "1"
    assert row.last_feedback_status.iloc[0] == "UNABLE_TO_CONTACT"
    # health's answers about another agency's alert and an unknown alert were rejected
    receipt = json.loads(next((data / "outbox" / "health" / "receipts").glob(
        "alert_feedback_*.json")).read_text())
    assert receipt["rows_accepted"] == 2 and receipt["rows_rejected"] == 2
    assert receipt["rows_left_unanswered"] == 1  # a blank template row is no answer, no error
    # schools answer their list like everyone else
    assert school_resolved not in set(two["schools"].alert_id)
    # the same words for both: the sender learns nothing of another organisation's alerts
    assert [r["reason"] for r in receipt["rejected_rows"]] == [
        "alert_id is not an alert on any list sent to you"] * 2

    # housing: not applicable is gone; in progress stays; the list warns inspections are stale
    assert s_na not in set(two["housing"].alert_id)
    assert two["housing"][two["housing"].alert_id == s_progress].contact_attempts.iloc[0] == "1"
    summary = json.loads((data / "outbox" / "housing" / f"alerts_{AS_OF:%Y%m%d}.json").read_text())
    assert any("housing__inspections is stale" in s for s in summary["stale_feeds"])
    page = (data / "outbox" / "housing" / f"alerts_{AS_OF:%Y%m%d}.html").read_text()
    assert page.index("housing__inspections is stale") < page.index("<table>")
    assert "is stale" not in (data / "outbox" / "health" / f"alerts_{AS_OF:%Y%m%d}.html").read_text()

    # the provider: the wrong-person alert is withdrawn, listed nowhere, closed with that reason,
    # and the test no longer links to that client
    assert all(p_wrong not in set(f.alert_id) for f in two.values())
    with duckdb.connect(str(data / "warehouse.duckdb"), read_only=True) as con:
        (status, reason), = con.execute(
            "select status, close_reason from marts.lead_alerts where alert_id = ?",
            [p_wrong]).fetchall()
    assert (status, reason) == ("CLOSED", "FEEDBACK_WRONG_PERSON")
    with duckdb.connect(str(data / "vault.duckdb"), read_only=True) as con:
        cw = con.execute("select source, record_key, person_id from linkage.person_crosswalk").df()
    test_person = cw[(cw.source == "health") & (cw.record_key == test_id)].person_id.iloc[0]
    client_people = set(cw[(cw.source == "providers") & cw.record_key.isin(client_records)]
                        .person_id)
    assert test_person not in client_people

    # a weekly cap: the rest are held back and carried to the next list
    from pipelines.outbox import write_alert_lists
    from pipelines.stores import load_settings

    for k, v in plumbline_env(data, landing, as_of=AS_OF).items():
        monkeypatch.setenv(k, v)
    before = json.loads((data / "outbox" / "health" / f"alerts_{AS_OF:%Y%m%d}.json").read_text())
    monkeypatch.setenv("PLUMBLINE_WEEKLY_CAPACITY", "health=1")
    write_alert_lists(load_settings())
    capped = lists(data, AS_OF)["health"]
    summary = json.loads((data / "outbox" / "health" / f"alerts_{AS_OF:%Y%m%d}.json").read_text())
    assert len(capped) == 1
    assert summary["held_back"] == len(two["health"]) + before["held_back"] - 1
    assert capped.alert_id.iloc[0] == two["health"].alert_id.iloc[0]  # the most urgent
    assert "held back for next week" in (
        data / "outbox" / "health" / f"alerts_{AS_OF:%Y%m%d}.html").read_text()


def seeds_were_skipped(data: Path, monkeypatch) -> None:
    """The check that left the seeds out says no whenever the rule tables are not what the
    project's seeds would load: a table emptied or gone, or a seed file changed."""
    from pipelines.defs.warehouse.assets import Seeds

    wh_path = data / "warehouse.duckdb"
    seeds = Seeds(wh_path)
    assert seeds.loaded()
    with duckdb.connect(str(wh_path)) as con:
        assert con.execute("select count(distinct fingerprint), count(*) from meta.seed_build"
                           ).fetchone() == (1, len(seeds.nodes))
    changed = Seeds(wh_path)
    uid = min(changed.nodes)
    monkeypatch.setitem(changed.nodes[uid], "checksum", {"name": "sha256", "checksum": "0"})
    changed.fingerprint = Seeds.fingerprint_of(changed.nodes)
    assert not changed.loaded()
    copy = data.parent / "warehouse_copy.duckdb"
    emptied = ("delete from rules.alert_rules where rule_code = "
               "(select min(rule_code) from rules.alert_rules)")
    damages = (emptied, "drop table rules.lead_bands")
    for damage in damages:
        shutil.copyfile(wh_path, copy)
        with duckdb.connect(str(copy)) as con:
            con.execute(damage)
        assert not Seeds(copy).loaded(), damage
    copy.unlink()
