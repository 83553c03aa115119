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

import contextlib
import hashlib
import hmac
import queue
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path

import duckdb
import pyarrow as pa

from linkage import standardise
from linkage.standardise import address_key, std_address
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
    """A value's keyed pseudonym: HMAC-SHA256 of `kind` and the value, first 20 hex digits.
    The reference for the SQL the src tables and the outbox compute it with (`pseudonyms_in`);
    the tests hold the two equal."""
    return hmac.new(key, f"{kind}\x1f{value}".encode(), hashlib.sha256).hexdigest()[:20]


def _pads(key: bytes) -> tuple[bytes, bytes]:
    """HMAC's inner and outer padded keys (RFC 2104, SHA-256's 64-byte block)."""
    if len(key) > 64:
        key = hashlib.sha256(key).digest()
    key = key.ljust(64, b"\0")
    return bytes(b ^ 0x36 for b in key), bytes(b ^ 0x5C for b in key)


@contextlib.contextmanager
def pseudonyms_in(con: duckdb.DuckDBPyConnection, **keys: bytes) -> Iterator[None]:
    """SQL macros `<name>(kind, value)` on this connection, one per key, equal to
    `pseudonym(key, kind, value)` (NULL for NULL), computed by DuckDB over whole columns.

    The padded keys sit in a temporary table read by the macros, never in SQL text, so no
    error message or query log can carry them; the table and macros are dropped on the way out.
    """
    made: list[str] = []
    try:
        for name, key in keys.items():
            inner, outer = _pads(key)
            con.execute(f"create or replace temp table _pads_{name} (inner_pad blob, outer_pad blob)")
            made.append(name)
            con.execute(f"insert into _pads_{name} values (?, ?)", [inner, outer])
            con.execute(
                f"create or replace temp macro {name}(kind, v) as left(sha256("
                f"(select outer_pad from _pads_{name}) || unhex(sha256("
                f"(select inner_pad from _pads_{name}) || encode(kind || chr(31) || "
                "cast(v as varchar))))), 20)")
        yield
    finally:
        for name in made:
            con.execute(f"drop macro if exists temp.{name}")
            con.execute(f"drop table if exists temp._pads_{name}")


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


# Street lines are standardised in Python (linkage.standardise), once per distinct line and
# unit: the vault keeps each line's dwelling and building keys (identifiable, so vault-only) in
# prep.street_lines, tagged with the standardiser's version, and each run standardises only the
# lines it has not seen. Lines no source holds any more are dropped from it.
STANDARDISER = hashlib.sha256(Path(standardise.__file__).read_bytes()).hexdigest()[:16]

STREET_LINES_DDL = """
create schema if not exists prep;
create table if not exists prep.street_lines (
    line varchar, unit varchar, dwelling varchar, building varchar, standardiser varchar);
"""

# every (street line, unit) a src table turns into dwelling and building keys
STREET_LINES_SQL = """
select pat_address as line, cast(null as varchar) as unit from raw.health__blood_lead
union select address, unit from raw.housing__inspections
union select address, unit from raw.housing__residents
"""


def refresh_street_lines(vault: duckdb.DuckDBPyConnection) -> int:
    """Standardise the street lines not yet in prep.street_lines; drop the ones no source
    holds any more, and all of them when the standardiser changed. Returns how many were new."""
    vault.execute(STREET_LINES_DDL)
    vault.execute("delete from prep.street_lines where standardiser <> ?", [STANDARDISER])
    new = vault.execute(f"select line, unit from ({STREET_LINES_SQL}) "
                        "except select line, unit from prep.street_lines").fetchall()
    if new:
        rows = pa.table({
            "line": [line for line, _ in new], "unit": [unit for _, unit in new],
            "dwelling": [address_key(line, unit) for line, unit in new],
            "building": [std_address(line, unit)[0] for line, unit in new]},
            schema=pa.schema([(c, pa.string()) for c in ("line", "unit", "dwelling", "building")]))
        vault.register("new_lines", rows)
        vault.execute("insert into prep.street_lines select *, ? from new_lines", [STANDARDISER])
        vault.unregister("new_lines")
    vault.execute(f"""
        delete from prep.street_lines as s where not exists (
            select 1 from ({STREET_LINES_SQL}) as l
            where l.line is not distinct from s.line and l.unit is not distinct from s.unit)""")
    return len(new)


