"""A city adds a person-bearing feed by declaring it, and nothing else.

A childcare roster is declared in a fixture registry (the contract's feeds plus one), its file
dropped in landing, and the stages are run with that registry: its rows are validated into the
vault, its children are linked to their health tests, its pseudonymous source reaches the
warehouse, and its address gives housing a home to inspect when the confirming test had none.
No module is edited for it.
"""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pandas as pd

from pipelines.feeds import FEEDS, Feed, Field, PersonRecord
from pipelines.stores import Settings, connect
from tests.conftest import AS_OF, City, plumbline_env

CHILDCARE = Feed(
    name="childcare__roster", agency="childcare", folder="childcare",
    pattern=re.compile(r"roster_(\d{8})\.csv"),
    fields=(
        Field("child_id", "id", required=True, pii=True),
        Field("child_first", pii=True),
        Field("child_last", pii=True),
        Field("child_dob", "date", fmt="iso", pii=True),
        Field("home_address", pii=True),
        Field("home_zip"),
        Field("centre"),
        Field("enrolled_on", "date", fmt="iso"),
    ),
    key=("child_id",), semantics="snapshot",
    person=PersonRecord("childcare", ("child_id",), (
        ("first_name", "child_first"), ("last_name", "child_last"), ("dob", "child_dob"),
        ("street_line", "home_address"), ("zip", "home_zip")), described_as="childcare roster"),
)
REGISTRY = (*FEEDS, CHILDCARE)
DBT_PROJECT = Path(__file__).resolve().parent.parent / "dbt_project"


def _health_rows(landing: Path) -> dict[Path, list[dict]]:
    from pipelines.ingest import decode

    return {path: list(csv.DictReader(io.StringIO(decode(path.read_bytes())[0], newline="")))
            for path in sorted((landing / "health").glob("blood_lead_*.csv"))}


