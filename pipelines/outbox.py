"""Writing each organisation's alert list: the only place where pseudonymous alerts meet identities.

The alerts come from the warehouse (pseudonymous), each with exactly one owner
(`marts.lead_alerts.assigned_organisation`: health, housing, schools, or the provider that
serves the child). Identities come from the vault at the moment the list is written, and only
into that organisation's own folder, `outbox/<organisation>/`. Which columns each kind of list
shows, and their labels, is data: `seeds/list_columns.csv` (list, source, column, label). A
*source* is one way of describing the child to that organisation with what it sent itself:

- `health_test`: health's own test (the one the alert started from), as the lab reported it.
- `dwelling`: the home to inspect: the confirming test's street line, else the child's address
  in another record as of that date (marked with where it came from), else "address unknown".
- `housing_roster`: housing's own roster ids and names, when housing knows the child.
- `school_student`: the district's own student id, name, grade and school.
- `provider_client`: that provider's own client record (never another provider's).
- `referral`: for an alert routed to an organisation that does not know the child, what making
  contact needs, from the confirming test.

Each list opens with what is new since that organisation's last list, then what fell due this
week, then the backlog; a weekly capacity (`seeds/agency_lists.csv`) holds back the rest, and
the count held back is shown. Beside each list: a printable page, a JSON summary and a feedback
template. Every list is logged in the vault (which alert ids, never identities) before its
files are written, so feedback on a list that reached the partner is always recognised.
"""

from __future__ import annotations

import csv
import getpass
import json
import os
import socket
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

import duckdb
import pandas as pd

from pipelines.csvsafe import atomic_text, write_csv
from pipelines.feeds import (
    ENROLLMENT,
    FEEDBACK,
    FEEDS,
    HEALTH,
    ORGANISATION_CODE,
    RESIDENTS,
    SERVICES,
    Feed,
    person_feeds,
)
from pipelines.freshness import stale_by_agency
from pipelines.pages import render
from pipelines.stores import SEEDS_DIR as SEEDS
from pipelines.stores import Settings, connect, has_table, warehouse_lock
from pipelines.warehouse import pseudonyms_in

KINDS = ("health", "housing", "schools")  # any other organisation is a provider

SECTIONS = ("NEW", "DUE_THIS_WEEK", "BACKLOG")
SECTION_TITLES = {"NEW": "New since your last list", "DUE_THIS_WEEK": "Fell due this week",
                  "BACKLOG": "Backlog"}
DUE_THIS_WEEK_DAYS = 7

# ties (same section, band and days overdue) in a fixed order: a re-run writes the same bytes
URGENCY = ["section_order", "band_order", "days_overdue", "alert_id"]
URGENCY_ASCENDING = [True, True, False, True]

COMMON_COLUMNS = ["alert_id", "section", "rule_code", "band", "due_date", "days_overdue",
                  "reason", "next_step", "is_referral", "contact_attempts",
                  "last_feedback_status"]
# the feedback template is the feedback feed's own columns, its statuses the feed's codes
FEEDBACK_COLUMNS = FEEDBACK.columns
FEEDBACK_STATUSES = tuple(sorted(next(f.codes or () for f in FEEDBACK.fields
                                       if f.column == "status")))

OPEN_ALERTS = f"""
create or replace temp table open_alerts as
select a.*, p.record_key as evidence_test_id, s.record_key as evidence_student_id
from wh.marts.lead_alerts as a
left join record_map as p
  on p.kind = 'test' and p.pseudonym = a.evidence_test_key
left join record_map as s
  on s.kind = 'student' and s.pseudonym = a.evidence_student_key
where a.status = 'OPEN';

-- the latest version of each test an open alert stands on (the lists read no other)
create or replace temp table latest_tests as
select * from raw.health__blood_lead
where test_id in (select evidence_test_id from open_alerts)
{HEALTH.latest_version_sql()};
"""


