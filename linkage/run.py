"""The linkage stage: vault raw rows -> standardised person-records -> clusters -> person_ids.

Writes, in the vault only:
    linkage.person_records     one row per person-record, standardised (identifiable)
    linkage.person_crosswalk   (source, record_key, person_id): the public interface
    linkage.persons            one row per person_id: best birth date and sex (identifiable)
    linkage.person_id_events   person_ids created or retired by each run

`person_id`s are random, never derived from personal data, and stable: a cluster keeps the id
most of its records already had, so a new delivery only mints ids for new people.
"""

from __future__ import annotations

import secrets
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pandas as pd

from linkage import standardise as S
from linkage.constraints import (
    record_feedback_cannot_links,
    review_decisions,
    stored_cannot_links,
)


def standardise_records(raw: pd.DataFrame) -> pd.DataFrame:
    out = pd.DataFrame({"source": raw["source"], "record_key": raw["record_key"]})
    out["unique_id"] = raw["source"] + ":" + raw["record_key"]
    out["first_name"] = [n.split(" ")[0] if n else None for n in map(S.std_name, raw["first_name"])]
    out["first_aliases"] = [list(S.first_name_aliases(n)) for n in raw["first_name"]]
    out["middle_name"] = [S.std_name(n) for n in raw["middle_name"]]
    out["last_name"] = [S.std_last_name(n) for n in raw["last_name"]]
    dob = pd.to_datetime(raw["dob"], errors="coerce").dt.strftime("%Y-%m-%d")
    out["dob"] = dob.astype(object).where(dob.notna(), None)
    out["sex"] = [S.std_sex(s) for s in raw["sex"]]
    streets, keys = [], []
    for line, unit in zip(raw["street_line"], raw["unit"], strict=True):
        street, u = S.std_address(line, unit)
        streets.append(street)
        keys.append(f"{street} #{u}" if street and u else street)
    out["street_key"] = streets
    out["address_key"] = keys
    out["zip"] = [S.std_zip(z) for z in raw["zip"]]
    out["medicaid_id"] = [S.std_name(m) for m in raw["medicaid_id"]]
    out["patient_id"] = [S.std_name(m) for m in raw["patient_id"]]
    guardians = [S.std_guardian(g) for g in raw.get("guardian", pd.Series([None] * len(raw)))]
    out["guardian_first"] = [g[0] for g in guardians]
    out["guardian_last"] = [g[1] for g in guardians]
    return out


def assign_person_ids(clusters: pd.DataFrame, prior: dict[str, str]) -> dict[str, str]:
    """cluster_id -> person_id, keeping each cluster's most common prior id where it can.

    Larger clusters choose first, so when two clusters both claim an old id (a split), the
    bigger keeps it and the smaller gets a new one; a cluster whose records had two ids (a
    merge) keeps the more common, and the other is retired.
    """
    members: dict[str, list[str]] = {}
    for uid, cid in zip(clusters["unique_id"], clusters["cluster_id"], strict=True):
        members.setdefault(cid, []).append(uid)
    taken: set[str] = set()
    result: dict[str, str] = {}
    for cid in sorted(members, key=lambda c: (-len(members[c]), str(c))):
        votes = Counter(prior[u] for u in members[cid] if u in prior)
        chosen = next((pid for pid, _ in sorted(votes.items(), key=lambda kv: (-kv[1], kv[0]))
                       if pid not in taken), None)
        if chosen is None:
            chosen = new_person_id(taken)
        taken.add(chosen)
        result[cid] = chosen
    return result


def id_events(prior: dict[str, str], now_of: dict[str, str], run_at: datetime) -> pd.DataFrame:
    """What this run did to person_ids: created, retired, merged (into), split (off).

    `prior` and `now_of` map each record's unique_id to its person_id before and after.
    """
    went: dict[str, Counter] = {}  # old id -> new ids its records now have
    came: dict[str, Counter] = {}  # new id -> old ids its records had
    for uid, old in prior.items():
        if uid in now_of:
            went.setdefault(old, Counter())[now_of[uid]] += 1
            came.setdefault(now_of[uid], Counter())[old] += 1
    old_ids, new_ids = set(prior.values()), set(now_of.values())
    rows = [(run_at, p, "created", None, None) for p in sorted(new_ids - old_ids)]
    rows += [(run_at, p, "retired", None, None) for p in sorted(old_ids - new_ids)]
    for new, olds in sorted(came.items()):
        rows += [(run_at, old, "merged", new, n) for old, n in sorted(olds.items())
                 if old != new and len(olds) > 1]
    for old, news in sorted(went.items()):
        rows += [(run_at, new, "split", old, n) for new, n in sorted(news.items())
                 if new != old and len(news) > 1]
    return pd.DataFrame(rows, columns=["run_at", "person_id", "event", "other_person_id",
                                       "records"])


def new_person_id(taken: set[str]) -> str:
    while True:
        pid = "P" + secrets.token_hex(6).upper()
        if pid not in taken:
            return pid


