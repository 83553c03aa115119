"""The generated city through `plumbline run`, checked the way its users would check it."""

from __future__ import annotations

import itertools
import json

import duckdb
import pandas as pd
import pytest

from tests.conftest import Run, plumbline_env, run_cli


def vault(run: Run, sql: str) -> pd.DataFrame:
    with duckdb.connect(str(run.data_dir / "vault.duckdb"), read_only=True) as con:
        return con.execute(sql).df()


def warehouse(run: Run, sql: str) -> pd.DataFrame:
    with duckdb.connect(str(run.data_dir / "warehouse.duckdb"), read_only=True) as con:
        return con.execute(sql).df()


def alert_list(run: Run, organisation: str) -> pd.DataFrame:
    return pd.read_csv(run.data_dir / "outbox" / organisation / "alerts_20260630.csv", dtype=str)


def all_lists(run: Run) -> dict[str, pd.DataFrame]:
    """Every organisation's list of the run, by its outbox folder."""
    return {p.parent.name: pd.read_csv(p, dtype=str)
            for p in sorted((run.data_dir / "outbox").glob("*/alerts_20260630.csv"))}


def health_person_ids(run: Run, true_person_id: str) -> set[str]:
    """The person_ids linkage gave to one true child's health records."""
    cw = vault(run, "select * from linkage.person_crosswalk")
    truth = run.city.records()
    mine = truth[(truth.true_person_id == true_person_id) & (truth.source == "health")]
    return set(cw.merge(mine, on=["source", "record_key"]).person_id)


def test_run_exits_zero_and_prints_the_summary(pipeline_run: Run) -> None:
    assert pipeline_run.returncode == 0, pipeline_run.stdout[-3000:]
    for words in ("Deliveries", "Linkage:", "persons", "Open alerts: health"):
        assert words in pipeline_run.stdout


def test_every_planted_case_gets_exactly_the_expected_alerts(pipeline_run: Run) -> None:
    alerts = warehouse(pipeline_run, "select * from marts.lead_alerts where status = 'OPEN'")
    for case in pipeline_run.city.planted().itertuples():
        pids = health_person_ids(pipeline_run, case.true_person_id)
        assert len(pids) == 1, f"{case.case}: the child's tests were split over {len(pids)} ids"
        got = alerts[alerts.person_id.isin(pids) & (alerts.rule_code == case.rule_code)]
        if case.expected == "NONE":
            assert got.empty, f"{case.case}: unexpected {case.rule_code}"
        else:
            assert len(got) == 1, f"{case.case}: expected one open {case.rule_code}"
            row = got.iloc[0]
            assert (row.band, row.assigned_agency) == (case.band, case.assigned_agency), case.case
            assert row.days_overdue > 0 and row.reason and row.next_step


def test_freddie_gray_gets_housing_and_case_management_alerts_at_band_c(pipeline_run: Run) -> None:
    planted = pipeline_run.city.planted()
    freddie = planted[planted.case == "FREDDIE_GRAY"].true_person_id.iloc[0]
    (pid,) = health_person_ids(pipeline_run, freddie)
    alerts = warehouse(pipeline_run, f"select * from marts.lead_alerts where person_id = '{pid}'")
    open_ = alerts[alerts.status == "OPEN"].set_index("rule_code")
    assert set(open_.index) == {"ENVIRONMENTAL_INVESTIGATION_OVERDUE", "CASE_MANAGEMENT_OVERDUE"}
    assert set(open_.band) == {"C"}
    assert open_.loc["ENVIRONMENTAL_INVESTIGATION_OVERDUE", "assigned_agency"] == "housing"
    assert open_.loc["CASE_MANAGEMENT_OVERDUE", "assigned_agency"] == "providers"
    assert "37.0 µg/dL (venous)" in open_.loc["CASE_MANAGEMENT_OVERDUE", "reason"]
    # the early capillary 11 was never confirmed in time: that alert exists, and is closed
    closed = alerts[alerts.status == "CLOSED"]
    assert list(closed.rule_code) == ["CONFIRMATORY_TEST_OVERDUE"] and list(closed.band) == ["B"]

    housing = alert_list(pipeline_run, "housing")
    mine = housing[housing.alert_id == open_.loc["ENVIRONMENTAL_INVESTIGATION_OVERDUE", "alert_id"]]
    assert len(mine) == 1 and mine.address_to_inspect.iloc[0]
    assert mine.household_id.notna().iloc[0]  # housing knows him from its own roster
    # no provider serves him: the referral has one owner, the health department (the seed)
    assert open_.loc["CASE_MANAGEMENT_OVERDUE", "assigned_organisation"] == "health"
    assert bool(open_.loc["CASE_MANAGEMENT_OVERDUE", "is_referral"])
    health = alert_list(pipeline_run, "health")
    mine = health[health.alert_id == open_.loc["CASE_MANAGEMENT_OVERDUE", "alert_id"]]
    assert len(mine) == 1 and mine.is_referral.iloc[0] == "True"
    assert "refer the family" in mine.next_step.iloc[0]