def test_a_declared_feed_reaches_linkage_the_warehouse_and_a_list(city: City,
                                                                   tmp_path: Path) -> None:
    landing, data = tmp_path / "landing", tmp_path / "data"
    shutil.copytree(city.landing, landing)
    planted = city.planted()
    twin = planted[(planted.case == "TWINS")
                   & (planted.rule_code == "ENVIRONMENTAL_INVESTIGATION_OVERDUE")
                   ].true_person_id.iloc[0]
    persons = pd.read_csv(city.truth / "persons.csv", dtype=str).set_index("true_person_id")
    records = city.records()
    tests = set(records[(records.true_person_id == twin) & (records.source == "health")]
                .record_key)
    # the twin's tests lose their street line (the lab left it blank); childcare has it
    address = zip_ = ""
    for path, rows in _health_rows(landing).items():
        mine = [r for r in rows if r["TEST_ID"] in tests]
        if not mine:
            continue
        address, zip_ = mine[0]["PAT_ADDRESS"] or address, mine[0]["PAT_ZIP"] or zip_
        for r in mine:
            r["PAT_ADDRESS"] = ""
        with open(path, "w", newline="", encoding="utf-8") as fh:
            w = csv.DictWriter(fh, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    assert address
    children = [twin, *persons[(persons.relationship == "CHILD")].index[:40]]
    (landing / "childcare").mkdir()
    with open(landing / "childcare" / f"roster_{AS_OF:%Y%m%d}.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow([f.column for f in CHILDCARE.fields])
        for i, pid in enumerate(dict.fromkeys(children)):
            p = persons.loc[pid]
            w.writerow([f"CC{i:04d}", p.first_name, p.last_name, p.dob,
                        address if pid == twin else "", zip_ if pid == twin else "",
                        "Little Steps", "2026-01-05"])

    # every stage, as its asset runs it, with the fixture registry
    settings = Settings(landing, data, AS_OF, b"test-key-not-secret",
                        weekly_capacity="housing=0")  # the whole list
    from pipelines.ingest import ingest_feed
    from pipelines.outbox import write_alert_lists
    from pipelines.warehouse import build_sources, write_sources

    for feed in (f for f in REGISTRY if f.store == "vault"):
        ingest_feed(settings, feed)
    from pipelines.linking import relink

    with connect(settings.vault_path) as vault:
        relink(vault, settings, feeds=REGISTRY)
        tables = build_sources(vault, settings.pseudonym_key, REGISTRY)
    with connect(settings.warehouse_path) as wh:
        write_sources(wh, tables)
    dbt = Path(sys.executable).parent / "dbt"
    proc = subprocess.run([str(dbt), "build", "--vars", json.dumps({"as_of": AS_OF.isoformat()}),
                           "--exclude", "resource_type:unit_test", "--project-dir",
                           str(DBT_PROJECT), "--profiles-dir", str(DBT_PROJECT),
                           "--target-path", str(tmp_path / "target")],
                          env=plumbline_env(data, landing), capture_output=True, text=True,
                          check=False, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:]
    write_alert_lists(settings, REGISTRY)

    # linkage: the childcare children joined their other records
    with duckdb.connect(str(data / "vault.duckdb"), read_only=True) as con:
        cw = con.execute("select * from linkage.person_crosswalk").df()
    receipt = json.loads(next((data / "outbox" / "childcare" / "receipts").glob("*.json"))
                         .read_text())
    assert receipt["status"] == "ACCEPTED" and receipt["rows_accepted"] == len(
        dict.fromkeys(children))
    mine = cw[cw.source == "childcare"]
    assert len(mine) == receipt["rows_accepted"]
    twin_people = set(cw[(cw.source == "health") & cw.record_key.isin(tests)].person_id)
    assert len(twin_people) == 1 and twin_people <= set(mine.person_id)
    # the warehouse: a pseudonymous source with no name, id or address
    with duckdb.connect(str(data / "warehouse.duckdb"), read_only=True) as con:
        src = con.execute("select * from src.childcare__roster").df()
    assert len(src) == len(mine) and src.person_id.notna().all()
    assert {"centre", "enrolled_on", "home_zip"} <= set(src.columns)
    assert not {"child_id", "child_first", "child_last", "child_dob", "home_address"} & set(
        src.columns)
    # a list: housing inspects the twin's home, found in the childcare roster
    housing = pd.read_csv(data / "outbox" / "housing" / f"alerts_{AS_OF:%Y%m%d}.csv", dtype=str)
    (pid,) = twin_people
    with duckdb.connect(str(data / "warehouse.duckdb"), read_only=True) as con:
        (alert_id,), = con.execute(
            "select alert_id from marts.lead_alerts where person_id = ? and status = 'OPEN' "
            "and rule_code = 'ENVIRONMENTAL_INVESTIGATION_OVERDUE'", [pid]).fetchall()
    row = housing[housing.alert_id == alert_id].iloc[0]
    assert row.address_to_inspect == address and row.address_from.startswith("childcare roster")


def test_the_dbt_sources_are_the_registrys() -> None:
    """__sources.yml is written from the registry (plumbline prepare): the committed copy is
    current, and a declared feed is a source with no yml edited."""
    import yaml

    from pipelines.dbt_sources import (
        LATEST_VERSION_SQL,
        SOURCES_YML,
        latest_version_macro,
        sources_yaml,
    )

    assert SOURCES_YML.read_text() == sources_yaml(), "run `plumbline prepare`"
    assert LATEST_VERSION_SQL.read_text() == latest_version_macro(), "run `plumbline prepare`"
    (src,) = yaml.safe_load(sources_yaml(REGISTRY))["sources"]
    tables = {t["name"]: t for t in src["tables"]}
    assert {"health_tests", "persons", "childcare__roster"} <= set(tables)
    assert tables["childcare__roster"]["meta"]["dagster"]["asset_key"] == [
        "src", "childcare__roster"]


def test_the_rule_models_are_the_seeds(tmp_path: Path) -> None:
    """The alerts mart unions the model of every rule in seeds/alert_rules.csv (written by
    plumbline prepare); a seed row without its model, or a model without its row, is named."""
    import pytest

    from pipelines.dbt_sources import (
        ALERT_RULES,
        RULE_MODELS_DIR,
        RULE_MODELS_SQL,
        rule_models,
        rule_models_macro,
    )

    assert RULE_MODELS_SQL.read_text() == rule_models_macro(rule_models()), \
        "run `plumbline prepare`"
    seed = tmp_path / "alert_rules.csv"
    seed.write_text(ALERT_RULES.read_text() + "LEAD_SAFE_HOUSING_OVERDUE,housing,true,x,X,a,b\n")
    with pytest.raises(ValueError, match="no model int_alerts__lead_safe_housing_overdue.sql"):
        rule_models(seed, RULE_MODELS_DIR)
    models = tmp_path / "alerts"
    shutil.copytree(RULE_MODELS_DIR, models)
    (models / "int_alerts__lead_safe_housing_overdue.sql").write_text("select 1")
    assert rule_models(seed, models)[-1] == "int_alerts__lead_safe_housing_overdue"
    (models / "int_alerts__orphan.sql").write_text("select 1")
    with pytest.raises(ValueError, match="no seed row for int_alerts__orphan.sql"):
        rule_models(seed, models)