def _contract_columns(alias: str, feed: Feed) -> str:
    """A vault row's columns under the contract's own names (the partner's headers)."""
    return ", ".join(f'{alias}.{c.lower()} as "{c}"' for c in feed.columns)


def _elsewhere(feeds: tuple[Feed, ...]) -> str:
    """The child's street line in every other person-bearing feed, dated: where the home to
    inspect comes from when the confirming test has none (from the declarations, so a new
    feed's addresses count too). Read inside the `dwelling` source, for its `on_test`."""
    parts = []
    for feed in person_feeds(feeds):
        p = feed.person
        assert p is not None
        line, unit, zip_ = (p.column(r) for r in ("street_line", "unit", "zip"))
        if feed is HEALTH or not line:
            continue
        text = f"r.{line.lower()}" + (
            f" || coalesce(' #' || nullif(trim(r.{unit.lower()}), ''), '')" if unit else "")
        seen = f"r.{(p.dated_by or '_extract_date').lower()}"
        label = (p.described_as or feed.name).replace("'", "''")
        parts.append(
            f"            select x.person_id, {text} as line, "
            f"{'r.' + zip_.lower() if zip_ else 'null'} as zip, {seen} as seen, "
            f"'{label}' as found_in\n"
            f"            from linkage.person_crosswalk as x join raw.{feed.name} as r\n"
            f"              on x.source = '{p.source}' and x.record_key = "
            f"{feed.record_key_sql('r')}\n"
            # only the children whose confirming test has no street line (a few hundred of a
            # 1M city's, against every record of every child)
            f"            where x.person_id in (select person_id from on_test where line is null)")
    return "\n            union all\n".join(parts) or (
        "            select null as person_id, null as line, null as zip, "
        "null::date as seen, null as found_in where false")


def list_sources(feeds: tuple[Feed, ...] = FEEDS) -> dict[str, str]:
    """Each source: (alert_id, columns...) for the alerts in org_alerts (one organisation's)."""
    return {
    "health_test": f"""
        select a.alert_id, {_contract_columns('t', HEALTH)}
        from org_alerts as a join latest_tests as t on t.test_id = a.evidence_test_id""",
    "housing_roster": f"""
        select a.alert_id, {_contract_columns('r', RESIDENTS)}
        from org_alerts as a
        join linkage.person_crosswalk as x on x.person_id = a.person_id and x.source = 'housing'
        join raw.housing__residents as r on x.record_key = {RESIDENTS.record_key_sql('r')}
        qualify row_number() over (partition by a.alert_id
                                   order by r._extract_date desc, r._line desc) = 1""",
    "school_student": f"""
        select a.alert_id, {_contract_columns('e', ENROLLMENT)}
        from org_alerts as a join raw.schools__enrollment as e
          on e.studentid = a.evidence_student_id
        qualify row_number() over (partition by a.alert_id
                                   order by e._extract_date desc, e._line desc) = 1""",
    "provider_client": f"""
        select a.alert_id, {_contract_columns('s', SERVICES)}
        from org_alerts as a
        join linkage.person_crosswalk as x on x.person_id = a.person_id and x.source = 'providers'
        join raw.providers__services as s
          on x.record_key = {SERVICES.record_key_sql('s')}
         and s.provider_code = $organisation
        qualify row_number() over (partition by a.alert_id
                                   order by s.service_date desc, s._extract_date desc,
                                            s._line desc) = 1""",
    "referral": """
        select a.alert_id, 'health department (confirming test)' as referral_from,
               t.pat_first_name as referral_first_name, t.pat_last_name as referral_last_name,
               t.pat_dob as referral_dob, t.pat_address as referral_address,
               t.pat_zip as referral_zip, t.guardian_name as referral_guardian
        from org_alerts as a join latest_tests as t on t.test_id = a.evidence_test_id
        where a.is_referral""",
    "dwelling": f"""
        with on_test as (
            select a.alert_id, a.person_id, a.episode_date,
                   nullif(trim(t.pat_address), '') as line, t.pat_zip as zip
            from org_alerts as a left join latest_tests as t on t.test_id = a.evidence_test_id
        ),
        elsewhere as (
{_elsewhere(feeds)}
        ),
        nearest as (
            -- the nearest non-blank line (blank ones last, and dropped after the pick: so the
            -- blank test is made on the few rows joined, not on every row of every feed)
            select * from (
                select t.alert_id, o.line, o.zip, o.found_in, o.seen
                from on_test as t join elsewhere as o on o.person_id = t.person_id
                where t.line is null
                qualify row_number() over (
                    partition by t.alert_id
                    order by nullif(trim(o.line), '') is null, (o.seen <= t.episode_date) desc,
                             abs(date_diff('day', o.seen, t.episode_date)), o.found_in,
                             o.line) = 1
            ) as picked
            where nullif(trim(line), '') is not null
        )
        select t.alert_id,
               coalesce(t.line, n.line, 'address unknown') as address_to_inspect,
               case when t.line is not null then t.zip else coalesce(n.zip, t.zip) end as zip,
               case when t.line is not null then 'the confirming blood lead test'
                    when n.line is not null
                        then n.found_in || ' (' || strftime(n.seen, '%Y-%m-%d') || ')'
                    else 'no street line in any record: ask the health department''s case '
                         || 'manager or the child''s doctor for the home address'
               end as address_from
        from on_test as t left join nearest as n using (alert_id)""",
    }


