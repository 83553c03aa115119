"""The partner feeds, declared once from `shared/contracts/README.md`.

A `Feed` says where its files land, how they are named, which columns they carry, how each field
parses, and how the feed's rows combine over deliveries (incremental, latest-wins, snapshot).
Readers, validation, the vault tables and the receipts are all driven from these specs.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Any

from pipelines import parsing as p

Parser = Callable[[str, date], Any]  # (text, latest plausible date) -> value


def _text(t: str, _: date) -> str | None:
    t = t.strip()
    return t or None


def _code(allowed: set[str], required: bool = True) -> Parser:
    codes = frozenset(allowed)
    return lambda t, _: p.parse_code(t, codes, required=required)


def _id(t: str, _: date) -> str:
    return p.required_id(t)


def _past(fn: Callable[..., date | None]) -> Parser:
    return lambda t, today: fn(t, not_after=today)


def _any(fn: Callable[..., date | None]) -> Parser:
    return lambda t, _: fn(t)


@dataclass(frozen=True)
class Field:
    column: str
    parse: Parser
    sql_type: str = "VARCHAR"
    pii: bool = False  # names, birth dates, street lines, partner ids: vault only


@dataclass(frozen=True)
class Feed:
    name: str  # vault table raw.<name>, Dagster asset raw_<name>
    agency: str
    folder: str
    pattern: re.Pattern[str]
    fields: tuple[Field, ...]
    key: tuple[str, ...]  # columns identifying one record
    semantics: str  # "latest_reported" | "latest_extract" | "snapshot" | "incremental"
    extra: Callable[[dict[str, Any]], dict[str, Any]] | None = None  # derived columns

    @property
    def columns(self) -> list[str]:
        return [f.column for f in self.fields]

    def match(self, file_name: str) -> re.Match[str] | None:
        return self.pattern.fullmatch(file_name)


def _result_columns(row: dict[str, Any]) -> dict[str, Any]:
    r = row.pop("RESULT")
    return {"RESULT": r.text, "RESULT_VALUE": r.value, "RESULT_CENSORED": r.censored}


class _Result:
    """Keeps the result's text beside its parse, so the vault holds what the lab sent."""

    def __init__(self, text: str) -> None:
        parsed = p.parse_result(text)
        self.text, self.value, self.censored = text.strip(), parsed.value, parsed.censored


SERVICE_CODES = {"LEAD_CASE_MGMT", "HOME_VISIT", "NUTRITION", "DEV_SCREEN",
                 "EARLY_INTERVENTION", "HOUSING_NAV", "OTHER"}
GRADES = {"PK3", "PK4", "K"} | {f"{g:02d}" for g in range(1, 13)}

HEALTH = Feed(
    name="health__blood_lead", agency="health", folder="health",
    pattern=re.compile(r"blood_lead_(\d{8})\.csv"),
    fields=(
        Field("TEST_ID", _id),
        Field("PATIENT_ID", _text, pii=True),
        Field("PAT_FIRST_NAME", _text, pii=True),
        Field("PAT_MIDDLE_NAME", _text, pii=True),
        Field("PAT_LAST_NAME", _text, pii=True),
        Field("PAT_DOB", _past(p.parse_us_date), "DATE", pii=True),
        Field("PAT_SEX", _code({"M", "F", "U"}, required=False)),
        Field("PAT_ADDRESS", _text, pii=True),
        Field("PAT_CITY", _text),
        Field("PAT_ZIP", _text),
        Field("GUARDIAN_NAME", _text, pii=True),
        Field("MEDICAID_ID", _text, pii=True),
        Field("SAMPLE_DATE", lambda t, today: _required_date(p.parse_us_date, t, today), "DATE"),
        Field("SAMPLE_TYPE", _code({"V", "C", "U"})),
        Field("RESULT", lambda t, _: _Result(t)),
        Field("UNITS", _code({"ug/dL"})),
        Field("LOINC", _code({"5671-3", "77307-7", "10368-9"}, required=False)),
        Field("LAB_NAME", _text),
        Field("ORDERING_PROVIDER", _text),
        Field("REPORTED_DATE", lambda t, today: _required_date(p.parse_us_date, t, today), "DATE"),
    ),
    key=("TEST_ID",), semantics="latest_reported", extra=_result_columns,
)


def _required_date(fn: Callable[..., date | None], t: str, today: date) -> date:
    d = fn(t, not_after=today)
    if d is None:
        raise p.BadValue("is blank; a date is required")
    return d


INSPECTIONS = Feed(
    name="housing__inspections", agency="housing", folder="housing",
    pattern=re.compile(r"inspections_(\d{8})\.csv"),
    fields=(
        Field("inspection_id", _id),
        Field("parcel_id", _text),
        Field("address", _text),
        Field("unit", _text),
        Field("zip", _text),
        Field("inspection_date", lambda t, today: _required_date(p.parse_iso_date, t, today), "DATE"),
        Field("inspection_type", _code({"LEAD_RISK_ASSESSMENT", "ROUTINE", "COMPLAINT"})),
        Field("trigger", _code({"EBLL_REFERRAL", "COMPLAINT", "ROUTINE", "OTHER"}, required=False)),
        Field("lead_hazard_found", lambda t, _: p.parse_bool(t), "BOOLEAN"),
        Field("order_issued_date", _past(p.parse_iso_date), "DATE"),
        Field("clearance_date", _past(p.parse_iso_date), "DATE"),
    ),
    key=("inspection_id",), semantics="latest_extract",
)

