"""Hostile partners and careless operators: nothing leaks, nothing is lost.

One small generated city, attacked through its landing folder the way a partner with SFTP
access could, then run through `plumbline run` as an operator would.
"""

from __future__ import annotations

import json
import os
import stat
from datetime import timedelta
from pathlib import Path

import duckdb
import pytest

from pipelines.synth.generator import generate_city
from tests.conftest import AS_OF, plumbline_env, run_cli

SECRET = "CANARY-SECRET-3f9c1e"  # in a file outside landing that a link points to
KEY = "CANARY-KEY-5d0e44b2"  # the data dir's local pseudonym key, which a link points to
ENV_SECRET = "CANARY-ENV-77ab20"  # in the run's environment (/proc/self/environ)
OUTSIDE_NAME = "Quackenbush-Outside"  # in a valid CSV outside landing, linked in
HEADERLESS_NAME = "Zebulonia"  # first data row of a delivery that has no header row


def everything_under(folder: Path, skip: tuple[str, ...] = ()) -> bytes:
    """Every byte of every file below a folder (DuckDB and SQLite files included)."""
    out = []
    for p in folder.rglob("*"):
        if p.is_file() and not p.is_symlink() and not any(s in p.parts for s in skip):
            out.append(p.read_bytes())
    return b"\n".join(out)