SOURCES = list_sources()


@dataclass(frozen=True)
class ListColumn:
    source: str
    column: str
    label: str


def list_columns() -> dict[str, list[ListColumn]]:
    """Each kind of list's identity columns, in order, from seeds/list_columns.csv."""
    out: dict[str, list[ListColumn]] = {}
    with open(SEEDS / "list_columns.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            if row["source"] not in SOURCES:
                raise ValueError(f"seeds/list_columns.csv names an unknown source "
                                 f"{row['source']!r}; known: {', '.join(SOURCES)}")
            out.setdefault(row["list"], []).append(
                ListColumn(row["source"], row["column"], row["label"]))
    return out


def kind_of(organisation: str) -> str:
    """The kind of list an organisation gets: health, housing, schools, or provider."""
    return organisation if organisation in KINDS else "provider"


def agency_of(organisation: str) -> str:
    """The agency an organisation belongs to, as rules and feeds name it."""
    return organisation if organisation in KINDS else "providers"


def weekly_capacity(organisation: str, overrides: str = "") -> int:
    """An organisation's cap: its own seed row, else its agency's, overridden by the
    deployment's setting (PLUMBLINE_WEEKLY_CAPACITY, "providers=25,HHN=10"); 0 means no cap."""
    with open(SEEDS / "agency_lists.csv", newline="") as fh:
        caps = {r["organisation"]: int(r["weekly_capacity"]) for r in csv.DictReader(fh)}
    for part in filter(None, overrides.split(",")):
        name, _, value = part.partition("=")
        caps[name.strip()] = int(value)
    return caps.get(organisation, caps.get(agency_of(organisation), 0))


def list_query(kind: str, columns: list[ListColumn], feeds: tuple[Feed, ...] = FEEDS) -> str:
    """The one templated query behind every list: the organisation's open alerts, joined to
    each source its seed rows name, showing those columns under their names."""
    sql = list_sources(feeds)
    sources = list(dict.fromkeys(c.source for c in columns))
    joins = "\n".join(f"left join ({sql[s]}) as src_{s} using (alert_id)" for s in sources)
    picked = ", ".join(f'src_{c.source}."{c.column}"' for c in columns)
    return f"""
        select a.alert_id, a.rule_code, a.band, a.due_date, a.days_overdue, a.reason,
               a.next_step, a.is_referral, a.contact_attempts, a.last_feedback_status,
               a.is_old_episode{', ' + picked if picked else ''}
        from org_alerts as a
        {joins}
    """


@dataclass
class AgencyList:
    organisation: str
    as_of: date
    rows: pd.DataFrame
    capacity: int
    stale: list[str]
    held_back: dict[str, int] = field(default_factory=dict)
    columns: list[ListColumn] = field(default_factory=list)

    @property
    def held_back_total(self) -> int:
        return sum(self.held_back.values())

    def counts(self) -> dict[str, int]:
        return {s: int((self.rows["section"] == s).sum()) for s in SECTIONS}

    def summary(self) -> dict:
        counts = self.counts()
        return {"organisation": self.organisation, "as_of": self.as_of.isoformat(),
                "alerts_on_list": len(self.rows),
                "new_since_last_list": counts["NEW"],
                "due_this_week": counts["DUE_THIS_WEEK"],
                "backlog": counts["BACKLOG"],
                "held_back": self.held_back_total,
                "held_back_by_section": {s: self.held_back.get(s, 0) for s in SECTIONS},
                "weekly_capacity": self.capacity or None, "stale_feeds": self.stale}


def organisations(vault: duckdb.DuckDBPyConnection) -> list[str]:
    """Who gets a list: each kind with an enabled rule, every provider that sends services,
    and every organisation an open alert is assigned to."""
    with open(SEEDS / "alert_rules.csv", newline="") as fh:
        kinds = {r["assigned_agency"] for r in csv.DictReader(fh)
                 if r["enabled"].strip().lower() == "true"}
    found = {k for k in kinds if k in KINDS}
    if "providers" in kinds:
        found |= {c for (c,) in vault.execute(
            "select distinct provider_code from raw.providers__services").fetchall()}
    found |= {o for (o,) in vault.execute(
        "select distinct assigned_organisation from open_alerts").fetchall()}
    bad = sorted(o for o in found if not (o and ORGANISATION_CODE.fullmatch(o)))
    if bad:
        raise ValueError(f"{len(bad)} organisation code(s) are not plain letters and digits; "
                         "no list is written under such a name")
    return sorted(found)


def previously_listed(vault: duckdb.DuckDBPyConnection, organisation: str, as_of: date
                      ) -> set[str]:
    """Alert ids on this organisation's lists before this as-of date (a re-run on the same
    date sees the same history, so it writes the same bytes)."""
    if not has_table(vault, "delivery", "list_items"):
        return set()
    return {a for (a,) in vault.execute(
        "select alert_id from delivery.list_items where agency = ? and first_listed < ?",
        [organisation, as_of]).fetchall()}


def triage(frame: pd.DataFrame, listed_before: set[str]) -> pd.DataFrame:
    """Sections and order: new since the last list, then fell due this week, then backlog;
    within each, band D first, then the longest overdue."""
    frame = frame.copy()
    new = ~frame["alert_id"].isin(listed_before) & ~frame["is_old_episode"].astype(bool)
    this_week = frame["days_overdue"] <= DUE_THIS_WEEK_DAYS
    frame["section"] = "BACKLOG"
    frame.loc[this_week, "section"] = "DUE_THIS_WEEK"
    frame.loc[new, "section"] = "NEW"
    frame["section_order"] = frame["section"].map(SECTIONS.index)
    frame["band_order"] = frame["band"].map({"D": 1, "C": 2, "B": 3, "A": 4}).fillna(5)
    return frame.sort_values(URGENCY, ascending=URGENCY_ASCENDING).reset_index(drop=True)


def write_alert_lists(settings: Settings, feeds: tuple[Feed, ...] = FEEDS
                      ) -> dict[str, AgencyList]:
    """Write each organisation's list, page, summary and feedback template (`feeds`: the
    contract registry the lists describe children from)."""
    stamp = settings.as_of.strftime("%Y%m%d")
    by_kind = list_columns()
    written: dict[str, AgencyList] = {}
    with warehouse_lock(settings.data_dir), connect(settings.vault_path) as vault:
        vault.execute(f"attach '{settings.warehouse_path}' as wh (read_only)")
        try:
            record_map(vault, settings.pseudonym_key)
            vault.execute(OPEN_ALERTS)
            stale = stale_by_agency(vault, settings.as_of)
            for organisation in organisations(vault):
                kind = kind_of(organisation)
                columns = by_kind.get(kind, [])
                vault.execute("create or replace temp table org_alerts as select * from "
                              "open_alerts where assigned_organisation = ?", [organisation])
                frame = vault.execute(list_query(kind, columns, feeds),
                                      {"organisation": organisation}
                                      if "provider_client" in {c.source for c in columns}
                                      else None).df()
                frame = triage(frame, previously_listed(vault, organisation, settings.as_of))
                cap = weekly_capacity(organisation, settings.weekly_capacity)
                shown = frame if cap <= 0 else frame.head(cap)
                held = frame.iloc[len(shown):]["section"].value_counts().to_dict()
                listing = AgencyList(organisation, settings.as_of,
                                     shown[COMMON_COLUMNS + [c.column for c in columns]],
                                     cap, stale.get(agency_of(organisation), []),
                                     {str(k): int(v) for k, v in held.items()}, columns)
                folder = settings.outbox / organisation
                _log(vault, listing, f"alerts_{stamp}.csv")  # logged before it can be read
                write_csv(listing.rows, folder / f"alerts_{stamp}.csv")
                write_csv(feedback_template(listing), folder / f"alert_feedback_{stamp}.csv")
                atomic_text(folder / f"alerts_{stamp}.html", render_html(listing))
                atomic_text(folder / f"alerts_{stamp}.json",
                             json.dumps(listing.summary(), indent=2))
                written[organisation] = listing
        finally:
            vault.execute("detach wh")
    return written


def record_map(vault: duckdb.DuckDBPyConnection, key: bytes) -> None:
    """The pseudonym -> record map the lists need (tests, students), recomputed from the vault
    with the key at the moment a list is written, into a temporary table: it is never stored.
    The same HMAC the warehouse's sources computed (pipelines.warehouse.pseudonyms_in).

    An alert's evidence is a record of its own child, so the records of the children with open
    alerts are tried first (a tenth of a city's, or less); every record only if some evidence
    was not among them (the warehouse built from another linkage than the vault's)."""
    kinds = (("test", "test_id", "health__blood_lead", "health", "evidence_test_key"),
             ("student", "studentid", "schools__enrollment", "schools", "evidence_student_key"))

    def build(only_open: bool) -> None:
        vault.execute("create or replace temp table record_map as " + " union all ".join(
            f"select '{kind}' as kind, pseudonym('{kind}', {column}) as pseudonym, "
            f"{column} as record_key from (select distinct r.{column} from raw.{table} as r "
            + (f"join linkage.person_crosswalk as x on x.source = '{source}' and x.record_key"
               f" = r.{column} and x.person_id in (select person_id from wh.marts.lead_alerts"
               f" where status = 'OPEN' and {evidence} is not null) " if only_open else "")
            + f"where r.{column} is not null)"
            for kind, column, table, source, evidence in kinds))

    with pseudonyms_in(vault, pseudonym=key):
        build(only_open=True)
        missing = vault.execute(
            "select count(*) from wh.marts.lead_alerts as a where a.status = 'OPEN' and ("
            + " or ".join(f"(a.{evidence} is not null and not exists (select 1 from record_map"
                          f" as m where m.kind = '{kind}' and m.pseudonym = a.{evidence}))"
                          for kind, _, _, _, evidence in kinds) + ")").fetchall()[0][0]
        if missing:
            build(only_open=False)
    vault.execute("drop table if exists linkage.record_pseudonyms")  # stored by old releases


def feedback_template(listing: AgencyList) -> pd.DataFrame:
    """One row per alert on the list: the id filled in, status and note left for the team."""
    frame = pd.DataFrame({"alert_id": listing.rows["alert_id"]})
    for col in FEEDBACK_COLUMNS[1:]:
        frame[col] = ""
    return frame


def _text(value: object) -> str:
    if value is None or value is pd.NaT or (isinstance(value, float) and pd.isna(value)):
        return ""
    if isinstance(value, pd.Timestamp | datetime | date):
        return value.strftime("%Y-%m-%d")
    return str(value)




def bands() -> list[dict[str, str]]:
    with open(SEEDS / "lead_bands.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def render_html(listing: AgencyList) -> str:
    """A page a caseworker can print: sections, most urgent first, reason and next step in
    words, a footer with the organisation, date and page, and how to answer."""
    sections = []
    for s in SECTIONS:
        rows = []
        for r in listing.rows[listing.rows["section"] == s].to_dict("records"):
            who = [(c.label, _text(r.get(c.column))) for c in listing.columns
                   if _text(r.get(c.column))]
            rows.append({"alert_id": r["alert_id"], "band": _text(r["band"]),
                         "days_overdue": _text(r["days_overdue"]),
                         "due_date": _text(r["due_date"]), "who": who,
                         "reason": _text(r["reason"]), "next_step": _text(r["next_step"]),
                         "referral": bool(r.get("is_referral")),
                         "attempts": int(r.get("contact_attempts") or 0),
                         "last_status": _text(r.get("last_feedback_status"))})
        sections.append({"key": s, "title": SECTION_TITLES[s], "rows": rows,
                         "held_back": listing.held_back.get(s, 0)})
    stamp = listing.as_of.strftime("%Y%m%d")
    return render("alert_list.html.j2",
        organisation=listing.organisation, as_of=listing.as_of,
        as_of_text=f"{listing.as_of:%d %B %Y}", sections=sections, total=len(listing.rows),
        held_back=listing.held_back_total, capacity=listing.capacity, stale=listing.stale,
        bands=bands(), statuses=FEEDBACK_STATUSES,
        template_name=f"alert_feedback_{stamp}.csv",
        feedback_path=f"feedback/{listing.organisation}/alert_feedback_YYYYMMDD.csv")


def _log(vault: duckdb.DuckDBPyConnection, listing: AgencyList, file_name: str) -> None:
    """Who wrote which list when, and which alerts it carried; never the identities. One
    transaction, before the files: a list a partner can read is always known to feedback."""
    vault.execute("create schema if not exists delivery")
    vault.execute(
        "create table if not exists delivery.list_log (written_at timestamp, agency varchar, "
        "file_name varchar, as_of date, alert_count integer, alert_ids varchar[])")
    # columns added since the first release: upgrade a store in place
    for col, kind in (("written_by", "varchar"), ("held_back", "integer")):
        vault.execute(f"alter table delivery.list_log add column if not exists {col} {kind}")
    vault.execute(
        "create table if not exists delivery.list_items (alert_id varchar, agency varchar, "
        "person_id varchar, evidence_test_id varchar, first_listed date)")
    who = f"{getpass.getuser()}@{socket.gethostname()}:{os.environ.get('DAGSTER_RUN_ID', 'cli')}"
    ids = list(listing.rows["alert_id"])
    vault.execute("begin transaction")
    try:
        vault.execute(
            "insert into delivery.list_log (written_at, written_by, agency, file_name, as_of, "
            "alert_count, held_back, alert_ids) values (?, ?, ?, ?, ?, ?, ?, ?)",
            [datetime.now(UTC).replace(tzinfo=None), who, listing.organisation, file_name,
             listing.as_of, len(ids), listing.held_back_total, ids])
        vault.register("shown", pd.DataFrame({"alert_id": ids}, dtype="object"))
        vault.execute(
            "insert into delivery.list_items "
            "select a.alert_id, ?, a.person_id, a.evidence_test_id, ? from open_alerts a "
            "join shown s using (alert_id) "
            "where a.alert_id not in (select alert_id from delivery.list_items where agency = ?)",
            [listing.organisation, listing.as_of, listing.organisation])
        vault.unregister("shown")
        vault.execute("commit")
    except Exception:
        vault.execute("rollback")
        raise
