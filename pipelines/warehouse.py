"""The pseudonymous warehouse's sources: what dbt may see.

Each `src.*` table is built from the vault and carries no names, street lines, full birth
dates or partner record ids: people appear by `person_id`, records and dwellings by keyed
pseudonyms (HMAC-SHA256 with the pseudonym key), ages in months. The pseudonym -> record map
is never written down: the outbox recomputes it from the vault when it writes a list, so only
the outbox can re-identify.

Every version a partner sent is kept (with its reported or extract date), so dbt can apply the
feeds' semantics (latest report wins) as of any date.
"""

from __future__ import annotations

import hashlib
import hmac

import duckdb
import pandas as pd

from linkage.standardise import address_key, std_address, std_zip
from pipelines.feeds import FEEDS, RESIDENTS, SERVICES, Feed, person_feeds, vault_columns
from pipelines.keys import anchor_salt, check_key

# linkage's persons (sex only), beside the tables the feeds become
PERSONS_DESCRIPTION = ("One row per person_id with the sex most of its records give (no name, "
                       "no birth date).")


def src_tables(feeds: tuple[Feed, ...] = FEEDS) -> dict[str, str]:
    """Every warehouse source, src.<table> -> what one of its rows is: each feed's, declared
    in the registry, and linkage's persons."""
    return {**{f.warehouse_table: f.src_description or f"One row per {f.name} record version."
               for f in feeds if f.warehouse_table},
            "persons": PERSONS_DESCRIPTION}


SRC_TABLES = tuple(src_tables())


def pseudonym(key: bytes, kind: str, value: str) -> str:
    return hmac.new(key, f"{kind}\x1f{value}".encode(), hashlib.sha256).hexdigest()[:20]


def _pseudo(key: bytes, kind: str, values: pd.Series) -> pd.Series:
    uniq = {v: pseudonym(key, kind, v) for v in values.dropna().unique()}
    return values.map(uniq)


HEALTH_SQL = """
select h.test_id, x.person_id, h.sample_date, h.sample_type, h.result_value, h.result_censored,
       h.reported_date, h._extract_date as extract_date, h.pat_address, h.pat_zip,
       date_diff('month', p.birth_date, h.sample_date)
         - case when day(h.sample_date) < day(p.birth_date) then 1 else 0 end as age_months
from raw.health__blood_lead h
join linkage.person_crosswalk x on x.source = 'health' and x.record_key = h.test_id
left join linkage.persons p on p.person_id = x.person_id
"""

INSPECTIONS_SQL = """
select inspection_id, address, unit, zip, inspection_date, inspection_type, trigger,
       lead_hazard_found, order_issued_date, clearance_date, _extract_date as extract_date
from raw.housing__inspections
"""

RESIDENTS_SQL = f"""
select r.household_id, x.person_id, r.relationship, r.address, r.unit, r.zip,
       r.move_out_date, r._extract_date as snapshot_date
from raw.housing__residents r
join linkage.person_crosswalk x
  on x.source = 'housing' and x.record_key = {RESIDENTS.record_key_sql('r')}
"""

ENROLLMENT_SQL = """
select e.studentid, x.person_id, e.schoolcode as school_code, e.gradelevel as grade_level,
       e.entrydate as entry_date, e.exitdate as exit_date, e.iep = 'Y' as iep,
       e.section504 = 'Y' as section_504, e.zip,
       e._extract_date as snapshot_date
from raw.schools__enrollment e
join linkage.person_crosswalk x on x.source = 'schools' and x.record_key = e.studentid
"""

SERVICES_SQL = f"""
select {SERVICES.record_key_sql('s')} as record_key, x.person_id, s.provider_code,
       s.contract_id, s.service_code, s.service_date, s.outcome_code,
       s._extract_date as extract_date
from raw.providers__services s
join linkage.person_crosswalk x
  on x.source = 'providers' and x.record_key = {SERVICES.record_key_sql('s')}
"""

# Feedback without its free-text note or the staff id: the warehouse needs only what closes an
# alert. The agency is the delivery's, not a column a partner could mistype.
FEEDBACK_SQL = """
select f.alert_id, d.agency, f.status, try_cast(f.recorded_at as timestamp) as recorded_at,
       f._extract_date as extract_date
from raw.feedback__alert_feedback as f
join ingest.deliveries as d on d.delivery_id = f._delivery_id
"""

CONTRACTS_SQL = """
select contract_id, provider_code, provider_name, service_codes, start_date, end_date,
       amount_usd, target_description, _extract_date as extract_date
from raw.providers__contracts
"""


