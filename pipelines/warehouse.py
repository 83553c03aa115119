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
import re
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import NamedTuple

import duckdb
import pyarrow as pa

from linkage import standardise
from linkage.standardise import address_key, std_address
from pipelines.feeds import (
    ENROLLMENT,
    FEEDS,
    HEALTH,
    INSPECTIONS,
    RESIDENTS,
    SERVICES,
    Feed,
    delivery_counts_sql,
    person_feeds,
    vault_columns,
)
from pipelines.keys import anchor_salt, check_key
from pipelines.keys import fingerprint as key_fingerprint
from pipelines.stores import has_table

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

# every (street line, unit) a src table turns into dwelling and building keys: feed, line, unit
STREET_LINE_COLUMNS = (("health__blood_lead", "pat_address", "cast(null as varchar)"),
                       ("housing__inspections", "address", "unit"),
                       ("housing__residents", "address", "unit"))


def street_lines_sql(only_in: str | None = None) -> str:
    """The distinct (line, unit) pairs of the feeds' rows; with `only_in` (a table of feed and
    delivery_id), of those deliveries' rows only."""
    return "\nunion ".join(
        f"select {line} as line, {unit} as unit from raw.{feed}"
        + (f" where _delivery_id in (select delivery_id from {only_in} where feed = '{feed}')"
           if only_in else "")
        for feed, line, unit in STREET_LINE_COLUMNS)


STREET_LINES_SQL = street_lines_sql()


