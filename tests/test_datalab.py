"""The data lab as providers and the city see it: requests in, reports out, nothing left behind.

The session's small city (800 people) sends three requests, each far under 60 matched children;
further requests are dropped into a copy of that city's stores and answered with
`plumbline datalab`, the same unit of work the landing sensor starts.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
import shutil
from datetime import timedelta
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
import pytest

from tests.conftest import AS_OF, Run, plumbline_env, run_cli

PROVIDERS = ("HHN", "FSC", "WIC")
COLUMNS = ["record_id", "client_first_name", "client_last_name", "client_dob", "client_address",
           "client_zip", "program_start", "program"]


def cohort_truth(run: Run) -> pd.DataFrame:
    frames = [pd.read_csv(run.city.truth / f"datalab_{p}.csv", dtype=str, keep_default_na=False)
              for p in PROVIDERS]
    return pd.concat(frames, ignore_index=True)


def find_anywhere(root: Path, needles: list[str]) -> list[str]:
    """Every place under `root` that holds one of `needles`: any file's bytes, and every text
    column of every DuckDB store (rows, however DuckDB compresses them on disk)."""
    hits = []
    pattern = "|".join(re.escape(n) for n in needles)
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        data = path.read_bytes()
        hits += [f"{path}: bytes contain {n!r}" for n in needles if n.encode() in data]
        if path.suffix != ".duckdb":
            continue
        with duckdb.connect(str(path), read_only=True) as con:
            columns = con.execute(
                "select table_schema, table_name, column_name from information_schema.columns "
                "where data_type = 'VARCHAR' and table_catalog = current_database()").fetchall()
            for schema, table, column in columns:
                n = con.execute(f'select count(*) from "{schema}"."{table}" '
                                f'where regexp_matches("{column}", ?)', [pattern]).fetchone()[0]
                if n:
                    hits.append(f"{path}: {schema}.{table}.{column} has {n} rows")
    return hits


def needles_of(truth: pd.DataFrame) -> list[str]:
    """The cohort's record ids, and the family names of the children no other feed knows (the
    name of a child health also reported is rightly still in health's records)."""
    outsiders = truth[truth["in_city"] == "False"]
    return [*truth["record_id"], *outsiders["last_name"]]


# ------------------------------------------------------------------ the session city's requests


def test_a_small_request_gets_a_report_that_gives_no_figures(pipeline_run: Run) -> None:
    assert pipeline_run.returncode == 0, pipeline_run.stdout
    outbox = pipeline_run.data_dir / "outbox"
    for provider in PROVIDERS:
        (report_file,) = (outbox / provider / "datalab").glob("DL-*.json")
        report = json.loads(report_file.read_text())
        assert report["figures_given"] is False
        assert "at least 60 are needed" in report["summary"]
        assert all(set(o) == {"outcome_id", "label"} for o in report["outcomes"])
        assert report["counts"]["matched"] in ("<11", 0)
        page = report_file.with_suffix(".html").read_text()
        assert "at least 60 are needed" in page and "% against" not in page
        assert "<th>similar children</th>" not in page  # no table of outcome figures
        receipt = json.loads(next((outbox / provider / "receipts").glob("cohort_*.json"))
                             .read_text())
        assert receipt["status"] == "ACCEPTED"
        assert receipt["request"]["report_id"] == report["report_id"]
        assert receipt["request"]["erased_at"]
    assert "Data lab (provider, request" in pipeline_run.stdout


def test_after_the_report_nothing_the_provider_sent_is_left(pipeline_run: Run) -> None:
    truth = cohort_truth(pipeline_run)
    assert len(truth) >= 9 and (truth["in_city"] == "False").sum() >= 9
    assert find_anywhere(pipeline_run.data_dir, needles_of(truth)) == []
    assert not list((pipeline_run.city.landing / "datalab").rglob("*.csv"))
    assert not list((pipeline_run.data_dir / "requests").glob("*"))
    with duckdb.connect(str(pipeline_run.data_dir / "vault.duckdb"), read_only=True) as vault:
        audit = vault.execute("select provider, sha256, rows_read, report_id, erased_at "
                              "from datalab.requests order by provider").fetchall()
    assert [a[0] for a in audit] == sorted(PROVIDERS)
    assert all(len(a[1]) == 64 and a[2] > 0 and a[3] and a[4] for a in audit)


# ------------------------------------------------------------------ further requests


@pytest.fixture()
def lab(pipeline_run: Run, tmp_path: Path):
    """A copy of the session city's stores, and an empty landing folder for new requests."""
    data = tmp_path / "data"
    shutil.copytree(pipeline_run.data_dir, data)
    landing = tmp_path / "landing"
    (landing / "datalab").mkdir(parents=True)
    return data, landing, plumbline_env(data, landing)


