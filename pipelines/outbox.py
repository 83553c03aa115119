"""Writing each agency's alert list: the only place where pseudonymous alerts meet identities.

The alerts come from the warehouse (pseudonymous); identities come from the vault at the moment
the list is written, and only into that agency's file. An agency sees the children it can act
on, described with the identifiers it sent itself; what another agency sent appears only as far
as the reason needs it:

- health: its own test and patient, as the lab reported them.
- housing: the dwelling to inspect (from the confirming test) and, where housing knows the
  child from its own roster, its own household and member ids and names.
- providers: the provider's own client record where one exists; otherwise the referral details
  a case manager needs to reach the family (child's name, birth date and address from the
  confirming test), marked as coming from health.

Each list written is logged in the vault (when, which agency, which alert ids), never the
identities themselves.
"""

from __future__ import annotations

import csv
import getpass
import html
import io
import json
import os
import socket
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb
import pandas as pd

from pipelines.freshness import stale_by_agency
from pipelines.stores import SEEDS_DIR as SEEDS
from pipelines.stores import Settings, connect, warehouse_lock

# ties (same band, same days overdue) in a fixed order, so a re-run writes the same bytes
URGENCY = ("case band when 'D' then 1 when 'C' then 2 when 'B' then 3 else 4 end, "
           "days_overdue desc, alert_id")

ALERTS = """
create or replace temp table open_alerts as
select a.*, p.record_key as evidence_test_id
from wh.marts.lead_alerts as a
left join linkage.record_pseudonyms as p
  on p.kind = 'test' and p.pseudonym = a.evidence_test_key
where a.status = 'OPEN';

create or replace temp table latest_tests as
select * from raw.health__blood_lead
qualify row_number() over (partition by test_id
                           order by reported_date desc, _extract_date desc, _line desc) = 1;
"""

COMMON = ("a.alert_id, a.rule_code, a.band, a.due_date, a.days_overdue, a.reason, a.next_step, "
          "a.contact_attempts, a.last_feedback_status")

HEALTH = f"""
select {COMMON},
       t.test_id as "TEST_ID", t.patient_id as "PATIENT_ID",
       t.pat_first_name as "PAT_FIRST_NAME", t.pat_last_name as "PAT_LAST_NAME",
       t.pat_dob as "PAT_DOB", t.pat_address as "PAT_ADDRESS", t.pat_zip as "PAT_ZIP",
       t.guardian_name as "GUARDIAN_NAME", t.medicaid_id as "MEDICAID_ID",
       t.ordering_provider as "ORDERING_PROVIDER"
from open_alerts as a
left join latest_tests as t on t.test_id = a.evidence_test_id
where a.assigned_agency = 'health'
order by {URGENCY}
"""

HOUSING = f"""
with own as (
    select x.person_id, r.household_id, r.member_seq, r.first_name, r.last_name, r.parcel_id,
           r.address, r.unit
    from linkage.person_crosswalk as x
    join raw.housing__residents as r
      on x.source = 'housing' and x.record_key = r.household_id || '-' || r.member_seq
    qualify row_number() over (partition by x.person_id
                               order by r._extract_date desc, r._line desc) = 1
)
select {COMMON},
       t.pat_address as address_to_inspect, t.pat_zip as zip,
       o.household_id, o.member_seq, o.first_name, o.last_name, o.parcel_id,
       o.address as roster_address, o.unit as roster_unit
from open_alerts as a
left join latest_tests as t on t.test_id = a.evidence_test_id
left join own as o on o.person_id = a.person_id
where a.assigned_agency = 'housing'
order by {URGENCY}
"""

PROVIDERS = f"""
with own as (
    select x.person_id, s.provider_code, s.client_id, s.client_first_name, s.client_last_name,
           s.client_dob, s.client_address, s.client_zip
    from linkage.person_crosswalk as x
    join raw.providers__services as s
      on x.source = 'providers' and x.record_key = s.provider_code || '-' || s.record_id
    qualify row_number() over (partition by x.person_id
                               order by s.service_date desc, s._extract_date desc) = 1
)
select {COMMON},
       o.provider_code, o.client_id, o.client_first_name, o.client_last_name, o.client_dob,
       o.client_address, o.client_zip,
       case when o.client_id is null then 'health (confirming test)' end as referral_from,
       case when o.client_id is null then t.pat_first_name end as referral_first_name,
       case when o.client_id is null then t.pat_last_name end as referral_last_name,
       case when o.client_id is null then t.pat_dob end as referral_dob,
       case when o.client_id is null then t.pat_address end as referral_address,
       case when o.client_id is null then t.pat_zip end as referral_zip,
       case when o.client_id is null then t.guardian_name end as referral_guardian
from open_alerts as a
left join latest_tests as t on t.test_id = a.evidence_test_id
left join own as o on o.person_id = a.person_id
where a.assigned_agency = 'providers'
order by {URGENCY}
"""