def _dwelling(frame: pd.DataFrame, key: bytes, line: str, unit: str | None, zip_col: str
              ) -> pd.DataFrame:
    """Replace a street line (and unit) with keyed dwelling and building pseudonyms."""
    units = frame[unit] if unit else pd.Series([None] * len(frame), index=frame.index)
    lines = list(zip(frame[line], units, strict=True))
    # each distinct street line standardised once (a roster repeats its lines every snapshot)
    known = {a: (address_key(*a), std_address(*a)[0]) for a in set(lines)}
    dwelling = [known[a][0] for a in lines]
    building = [known[a][1] for a in lines]
    frame = frame.drop(columns=[c for c in (line, unit) if c])
    frame["address_key"] = _pseudo(key, "dwelling", pd.Series(dwelling, index=frame.index))
    frame["building_key"] = _pseudo(key, "building", pd.Series(building, index=frame.index))
    frame["zip5"] = _zip5(frame.pop(zip_col))
    return frame


def _zip5(zips: pd.Series) -> list:
    """Each row's standard ZIP, each distinct value standardised once."""
    known: dict = {}
    return [known[z] if z in known else known.setdefault(z, std_zip(z)) for z in zips]


# the feeds whose src tables are written out above (ages, dwellings, typed pseudonyms); any
# other person-bearing feed gets a src table derived from its declaration (declared_source)
HAND_WRITTEN = {"health__blood_lead", "housing__residents", "schools__enrollment",
                "providers__services"}


def declared_source(vault: duckdb.DuckDBPyConnection, key: bytes, feed: Feed) -> pd.DataFrame:
    """A person-bearing feed's pseudonymous source from its declaration alone: every field not
    flagged `pii`, the person_id, the extract date, and the record as a keyed pseudonym."""
    assert feed.person is not None
    kept = [c.lower() for c, _ in vault_columns(feed)
            if not next((f.pii for f in feed.fields if f.column == c), False)
            and c not in feed.person.key]
    frame = vault.execute(
        f"select {feed.record_key_sql('r')} as record_key, x.person_id, "
        + "".join(f"r.{c}, " for c in kept)
        + f"r._extract_date as extract_date from raw.{feed.name} as r "
        f"join linkage.person_crosswalk as x on x.source = '{feed.person.source}' "
        f"and x.record_key = {feed.record_key_sql('r')}").df()
    frame.insert(0, "record_pseudonym", _pseudo(key, feed.name, frame.pop("record_key")))
    return frame


def build_sources(vault: duckdb.DuckDBPyConnection, key: bytes,
                  feeds: tuple[Feed, ...] = FEEDS) -> dict[str, pd.DataFrame]:
    """Read the vault and return the pseudonymous src tables (nothing identifiable left)."""
    check_key(vault, key)  # a run with another key stops here, before any pseudonym changes
    health = vault.execute(HEALTH_SQL).df()
    # the episode anchor alert ids are built on: unchanged when the key is rotated
    health["test_uid"] = _pseudo(anchor_salt(vault), "test-anchor", health["test_id"])
    health["test_key"] = _pseudo(key, "test", health.pop("test_id"))
    health = _dwelling(health, key, "pat_address", None, "pat_zip")

    insp = vault.execute(INSPECTIONS_SQL).df()
    insp["inspection_key"] = _pseudo(key, "inspection", insp.pop("inspection_id"))
    insp = _dwelling(insp, key, "address", "unit", "zip")

    res = vault.execute(RESIDENTS_SQL).df()
    res["household_key"] = _pseudo(key, "household", res.pop("household_id"))
    res = _dwelling(res, key, "address", "unit", "zip")

    enr = vault.execute(ENROLLMENT_SQL).df()
    enr["student_key"] = _pseudo(key, "student", enr.pop("studentid"))
    enr["zip5"] = _zip5(enr.pop("zip"))

    svc = vault.execute(SERVICES_SQL).df()
    svc["service_key"] = _pseudo(key, "service", svc.pop("record_key"))

    contracts = vault.execute(CONTRACTS_SQL).df()
    feedback = vault.execute(FEEDBACK_SQL).df()
    # the data lab matches on sex; the birth date stays in the vault (ages come in months)
    persons = vault.execute("select person_id, sex from linkage.persons").df()

    declared = {f.name: declared_source(vault, key, f) for f in person_feeds(feeds)
                if f.name not in HAND_WRITTEN}
    return {"health_tests": health, "housing_inspections": insp, "housing_residents": res,
            "schools_enrollment": enr, "provider_services": svc, "provider_contracts": contracts,
            "alert_feedback": feedback, "persons": persons, **declared}


def write_sources(warehouse: duckdb.DuckDBPyConnection, tables: dict[str, pd.DataFrame]) -> None:
    warehouse.execute("create schema if not exists src")
    warehouse.execute("begin transaction")
    try:
        for name, frame in tables.items():
            # a table with no row yet (no feedback delivered) has text columns, not DuckDB's
            # NULL type, which no dbt unit-test fixture could be cast to
            empty = [c for c in frame.columns if frame[c].dtype == object] if frame.empty else []
            frame = frame.astype(dict.fromkeys(empty, "string"))
            warehouse.register("frame", frame)
            warehouse.execute(f"create or replace table src.{name} as select * from frame")
            warehouse.unregister("frame")
        warehouse.execute("commit")
    except Exception:
        warehouse.execute("rollback")
        raise