def test_crosswalk_has_one_row_per_person_record_and_links_accurately(pipeline_run: Run) -> None:
    cw = vault(pipeline_run, "select * from linkage.person_crosswalk")
    truth = pipeline_run.city.records()
    assert not cw.duplicated(["source", "record_key"]).any()
    assert set(zip(cw.source, cw.record_key)) == set(zip(truth.source, truth.record_key))
    m = cw.merge(truth, on=["source", "record_key"])

    def pairs(col: str) -> set[tuple[str, str]]:
        out: set[tuple[str, str]] = set()
        for _, g in m.groupby(col):
            out.update(itertools.combinations(sorted(g.source + ":" + g.record_key), 2))
        return out

    found, true = pairs("person_id"), pairs("true_person_id")
    precision, recall = len(found & true) / len(found), len(found & true) / len(true)
    assert precision >= 0.97 and recall >= 0.95, (precision, recall)


def test_twins_stay_two_people(pipeline_run: Run) -> None:
    planted = pipeline_run.city.planted()
    twins = planted[planted.case == "TWINS"].true_person_id.unique()
    ids = [health_person_ids(pipeline_run, t) for t in twins]
    assert len(ids) == 2 and ids[0].isdisjoint(ids[1])


def test_each_organisation_list_holds_only_its_open_alerts_in_triage_order(
        pipeline_run: Run) -> None:
    alerts = warehouse(pipeline_run, "select * from marts.lead_alerts where status = 'OPEN'")
    urgency = {"D": 1, "C": 2, "B": 3, "A": 4}
    sections = {"NEW": 0, "DUE_THIS_WEEK": 1, "BACKLOG": 2}
    lists = all_lists(pipeline_run)
    assert {"health", "housing", "schools"} <= set(lists) and len(lists) >= 5  # + providers
    for organisation, listed in lists.items():
        summary = json.loads((pipeline_run.data_dir / "outbox" / organisation
                              / "alerts_20260630.json").read_text())
        expected = alerts[alerts.assigned_organisation == organisation]
        assert set(listed.alert_id) <= set(expected.alert_id), organisation
        assert len(listed) + summary["held_back"] == len(expected), organisation
        keys = list(zip(listed.section.map(sections), listed.band.map(urgency),
                        -listed.days_overdue.astype(int)))
        assert keys == sorted(keys), organisation
        assert listed.reason.notna().all() and listed.next_step.notna().all()
    health = alert_list(pipeline_run, "health")
    zoe = health[health.PAT_LAST_NAME == "Peña"]
    assert "Zoë" in set(zoe.PAT_FIRST_NAME)  # delivered as Windows-1252, listed as UTF-8