def run_linkage(con: duckdb.DuckDBPyConnection, model_dir: Path, threshold: float,
                records_sql: str, retrain: bool = False, memory_limit: str = "6GB",
                review_size: int = 0, rosters: dict[str, int] | None = None,
                overwhelming: float = 1.0, flag_size: int | None = None) -> dict[str, int]:
    """Relink every person-record in the vault; returns counts (never identities).

    `threshold` is the match probability at which two records are one person, and
    `records_sql` selects one row per person-record in the roles linkage reads (source,
    record_key, first_name, middle_name, last_name, dob, sex, street_line, unit, zip,
    medicaid_id, patient_id). The caller derives both from its declarations and seeds: linkage
    is a library and reads neither."""
    from linkage.model import MODEL_FILE, train_and_cluster

    con.execute("create schema if not exists linkage")
    con.execute("create table if not exists linkage.run_stats (run_at timestamp, records integer,"
                " persons integer, linked_share double, largest_cluster integer)")
    raw = con.execute(records_sql).df()
    records = standardise_records(raw)
    new_cannot = record_feedback_cannot_links(con)
    cannot = stored_cannot_links(con)
    must, reviewed_apart = review_decisions(con)
    cannot |= reviewed_apart
    clusters, stats = train_and_cluster(records, threshold, model_dir / MODEL_FILE,
                                        cannot=cannot, retrain=retrain,
                                        memory_limit=memory_limit, must=must,
                                        review_size=review_size, rosters=rosters,
                                        overwhelming=overwhelming, flag_size=flag_size)
    have_prior = con.execute(
        "select count(*) from information_schema.tables "
        "where table_schema = 'linkage' and table_name = 'person_crosswalk'").fetchall()[0][0]
    prior: dict[str, str] = {}
    if have_prior:
        prior = {f"{s}:{k}": p for s, k, p in con.execute(
            "select source, record_key, person_id from linkage.person_crosswalk").fetchall()}
    ids = assign_person_ids(clusters, prior)
    by_uid = dict(zip(clusters["unique_id"], clusters["cluster_id"], strict=True))
    records["person_id"] = [ids[by_uid[u]] for u in records["unique_id"]]
    crosswalk = records[["source", "record_key", "person_id"]]
    pid_of = dict(zip(records["unique_id"], records["person_id"], strict=True))
    evidence = stats.pop("evidence")
    evidence.insert(0, "person_id", evidence["unique_id_l"].map(pid_of))
    # the queue is a function of the records and the answers: a rerun leaves it byte-equal
    review = stats.pop("review")
    review["person_id_l"] = review["unique_id_l"].map(pid_of)
    review["person_id_r"] = review["unique_id_r"].map(pid_of)

    persons = best_values(con, records)
    now = datetime.now(UTC).replace(tzinfo=None)
    old_ids, new_ids = set(prior.values()), set(ids.values())
    events = id_events(prior, pid_of, now)
    con.execute("begin transaction")
    try:
        for name, frame in (("person_records", records.drop(columns=["first_aliases"])),
                            ("person_crosswalk", crosswalk), ("persons", persons),
                            ("link_evidence", evidence), ("review_queue", review)):
            con.register("frame", frame)
            con.execute(f"create or replace table linkage.{name} as select * from frame")
            con.unregister("frame")
        con.execute("create table if not exists linkage.person_id_events "
                    "(run_at timestamp, person_id varchar, event varchar)")
        for col, kind in (("other_person_id", "varchar"), ("records", "integer")):
            con.execute(f"alter table linkage.person_id_events "
                        f"add column if not exists {col} {kind}")
        con.register("frame", events)
        con.execute("insert into linkage.person_id_events by name select * from frame")
        con.unregister("frame")
        con.execute("commit")
    except Exception:
        con.execute("rollback")
        raise
    moved = sum(1 for u, p in prior.items() if u in pid_of and pid_of[u] != p)
    sizes = records.groupby("person_id").size()
    linked_share = float(sizes[sizes > 1].sum() / len(records)) if len(records) else 0.0
    previous = con.execute(
        "select linked_share from linkage.run_stats order by run_at desc limit 1").fetchall()
    con.execute("insert into linkage.run_stats values (?, ?, ?, ?, ?)",
                [now, len(records), len(new_ids), linked_share, int(sizes.max()) if len(sizes)
                 else 0])
    return {"records": len(records), "persons": len(new_ids),
            "new_person_ids": len(new_ids - old_ids), "retired_person_ids": len(old_ids - new_ids),
            "merges": int((events.event == "merged").sum()),
            "splits": int((events.event == "split").sum()),
            "records_that_changed_person": moved,
            "pairs_linked": stats["pairs_linked"], "model_trained": stats["model_trained"],
            "cannot_links": len(cannot), "new_cannot_links": new_cannot,
            "clusters_split_by_cannot_links": stats["clusters_split_by_cannot_links"],
            "must_links": len(must),
            "clusters_joined_by_must_links": stats["clusters_joined_by_must_links"],
            "review_queue": len(review),
            "roster_pairs_kept_apart": stats["roster_pairs_kept_apart"],
            "largest_cluster": int(sizes.max()) if len(sizes) else 0,
            "linked_share": linked_share,
            "previous_linked_share": previous[0][0] if previous else None}


PERSONS_SQL = """
with dobs as (
    select person_id, dob, count(*) as n from linked where dob is not null group by all
),
sexes as (
    select person_id, sex, count(*) as n from linked where sex is not null group by all
)
select p.person_id,
       cast(d.birth_date as date) as birth_date,
       s.sex,
       p.records
from (select person_id, count(*) as records from linked group by all) as p
left join (select person_id, first(dob order by n desc, dob) as birth_date
           from dobs group by all) as d using (person_id)
left join (select person_id, first(sex order by n desc, sex) as sex
           from sexes group by all) as s using (person_id)
"""


def best_values(con: duckdb.DuckDBPyConnection, records: pd.DataFrame) -> pd.DataFrame:
    """One row per person: the most common birth date and sex among its records (ties: the
    earliest / alphabetical), and how many records it has."""
    con.register("linked", records[["person_id", "dob", "sex"]])
    try:
        return con.execute(PERSONS_SQL).df()
    finally:
        con.unregister("linked")