RESIDENTS = Feed(
    name="housing__residents", agency="housing", folder="housing",
    pattern=re.compile(r"residents_(\d{8})\.csv"),
    fields=(
        Field("household_id", _id, pii=True),
        Field("member_seq", _id),
        Field("first_name", _text, pii=True),
        Field("last_name", _text, pii=True),
        Field("dob", _past(p.parse_iso_date), "DATE", pii=True),
        Field("relationship", _code({"HEAD", "SPOUSE", "CHILD", "OTHER"}, required=False)),
        Field("parcel_id", _text),
        Field("address", _text, pii=True),
        Field("unit", _text, pii=True),
        Field("zip", _text),
        Field("move_in_date", _past(p.parse_iso_date), "DATE"),
        Field("move_out_date", _any(p.parse_iso_date), "DATE"),
    ),
    key=("household_id", "member_seq"), semantics="snapshot",
)

ENROLLMENT = Feed(
    name="schools__enrollment", agency="schools", folder="schools",
    pattern=re.compile(r"enrollment_(\d{8})\.csv"),
    fields=(
        Field("StudentID", _id, pii=True),
        Field("FirstName", _text, pii=True),
        Field("MiddleName", _text, pii=True),
        Field("LastName", _text, pii=True),
        Field("BirthDate", _past(p.parse_compact_date), "DATE", pii=True),
        Field("Gender", _code({"Male", "Female", "Nonbinary"}, required=False)),
        Field("HomeAddress", _text, pii=True),
        Field("City", _text),
        Field("Zip", _text),
        Field("SchoolCode", _text),
        Field("SchoolName", _text),
        Field("GradeLevel", _code(GRADES, required=False)),
        Field("EntryDate", _past(p.parse_compact_date), "DATE"),
        Field("ExitDate", _any(p.parse_compact_date), "DATE"),
        Field("IEP", _code({"Y", "N"}, required=False)),
        Field("Section504", _code({"Y", "N"}, required=False)),
        Field("AttendanceRate", lambda t, _: p.parse_percent(t), "DOUBLE"),
        Field("GuardianName", _text, pii=True),
    ),
    key=("StudentID",), semantics="snapshot",
)

SERVICES = Feed(
    name="providers__services", agency="providers", folder="providers",
    pattern=re.compile(r"services_([A-Z0-9]+)_(\d{8})\.csv"),
    fields=(
        Field("record_id", _id),
        Field("provider_code", _id),
        Field("contract_id", _text),
        Field("client_id", _text, pii=True),
        Field("client_first_name", _text, pii=True),
        Field("client_last_name", _text, pii=True),
        Field("client_dob", _past(p.parse_provider_date), "DATE", pii=True),
        Field("client_gender", _text),
        Field("client_address", _text, pii=True),
        Field("client_zip", _text),
        Field("service_code", _code(SERVICE_CODES)),
        Field("service_date", lambda t, today: _required_date(p.parse_provider_date, t, today), "DATE"),
        Field("referral_source", _text),
        Field("outcome_code", _code({"COMPLETED", "IN_PROGRESS", "NO_SHOW", "DECLINED"})),
    ),
    key=("provider_code", "record_id"), semantics="incremental",
)

CONTRACTS = Feed(
    name="providers__contracts", agency="providers", folder="providers",
    pattern=re.compile(r"contracts_(\d{8})\.csv"),
    fields=(
        Field("contract_id", _id),
        Field("provider_code", _id),
        Field("provider_name", _text),
        Field("service_codes", _text),
        Field("start_date", _any(p.parse_iso_date), "DATE"),
        Field("end_date", _any(p.parse_iso_date), "DATE"),
        Field("amount_usd", lambda t, _: p.parse_amount(t), "DOUBLE"),
        Field("target_description", _text),
    ),
    key=("contract_id",), semantics="latest_extract",
)

FEEDS: tuple[Feed, ...] = (HEALTH, INSPECTIONS, RESIDENTS, ENROLLMENT, SERVICES, CONTRACTS)
FEEDS_BY_NAME = {f.name: f for f in FEEDS}

# Column types of a feed's vault table, extras included.
EXTRA_TYPES = {"RESULT_VALUE": "DOUBLE", "RESULT_CENSORED": "BOOLEAN"}


def vault_columns(feed: Feed) -> list[tuple[str, str]]:
    cols = [(f.column, f.sql_type) for f in feed.fields]
    if feed is HEALTH:
        cols += [(c, t) for c, t in EXTRA_TYPES.items()]
    return cols


def feed_for(agency_folder: str, file_name: str) -> Feed | None:
    for f in FEEDS:
        if f.folder == agency_folder and f.match(file_name):
            return f
    return None