def write_request(landing: Path, run: Run, provider: str = "HHN", name: str = "cohort_20260629.csv",
                  programs: tuple[str, ...] = ("Lead-Safe Home Nursing",)) -> Path:
    """A request naming 20 children health reported (as the generator knows them) and two
    children no feed knows."""
    persons = pd.read_csv(run.city.truth / "persons.csv", dtype=str)
    tested = set(run.city.records().query("source == 'health'").true_person_id)
    known = persons[persons.true_person_id.isin(tested)].head(20)
    people = [(r.first_name, r.last_name, r.dob) for r in known.itertuples()]
    people += [("Oriel", "Quennell-Vasquez", "2023-02-03"), ("Tamsin", "Okafor-Lind", "2022-09-14")]
    rows = [[f"Q-{i:04d}", first, last, dob, "", "", (AS_OF - timedelta(days=90)).isoformat(),
             programs[i % len(programs)]] for i, (first, last, dob) in enumerate(people)]
    target = landing / "datalab" / provider / name
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(COLUMNS)
        w.writerows(rows)
    return target


def table_digest(data: Path, sql: str) -> str:
    with duckdb.connect(str(data / "vault.duckdb"), read_only=True) as con:
        frame = con.execute(sql).df()
    return hashlib.sha256(frame.to_csv(index=False).encode()).hexdigest()


CROSSWALK = "select * from linkage.person_crosswalk order by source, record_key"
PERSONS = "select * from linkage.persons order by person_id"


def test_a_request_changes_no_person_and_a_resend_is_answered_from_the_audit_row(
        lab, pipeline_run: Run) -> None:
    data, landing, env = lab
    before = (table_digest(data, CROSSWALK), table_digest(data, PERSONS),
              (data / "vault.duckdb").stat().st_size)
    request = write_request(landing, pipeline_run)
    sent = request.read_bytes()
    proc = run_cli("datalab", env=env)
    assert proc.returncode == 0, proc.stderr
    assert (table_digest(data, CROSSWALK), table_digest(data, PERSONS)) == before[:2]
    with duckdb.connect(str(data / "vault.duckdb"), read_only=True) as vault:
        (linked, unlinked, status, report_id), = vault.execute(
            "select linked, unlinked, status, report_id from datalab.requests "
            "where file_name = ?", [request.name]).fetchall()
    assert linked >= 15 and unlinked >= 2 and status == "ERASED"
    assert not request.exists()
    reports = sorted((data / "outbox" / "HHN" / "datalab").glob("*.json"))
    assert report_id in {p.stem for p in reports}

    # the same bytes again, under the same name: answered from the audit row, not re-analysed
    request.write_bytes(sent)
    proc = run_cli("datalab", env=env)
    assert proc.returncode == 0, proc.stderr
    assert not request.exists()
    assert sorted((data / "outbox" / "HHN" / "datalab").glob("*.json")) == reports
    receipts = sorted((data / "outbox" / "HHN" / "receipts").glob("cohort_20260629.*.json"))
    payload = json.loads(receipts[0].read_text())
    assert payload["status"] == "DUPLICATE"
    assert payload["request"]["answered_from_audit"] is True
    assert payload["request"]["report_id"] == report_id
    assert "not analysed again" in receipts[0].with_suffix(".txt").read_text()
    with duckdb.connect(str(data / "vault.duckdb"), read_only=True) as vault:
        assert vault.execute("select count(*) from datalab.requests where file_name = ?",
                             [request.name]).fetchone()[0] == 1
    assert table_digest(data, CROSSWALK) == before[0]


def test_a_failed_lab_run_erases_nothing_until_the_report_exists(lab, pipeline_run: Run) -> None:
    data, landing, env = lab
    request = write_request(landing, pipeline_run, provider="FSC",
                            programs=("Family Home Visiting",))
    ids = [r[0] for r in csv.reader(request.read_text().splitlines()[1:])]
    ids += ["Quennell-Vasquez", "Okafor-Lind"]  # the two children only this request names
    # the report cannot be written: its folder is taken by a file
    blocker = data / "outbox" / "FSC" / "datalab"
    shutil.rmtree(blocker, ignore_errors=True)
    blocker.write_text("not a folder")
    proc = run_cli("datalab", env=env)
    assert proc.returncode == 1
    assert "nothing was erased" in proc.stderr
    assert request.exists()
    held = find_anywhere(data, ids)
    assert held and all("requests" in h for h in held), held  # only in the request's own store
    receipt = json.loads(next((data / "outbox" / "FSC" / "receipts")
                              .glob("cohort_20260629.*.json")).read_text())
    assert receipt["request"]["erased_at"] is None

    blocker.unlink()
    proc = run_cli("datalab", env=env)
    assert proc.returncode == 0, proc.stderr
    assert not request.exists()
    assert find_anywhere(data, ids) == []
    receipt = json.loads(next((data / "outbox" / "FSC" / "receipts")
                              .glob("cohort_20260629.*.json")).read_text())
    assert receipt["request"]["erased_at"] and receipt["request"]["report_id"]


