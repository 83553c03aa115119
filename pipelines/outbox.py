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

from datetime import UTC, date, datetime
from pathlib import Path

import duckdb
import pandas as pd

from pipelines.stores import Settings, connect, warehouse_lock

URGENCY = "case band when 'D' then 1 when 'C' then 2 when 'B' then 3 else 4 end, days_overdue desc"

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

COMMON = ("a.alert_id, a.rule_code, a.band, a.due_date, a.days_overdue, a.reason, a.next_step")

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


def write_alert_lists(settings: Settings) -> dict[str, int]:
    """Write `outbox/<agency>/alerts_<YYYYMMDD>.csv` for each agency; returns rows per agency."""
    stamp = settings.as_of.strftime("%Y%m%d")
    counts: dict[str, int] = {}
    with warehouse_lock(settings.data_dir), connect(settings.vault_path) as vault:
        vault.execute(f"attach '{settings.warehouse_path}' as wh (read_only)")
        try:
            vault.execute(ALERTS)
            for agency, sql in LISTS.items():
                frame = vault.execute(sql).df()
                path = settings.outbox / agency / f"alerts_{stamp}.csv"
                _write(frame, path)
                counts[agency] = len(frame)
                _log(vault, agency, path, settings.as_of, list(frame["alert_id"]))
        finally:
            vault.execute("detach wh")
    return counts


def _write(frame: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    for col in frame.columns:
        if pd.api.types.is_datetime64_any_dtype(frame[col]):
            frame[col] = frame[col].dt.strftime("%Y-%m-%d")
    tmp = path.with_suffix(".csv.tmp")
    frame.to_csv(tmp, index=False, encoding="utf-8")
    tmp.replace(path)  # a partner never sees a half-written list


def _log(vault: duckdb.DuckDBPyConnection, agency: str, path: Path, as_of: date,
         alert_ids: list[str]) -> None:
    vault.execute("create schema if not exists delivery")
    vault.execute(
        "create table if not exists delivery.list_log (written_at timestamp, agency varchar, "
        "file_name varchar, as_of date, alert_count integer, alert_ids varchar[])")
    vault.execute(
        "insert into delivery.list_log values (?, ?, ?, ?, ?, ?)",
        [datetime.now(UTC).replace(tzinfo=None), agency, path.name, as_of,
         len(alert_ids), alert_ids])