def test_every_delivery_has_a_receipt_that_reconciles(pipeline_run: Run) -> None:
    landing = pipeline_run.city.landing
    files = sorted(p.name for p in landing.rglob("*.csv"))
    # data-lab requests were answered and erased: their receipts remain
    answered = pd.read_csv(pipeline_run.city.truth / "datalab_programs.csv").file
    assert not any((landing / f).exists() for f in answered)
    files += [f.split("/")[-1] for f in answered]
    receipts = [json.loads(p.read_text())
                for p in (pipeline_run.data_dir / "outbox").glob("*/receipts/*.json")]
    assert sorted(r["receipt_for"] for r in receipts) == sorted(files)
    for r in receipts:
        assert r["rows_read"] == r["rows_accepted"] + r["rows_rejected"]
    expected = pd.read_csv(pipeline_run.city.truth / "expected_rejects.csv")
    got = {(r["receipt_for"], x["line"], x["field"]) for r in receipts for x in r["rejected_rows"]}
    want = {(f.split("/")[-1], int(line), field) for f, line, field in expected.itertuples(index=False)}
    assert got == want


def test_warehouse_holds_no_identifiable_data(pipeline_run: Run) -> None:
    """No names, street lines, birth dates or partner ids anywhere in the warehouse."""
    persons = pd.read_csv(pipeline_run.city.truth / "persons.csv", dtype=str)
    # every value of every field the registry flags `pii` (dates aside: they are checked
    # against each person's birth date below), whichever stage builds the warehouse table
    from pipelines.feeds import FEEDS

    forbidden = {n.upper() for n in persons.last_name if len(n) > 4}
    flagged = 0
    for feed in (f for f in FEEDS if f.store == "vault"):
        for field in (f for f in feed.fields if f.pii and f.kind != "date"):
            col = field.column.lower()
            values = vault(pipeline_run, f"select distinct cast({col} as varchar) as v "
                                         f"from raw.{feed.name} where {col} is not null").v
            forbidden |= {v.upper() for v in values if len(v) > 4}
            flagged += 1
    assert flagged >= 20 and len(forbidden) > 1000
    # each person_id's true birth date, to catch a column that carries it
    cw = vault(pipeline_run, "select * from linkage.person_crosswalk")
    truth = pipeline_run.city.records().merge(persons[["true_person_id", "dob"]])
    dob_of = (cw.merge(truth, on=["source", "record_key"]).groupby("person_id").dob
              .agg(lambda s: s.mode().iloc[0]))
    with duckdb.connect(str(pipeline_run.data_dir / "warehouse.duckdb"), read_only=True) as con:
        tables = con.execute("select table_schema, table_name from information_schema.tables "
                             "where table_schema not in ('rules')").fetchall()
        assert tables
        for schema, table in tables:
            cols = con.execute(f'describe "{schema}"."{table}"').fetchall()
            personal = [c[0] for c in cols if c[0] != "provider_name"  # an organisation
                        and any(w in c[0].lower() for w in ("name", "dob", "birth", "street"))]
            assert not personal, f"{schema}.{table} has personal columns {personal}"
            frame = con.execute(f'select * from "{schema}"."{table}"').df()
            for col in frame.columns:
                values = set(frame[col].dropna().astype(str).unique())
                assert not ({v.upper() for v in values} & forbidden), \
                    f"{schema}.{table}.{col} holds identifiers"
            if "person_id" not in frame.columns or frame.empty:
                continue
            own_dob = frame.person_id.map(dob_of)
            for col, kind, *_ in cols:
                if kind.startswith(("DATE", "TIMESTAMP")):
                    same = (frame[col].astype(str).str[:10] == own_dob).mean()
                    assert same < 0.2, f"{schema}.{table}.{col} looks like birth dates"


def checksums(path) -> dict[str, str]:
    """One order-independent checksum per table (audit logs that record each run excluded)."""
    with duckdb.connect(str(path), read_only=True) as con:
        tables = con.execute(
            "select table_schema, table_name from information_schema.tables "
            "where table_type = 'BASE TABLE' and (table_schema, table_name) not in "
            "(('delivery', 'list_log'), ('linkage', 'person_id_events'), ('linkage', 'run_stats'))"
        ).fetchall()
        return {f"{s}.{t}": con.execute(
            f'select count(*) || \':\' || coalesce(bit_xor(hash(x)), 0) from "{s}"."{t}" as x'
        ).fetchall()[0][0] for s, t in tables}