LISTS = {"health": HEALTH, "housing": HOUSING, "providers": PROVIDERS}

# the columns naming the child on each agency's list (the rest are the alert's own)
IDENTITY_COLUMNS = {
    "health": ["TEST_ID", "PATIENT_ID", "PAT_FIRST_NAME", "PAT_LAST_NAME", "PAT_DOB",
               "PAT_ADDRESS", "PAT_ZIP", "GUARDIAN_NAME"],
    "housing": ["address_to_inspect", "zip", "household_id", "member_seq", "first_name",
                "last_name", "parcel_id"],
    "providers": ["provider_code", "client_id", "client_first_name", "client_last_name",
                  "client_dob", "client_address", "referral_from", "referral_first_name",
                  "referral_last_name", "referral_dob", "referral_address", "referral_guardian"],
}

LABELS = {
    "TEST_ID": "Test", "PATIENT_ID": "Patient", "PAT_FIRST_NAME": "First name",
    "PAT_LAST_NAME": "Last name", "PAT_DOB": "Born", "PAT_ADDRESS": "Address", "PAT_ZIP": "ZIP",
    "GUARDIAN_NAME": "Guardian", "address_to_inspect": "Home to inspect", "zip": "ZIP",
    "household_id": "Your household", "member_seq": "Member", "first_name": "First name",
    "last_name": "Last name", "parcel_id": "Parcel", "provider_code": "Provider",
    "client_id": "Your client", "client_first_name": "First name",
    "client_last_name": "Last name", "client_dob": "Born", "client_address": "Address",
    "referral_from": "Referral from", "referral_first_name": "First name",
    "referral_last_name": "Last name", "referral_dob": "Born", "referral_address": "Address",
    "referral_guardian": "Guardian",
}

@dataclass
class AgencyList:
    agency: str
    as_of: date
    rows: pd.DataFrame
    held_back: int
    capacity: int
    stale: list[str]

    def summary(self) -> dict:
        return {"agency": self.agency, "as_of": self.as_of.isoformat(),
                "alerts_on_list": len(self.rows), "held_back": self.held_back,
                "weekly_capacity": self.capacity or None, "stale_feeds": self.stale}


def weekly_capacity() -> dict[str, int]:
    """Each agency's cap: the seed, overridden by PLUMBLINE_WEEKLY_CAPACITY ("providers=25")."""
    with open(SEEDS / "agency_lists.csv", newline="") as fh:
        caps = {r["agency"]: int(r["weekly_capacity"]) for r in csv.DictReader(fh)}
    for part in filter(None, os.environ.get("PLUMBLINE_WEEKLY_CAPACITY", "").split(",")):
        agency, _, value = part.partition("=")
        caps[agency.strip()] = int(value)
    return caps


def write_alert_lists(settings: Settings) -> dict[str, int]:
    """Write each agency's list (CSV, printable HTML, JSON summary); returns rows per agency."""
    stamp = settings.as_of.strftime("%Y%m%d")
    caps = weekly_capacity()
    counts: dict[str, int] = {}
    with warehouse_lock(settings.data_dir), connect(settings.vault_path) as vault:
        vault.execute(f"attach '{settings.warehouse_path}' as wh (read_only)")
        try:
            vault.execute(ALERTS)
            stale = stale_by_agency(vault, settings.as_of)
            for agency, sql in LISTS.items():
                frame = vault.execute(sql).df()
                cap = caps.get(agency, 0)
                shown = frame if cap <= 0 else frame.head(cap)
                listing = AgencyList(agency, settings.as_of, shown, len(frame) - len(shown), cap,
                                     stale.get(agency, []))
                folder = settings.outbox / agency
                _write(shown, folder / f"alerts_{stamp}.csv")
                _atomic_text(folder / f"alerts_{stamp}.html", render_html(listing))
                _atomic_text(folder / f"alerts_{stamp}.json",
                             json.dumps(listing.summary(), indent=2))
                counts[agency] = len(shown)
                _log(vault, listing, folder / f"alerts_{stamp}.csv")
        finally:
            vault.execute("detach wh")
    return counts


def _write(frame: pd.DataFrame, path: Path) -> None:
    frame = frame.copy()
    for col in frame.columns:
        if pd.api.types.is_datetime64_any_dtype(frame[col]):
            frame[col] = frame[col].dt.strftime("%Y-%m-%d")
    buf = io.StringIO()
    frame.to_csv(buf, index=False)
    _atomic_text(path, buf.getvalue())


