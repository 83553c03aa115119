"""The partner feeds, declared once from `shared/contracts/README.md`.

A `Feed` says where its files land, how they are named, which columns they carry, how each field
parses, and how the feed's rows combine over deliveries (incremental, latest-wins, snapshot).
Readers, validation, the vault tables and the receipts are all driven from these specs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from pipelines import parsing as p

# an organisation's code as a folder name (health, housing, schools, or a provider's code):
# letters and digits only, so it can never be a path
ORGANISATION_CODE = re.compile(r"[A-Za-z0-9]{1,20}")

DATE_FORMATS = {"us": ("%m/%d/%Y", "MM/DD/YYYY"), "iso": ("%Y-%m-%d", "YYYY-MM-DD"),
                "compact": ("%Y%m%d", "YYYYMMDD")}


@dataclass(frozen=True)
class Field:
    """One contract column, declared once: the parser and the GX expectations derive from it.

    kind: text | id | code | date | bool | result | percent | amount
    fmt: for dates, a key of DATE_FORMATS, or "provider" (ISO or MM/DD/YYYY, by provider)
    """

    column: str
    kind: str = "text"
    required: bool = False
    codes: frozenset[str] | None = None
    fmt: str | None = None
    past_only: bool = True  # dates: not after the delivery's date
    pii: bool = False  # names, birth dates, street lines, partner ids: vault only
    unique: bool = False  # unique within one file (a repeated value rejects every copy)
    one_per_file: bool = False  # the same value on every row, or the file is rejected whole

    @property
    def sql_type(self) -> str:
        return {"date": "DATE", "bool": "BOOLEAN", "percent": "DOUBLE", "amount": "DOUBLE",
                "timestamp": "TIMESTAMP"}.get(
            self.kind, "VARCHAR")

    def converter(self, text: str) -> Any:
        """This field's value from its (stripped, non-blank) text, or None when it cannot be
        converted. Converting judges nothing: the feed's suite (expectations/suites.py) does."""
        match self.kind:
            case "id" | "text" | "code":
                return text
            case "date":
                if self.fmt == "provider":
                    return p.to_date(text, DATE_FORMATS["us" if "/" in text else "iso"][0])
                return p.to_date(text, DATE_FORMATS[self.fmt or "iso"][0])
            case "bool":
                return p.to_bool(text)
            case "result":
                return p.to_result(text)
            case "percent":
                return p.to_percent(text)
            case "amount":
                return p.to_amount(text)
            case "timestamp":
                return p.to_timestamp(text)
        raise ValueError(f"unknown field kind {self.kind}")


def _id(column: str, pii: bool = False) -> Field:
    return Field(column, "id", required=True, pii=pii)


def _code(column: str, codes: set[str], required: bool = False) -> Field:
    return Field(column, "code", required=required, codes=frozenset(codes))


def _date(column: str, fmt: str, required: bool = False, past_only: bool = True,
          pii: bool = False) -> Field:
    return Field(column, "date", required=required, fmt=fmt, past_only=past_only, pii=pii)


def _pii(column: str) -> Field:
    return Field(column, pii=True)


# What linkage reads of a person-record, in this order; a feed maps the roles it has.
PERSON_ROLES = ("first_name", "middle_name", "last_name", "dob", "sex", "street_line", "unit",
                "zip", "medicaid_id", "patient_id", "guardian")


@dataclass(frozen=True)
class PersonRecord:
    """How a feed's rows describe a person: its linkage source, the columns of its record key
    (joined with '-', the one rule every stage uses) and which column plays each role."""

    source: str
    key: tuple[str, ...]
    roles: tuple[tuple[str, str], ...]  # (role, column)
    described_as: str = ""  # in words, where a list says an address came from ("school roster")
    dated_by: str | None = None  # the column dating what a row says (default: its extract)
    # a roster: two of its records are two people (unless the evidence is overwhelming) when
    # they share the first this-many key columns (0: the whole roster; None: no such rule)
    distinct_within: int | None = None
    # roles read from other rows of the same delivery rather than a column: (role, SQL over the
    # row `r` and its feed's raw table), as a housing roster names a child's guardian by its
    # household's head
    derived: tuple[tuple[str, str], ...] = ()

    def column(self, role: str) -> str | None:
        return dict(self.roles).get(role)