def _zip5_sql(column: str) -> str:
    """linkage.standardise.std_zip in SQL: the digits, the first five, or NULL if fewer."""
    digits = f"regexp_replace(coalesce(cast({column} as varchar), ''), '[^0-9]', '', 'g')"
    return f"case when length({digits}) >= 5 then left({digits}, 5) end"


def _pseudonymised(sql: str, drop: tuple[str, ...], keyed: list[tuple[str, str, str, str]],
                   dwelling: tuple[str, str | None, str] | None = None,
                   zip_column: str | None = None) -> str:
    """`sql`'s rows without the identifying columns in `drop`, with (name, macro, kind, column)
    pseudonyms appended, then the dwelling's and building's keys and the standard ZIP of
    dwelling = (street line, unit or None, zip), or only the ZIP of `zip_column`."""
    out = [f"s.* exclude ({', '.join(drop)})" if drop else "s.*"]
    out += [f"{macro}('{kind}', s.{column}) as {name}" for name, macro, kind, column in keyed]
    join = ""
    if dwelling:
        line, unit, zip_col = dwelling
        out += ["pseudonym('dwelling', d.dwelling) as address_key",
                "pseudonym('building', d.building) as building_key",
                f"{_zip5_sql('s.' + zip_col)} as zip5"]
        join = (" left join prep.street_lines as d on d.line is not distinct from s." + line
                + " and d.unit is not distinct from " + (f"s.{unit}" if unit else "null"))
    elif zip_column:
        out.append(f"{_zip5_sql('s.' + zip_column)} as zip5")
    return f"select {', '.join(out)} from ({sql}) as s{join}"


def _table(vault: duckdb.DuckDBPyConnection, sql: str) -> pa.Table:
    """The rows of `sql` as Arrow, dates as timestamps (the type the warehouse has always had)."""
    rel = vault.sql(sql)
    cols = [f'cast("{c}" as timestamp) as "{c}"' if str(t) == "DATE" else f'"{c}"'
            for c, t in zip(rel.columns, rel.types, strict=True)]
    return vault.sql(f"select {', '.join(cols)} from ({sql}) as q").to_arrow_table()


# the feeds whose src tables are written out above (ages, dwellings, typed pseudonyms); any
# other person-bearing feed gets a src table derived from its declaration (declared_source)
HAND_WRITTEN = {"health__blood_lead", "housing__residents", "schools__enrollment",
                "providers__services"}


def declared_source(vault: duckdb.DuckDBPyConnection, feed: Feed) -> pa.Table:
    """A person-bearing feed's pseudonymous source from its declaration alone: every field not
    flagged `pii`, the person_id, the extract date, and the record as a keyed pseudonym.
    Runs inside `pseudonyms_in` (the `pseudonym` macro)."""
    assert feed.person is not None
    kept = [c.lower() for c, _ in vault_columns(feed)
            if not next((f.pii for f in feed.fields if f.column == c), False)
            and c not in feed.person.key]
    sql = (f"select {feed.record_key_sql('r')} as record_key, x.person_id, "
           + "".join(f"r.{c}, " for c in kept)
           + f"r._extract_date as extract_date from raw.{feed.name} as r "
           f"join linkage.person_crosswalk as x on x.source = '{feed.person.source}' "
           f"and x.record_key = {feed.record_key_sql('r')}")
    return _table(vault, f"select pseudonym('{feed.name}', s.record_key) as record_pseudonym, "
                         f"s.* exclude (record_key) from ({sql}) as s")