@pytest.fixture(scope="module")
def attacked(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("hostile")
    generate_city(root / "city", people=400, seed=3, as_of=AS_OF)
    landing, data = root / "city" / "landing", root / "data"
    health = landing / "health"
    header = (health / next(p.name for p in sorted(health.glob("blood_lead_*.csv")))
              ).read_text(encoding="utf-8", errors="replace").splitlines()[0]

    data.mkdir()
    (data / "pseudonym.key").write_text(KEY)
    (data / "pseudonym.key").chmod(0o600)
    (health / "blood_lead_20240111.csv").symlink_to(data / "pseudonym.key")
    secret = root / "secret.txt"
    secret.write_text(f"{SECRET}\n")
    outside = root / "outside.csv"
    cols = header.split(",")
    row = {c: "" for c in cols}
    row.update(TEST_ID="T999000111", PAT_FIRST_NAME="Mallory", PAT_LAST_NAME=OUTSIDE_NAME,
               PAT_DOB="01/02/2023", SAMPLE_DATE="05/01/2026", SAMPLE_TYPE="V", RESULT="25",
               UNITS="ug/dL", REPORTED_DATE="05/03/2026")
    outside.write_text(header + "\n" + ",".join(row[c] for c in cols) + "\n")

    # links dressed as deliveries
    (health / "blood_lead_20240101.csv").symlink_to(secret)
    (health / "blood_lead_20240102.csv").symlink_to("/proc/self/environ")
    (health / "blood_lead_20240103.csv").symlink_to(outside)
    (landing / "housing" / "linked").symlink_to(root, target_is_directory=True)
    # files in the wrong place or with the wrong name
    (health / "sub").mkdir()
    (health / "sub" / "blood_lead_20240104.csv").write_text(header + "\n")
    (health / "..hidden").mkdir()
    (health / "..hidden" / "blood_lead_20240105.csv").write_text(header + "\n")
    (health / "blood_lead_20240106.CSV").write_text(header + "\n")
    (health / "blood_lead_2024-01-07.csv").write_text(header + "\n")
    (landing / "police").mkdir()
    (landing / "police" / "arrests_20260601.csv").write_text("a,b\n1,2\n")
    # a delivery with no header row: its first row must never be quoted back
    first = row | {"TEST_ID": "T999000222", "PAT_FIRST_NAME": HEADERLESS_NAME,
                   "PAT_LAST_NAME": "Nohead"}
    (health / "blood_lead_20240108.csv").write_text(",".join(first[c] for c in cols) + "\n")
    # UTF-16 and an over-long field
    (health / "blood_lead_20240109.csv").write_bytes(
        (header + "\n").encode("utf-16"))
    (health / "blood_lead_20240110.csv").write_text(
        header + "\n" + '"' + "x" * (11 * 1024 * 1024) + '"\n')

    env = plumbline_env(data, landing) | {"CANARY": ENV_SECRET}
    env.pop("PLUMBLINE_PSEUDONYM_KEY")  # the demo's local key file, as an operator might
    old_umask = os.umask(0o022)  # the usual umask: Plumbline must not rely on it
    try:
        proc = run_cli("run", env=env)
    finally:
        os.umask(old_umask)
    return {"proc": proc, "landing": landing, "data": data, "env": env, "root": root}


def receipts(data: Path, organisation: str) -> list[dict]:
    return [json.loads(p.read_text())
            for p in (data / "outbox" / organisation / "receipts").glob("*.json")]


def test_the_run_succeeds(attacked: dict) -> None:
    assert attacked["proc"].returncode == 0, attacked["proc"].stderr[-3000:]


def test_links_are_never_followed_and_each_gets_a_receipt(attacked: dict) -> None:
    data = attacked["data"]
    assert (data / "pseudonym.key").read_text() == KEY  # the run used the local key
    everything = everything_under(data, skip=("pseudonym.key",))
    for planted in (SECRET, ENV_SECRET, OUTSIDE_NAME, KEY):
        assert planted.encode() not in everything, planted
    with duckdb.connect(str(data / "vault.duckdb"), read_only=True) as con:
        assert con.execute("select count(*) from raw.health__blood_lead "
                           "where test_id = 'T999000111'").fetchall()[0][0] == 0
        not_read = dict(con.execute("select path, reason from ingest.not_read").fetchall())
    for name in ("blood_lead_20240101.csv", "blood_lead_20240102.csv", "blood_lead_20240103.csv",
                 "blood_lead_20240111.csv"):
        assert "link" in not_read[f"health/{name}"]
    assert "link" in not_read["housing/linked"]
    got = {r["receipt_for"]: r for r in receipts(data, "health") if r["status"] == "NOT_READ"}
    assert {"health/blood_lead_20240101.csv", "health/sub/blood_lead_20240104.csv",
            "health/..hidden/blood_lead_20240105.csv",
            "health/blood_lead_20240106.CSV", "health/blood_lead_2024-01-07.csv"} <= set(got)
    assert "sub-folder" in got["health/sub/blood_lead_20240104.csv"]["reason"]
    assert ".csv" in got["health/blood_lead_20240106.CSV"]["reason"]
    assert "agreement" in got["health/blood_lead_2024-01-07.csv"]["reason"]
    assert not (data / "outbox" / "police").exists()
    log = (data / "logs" / "landing.log").read_text()
    assert "police/arrests_20260601.csv" in log and "no agency owns" in log


def test_no_value_from_a_delivery_is_quoted_back(attacked: dict) -> None:
    data = attacked["data"]
    headerless = [r for r in receipts(data, "health")
                  if r["receipt_for"] == "blood_lead_20240108.csv"]
    assert headerless and headerless[0]["status"] == "REJECTED"
    assert "position" in headerless[0]["reason"]
    # nowhere but the identifiable stores that keep rejected files byte for byte
    outside_vault = everything_under(data, skip=("quarantine", "vault.duckdb"))
    assert HEADERLESS_NAME.encode() not in outside_vault
    with duckdb.connect(str(data / "vault.duckdb"), read_only=True) as con:
        reasons = " ".join(r for (r,) in con.execute(
            "select coalesce(reason, '') from ingest.deliveries").fetchall())
    assert HEADERLESS_NAME not in reasons


def test_reasons_say_what_happened(attacked: dict) -> None:
    got = {r["receipt_for"]: r["reason"] for r in receipts(attacked["data"], "health")}
    assert "UTF-16" in got["blood_lead_20240109.csv"]
    assert "longer than" in got["blood_lead_20240110.csv"]


def test_identifiable_stores_are_private_whatever_the_umask(attacked: dict) -> None:
    data = attacked["data"]
    for path in [data / "vault.duckdb", data / "warehouse.duckdb",
                 *(data / "quarantine").rglob("*"), *(data / "outbox" / "health").rglob("*"),
                 *(data / "dagster_home").glob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode & 0o077 == 0, f"{path.relative_to(data)} is {oct(mode)}"
    for path in (data / "outbox" / "public").rglob("*"):
        assert stat.S_IMODE(path.stat().st_mode) & 0o004, f"{path.name} should be public"


def test_feedback_is_dated_by_its_arrival_not_its_name(attacked: dict) -> None:
    data, landing = attacked["data"], attacked["landing"]
    listed = (data / "outbox" / "health" / f"alerts_{AS_OF:%Y%m%d}.csv").read_text().splitlines()
    alert_id = listed[1].split(",")[0]
    folder = landing / "feedback" / "health"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "alert_feedback_20991231.csv").write_text(
        "alert_id,status,note,recorded_by,recorded_at\n"
        f"{alert_id},RESOLVED,from the future,cw-1,2099-12-30T10:00:00\n"
        f"{alert_id},IN_PROGRESS,called,cw-1,{AS_OF - timedelta(days=1)}T10:00:00\n")
    proc = run_cli("run", env=attacked["env"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    (receipt,) = [r for r in receipts(data, "health")
                  if r["receipt_for"] == "alert_feedback_20991231.csv"]
    assert receipt["rows_accepted"] == 1 and receipt["rejected_rows"][0]["field"] == "recorded_at"
    with duckdb.connect(str(data / "vault.duckdb"), read_only=True) as con:
        (extract,), = con.execute("select distinct _extract_date from "
                                  "raw.feedback__alert_feedback").fetchall()
    assert extract == AS_OF


def test_another_key_stops_the_run_and_rotate_key_keeps_every_id(pipeline_run, tmp_path) -> None:
    import shutil

    data = tmp_path / "data"
    shutil.copytree(pipeline_run.data_dir, data)
    env = plumbline_env(data, pipeline_run.city.landing)
    old_key = env["PLUMBLINE_PSEUDONYM_KEY"]

    def snapshot() -> tuple[set, set, set]:
        with duckdb.connect(str(data / "warehouse.duckdb"), read_only=True) as con:
            alerts = set(con.execute("select alert_id, status from marts.lead_alerts").fetchall())
            keys = {k for (k,) in con.execute("select test_key from src.health_tests").fetchall()}
        with duckdb.connect(str(data / "vault.duckdb"), read_only=True) as con:
            people = set(con.execute("select source, record_key, person_id "
                                     "from linkage.person_crosswalk").fetchall())
        return alerts, keys, people

    alerts, keys, people = snapshot()
    wrong = run_cli("run", env=env | {"PLUMBLINE_PSEUDONYM_KEY": "another-key"})
    assert wrong.returncode == 2 and "rotate-key" in wrong.stderr
    assert "another-key" not in wrong.stderr
    assert snapshot() == (alerts, keys, people)  # nothing changed

    new_key = "the-new-key-after-rotation"
    rotated = run_cli("rotate-key", env=env | {"PLUMBLINE_OLD_PSEUDONYM_KEY": old_key,
                                               "PLUMBLINE_PSEUDONYM_KEY": new_key})
    assert rotated.returncode == 0, rotated.stderr[-3000:]
    alerts2, keys2, people2 = snapshot()
    assert alerts2 == alerts and people2 == people  # ids and their feedback's targets stay
    assert keys2 and not keys2 & keys  # every pseudonym re-keyed
    assert old_key.encode() not in everything_under(data)
    # the new key is now the one: a run with it proceeds, a run with the old one stops
    assert run_cli("run", env=env | {"PLUMBLINE_PSEUDONYM_KEY": old_key}).returncode == 2


def test_the_erasure_check_finds_a_requests_people_in_dagster_storage(tmp_path) -> None:
    from pipelines.datalab.requests import traces_of

    runs = tmp_path / "history" / "runs"
    runs.mkdir(parents=True)
    (runs / "abc.db").write_bytes(b"\x00event: rejected HHN-000123,Ana,Quist,1 Nowhere Street\x00")
    (runs / "def.db").write_bytes(b"\x00event: 3 rows rejected\x00")
    assert traces_of(["HHN-000123", "1 Nowhere Street"], [tmp_path]) == ["abc.db"]
    assert traces_of(["HHN-999999"], [tmp_path]) == []
