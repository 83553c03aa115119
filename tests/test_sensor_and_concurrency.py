"""The landing sensor's unit of work, and two Plumbline processes writing at once."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd

from pipelines.synth.generator import generate_city
from tests.conftest import AS_OF, PLUMBLINE, City, plumbline_env


def evaluate(cursor: str | None) -> tuple[list[dg.RunRequest], str | None]:
    from pipelines.defs.ingest.sensors import landing_sensor

    with dg.DagsterInstance.ephemeral() as instance:
        ctx = dg.build_sensor_context(instance=instance, cursor=cursor)
        result = landing_sensor(ctx)
        requests = [] if isinstance(result, dg.SkipReason) else list(result)
        return requests, ctx.cursor


def test_sensor_requests_one_run_per_new_delivery_file(city: City, tmp_path: Path,
                                                       monkeypatch) -> None:
    landing = tmp_path / "landing"
    shutil.copytree(city.landing / "health", landing / "health")
    files = sorted(p.relative_to(landing).as_posix() for p in landing.rglob("*.csv"))
    (landing / "health" / "blood_lead_20260701.csv.part").write_text("TEST_ID\n")
    for k, v in plumbline_env(tmp_path / "data", landing).items():
        monkeypatch.setenv(k, v)

    requests, cursor = evaluate(None)
    assert sorted(r.tags["plumbline/delivery"] for r in requests) == files
    first = requests[0]
    assert first.asset_selection == [dg.AssetKey("raw_health__blood_lead")]
    assert first.run_config["ops"]["raw_health__blood_lead"]["config"]["files"] == [
        first.tags["plumbline/delivery"]]

    # the same files again: the same run keys, which Dagster launches only once
    again, _ = evaluate(cursor)
    assert {r.run_key for r in again} == {r.run_key for r in requests}

    # a re-send of the same bytes under a new name is its own unit of work
    shutil.copyfile(landing / files[0], landing / "health" / "blood_lead_20260708.csv")
    more, _ = evaluate(cursor)
    assert len({r.run_key for r in more} - {r.run_key for r in requests}) == 1


def test_sensor_run_ingests_only_its_file_and_receipts_a_duplicate(city: City, tmp_path: Path,
                                                                   monkeypatch) -> None:
    landing = tmp_path / "landing"
    shutil.copytree(city.landing / "health", landing / "health")
    first = min((landing / "health").glob("*.csv"))
    shutil.copyfile(first, landing / "health" / "blood_lead_20260708.csv")
    for k, v in plumbline_env(tmp_path / "data", landing).items():
        monkeypatch.setenv(k, v)
    from pipelines.definitions import defs

    job = defs.resolve_implicit_global_asset_job_def()
    requests, _ = evaluate(None)
    wanted = [r for r in requests if r.tags["plumbline/delivery"] in (
        f"health/{first.name}", "health/blood_lead_20260708.csv")]
    with dg.DagsterInstance.ephemeral() as instance:
        for r in sorted(wanted, key=lambda r: r.tags["plumbline/delivery"]):
            result = job.execute_in_process(run_config=r.run_config, instance=instance,
                                            asset_selection=r.asset_selection)
            assert result.success
    with duckdb.connect(str(tmp_path / "data" / "vault.duckdb"), read_only=True) as con:
        rows = con.execute("select file_name, status from ingest.deliveries order by 1").fetchall()
    assert rows == [(first.name, "ACCEPTED"), ("blood_lead_20260708.csv", "DUPLICATE")]
    receipt = json.loads(next((tmp_path / "data" / "outbox" / "health" / "receipts")
                              .glob("blood_lead_20260708.*.json")).read_text())
    assert receipt["status"] == "DUPLICATE" and receipt["duplicate_of"] == first.name


def test_two_runs_at_once_neither_fails_nor_corrupts(tmp_path: Path) -> None:
    generate_city(tmp_path / "city", people=300, seed=9, as_of=AS_OF)
    env = plumbline_env(tmp_path / "data", tmp_path / "city" / "landing")
    procs = [subprocess.Popen([str(PLUMBLINE), "run"], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=900)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs[0][-1500:] + outputs[1][-1500:]
    files = list((tmp_path / "city" / "landing").rglob("*.csv"))
    answered = pd.read_csv(tmp_path / "city" / "ground_truth" / "datalab_programs.csv").file
    assert not any((tmp_path / "city" / "landing" / f).exists() for f in answered)
    files += list(answered)  # data-lab requests: answered once, then erased
    with duckdb.connect(str(tmp_path / "data" / "vault.duckdb"), read_only=True) as con:
        (n, distinct), = con.execute(
            "select count(*), count(distinct path) from ingest.deliveries").fetchall()
        dup_rows = con.execute(
            "select count(*) from (select test_id, _delivery_id, _line from "
            "raw.health__blood_lead group by all having count(*) > 1)").fetchall()[0][0]
        requests = con.execute("select count(*), count(*) filter (status = 'ERASED'), "
                               "count(distinct report_id) from datalab.requests").fetchall()
    assert requests == [(len(answered),) * 3]  # each request answered once, then erased
    assert n == distinct == len(files)  # every file read exactly once
    assert dup_rows == 0