def iter_sources(vault: duckdb.DuckDBPyConnection, key: bytes,
                 feeds: tuple[Feed, ...] = FEEDS) -> Iterator[tuple[str, pa.Table]]:
    """Read the vault and give the pseudonymous src tables (nothing identifiable left), each
    as soon as it is built: (src table name, its rows)."""
    check_key(vault, key)  # a run with another key stops here, before any pseudonym changes
    refresh_street_lines(vault)
    # the episode anchor alert ids are built on: unchanged when the key is rotated
    with pseudonyms_in(vault, pseudonym=key, anchor=anchor_salt(vault)):
        yield "health_tests", _table(vault, _pseudonymised(
            HEALTH_SQL, ("test_id", "pat_address", "pat_zip"),
            [("test_uid", "anchor", "test-anchor", "test_id"),
             ("test_key", "pseudonym", "test", "test_id")],
            dwelling=("pat_address", None, "pat_zip")))
        yield "housing_inspections", _table(vault, _pseudonymised(
            INSPECTIONS_SQL, ("inspection_id", "address", "unit", "zip"),
            [("inspection_key", "pseudonym", "inspection", "inspection_id")],
            dwelling=("address", "unit", "zip")))
        yield "housing_residents", _table(vault, _pseudonymised(
            RESIDENTS_SQL, ("household_id", "address", "unit", "zip"),
            [("household_key", "pseudonym", "household", "household_id")],
            dwelling=("address", "unit", "zip")))
        yield "schools_enrollment", _table(vault, _pseudonymised(
            ENROLLMENT_SQL, ("studentid", "zip"),
            [("student_key", "pseudonym", "student", "studentid")], zip_column="zip"))
        yield "provider_services", _table(vault, _pseudonymised(
            SERVICES_SQL, ("record_key",), [("service_key", "pseudonym", "service", "record_key")]))
        yield "provider_contracts", _table(vault, CONTRACTS_SQL)
        yield "alert_feedback", _table(vault, FEEDBACK_SQL)
        # the data lab matches on sex; the birth date stays in the vault (ages come in months)
        yield "persons", _table(vault, "select person_id, sex from linkage.persons")
        for f in person_feeds(feeds):
            if f.name not in HAND_WRITTEN:
                yield f.name, declared_source(vault, f)


def build_sources(vault: duckdb.DuckDBPyConnection, key: bytes,
                  feeds: tuple[Feed, ...] = FEEDS) -> dict[str, pa.Table]:
    """Every pseudonymous src table at once: {name: rows}."""
    return dict(iter_sources(vault, key, feeds))


def write_sources(warehouse: duckdb.DuckDBPyConnection,
                  tables: Mapping[str, pa.Table] | Iterator[tuple[str, pa.Table]]
                  ) -> dict[str, int]:
    """Replace the src tables in one transaction; returns each one's row count. Given them as
    they are built (`iter_sources`), each is written while the next is built, on the other
    core: writing took a third of the step at 1M people."""
    pairs = iter(tables.items()) if isinstance(tables, Mapping) else _built_ahead(tables)
    counts: dict[str, int] = {}
    warehouse.execute("create schema if not exists src")
    warehouse.execute("begin transaction")
    try:
        for name, frame in pairs:
            warehouse.register("frame", frame)
            warehouse.execute(f"create or replace table src.{name} as select * from frame")
            warehouse.unregister("frame")
            counts[name] = frame.num_rows
        warehouse.execute("commit")
    except BaseException:
        warehouse.execute("rollback")
        raise
    finally:
        if hasattr(pairs, "close"):
            pairs.close()
    return counts


def _built_ahead(pairs: Iterator[tuple[str, pa.Table]]) -> Iterator[tuple[str, pa.Table]]:
    """`pairs`, produced in a thread of their own one item ahead of the caller. If the caller
    stops early, the producer stops at its next item and is waited for, so nothing runs on
    after the caller's connections close; its error is raised here."""
    handoff: queue.Queue = queue.Queue(maxsize=1)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in pairs:
                while not stop.is_set():
                    try:
                        handoff.put(("item", item), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    break
            else:
                handoff.put(("done", None))
        except BaseException as exc:  # noqa: BLE001 (raised in the caller)
            handoff.put(("error", exc))
        finally:
            close = getattr(pairs, "close", None)
            if close is not None:
                close()

    producer = threading.Thread(target=produce, name="plumbline-src-build", daemon=True)
    producer.start()
    try:
        while True:
            kind, value = handoff.get()
            if kind == "item":
                yield value
            elif kind == "error":
                raise value
            else:
                return
    finally:
        stop.set()
        while producer.is_alive():
            with contextlib.suppress(queue.Empty):
                handoff.get(timeout=0.1)
        producer.join()
