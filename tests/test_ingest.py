"""A battery of deliveries as partners really send them, each answered with the right receipt."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import duckdb
import pytest

from pipelines.feeds import HEALTH
from pipelines.ingest import ingest_feed
from pipelines.stores import Settings

HEADER = HEALTH.columns
GOOD = {"TEST_ID": "T1", "PATIENT_ID": "55", "PAT_FIRST_NAME": "Zoë", "PAT_MIDDLE_NAME": "",
        "PAT_LAST_NAME": "Peña", "PAT_DOB": "01/15/2024", "PAT_SEX": "F",
        "PAT_ADDRESS": "12 Oak St, Apt 3", "PAT_CITY": "Baltimore", "PAT_ZIP": "21201",
        "GUARDIAN_NAME": "PEÑA, ANA", "MEDICAID_ID": "", "SAMPLE_DATE": "03/02/2026",
        "SAMPLE_TYPE": "C", "RESULT": "<1.0", "UNITS": "ug/dL", "LOINC": "10368-9",
        "LAB_NAME": "Quest Diagnostics, Inc.", "ORDERING_PROVIDER": "Dr. A\nSuite 2",
        "REPORTED_DATE": "03/05/2026"}


def csv_text(rows: list[dict[str, str]], header: list[str] = HEADER, eol: str = "\n") -> str:
    def cell(v: str) -> str:
        return f'"{v}"' if any(c in v for c in ',"\n') else v
    lines = [",".join(header)] + [",".join(cell(r.get(h, "")) for h in header) for r in rows]
    return eol.join(lines) + eol


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    (tmp_path / "landing" / "health").mkdir(parents=True)
    return Settings(tmp_path / "landing", tmp_path / "data", date(2026, 6, 30), b"k")


def drop(settings: Settings, name: str, data: bytes) -> Path:
    path = settings.landing / "health" / name
    path.write_bytes(data)
    return path


def receipt(settings: Settings, file_name: str) -> dict:
    found = sorted((settings.outbox / "health" / "receipts").glob(f"{Path(file_name).stem}.*.json"))
    assert found, f"no receipt for {file_name}"
    return json.loads(found[-1].read_text())


def vault_rows(settings: Settings, sql: str) -> list[tuple]:
    with duckdb.connect(str(settings.vault_path), read_only=True) as con:
        return con.execute(sql).fetchall()


def test_windows_1252_accents_survive(settings: Settings) -> None:
    drop(settings, "blood_lead_20260305.csv", csv_text([GOOD]).encode("cp1252"))
    (d,) = ingest_feed(settings, HEALTH)
    assert (d.status, d.encoding, len(d.rows)) == ("ACCEPTED", "cp1252", 1)
    assert vault_rows(settings, "select pat_first_name, pat_last_name from raw.health__blood_lead"
                      ) == [("Zoë", "Peña")]


def test_bom_crlf_quoted_commas_and_newlines_and_any_column_order(settings: Settings) -> None:
    header = list(reversed(HEADER))
    bad = dict(GOOD, TEST_ID="T2", SAMPLE_DATE="02/30/2026")
    data = "\ufeff" + csv_text([GOOD, bad], header=header, eol="\r\n")
    drop(settings, "blood_lead_20260305.csv", data.encode("utf-8"))
    (d,) = ingest_feed(settings, HEALTH)
    assert d.status == "ACCEPTED" and len(d.rows) == 1
    # the first row spans lines 2-3 (a quoted newline), so the bad row starts on line 4
    assert [(r.line, r.field) for r in d.rejections] == [(4, "SAMPLE_DATE")]
    lab, provider = vault_rows(settings, "select lab_name, ordering_provider "
                                         "from raw.health__blood_lead")[0]
    assert lab == "Quest Diagnostics, Inc." and "Suite 2" in provider


def test_bad_rows_are_quarantined_with_line_field_and_reason(settings: Settings) -> None:
    rows = [GOOD, dict(GOOD, TEST_ID="T2", RESULT="high"), dict(GOOD, TEST_ID=""),
            dict(GOOD, TEST_ID="T4", SAMPLE_TYPE="X", REPORTED_DATE="13/01/2026")]
    drop(settings, "blood_lead_20260305.csv", csv_text(rows).encode())
    ingest_feed(settings, HEALTH)
    r = receipt(settings, "blood_lead_20260305.csv")
    assert (r["rows_read"], r["rows_accepted"], r["rows_rejected"]) == (4, 1, 3)
    assert r["rows_read"] == r["rows_accepted"] + r["rows_rejected"]
    fields = {(x["line"], x["field"]) for x in r["rejected_rows"]}
    # every row spans two lines (a quoted newline), so rows start on lines 2, 4, 6 and 8
    assert {(4, "RESULT"), (6, "TEST_ID"), (8, "SAMPLE_TYPE"), (8, "REPORTED_DATE")} <= fields
    assert all(x["reason"] for x in r["rejected_rows"])
    assert "Peña" not in json.dumps(r)  # a receipt never echoes row values
    quarantined = vault_rows(settings, "select line, field, raw_text from ingest.rejected_rows")
    assert len({q[0] for q in quarantined}) == 3 and all(q[2] for q in quarantined)


@pytest.mark.parametrize(("name", "data", "reason"), [
    ("empty", b"", "empty"),
    ("binary", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary"),
    ("wrong_columns", b"TEST_ID,NAME\nT1,x\n", "missing column"),
    ("truncated", csv_text([GOOD, GOOD]).encode()[:-40], "cut short"),
])
def test_unreadable_delivery_is_rejected_whole_and_kept(settings: Settings, name: str,
                                                        data: bytes, reason: str) -> None:
    drop(settings, "blood_lead_20260305.csv", data)
    ingest_feed(settings, HEALTH)
    r = receipt(settings, "blood_lead_20260305.csv")
    assert r["status"] == "REJECTED" and reason in r["reason"]
    assert next(iter((settings.quarantine / "health").iterdir())).read_bytes() == data
    assert vault_rows(settings, "select count(*) from raw.health__blood_lead") == [(0,)]


def test_header_only_is_an_empty_accepted_delivery(settings: Settings) -> None:
    drop(settings, "blood_lead_20260305.csv", csv_text([]).encode())
    (d,) = ingest_feed(settings, HEALTH)
    assert (d.status, d.rows_read) == ("ACCEPTED", 0)


def test_same_bytes_under_another_name_change_nothing(settings: Settings) -> None:
    data = csv_text([GOOD]).encode()
    drop(settings, "blood_lead_20260305.csv", data)
    drop(settings, "blood_lead_20260312.csv", data)
    drop(settings, "blood_lead_20260319.csv.part", csv_text([dict(GOOD, TEST_ID="T9")]).encode())
    first, second = ingest_feed(settings, HEALTH)
    assert (first.status, second.status) == ("ACCEPTED", "DUPLICATE")
    assert receipt(settings, "blood_lead_20260312.csv")["duplicate_of"] == "blood_lead_20260305.csv"
    assert vault_rows(settings, "select count(*) from raw.health__blood_lead") == [(1,)]
    assert ingest_feed(settings, HEALTH) == []  # a re-run reads nothing again


def test_part_file_is_never_read(settings: Settings) -> None:
    drop(settings, "blood_lead_20260319.csv.part", csv_text([GOOD]).encode())
    assert ingest_feed(settings, HEALTH) == []


def test_corrected_resend_keeps_both_versions(settings: Settings) -> None:
    drop(settings, "blood_lead_20260305.csv", csv_text([dict(GOOD, RESULT="4.1")]).encode())
    drop(settings, "blood_lead_20260312.csv",
         csv_text([dict(GOOD, RESULT="3.1", REPORTED_DATE="03/10/2026")]).encode())
    ingest_feed(settings, HEALTH)
    assert vault_rows(settings, "select result_value from raw.health__blood_lead "
                                "order by reported_date") == [(4.1,), (3.1,)]


def test_gx_suite_names_each_failing_row_and_field() -> None:
    import pandas as pd

    from expectations.suites import validate

    rows = [GOOD, dict(GOOD, SAMPLE_DATE="02/30/2026"), dict(GOOD, RESULT="high"),
            dict(GOOD, TEST_ID=""), dict(GOOD, REPORTED_DATE="01/01/2099"),
            dict(GOOD, SAMPLE_TYPE="X")]
    cells = pd.DataFrame(rows, columns=HEADER, dtype="object").map(lambda v: v.strip() or None)
    failures, _ = validate(HEALTH, cells, date(2026, 6, 30))
    assert {i: sorted(f for f, _ in v) for i, v in failures.items()} == {
        1: ["SAMPLE_DATE"], 2: ["RESULT"], 3: ["TEST_ID"], 4: ["REPORTED_DATE"],
        5: ["SAMPLE_TYPE"]}
    assert "future" in failures[4][0][1]


def test_committed_suite_json_matches_the_code(tmp_path: Path) -> None:
    from expectations.suites import SUITES_DIR, export_suites

    for fresh in export_suites(tmp_path):
        committed = SUITES_DIR / fresh.name
        assert committed.read_text() == fresh.read_text(), f"re-export {fresh.name}"


def test_a_providers_other_date_format_is_accepted(settings: Settings) -> None:
    from pipelines.feeds import SERVICES

    (settings.landing / "providers").mkdir()
    row = {"record_id": "1", "provider_code": "FSC", "contract_id": "FSC-1", "client_id": "C1",
           "client_first_name": "Ana", "client_last_name": "Ruiz", "client_dob": "02/14/2023",
           "client_gender": "Female", "client_address": "1 Elm St", "client_zip": "21201",
           "service_code": "HOME_VISIT", "service_date": "03/02/2026", "referral_source": "",
           "outcome_code": "COMPLETED"}
    rows = [row, dict(row, record_id="2", service_date="2026-03-03"),
            dict(row, record_id="3", service_date="2026/03/04"),
            dict(row, record_id="4", service_date="02/30/2026")]
    (settings.landing / "providers" / "services_FSC_20260305.csv").write_text(
        csv_text(rows, header=SERVICES.columns))
    (d,) = ingest_feed(settings, SERVICES)
    assert len(d.rows) == 2 and [(r.line, r.field) for r in d.rejections] == [
        (4, "service_date"), (5, "service_date")]
    assert vault_rows(settings, "select service_date from raw.providers__services order by 1") \
        == [(date(2026, 3, 2),), (date(2026, 3, 3),)]


def test_a_runs_small_deliveries_are_judged_together_and_answered_each_alone(
        settings: Settings, tmp_path: Path) -> None:
    from pipelines.ingest import JudgedAhead, pending_files

    files = {
        "blood_lead_20260305.csv": [GOOD, dict(GOOD, TEST_ID="T2", RESULT="high")],
        "blood_lead_20260312.csv": [dict(GOOD, TEST_ID=""), dict(GOOD, TEST_ID="T3"),
                                    dict(GOOD, TEST_ID="T4", SAMPLE_TYPE="X",
                                         REPORTED_DATE="13/01/2026")],
        "blood_lead_20260319.csv": [dict(GOOD, TEST_ID="T5"), dict(GOOD, TEST_ID="T6",
                                                                   SAMPLE_DATE="02/30/2026")],
    }
    alone = Settings(tmp_path / "alone" / "landing", tmp_path / "alone" / "data",
                     settings.as_of, b"k")
    (alone.landing / "health").mkdir(parents=True)
    for name, rows in files.items():
        data = csv_text(rows).encode()
        drop(settings, name, data)
        (alone.landing / "health" / name).write_bytes(data)
    # the three are judged in one validation ...
    with duckdb.connect(":memory:") as con:
        con.execute("create schema ingest; create table ingest.deliveries (sha256 varchar)")
        ahead = JudgedAhead.ask(settings, HEALTH, pending_files(settings.landing, HEALTH),
                                set(), con)
    assert len(ahead._shares) == 3
    # ... and each is answered as if judged alone
    together = ingest_feed(settings, HEALTH)
    for name in files:
        ingest_feed(alone, HEALTH, only=[f"health/{name}"])
    assert [d.status for d in together] == ["ACCEPTED"] * 3

    def answer(s: Settings, name: str) -> tuple:
        r = receipt(s, name)
        return (r["rows_read"], r["rows_accepted"], r["rows_rejected"],
                sorted((x["line"], x["field"], x["reason"]) for x in r["rejected_rows"]))

    for name in files:
        assert answer(settings, name) == answer(alone, name)
    assert [answer(settings, n)[:3] for n in files] == [(2, 1, 1), (3, 1, 2), (2, 1, 1)]
    kept = "select test_id from raw.health__blood_lead order by 1"
    assert vault_rows(settings, kept) == vault_rows(alone, kept) == [("T1",), ("T3",), ("T5",)]
