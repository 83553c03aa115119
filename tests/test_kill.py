"""SIGKILL at each stage boundary, then a rerun: the result equals a clean run's.

`plumbline run` is started as an operator starts it and killed (SIGKILL, no clean-up) as soon as
Dagster has recorded the materialization of a stage's asset; then it is run again on the same
data dir. Receipts, the vault's tables, who is linked to whom, the alerts and the lists must be
what one clean run gives. The killed run must not hold the run queue either.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import duckdb
import pytest

from pipelines.synth.generator import generate_city
from tests.conftest import AS_OF, PLUMBLINE, plumbline_env, run_cli

# (asset whose materialization is the boundary, what it ends)
# (linkage commits its crosswalk in one transaction; the dbt boundary comes after it)
BOUNDARIES = [("raw_health__blood_lead", "ingest"), ("marts/lead_alerts", "dbt"),
              ("alert_lists", "lists")]


def outcome(data: Path) -> dict:
    """What a run leaves that partners and analysts see, independent of random ids."""
    receipts = {}
    for p in sorted((data / "outbox").glob("*/receipts/*.json")):
        r = json.loads(p.read_text())
        for part in (r, r.get("request") or {}):  # when it happened differs between runs
            for key in [k for k in part if k.endswith("_at")]:
                part.pop(key)
        receipts[f"{p.parent.parent.name}/{p.name}"] = r
    with duckdb.connect(str(data / "vault.duckdb"), read_only=True) as con:
        cw = con.execute("select source, record_key, person_id from linkage.person_crosswalk"
                         ).fetchall()
        deliveries = sorted(con.execute(
            "select path, sha256, status, rows_read, rows_accepted, rows_rejected "
            "from ingest.deliveries").fetchall())
        # every raw row, order-independent: count and a hash over all its values
        raw = {t: con.execute(f"select count(*), coalesce(bit_xor(hash(x)), 0) from raw.{t} x"
                              ).fetchall()[0]
               for (t,) in con.execute("select table_name from information_schema.tables "
                                       "where table_schema = 'raw'").fetchall()}
    people: dict[str, set] = {}
    for source, key, pid in cw:
        people.setdefault(pid, set()).add(f"{source}:{key}")
    with duckdb.connect(str(data / "warehouse.duckdb"), read_only=True) as con:
        alerts = sorted(con.execute(
            "select rule_code, evidence_test_key, status, band, due_date, assigned_organisation "
            "from marts.lead_alerts").fetchall())
    lists = {}
    for p in sorted((data / "outbox").glob("*/alerts_*.csv")):
        rows = p.read_text().splitlines()
        lists[p.parent.name] = sorted(",".join(r.split(",")[1:]) for r in rows)  # no alert_id
    return {"receipts": receipts, "deliveries": deliveries, "raw": raw, "alerts": alerts,
            "people": sorted(sorted(s) for s in people.values()), "lists": lists}


def materialized(home: Path, asset: str) -> bool:
    """Has the run recorded the asset? Read only once the run's own event log exists, under
    the lock `plumbline run` takes to create the instance's tables (so the two never race)."""
    import fcntl

    from dagster import AssetKey, DagsterInstance

    if not list((home / "history").glob("*/*.db")):  # the event log (one file for every run)
        return False
    with open(home / ".instance.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        instance = DagsterInstance.from_config(str(home))
        fcntl.flock(lock, fcntl.LOCK_UN)
    with instance:
        return instance.get_latest_materialization_event(
            AssetKey(asset.split("/"))) is not None


@pytest.fixture(scope="module")
def city(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("killcity")
    generate_city(root, people=300, seed=17, as_of=AS_OF)
    return root / "landing"


def fresh_landing(city: Path, into: Path) -> Path:
    """Each run gets its own copy: the data lab erases answered requests from landing."""
    shutil.copytree(city, into / "landing")
    return into / "landing"


@pytest.fixture(scope="module")
def clean(city: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("clean")
    data = root / "data"
    proc = run_cli("run", env=plumbline_env(data, fresh_landing(city, root)))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return outcome(data)


@pytest.mark.parametrize(("asset", "stage"), BOUNDARIES, ids=[s for _, s in BOUNDARIES])
def test_sigkill_at_a_stage_boundary_then_a_rerun_equals_a_clean_run(
        city: Path, clean: dict, tmp_path: Path, asset: str, stage: str) -> None:
    data = tmp_path / "data"
    env = plumbline_env(data, fresh_landing(city, tmp_path))
    proc = subprocess.Popen([str(PLUMBLINE), "run"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    home = data / "dagster_home"
    deadline = time.monotonic() + 600
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            if (home / "history").is_dir() and materialized(home, asset):
                os.killpg(proc.pid, signal.SIGKILL)
                break
            time.sleep(0.2)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, f"the run ended before {stage} was killed"

    rerun = run_cli("run", env=env)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "marked failed" in rerun.stderr  # the killed run no longer holds the queue
    got = outcome(data)
    for part in ("receipts", "deliveries", "raw", "people", "alerts", "lists"):
        assert got[part] == clean[part], f"after a kill at the end of {stage}: {part} differ"
    shutil.rmtree(data, ignore_errors=True)