def test_a_second_run_over_the_same_landing_changes_nothing(pipeline_run: Run) -> None:
    data = pipeline_run.data_dir
    vault_before, warehouse_before = checksums(data / "vault.duckdb"), checksums(
        data / "warehouse.duckdb")
    outbox_before = {p: p.read_bytes() for p in (data / "outbox").rglob("*") if p.is_file()}
    proc = run_cli("run", env=plumbline_env(data, pipeline_run.city.landing))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert len(vault_before) > 10 and "linkage.person_crosswalk" in vault_before
    assert checksums(data / "vault.duckdb") == vault_before
    assert checksums(data / "warehouse.duckdb") == warehouse_before
    assert {p: p.read_bytes() for p in (data / "outbox").rglob("*") if p.is_file()} == \
        outbox_before
    events = vault(pipeline_run, "select count(*) as n from linkage.person_id_events "
                                 "where run_at = (select max(run_at) from linkage.person_id_events)")
    assert events.n[0] in (0, len(vault(pipeline_run, "select distinct person_id "
                                                       "from linkage.person_crosswalk")))


def test_run_without_a_landing_folder_says_so(tmp_path) -> None:
    proc = run_cli("run", env=plumbline_env(tmp_path / "data", tmp_path / "nowhere"))
    assert proc.returncode == 2 and "PLUMBLINE_LANDING" in proc.stderr


@pytest.mark.parametrize("argv", [["generate"], ["generate", "x", "--as-of", "tomorrow"]])
def test_generate_with_bad_arguments_exits_2(argv: list[str], tmp_path) -> None:
    proc = run_cli(*argv, env=plumbline_env(tmp_path, tmp_path))
    assert proc.returncode == 2


def test_policy_marts_publish_no_small_cell(pipeline_run: Run) -> None:
    from pipelines.suppression import FOLLOWUP_PAIRS, TOTAL, disclosed_small_cells

    pairs = FOLLOWUP_PAIRS
    followups = [m for p in pairs for m in p]
    checks = [
        ("policy_lead_followup_by_zip", ["month"], "zip5",
         ["children_tested", "children_elevated", "children_confirmed", *followups], pairs),
        ("policy_lead_followup_by_band", ["month"], "band", ["children_confirmed", *followups],
         pairs),
        ("agency_timeliness_monthly", ["agency"], "month", ["steps_due", "steps_in_time"],
         [("steps_due", "steps_in_time")]),
    ]
    for name, keys, cell, measures, table_pairs in checks:
        table = warehouse(pipeline_run, f"select * from marts.{name}")
        assert len(table) > 0, name
        assert disclosed_small_cells(table, keys, cell, measures, table_pairs) == [], name
        for due, in_time in table_pairs:
            hidden = table[due].isna() | table[in_time].isna()
            assert table.loc[hidden, f"share_{in_time}"].isna().all(), name
    by_zip = warehouse(pipeline_run, "select * from marts.policy_lead_followup_by_zip")
    assert (by_zip.zip5 == TOTAL).any()
    # every ZIP row of a month adds up to its city row where nothing is hidden
    compared = 0
    for _, rows in by_zip.groupby("month"):
        city, zips = rows[rows.zip5 == TOTAL], rows[rows.zip5 != TOTAL]
        for m in ("children_tested", "children_elevated", "children_confirmed", *followups):
            if zips[m].notna().all() and city[m].notna().all():
                assert int(zips[m].sum()) == int(city[m].iloc[0]), m
                compared += 1
    assert compared > 0
    agencies = warehouse(pipeline_run, "select distinct agency from marts.agency_timeliness_monthly")
    assert set(agencies.agency) - {"health", "housing", "schools"} <= {"HHN", "FSC", "WIC"}