def test_a_request_naming_two_programs_is_rejected_whole_and_held(lab, pipeline_run: Run
                                                                 ) -> None:
    data, landing, env = lab
    request = write_request(landing, pipeline_run, provider="WIC", name="cohort_20260628.csv",
                            programs=("Lead Nutrition Classes", "Cooking Club"))
    proc = run_cli("datalab", env=env)
    assert proc.returncode == 0, proc.stderr
    assert not request.exists()
    (held,) = (data / "quarantine" / "WIC").glob("*cohort_20260628.csv")
    receipt = json.loads(next((data / "outbox" / "WIC" / "receipts")
                              .glob("cohort_20260628.*.json")).read_text())
    assert receipt["status"] == "REJECTED"
    assert "2 programs" in receipt["reason"]
    assert "quarantine" in receipt["request"]["next"]
    assert held.read_bytes()


def test_the_landing_sensor_runs_the_lab_for_a_request(lab, pipeline_run: Run,
                                                       monkeypatch) -> None:
    data, landing, env = lab
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    write_request(landing, pipeline_run)
    from pipelines.defs.ingest.sensors import landing_sensor

    with dg.DagsterInstance.ephemeral() as instance:
        result = landing_sensor(dg.build_sensor_context(instance=instance))
    (request,) = list(result)
    assert request.tags["plumbline/delivery"] == "datalab/HHN/cohort_20260629.csv"
    assert set(request.asset_selection) == {
        dg.AssetKey("raw_datalab__cohort"), dg.AssetKey("datalab_links"),
        dg.AssetKey("datalab_reports"), dg.AssetKey("datalab_erasure")}

    # the run it asks for answers the request and erases it; the check confirms nothing is left
    from pipelines.definitions import defs

    job = defs.resolve_implicit_global_asset_job_def()
    with dg.DagsterInstance.ephemeral() as instance:
        run = job.execute_in_process(run_config=request.run_config, instance=instance,
                                     asset_selection=request.asset_selection)
        assert run.success
        checks = [e.asset_check_evaluation_data for e in run.all_events
                  if e.event_type_value == "ASSET_CHECK_EVALUATION"]
    assert sorted((c.check_name, c.passed) for c in checks) == [
        ("delivery_suite", True), ("nothing_left_behind", True)]
    assert not (landing / "datalab" / "HHN" / "cohort_20260629.csv").exists()
    with duckdb.connect(str(data / "vault.duckdb"), read_only=True) as vault:
        assert vault.execute("select status from datalab.requests where path = ?",
                             ["datalab/HHN/cohort_20260629.csv"]).fetchall() == [("ERASED",)]

    # the same bytes again later: the sensor asks again, and that run answers from the audit row
    write_request(landing, pipeline_run)
    with dg.DagsterInstance.ephemeral() as instance:
        again = list(landing_sensor(dg.build_sensor_context(instance=instance)))
    assert len(again) == 1 and again[0].run_key != request.run_key


def test_the_lab_needs_a_built_warehouse_and_says_so(tmp_path: Path) -> None:
    (tmp_path / "landing" / "datalab").mkdir(parents=True)
    proc = run_cli("datalab", env=plumbline_env(tmp_path / "data", tmp_path / "landing"))
    assert proc.returncode == 2
    assert "run `plumbline run` once first" in proc.stderr


def test_the_erasure_check_finds_exactly_what_a_plain_search_finds() -> None:
    """The trie pattern the erasure check searches files with finds a request's value exactly
    where a plain substring search does: prefixes of one another, shared stems, non-ASCII."""
    import random

    from pipelines.datalab.requests import any_of

    rng = random.Random(5)
    alphabet = "AB 1-'É街"
    values = sorted({"".join(rng.choices(alphabet, k=rng.randint(4, 9))) for _ in range(300)})
    values += ["OBRIEN", "OBRIENS", "O'BRIEN"]
    pattern = any_of(values)
    for _ in range(400):
        text = "".join(rng.choices(alphabet + "xyz", k=rng.randint(0, 40))).encode()
        assert bool(pattern.search(text)) == any(v.encode() in text for v in values), text
    assert pattern.search(b"OBRIE") is None and pattern.search(b"xOBRIENSx")