def _atomic_text(path: Path, text: str) -> None:
    """A partner never sees a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def _cell(value: object) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)) or value is pd.NaT:
        return ""
    if isinstance(value, pd.Timestamp):
        return value.strftime("%Y-%m-%d")
    return html.escape(str(value))


def render_html(listing: AgencyList) -> str:
    """A page a caseworker can print: most urgent first, reason and next step in words."""
    rows = []
    for r in listing.rows.to_dict("records"):
        who = "<br>".join(f"<span class=k>{LABELS[c]}</span> {_cell(r.get(c))}"
                          for c in IDENTITY_COLUMNS[listing.agency] if _cell(r.get(c)))
        attempts = int(r.get("contact_attempts") or 0)
        tried = (f"<div class=tried>{attempts} contact attempt{'s' if attempts != 1 else ''} "
                 f"so far (last: {_cell(r.get('last_feedback_status'))})</div>"
                 if attempts else "")
        rows.append(
            f"<tr class=band-{_cell(r['band'])}><td class=band>{_cell(r['band'])}</td>"
            f"<td>{_cell(r['days_overdue'])} days<br><small>due {_cell(r['due_date'])}</small>"
            f"</td><td>{who}</td><td>{_cell(r['reason'])}{tried}</td>"
            f"<td>{_cell(r['next_step'])}<div class=id>alert {_cell(r['alert_id'])}</div>"
            "</td></tr>")
    warnings = "".join(f"<p class=stale>{html.escape(s)}</p>" for s in listing.stale)
    held = (f"<p class=held>{listing.held_back} more open alert"
            f"{'s are' if listing.held_back != 1 else ' is'} held back for next week's list "
            f"(weekly capacity {listing.capacity}).</p>" if listing.held_back else "")
    title = f"Lead follow-up alerts for {listing.agency}, {listing.as_of:%d %B %Y}"
    return f"""<!doctype html>
<html lang=en><head><meta charset=utf-8><title>{html.escape(title)}</title>
<style>
body{{font-family:system-ui,sans-serif;margin:2em;color:#222}}
h1{{font-size:1.4em}} table{{border-collapse:collapse;width:100%}}
th,td{{border-bottom:1px solid #ccc;padding:.5em;vertical-align:top;text-align:left}}
td.band{{font-weight:bold;font-size:1.3em}} .band-D td.band,.band-C td.band{{color:#a00}}
.k{{color:#666;font-size:.8em}} .id{{color:#888;font-size:.75em;margin-top:.4em}}
.stale{{background:#fff3cd;border:1px solid #e0b000;padding:.6em}}
.held{{background:#eef;padding:.6em}} .tried{{margin-top:.4em;font-style:italic}}
@media print{{body{{margin:0}} tr{{page-break-inside:avoid}}}}
</style></head><body>
<h1>{html.escape(title)}</h1>
{warnings}
<p>{len(listing.rows)} open alert{'s' if len(listing.rows) != 1 else ''}, most urgent first
(band D is the most urgent, then the longest overdue). Please answer each one in your
feedback file with RESOLVED, IN_PROGRESS, UNABLE_TO_CONTACT, NOT_APPLICABLE or WRONG_PERSON.</p>
{held}
<table><thead><tr><th>Band</th><th>Overdue</th><th>Child (as your records have it)</th>
<th>Why</th><th>Next step</th></tr></thead><tbody>
{''.join(rows) or '<tr><td colspan=5>No open alerts.</td></tr>'}
</tbody></table></body></html>
"""


def _log(vault: duckdb.DuckDBPyConnection, listing: AgencyList, path: Path) -> None:
    """Who wrote which list when, and which alerts it carried; never the identities."""
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
    vault.execute(
        "insert into delivery.list_log (written_at, written_by, agency, file_name, as_of, "
        "alert_count, held_back, alert_ids) values (?, ?, ?, ?, ?, ?, ?, ?)",
        [datetime.now(UTC).replace(tzinfo=None), who, listing.agency, path.name,
         listing.as_of, len(ids), listing.held_back, ids])
    vault.register("shown", pd.DataFrame({"alert_id": ids}))
    vault.execute(
        "insert into delivery.list_items "
        "select a.alert_id, ?, a.person_id, a.evidence_test_id, ? from open_alerts a "
        "join shown s using (alert_id) "
        "where a.alert_id not in (select alert_id from delivery.list_items where agency = ?)",
        [listing.agency, listing.as_of, listing.agency])
    vault.unregister("shown")