@dataclass(frozen=True)
class Feed:
    name: str  # vault table raw.<name>, Dagster asset raw_<name>
    agency: str  # "*": the agency is the file's sub-folder (feedback)
    folder: str
    pattern: re.Pattern[str]  # matched against the path below `folder`
    fields: tuple[Field, ...]
    key: tuple[str, ...]  # columns identifying one record
    semantics: str  # "latest_reported" | "latest_extract" | "snapshot" | "incremental"
    # "vault": rows join the vault's raw.<name> for good; "request": rows live in the request's
    # own store (DATA_DIR/requests/<delivery_id>.duckdb) until the request is answered and erased
    store: str = "vault"
    # the file name names the organisation that sent it (services_<PROVIDER>_<date>.csv): its
    # receipts go to that organisation's own outbox, and every row's `org_field` must agree
    org_group: int | None = None
    org_field: str | None = None
    # caseworkers' answers to their lists: checked against what was sent to that organisation,
    # and dated by the day they arrived
    answers_lists: bool = False
    person: PersonRecord | None = None  # a person-bearing feed: its rows are linked
    reported: str | None = None  # semantics latest_reported: the column that orders versions
    # the pseudonymous warehouse table it becomes (src.<name>) and what one of its rows is; a
    # person-bearing feed without one becomes src.<feed name>, derived from its declaration
    src_table: str | None = None
    src_description: str = ""
    # the warehouse columns that identify one record there (its keyed pseudonym); a declared
    # source's is record_pseudonym
    src_key: tuple[str, ...] = ("record_pseudonym",)

    @property
    def warehouse_table(self) -> str | None:
        """The warehouse source (src.<table>) this feed becomes, if any."""
        if self.src_table:
            return self.src_table
        return self.name if self.person is not None and self.store == "vault" else None

    def warehouse_versions(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(partition, order) of the latest-version rule in the warehouse, from the feed's
        key and semantics: the latest report wins (`latest_reported`), else the latest
        extract. `plumbline prepare` writes it into the dbt macro `latest_version`."""
        order = ((f"{self.reported.lower()} desc",) if self.semantics == "latest_reported"
                 and self.reported else ()) + ("extract_date desc",)
        return self.src_key, order

    @property
    def dated_by_arrival(self) -> bool:
        return self.answers_lists

    @property
    def columns(self) -> list[str]:
        return [f.column for f in self.fields]

    def match(self, relative_path: str) -> re.Match[str] | None:
        return self.pattern.fullmatch(relative_path)

    def record_key_sql(self, alias: str) -> str:
        """The SQL of a row's record key (the crosswalk's `record_key`)."""
        assert self.person is not None, f"{self.name} is not person-bearing"
        return " || '-' || ".join(f"{alias}.{c.lower()}" for c in self.person.key)

    def latest_version_sql(self, alias: str | None = None) -> str:
        """The `qualify` that keeps each record's latest version, from the feed's semantics:
        the latest report wins (`latest_reported`), else the latest extract, then the last line."""
        a = f"{alias}." if alias else ""
        keys = self.person.key if self.person else self.key
        order = ([f"{a}{self.reported.lower()} desc"] if self.semantics == "latest_reported"
                 and self.reported else []) + [f"{a}_extract_date desc", f"{a}_line desc"]
        return (f"qualify row_number() over (partition by "
                f"{', '.join(a + c.lower() for c in keys)} order by {', '.join(order)}) = 1")

    def agency_of(self, relative_path: str) -> str:
        """The organisation a delivery is from (and whose outbox gets its receipt)."""
        if self.agency == "*":
            return relative_path.split("/", 1)[0]
        if self.org_group is not None:
            m = self.match(relative_path)
            if m:
                return m.group(self.org_group)
        return self.agency


SERVICE_CODES = {"LEAD_CASE_MGMT", "HOME_VISIT", "NUTRITION", "DEV_SCREEN",
                 "EARLY_INTERVENTION", "HOUSING_NAV", "OTHER"}
GRADES = {"PK3", "PK4", "K"} | {f"{g:02d}" for g in range(1, 13)}

HEALTH = Feed(
    name="health__blood_lead", agency="health", folder="health",
    src_key=("test_key",),
    src_table="health_tests",
    src_description="One row per version of a blood lead test as health reported it (a corrected result is a later version).",
    pattern=re.compile(r"blood_lead_(\d{8})\.csv"),
    fields=(
        _id("TEST_ID"),
        _pii("PATIENT_ID"),
        _pii("PAT_FIRST_NAME"),
        _pii("PAT_MIDDLE_NAME"),
        _pii("PAT_LAST_NAME"),
        _date("PAT_DOB", "us", pii=True),
        _code("PAT_SEX", {"M", "F", "U"}),
        _pii("PAT_ADDRESS"),
        Field("PAT_CITY"),
        Field("PAT_ZIP"),
        _pii("GUARDIAN_NAME"),
        _pii("MEDICAID_ID"),
        _date("SAMPLE_DATE", "us", required=True),
        _code("SAMPLE_TYPE", {"V", "C", "U"}, required=True),
        Field("RESULT", "result", required=True),
        _code("UNITS", {"ug/dL"}, required=True),
        _code("LOINC", {"5671-3", "77307-7", "10368-9"}),
        Field("LAB_NAME"),
        Field("ORDERING_PROVIDER"),
        _date("REPORTED_DATE", "us", required=True),
    ),
    key=("TEST_ID",), semantics="latest_reported", reported="REPORTED_DATE",
    person=PersonRecord("health", ("TEST_ID",), (
        ("first_name", "PAT_FIRST_NAME"), ("middle_name", "PAT_MIDDLE_NAME"),
        ("last_name", "PAT_LAST_NAME"), ("dob", "PAT_DOB"), ("sex", "PAT_SEX"),
        ("street_line", "PAT_ADDRESS"), ("zip", "PAT_ZIP"), ("medicaid_id", "MEDICAID_ID"),
        ("patient_id", "PATIENT_ID"), ("guardian", "GUARDIAN_NAME")),
        described_as="a blood lead test"),
)

INSPECTIONS = Feed(
    name="housing__inspections", agency="housing", folder="housing",
    src_key=("inspection_key",),
    src_table="housing_inspections",
    src_description="One row per version of a housing inspection per extract.",
    pattern=re.compile(r"inspections_(\d{8})\.csv"),
    fields=(
        _id("inspection_id"),
        Field("parcel_id"),
        Field("address"),
        Field("unit"),
        Field("zip"),
        _date("inspection_date", "iso", required=True),
        _code("inspection_type", {"LEAD_RISK_ASSESSMENT", "ROUTINE", "COMPLAINT"}, required=True),
        _code("trigger", {"EBLL_REFERRAL", "COMPLAINT", "ROUTINE", "OTHER"}),
        Field("lead_hazard_found", "bool"),
        _date("order_issued_date", "iso"),
        _date("clearance_date", "iso"),
    ),
    key=("inspection_id",), semantics="latest_extract",
)

RESIDENTS = Feed(
    name="housing__residents", agency="housing", folder="housing",
    src_table="housing_residents",
    src_description="One row per assisted-housing household member per roster snapshot.",
    pattern=re.compile(r"residents_(\d{8})\.csv"),
    fields=(
        _id("household_id", pii=True),
        _id("member_seq"),
        _pii("first_name"),
        _pii("last_name"),
        _date("dob", "iso", pii=True),
        _code("relationship", {"HEAD", "SPOUSE", "CHILD", "OTHER"}),
        Field("parcel_id"),
        _pii("address"),
        _pii("unit"),
        Field("zip"),
        _date("move_in_date", "iso"),
        _date("move_out_date", "iso", past_only=False),
    ),
    key=("household_id", "member_seq"), semantics="snapshot",
    person=PersonRecord("housing", ("household_id", "member_seq"), (
        ("first_name", "first_name"), ("last_name", "last_name"), ("dob", "dob"),
        ("street_line", "address"), ("unit", "unit"), ("zip", "zip")),
        described_as="housing roster", distinct_within=1,  # one household lists each once
        derived=(("guardian", """(
            select h.first_name || ' ' || h.last_name from raw.housing__residents as h
            where r.relationship = 'CHILD' and h.household_id = r.household_id
              and h._delivery_id = r._delivery_id and h.relationship = 'HEAD'
            order by h.member_seq limit 1)"""),)),
)

ENROLLMENT = Feed(
    name="schools__enrollment", agency="schools", folder="schools",
    src_table="schools_enrollment",
    src_description="One row per student per enrollment snapshot.",
    pattern=re.compile(r"enrollment_(\d{8})\.csv"),
    fields=(
        _id("StudentID", pii=True),
        _pii("FirstName"),
        _pii("MiddleName"),
        _pii("LastName"),
        _date("BirthDate", "compact", pii=True),
        _code("Gender", {"Male", "Female", "Nonbinary"}),
        _pii("HomeAddress"),
        Field("City"),
        Field("Zip"),
        Field("SchoolCode"),
        Field("SchoolName"),
        _code("GradeLevel", GRADES),
        _date("EntryDate", "compact"),
        _date("ExitDate", "compact", past_only=False),
        _code("IEP", {"Y", "N"}),
        _code("Section504", {"Y", "N"}),
        Field("AttendanceRate", "percent"),
        _pii("GuardianName"),
    ),
    key=("StudentID",), semantics="snapshot",
    person=PersonRecord("schools", ("StudentID",), (
        ("first_name", "FirstName"), ("middle_name", "MiddleName"), ("last_name", "LastName"),
        ("dob", "BirthDate"), ("sex", "Gender"), ("street_line", "HomeAddress"),
        ("zip", "Zip"), ("guardian", "GuardianName")), described_as="school roster",
        distinct_within=0),  # the district gives each student one StudentID
)

SERVICES = Feed(
    name="providers__services", agency="providers", folder="providers",
    src_key=("service_key",),
    src_table="provider_services",
    src_description="One row per service delivered by a contracted provider, per extract.",
    pattern=re.compile(r"services_([A-Z0-9]+)_(\d{8})\.csv"),
    fields=(
        _id("record_id"),
        _id("provider_code"),
        Field("contract_id"),
        _pii("client_id"),
        _pii("client_first_name"),
        _pii("client_last_name"),
        _date("client_dob", "provider", pii=True),
        Field("client_gender"),
        _pii("client_address"),
        Field("client_zip"),
        _code("service_code", SERVICE_CODES, required=True),
        _date("service_date", "provider", required=True),
        Field("referral_source"),
        _code("outcome_code", {"COMPLETED", "IN_PROGRESS", "NO_SHOW", "DECLINED"}, required=True),
    ),
    key=("provider_code", "record_id"), semantics="incremental",
    org_group=1, org_field="provider_code",
    person=PersonRecord("providers", ("provider_code", "record_id"), (
        ("first_name", "client_first_name"), ("last_name", "client_last_name"),
        ("dob", "client_dob"), ("sex", "client_gender"), ("street_line", "client_address"),
        ("zip", "client_zip")), described_as="a provider's record", dated_by="service_date"),
)

CONTRACTS = Feed(
    name="providers__contracts", agency="providers", folder="providers",
    src_key=("contract_id",),
    src_table="provider_contracts",
    src_description="One row per city contract with a provider, per extract (public record).",
    pattern=re.compile(r"contracts_(\d{8})\.csv"),
    fields=(
        _id("contract_id"),
        _id("provider_code"),
        Field("provider_name"),
        Field("service_codes"),
        _date("start_date", "iso", past_only=False),
        _date("end_date", "iso", past_only=False),
        Field("amount_usd", "amount"),
        Field("target_description"),
    ),
    key=("contract_id",), semantics="latest_extract",
)

FEEDBACK = Feed(
    name="feedback__alert_feedback", agency="*", folder="feedback",
    src_table="alert_feedback",
    src_description="One row per caseworker feedback line on a delivered alert (status and dates only; the note and staff id stay in the vault).",
    # each organisation answers its own list: health, housing, schools or a provider code
    pattern=re.compile(r"(health|housing|schools|providers|[A-Z0-9]{1,20})/"
                       r"alert_feedback_(\d{8})\.csv"),
    fields=(
        _id("alert_id"),
        _code("status", {"RESOLVED", "IN_PROGRESS", "UNABLE_TO_CONTACT", "NOT_APPLICABLE",
                         "WRONG_PERSON"}, required=True),
        Field("note", pii=True),  # free text may name people
        Field("recorded_by"),
        Field("recorded_at", "timestamp", required=True),
    ),
    key=("alert_id", "recorded_at"), semantics="incremental", answers_lists=True,
)

DATALAB = Feed(
    name="datalab__cohort", agency="*", folder="datalab",
    pattern=re.compile(r"([A-Z0-9]+)/cohort_(\d{8})\.csv"),
    fields=(
        Field("record_id", "id", required=True, pii=True, unique=True),
        _pii("client_first_name"),
        _pii("client_last_name"),
        _date("client_dob", "iso", pii=True),
        _pii("client_address"),
        Field("client_zip"),
        _date("program_start", "iso", required=True),
        Field("program", required=True, one_per_file=True),
    ),
    key=("record_id",), semantics="request", store="request",
)

FEEDS: tuple[Feed, ...] = (HEALTH, INSPECTIONS, RESIDENTS, ENROLLMENT, SERVICES, CONTRACTS,
                           FEEDBACK, DATALAB)



def vault_columns(feed: Feed) -> list[tuple[str, str]]:
    """The feed's vault table columns: each field, and a parsed result's value and censoring."""
    cols: list[tuple[str, str]] = []
    for f in feed.fields:
        cols.append((f.column, f.sql_type))
        if f.kind == "result":
            cols += [(f"{f.column}_VALUE", "DOUBLE"), (f"{f.column}_CENSORED", "BOOLEAN")]
    return cols


def typed_columns(feed: Feed, converted: dict[str, list[Any]], texts: dict[str, list[Any]]
                  ) -> dict[str, list[Any]]:
    """The vault columns from converted values: a result keeps its text beside its value and
    censoring; every other field is its converted value."""
    out: dict[str, list[Any]] = {}
    for f in feed.fields:
        if f.kind == "result":
            results = converted[f.column]
            out[f.column] = texts[f.column]
            out[f"{f.column}_VALUE"] = [r.value if r else None for r in results]
            out[f"{f.column}_CENSORED"] = [r.censored if r else None for r in results]
        else:
            out[f.column] = converted[f.column]
    return out


def person_feeds(feeds: tuple[Feed, ...] = FEEDS) -> list[Feed]:
    """The feeds whose rows are person-records (the data lab's requests are looked up, never
    linked)."""
    return [f for f in feeds if f.person is not None and f.store == "vault"]


def delivery_counts_sql(labelled: list[tuple[str, str]], label: str = "feed") -> str:
    """Each delivery's row count in each feed's vault table: (`label`, delivery_id, n) for the
    (label, feed name) pairs given. What a stage built from, kept beside what it built, tells
    it the deliveries since (new) and those changed or gone."""
    empty = (f"select null::varchar as {label}, null::varchar as delivery_id, "
             "null::bigint as n where false")
    return " union all ".join(
        [f"select '{name}' as {label}, _delivery_id as delivery_id, count(*) as n "
         f"from raw.{feed} group by _delivery_id" for name, feed in labelled] + [empty])


def _only_new(feed: Feed, table: str | None) -> str:
    """The semi join that keeps a feed's records with a row in the deliveries of `table`."""
    if table is None:
        return ""
    keys = [c.lower() for c in feed.person.key]
    on = " and ".join(f"n.{k} is not distinct from r.{k}" for k in keys)
    return (f"semi join (select distinct {', '.join(keys)} from raw.{feed.name} "
            f"where _delivery_id in (select delivery_id from {table} "
            f"where feed = '{feed.name}')) as n on {on}\n")