def refresh_street_lines(vault: duckdb.DuckDBPyConnection, only_in: str | None = None) -> int:
    """Standardise the street lines not yet in prep.street_lines; drop the ones no source
    holds any more, and all of them when the standardiser changed. Returns how many were new.

    `only_in` (a table of feed and delivery_id): the deliveries new since the last refresh,
    when the deliveries it saw are all still there as they were and the standardiser is the
    same: only their lines can be new, and no line can have gone."""
    vault.execute(STREET_LINES_DDL)
    vault.execute("delete from prep.street_lines where standardiser <> ?", [STANDARDISER])
    new = vault.execute(f"select line, unit from ({street_lines_sql(only_in)}) "
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
    if only_in is not None:
        return len(new)
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


@dataclass(frozen=True)
class Source:
    """One src table: the vault's rows it is made of (identifiable columns still in), how they
    are pseudonymised, and, for a table read from a feed's deliveries, the unit its rows are
    replaced by when a record moves (one test's versions, one household's members, one
    student's enrollments): its value over the raw row, and its pseudonym in the table."""

    name: str
    sql: str
    pseudonymise: Callable[[str], str] = lambda sql: sql
    feed: Feed | None = None  # None: the table is made whole every run
    unit_raw: str = ""  # the unit, as SQL over the feed's raw row `r`
    unit_key: str = ""  # its pseudonym column in the src table
    unit_kind: str = ""  # the pseudonym's kind

    def select(self, only_changed: bool = False) -> str:
        """The src table's rows; with `only_changed`, only those of the deliveries not yet in
        (`_src_new`) and every row of the units in `_src_units`."""
        sql = self.sql
        if only_changed:
            assert self.feed is not None
            raw = f"raw.{self.feed.name}"
            assert len(re.findall(rf"\b{re.escape(raw)}\b", sql)) == 1, (self.name, sql)
            sql = re.sub(rf"\b{re.escape(raw)}\b", (
                f"(select * from {raw} as r where r._delivery_id in (select delivery_id from "
                f"_src_new where src = '{self.name}') or {self.unit_raw} in "
                "(select u from _src_units))"), sql)
        return self.pseudonymise(sql)


def sources(feeds: tuple[Feed, ...] = FEEDS) -> list[Source]:
    """Every src table, in the order they are built."""
    out = [
        Source("health_tests", HEALTH_SQL, partial(
            _pseudonymised, drop=("test_id", "pat_address", "pat_zip"),
            keyed=[("test_uid", "anchor", "test-anchor", "test_id"),
                   ("test_key", "pseudonym", "test", "test_id")],
            dwelling=("pat_address", None, "pat_zip")),
            HEALTH, "r.test_id", "test_key", "test"),
        Source("housing_inspections", INSPECTIONS_SQL, partial(
            _pseudonymised, drop=("inspection_id", "address", "unit", "zip"),
            keyed=[("inspection_key", "pseudonym", "inspection", "inspection_id")],
            dwelling=("address", "unit", "zip")),
            INSPECTIONS, "r.inspection_id", "inspection_key", "inspection"),
        Source("housing_residents", RESIDENTS_SQL, partial(
            _pseudonymised, drop=("household_id", "address", "unit", "zip"),
            keyed=[("household_key", "pseudonym", "household", "household_id")],
            dwelling=("address", "unit", "zip")),
            RESIDENTS, "r.household_id", "household_key", "household"),
        Source("schools_enrollment", ENROLLMENT_SQL, partial(
            _pseudonymised, drop=("studentid", "zip"),
            keyed=[("student_key", "pseudonym", "student", "studentid")], zip_column="zip"),
            ENROLLMENT, "r.studentid", "student_key", "student"),
        Source("provider_services", SERVICES_SQL, partial(
            _pseudonymised, drop=("record_key",),
            keyed=[("service_key", "pseudonym", "service", "record_key")]),
            SERVICES, SERVICES.record_key_sql("r"), "service_key", "service"),
        Source("provider_contracts", CONTRACTS_SQL),
        Source("alert_feedback", FEEDBACK_SQL),
        # the data lab matches on sex; the birth date stays in the vault (ages come in months)
        Source("persons", "select person_id, sex from linkage.persons"),
    ]
    for f in person_feeds(feeds):
        if f.name not in HAND_WRITTEN:
            out.append(declared_source(f))
    return out


def declared_source(feed: Feed) -> Source:
    """A person-bearing feed's pseudonymous source from its declaration alone: every field not
    flagged `pii`, the person_id, the extract date, and the record as a keyed pseudonym."""
    assert feed.person is not None
    kept = [c.lower() for c, _ in vault_columns(feed)
            if not next((f.pii for f in feed.fields if f.column == c), False)
            and c not in feed.person.key]
    sql = (f"select {feed.record_key_sql('r')} as record_key, x.person_id, "
           + "".join(f"r.{c}, " for c in kept)
           + f"r._extract_date as extract_date from raw.{feed.name} as r "
           f"join linkage.person_crosswalk as x on x.source = '{feed.person.source}' "
           f"and x.record_key = {feed.record_key_sql('r')}")
    return Source(feed.name, sql, lambda s: (
        f"select pseudonym('{feed.name}', s.record_key) as record_pseudonym, "
        f"s.* exclude (record_key) from ({s}) as s"),
        feed, feed.record_key_sql("r"), "record_pseudonym", feed.name)


class Built(NamedTuple):
    """A src table's rows as built: the whole table, or (`units` given) rows to add, after
    every row of the units in `units` (their pseudonyms, in column `unit_key`) is removed."""

    name: str
    rows: pa.Table
    unit_key: str = ""
    units: pa.Table | None = None


def iter_sources(vault: duckdb.DuckDBPyConnection, key: bytes,
                 feeds: tuple[Feed, ...] = FEEDS) -> Iterator[tuple[str, pa.Table]]:
    """Read the vault and give the pseudonymous src tables (nothing identifiable left), each
    as soon as it is built: (src table name, its rows)."""
    check_key(vault, key)  # a run with another key stops here, before any pseudonym changes
    refresh_street_lines(vault)
    # the episode anchor alert ids are built on: unchanged when the key is rotated
    with pseudonyms_in(vault, pseudonym=key, anchor=anchor_salt(vault)):
        for source in sources(feeds):
            yield source.name, _table(vault, source.select())


def build_sources(vault: duckdb.DuckDBPyConnection, key: bytes,
                  feeds: tuple[Feed, ...] = FEEDS) -> dict[str, pa.Table]:
    """Every pseudonymous src table at once: {name: rows}."""
    return dict(iter_sources(vault, key, feeds))


# ---------------------------------------------------------------- a week's src tables
#
# A weekly run rebuilt every src table from the vault, keyed pseudonyms and all, though few of
# their rows change in a week. The vault now keeps what the warehouse's src tables were last
# built from (prep.src_basis: each linked record's person_id and that person's birth date, the
# two things a row takes from linkage; prep.src_deliveries: the deliveries each table holds,
# with their row counts), and a run makes only the units that changed: those with a row from a
# delivery not yet in, or a record whose person or birth date changed, or that joined or left
# the crosswalk. Everything is made whole again when the pseudonym key, the anchor, the street
# standardiser or any table's SQL changed, when a delivery a table holds changed, or when the
# warehouse is not the one the vault's record describes (its build id, in meta.src_build).

PREP_DDL = """
create schema if not exists prep;
create table if not exists prep.src_basis (
    source varchar, record_key varchar, person_id varchar, birth_date date);
create table if not exists prep.src_deliveries (src varchar, delivery_id varchar, n bigint);
create table if not exists prep.src_state (fingerprint varchar, build_id varchar);
"""

BASIS_SQL = """
select x.source, x.record_key, x.person_id, p.birth_date
from linkage.person_crosswalk as x left join linkage.persons as p on p.person_id = x.person_id
"""


def _fingerprint(vault: duckdb.DuckDBPyConnection, key: bytes, made: list[Source]) -> str:
    """What every src row depends on besides the vault's rows and linkage: the key (by its
    fingerprint, never the key), the anchor, the street standardiser and each table's SQL."""
    h = hashlib.sha256()
    h.update(key_fingerprint(key).encode())
    h.update(hashlib.sha256(anchor_salt(vault)).digest())
    h.update(STANDARDISER.encode())
    for s in made:
        h.update(f"\x1e{s.name}\x1f{s.select()}\x1f{s.select(True) if s.feed else ''}\x1f"
                 f"{s.unit_raw}".encode())
    return h.hexdigest()[:32]


def _warehouse_build(warehouse: duckdb.DuckDBPyConnection, names: list[str]) -> str | None:
    """The warehouse's src build id, if it holds every src table as a table of its own."""
    found = {t for (t,) in warehouse.execute(
        "select table_name from information_schema.tables where table_schema = 'src' "
        "and table_type = 'BASE TABLE'").fetchall()}
    if not set(names) <= found or not has_table(warehouse, "meta", "src_build"):
        return None
    row = warehouse.execute("select build_id from meta.src_build").fetchone()
    return row[0] if row else None


def refresh_sources(vault: duckdb.DuckDBPyConnection, warehouse: duckdb.DuckDBPyConnection,
                    key: bytes, feeds: tuple[Feed, ...] = FEEDS) -> dict[str, dict[str, int]]:
    """Bring the warehouse's src tables up to the vault: whole the first time and whenever
    what they are built on changed, else only the units that changed (see above). Each table
    is written while the next is built, in one transaction. Returns per table its `rows` and
    the rows `written` this run."""
    check_key(vault, key)  # a run with another key stops here, before any pseudonym changes
    vault.execute(PREP_DDL)
    made = sources(feeds)
    names = [s.name for s in made]
    with pseudonyms_in(vault, pseudonym=key, anchor=anchor_salt(vault)):
        fp = _fingerprint(vault, key, made)
        state = vault.execute("select fingerprint, build_id from prep.src_state").fetchone()
        vault.execute("create or replace temp table _src_deliveries_now as "
                      + delivery_counts_sql([(s.name, s.feed.name) for s in made if s.feed],
                                            "src"))
        incremental = (state is not None and state[0] == fp
                       and state[1] == _warehouse_build(warehouse, names)
                       and not vault.execute(  # a delivery a table holds, changed or gone
                           "select 1 from (select * from prep.src_deliveries except "
                           "select * from _src_deliveries_now) limit 1").fetchall())
        try:
            if incremental:
                vault.execute("""
                    create or replace temp table _src_new as
                    select src, delivery_id from _src_deliveries_now
                    except select src, delivery_id from prep.src_deliveries""")
            # the street lines: only the new deliveries' when the src tables are made by what
            # changed (every delivery they hold still there, the standardiser the same)
            feed_of = {s.name: s.feed.name for s in made if s.feed}
            if incremental and {f for f, _, _ in STREET_LINE_COLUMNS} <= set(feed_of.values()):
                vault.execute("create or replace temp table _street_new as select f.feed, "
                              "n.delivery_id from _src_new as n join (select unnest(?) as src, "
                              "unnest(?) as feed) as f on f.src = n.src",
                              [list(feed_of), list(feed_of.values())])
                refresh_street_lines(vault, "_street_new")
            else:
                refresh_street_lines(vault)
            if incremental:
                # the records whose person or birth date changed, or that joined or left
                vault.execute(f"""
                    create or replace temp table _src_moved as
                    select coalesce(n.source, b.source) as source,
                           coalesce(n.record_key, b.record_key) as record_key
                    from ({BASIS_SQL}) as n full join prep.src_basis as b
                      on b.source = n.source and b.record_key = n.record_key
                    where n.record_key is null or b.record_key is null
                       or n.person_id is distinct from b.person_id
                       or n.birth_date is distinct from b.birth_date""")
            else:
                vault.execute(f"create or replace temp table _src_basis_now as {BASIS_SQL}")
            build = {"id": state[1] if incremental else None}
            touched: list[str] = []  # the tables made from deliveries that were written

            def stamp(wh: duckdb.DuckDBPyConnection) -> None:
                # a new build id whenever such a table changed: the vault's record of what the
                # tables hold is written with it, after the warehouse commits
                if build["id"] is None or touched:
                    build["id"] = uuid.uuid4().hex
                    wh.execute("create schema if not exists meta")
                    wh.execute("create or replace table meta.src_build as "
                               "select ? as build_id", [build["id"]])

            written = write_sources(warehouse, _made(vault, made, incremental, touched), stamp)
            vault.execute("begin transaction")
            try:
                if incremental:  # the basis moves by the records that moved
                    vault.execute("delete from prep.src_basis where (source, record_key) in "
                                  "(select (source, record_key) from _src_moved)")
                    vault.execute(f"insert into prep.src_basis select * from ({BASIS_SQL}) "
                                  "where (source, record_key) in "
                                  "(select (source, record_key) from _src_moved)")
                else:
                    vault.execute("create or replace table prep.src_basis as "
                                  "select * from _src_basis_now")
                vault.execute("create or replace table prep.src_deliveries as "
                              "select * from _src_deliveries_now")
                vault.execute("delete from prep.src_state")
                vault.execute("insert into prep.src_state values (?, ?)", [fp, build["id"]])
                vault.execute("commit")
            except BaseException:
                vault.execute("rollback")
                raise
        finally:
            for t in ("_src_basis_now", "_src_deliveries_now", "_src_moved", "_src_new",
                      "_src_units", "_street_new"):
                vault.execute(f"drop table if exists temp.{t}")
    return {name: {"rows": int(warehouse.execute(f"select count(*) from src.{name}")
                               .fetchall()[0][0]), "written": written.get(name, 0)}
            for name in names}


def _made(vault: duckdb.DuckDBPyConnection, made: list[Source], incremental: bool,
          touched: list[str]) -> Iterator[Built]:
    """Each src table as built: whole, or (incremental) the units that changed, if any; the
    tables made from deliveries that are given are named in `touched`."""
    for source in made:
        if not incremental or source.feed is None:
            if source.feed is not None:
                touched.append(source.name)
            yield Built(source.name, _table(vault, source.select()))
            continue
        feed = source.feed
        # the units whose rows change: those of records that moved person or birth date, or
        # joined or left the crosswalk (a delivery not yet in only adds rows)
        vault.execute(
            "create or replace temp table _src_units as " + (
                f"select distinct {source.unit_raw} as u from raw.{feed.name} as r where "
                f"{feed.record_key_sql('r')} in (select record_key from _src_moved where "
                f"source = '{feed.person.source}')" if feed.person else
                "select null::varchar as u where false"))
        blank = vault.execute("select count(*) from _src_units where u is null").fetchall()[0][0]
        if blank:  # a row without its unit cannot be replaced by it: the whole table
            touched.append(source.name)
            yield Built(source.name, _table(vault, source.select()))
            continue
        rows = _table(vault, source.select(only_changed=True))
        units = vault.sql(f"select pseudonym('{source.unit_kind}', u) as k "
                          "from _src_units").to_arrow_table()
        if rows.num_rows or units.num_rows:
            touched.append(source.name)
            yield Built(source.name, rows, source.unit_key, units)


def write_sources(warehouse: duckdb.DuckDBPyConnection,
                  tables: Mapping[str, pa.Table] | Iterator[tuple[str, pa.Table]] | Iterator[Built],
                  stamp: Callable[[duckdb.DuckDBPyConnection], None] | None = None,
                  ) -> dict[str, int]:
    """Replace the src tables, or the units of them given (`Built`), in one transaction;
    returns the rows written to each. Given them as they are built (an iterator), each is
    written while the next is built, on the other core: writing took a third of the step at
    1M people. `stamp(warehouse)` runs last, inside the transaction."""
    pairs = iter(tables.items()) if isinstance(tables, Mapping) else _built_ahead(tables)
    counts: dict[str, int] = {}
    warehouse.execute("create schema if not exists src")
    warehouse.execute("begin transaction")
    try:
        for item in pairs:
            built = item if isinstance(item, Built) else Built(*item)
            warehouse.register("frame", built.rows)
            if built.units is None:
                warehouse.execute(f"create or replace table src.{built.name} as "
                                  "select * from frame")
            else:
                if built.units.num_rows:
                    warehouse.register("units", built.units)
                    warehouse.execute(f"delete from src.{built.name} where {built.unit_key} "
                                      "in (select k from units)")
                    warehouse.unregister("units")
                warehouse.execute(f"insert into src.{built.name} by name select * from frame")
            warehouse.unregister("frame")
            counts[built.name] = built.rows.num_rows
        if stamp is not None:
            stamp(warehouse)
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