def distinct_rosters(feeds: tuple[Feed, ...] = FEEDS) -> dict[str, int]:
    """Linkage source -> how many leading record-key parts name a roster whose records are
    different people (for linkage's roster rule)."""
    return {f.person.source: f.person.distinct_within for f in person_feeds(feeds)
            if f.person.distinct_within is not None}


def person_records_sql(feeds: tuple[Feed, ...] = FEEDS, only_new_in: str | None = None) -> str:
    """One row per person-record, the latest version of each, in the roles linkage reads:
    derived from the declarations, so a new person-bearing feed is linked without more code.
    In no particular order: linkage orders what it needs by record (sorting every record
    here took 0.3-0.5 s of each 1M run).

    `only_new_in`: a table of (feed, delivery_id); then only the records with a row in one of
    those deliveries (each still in its latest version, whichever delivery holds it)."""
    parts = []
    for feed in person_feeds(feeds):
        assert feed.person is not None
        types = dict(vault_columns(feed))
        roles = []
        derived = dict(feed.person.derived)
        for role in PERSON_ROLES:
            col = feed.person.column(role)
            kind = "DATE" if role == "dob" else "VARCHAR"
            roles.append(f"r.{col.lower()}" if col and types.get(col) == kind
                         else f"cast(r.{col.lower()} as {kind})" if col
                         else f"cast({derived[role]} as {kind})" if role in derived
                         else f"cast(null as {kind})")
        parts.append(
            f"select '{feed.person.source}' as source, {feed.record_key_sql('r')} as record_key, "
            + ", ".join(f"{expr} as {role}" for expr, role in zip(roles, PERSON_ROLES, strict=True))
            + f"\nfrom raw.{feed.name} as r\n{_only_new(feed, only_new_in)}"
            + feed.latest_version_sql('r'))
    return "\nunion all\n".join(f"({q})" for q in parts)
