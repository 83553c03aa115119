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

import contextlib
import hashlib
import inspect
import json
import secrets
import time
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

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


def assign_person_ids(clusters: pd.DataFrame, prior: dict[str, str],
                      in_use: set[str] | frozenset[str] = frozenset()) -> dict[str, str]:
    """cluster_id -> person_id, keeping each cluster's most common prior id where it can.

    Larger clusters choose first, so when two clusters both claim an old id (a split), the
    bigger keeps it and the smaller gets a new one; a cluster whose records had two ids (a
    merge) keeps the more common, and the other is retired.
    """
    frame = pd.DataFrame({"cid": clusters["cluster_id"].astype(str).to_numpy(),
                          "uid": clusters["unique_id"].to_numpy()})
    frame["prior"] = frame["uid"].map(prior)
    sizes = frame.groupby("cid").size().rename("n").reset_index()
    order = sizes.sort_values(["n", "cid"], ascending=[False, True])["cid"].tolist()
    votes = (frame.dropna(subset=["prior"]).groupby(["cid", "prior"]).size()
             .rename("n").reset_index()
             .sort_values(["cid", "n", "prior"], ascending=[True, False, True]))
    # each cluster's prior ids, most common first (the rows are in that order): split where
    # the cluster changes (pandas' groupby-to-list took 0.2-0.3 s for a 1M city's week)
    cids, priors = votes["cid"].to_numpy(), votes["prior"].to_numpy()
    starts = np.flatnonzero(np.r_[True, cids[1:] != cids[:-1]]) if len(cids) else []
    wanted = dict(zip(cids[starts], np.split(priors, starts[1:]), strict=True)) if len(
        cids) else {}
    original = dict(zip(frame["cid"], clusters["cluster_id"], strict=True))
    taken: set[str] = set(in_use)  # ids of persons this run did not touch
    result: dict[str, str] = {}
    for cid in order:
        chosen = next((pid for pid in wanted.get(cid, ()) if pid not in taken), None)
        if chosen is None:
            chosen = new_person_id(taken)
        taken.add(chosen)
        result[original[cid]] = chosen
    return result


def id_events(prior: dict[str, str], now_of: dict[str, str], run_at: datetime) -> pd.DataFrame:
    """What this run did to person_ids: created, retired, merged (into), split (off).

    `prior` and `now_of` map each record's unique_id to its person_id before and after.
    """
    columns = ["run_at", "person_id", "event", "other_person_id", "records"]
    old_ids, new_ids = set(prior.values()), set(now_of.values())
    rows = [(run_at, p, "created", None, None) for p in sorted(new_ids - old_ids)]
    rows += [(run_at, p, "retired", None, None) for p in sorted(old_ids - new_ids)]
    both = pd.DataFrame({"old": list(prior.values()), "uid": list(prior)})
    both["new"] = both["uid"].map(now_of)
    moves = both.dropna(subset=["new"]).groupby(["old", "new"]).size().rename("n").reset_index()
    # merged: a new id whose records had more than one old id; split: an old id whose records
    # now have more than one new id
    many_old = moves.groupby("new")["old"].transform("size") > 1
    merged = moves[many_old & (moves["old"] != moves["new"])].sort_values(["new", "old"])
    many_new = moves.groupby("old")["new"].transform("size") > 1
    split = moves[many_new & (moves["old"] != moves["new"])].sort_values(["old", "new"])
    rows += [(run_at, o, "merged", n, int(k)) for o, n, k in
             zip(merged["old"], merged["new"], merged["n"], strict=True)]
    rows += [(run_at, n, "split", o, int(k)) for o, n, k in
             zip(split["old"], split["new"], split["n"], strict=True)]
    return pd.DataFrame(rows, columns=columns)


def new_person_id(taken: set[str]) -> str:
    while True:
        pid = "P" + secrets.token_hex(6).upper()
        if pid not in taken:
            return pid


# what standardising a raw record means: a change to it restandardises every record
_STANDARD = hashlib.sha256((inspect.getsource(S) + inspect.getsource(standardise_records))
                           .encode()).hexdigest()[:12]


def _ids(con: duckdb.DuckDBPyConnection, name: str, ids, column: str = "uid") -> None:
    """Register a set of ids as a one-column table (typed text even when empty)."""
    import pyarrow as pa

    con.register(name, pa.table({column: pa.array(sorted(ids), pa.string())}))


TYPES = {"first_aliases": "varchar[]", "unseen_name": "boolean"}  # the rest are text


def typed(frame: str, columns) -> str:
    """select every column of registered `frame` with its declared type: a pandas column of
    only missing values would otherwise come through as a number."""
    return "select " + ", ".join(
        f"cast({c} as {TYPES.get(c, 'varchar')}) as {c}"
        for c in columns) + f" from {frame}"


def _hashed_input(con: duckdb.DuckDBPyConnection, records_sql: str) -> None:
    """temp table link_input: every current person-record's roles and a hash of them, so a
    record that did not change since the last run is neither standardised nor scored again."""
    roles = [r[0] for r in con.execute(f"describe select * from ({records_sql})").fetchall()
             if r[0] not in ("source", "record_key")]
    parts = ", ".join(f"coalesce(cast({c} as varchar), chr(0))" for c in roles)
    con.execute(f"create or replace temp table link_input as select *, "
                f"md5(concat_ws(chr(31), '{_STANDARD}', {parts})) as record_hash, "
                f"source || ':' || record_key as unique_id from ({records_sql})")


def _has(con: duckdb.DuckDBPyConnection, table: str, column: str | None = None) -> bool:
    schema, name = table.split(".")
    if column is None:
        return con.execute("select count(*) from information_schema.tables where "
                           "table_schema = ? and table_name = ?", [schema, name]).fetchall()[0][0]
    return con.execute("select count(*) from information_schema.columns where table_schema = ?"
                       " and table_name = ? and column_name = ?",
                       [schema, name, column]).fetchall()[0][0] > 0


def _state(con: duckdb.DuckDBPyConnection) -> dict:
    """What the last run left to build on: its model, threshold and scored pairs."""
    if not (_has(con, "linkage.link_state") and _has(con, "linkage.link_pairs")
            and _has(con, "linkage.person_records", "record_hash")
            and _has(con, "linkage.person_crosswalk")):
        return {}
    standard = "standard" if _has(con, "linkage.link_state", "standard") else "null"
    rows = con.execute(f"select model, threshold, {standard} from linkage.link_state").fetchall()
    return {"model": rows[0][0], "threshold": rows[0][1], "standard": rows[0][2]} if rows else {}


def retrain_reasons(model_path: Path, n_records: int, unseen: float,
                    drift: dict[str, float]) -> list[str]:
    """Why the model must be trained again, from what drifted since it was trained: the
    records grew by `drift['growth']` times or more, or at least `drift['unseen_names']` of
    the records carry a first name or surname the frozen term frequencies never saw (the
    population the model describes has changed). Empty: keep the model."""
    meta = model_path.with_suffix(".meta.json")
    if not model_path.exists() or not meta.exists():
        return ["no trained model yet"]
    reasons = []
    trained_on = max(json.loads(meta.read_text()).get("records", 0), 1)
    growth = n_records / trained_on
    if "growth" in drift and growth >= drift["growth"]:
        reasons.append(f"records grew {growth:.2f}x since training")
    if "unseen_names" in drift and unseen >= drift["unseen_names"]:
        reasons.append(f"{unseen:.1%} of records have names the model never saw")
    return reasons


def _unseen_flags(tf_seen: dict[str, set[str]], frame: pd.DataFrame) -> np.ndarray:
    """Per record: a first name or surname the frozen term frequencies never saw."""
    unseen = np.zeros(len(frame), dtype=bool)
    for column, seen in tf_seen.items():
        values = frame[column]
        unseen |= (values.notna() & ~values.isin(seen)).to_numpy()
    return unseen


def _unseen_share(con: duckdb.DuckDBPyConnection, tf_seen: dict[str, set[str]],
                  new: pd.DataFrame, n_kept: int) -> float:
    """The share of the records with a first name or surname the frozen term frequencies
    never saw: the kept records counted in the vault (each record's `unseen_name`, set as it
    is written; rows written before the column existed are flagged here once), the new ones
    here."""
    if not tf_seen or not (n_kept + len(new)):
        return 0.0
    unseen = _unseen_flags(tf_seen, new)
    kept = 0
    if n_kept:
        con.execute("update linkage.person_records as p set unseen_name = (" + " or ".join(
            f"(p.{c} is not null and p.{c} not in (select {c} from linkage.tf_{c}))"
            for c in tf_seen) + ") where unseen_name is null")
        kept = con.execute("select count(*) from linkage.person_records semi join kept_ids "
                           "using (unique_id) where unseen_name").fetchall()[0][0]
    return float((int(unseen.sum()) + kept) / (n_kept + len(new)))


def run_linkage(con: duckdb.DuckDBPyConnection, model_dir: Path, threshold: float,
                records_sql: str, retrain: bool = False, memory_limit: str = "3GB",
                review_size: int = 0, rosters: dict[str, int] | None = None,
                overwhelming: float = 1.0, flag_size: int | None = None,
                sample_max: int | None = None, drift: dict[str, float] | None = None,
                full: bool = False, scorer=None, changed_records_sql: str | None = None
                ) -> dict[str, int]:
    """Link the vault's person-records; returns counts (never identities).

    `threshold` is the match probability at which two records are one person, and
    `records_sql` selects one row per person-record in the roles linkage reads (source,
    record_key, first_name, middle_name, last_name, dob, sex, street_line, unit, zip,
    medicaid_id, patient_id, guardian). The caller derives both from its declarations and
    seeds: linkage is a library and reads neither.

    Incremental: only records that are new or changed since the last run are standardised and
    scored (against each other and against every other record, with the model's frozen term
    frequencies); only the persons they touch are clustered again. Every record is scored and
    clustered again (`full`) when the model is (re)trained (`retrain`, or what `drift` bounds
    says drifted), when the model or threshold changed since the last run, or on the first
    run. Both give the same pairs, so the same people.

    `changed_records_sql` (optional) selects, in the same roles, only the records that may
    have changed since the last run (those in deliveries it had not seen): every other record
    is as it was then, and none is gone. With it, a run hashes and compares only those instead
    of every record; it is used only when the last run's state is there and the records were
    standardised as they are now, else `records_sql` is read whole.

    `scorer` scores the pairs elsewhere (linkage.spark.SparkScorer: Splink on Spark, with the
    same trained model); by default Splink scores them on DuckDB here."""
    from linkage.model import (
        LINK_COLUMNS,
        MODEL_FILE,
        TF_COLUMNS,
        cluster,
        engine,
        engine_beside,
        link_evidence,
        model_fingerprint,
        release,
        review_candidates,
        score_pairs,
        term_frequencies,
        train_model,
    )

    model_path = model_dir / MODEL_FILE
    con.execute("create schema if not exists linkage")
    con.execute("create table if not exists linkage.run_stats (run_at timestamp, records integer,"
                " persons integer, linked_share double, largest_cluster integer)")
    for col, kind in (("incremental", "boolean"), ("records_relinked", "integer"),
                      ("retrain_reason", "varchar"), ("unseen_name_share", "double"),
                      ("scoring_seconds", "double")):
        con.execute(f"alter table linkage.run_stats add column if not exists {col} {kind}")
    state = _state(con)
    if state:  # records written before each carried its unseen_name (see _unseen_share)
        con.execute("alter table linkage.person_records add column if not exists "
                    "unseen_name boolean")
    partial = bool(state) and changed_records_sql is not None and state["standard"] == _STANDARD
    _hashed_input(con, changed_records_sql if partial else records_sql)
    n_read = con.execute("select count(*) from link_input").fetchall()[0][0]
    if partial:
        # only the records that may have changed are here: each is kept (same hash) or fresh;
        # every record of the last run not among the fresh is kept, and none is gone
        fresh = con.execute(
            "select i.* exclude (unique_id, record_hash), i.unique_id, i.record_hash "
            "from link_input as i anti join linkage.person_records as p "
            "on p.unique_id = i.unique_id and p.record_hash = i.record_hash").df()
        _ids(con, "fresh_ids", fresh["unique_id"])
        con.execute("create or replace temp table kept_ids as select unique_id "
                    "from linkage.person_records anti join fresh_ids on uid = unique_id")
        con.unregister("fresh_ids")
        n_kept = con.execute("select count(*) from kept_ids").fetchall()[0][0]
        gone = set()
    elif state:
        # one pass over the records now and as last linked: each is kept (same hash), fresh
        # (new or changed) or gone (changed or no longer sent)
        con.execute(
            "create or replace temp table record_fates as select i.unique_id as now_id, "
            "p.unique_id as then_id from link_input as i full join linkage.person_records as p "
            "on p.unique_id = i.unique_id and p.record_hash = i.record_hash")
        fresh = con.execute(
            "select i.* exclude (unique_id, record_hash), i.unique_id, i.record_hash "
            "from link_input as i semi join (select now_id from record_fates "
            "where then_id is null) as f on f.now_id = i.unique_id").df()
        con.execute("create or replace temp table kept_ids as select now_id as unique_id "
                    "from record_fates where now_id is not null and then_id is not null")
        n_kept = con.execute("select count(*) from kept_ids").fetchall()[0][0]
        gone = {u for (u,) in con.execute(
            "select then_id from record_fates where now_id is null").fetchall()}
        con.execute("drop table record_fates")
    else:
        fresh = con.execute("select * from link_input").df()
        n_kept, gone = 0, set()
    # every current record: those read, and (when only the changed ones were read) the kept
    con.execute("create or replace temp view link_present as select unique_id from link_input"
                + (" union all select unique_id from kept_ids" if partial else ""))
    new = standardise_records(fresh)
    new["record_hash"] = fresh["record_hash"].to_numpy()

    tf_seen = {}
    if _has(con, "linkage.tf_first_name") and model_path.exists():
        tf_seen = {c: {v for (v,) in con.execute(f"select {c} from linkage.tf_{c}").fetchall()}
                   for c in TF_COLUMNS}
    n_records = n_kept + len(new)
    unseen = _unseen_share(con, tf_seen, new, n_kept)
    reasons = ["asked to retrain"] if retrain else retrain_reasons(
        model_path, n_records, unseen, drift or {"growth": 2.0})
    full = bool(full or reasons or not state or state["model"] != model_fingerprint(model_path)
                or state["threshold"] != threshold)
    records = new
    if full and n_kept:  # every record is scored again: the kept ones join the new
        kept = con.execute("select p.* from linkage.person_records as p "
                           "semi join kept_ids using (unique_id)").df()
        kept["first_aliases"] = [list(a) if a is not None else [] for a in kept["first_aliases"]]
        records = pd.concat([kept, new], ignore_index=True)
    records = records.sort_values("unique_id", ignore_index=True)
    # a week's few records are scored against the many kept ones where those are, in the
    # vault: Splink's tables go to an in-memory database beside it, with no copy of every kept
    # record (1M: scoring 1.5 -> 1.1-1.2 s a week). Every other run has an engine of its own.
    restore = None
    if partial and not full and n_kept and scorer is None:
        mem, db_api, restore = engine_beside(con, memory_limit)
    else:
        mem, db_api = engine(memory_limit, model_dir / "spill")
    if reasons:
        train_model(db_api, records, model_path, sample_max=sample_max)
        for column, frame in term_frequencies(records).items():
            con.register("frame", frame)
            con.execute(f"create or replace table linkage.tf_{column} as select * from frame")
            con.unregister("frame")
        unseen = 0.0
    # what each record written now says about the term frequencies it is scored with (none
    # unseen by frequencies just made from these records)
    for frame in (records, new) if full else (new,):
        frame["unseen_name"] = (np.zeros(len(frame), dtype=bool) if reasons or not tf_seen
                                else _unseen_flags(tf_seen, frame))
    tf = {c: con.execute(f"select * from linkage.tf_{c}").df() for c in TF_COLUMNS}
    fingerprint = model_fingerprint(model_path)
    floor = min(0.5, threshold)
    mem.register("records_frame", records[LINK_COLUMNS])
    mem.execute("create or replace table fresh_records as " + typed("records_frame", LINK_COLUMNS))
    mem.unregister("records_frame")

    def scored_pairs(existing: str | None) -> pa.Table:
        if scorer is None:
            scored = score_pairs(mem, db_api, model_path, tf, "fresh_records", existing, floor)
            return mem.sql(f"select * from {scored}").to_arrow_table()
        return scorer.score(model_path, tf, mem.sql("select * from fresh_records").to_arrow_table(),
                            mem.sql(f"select * from {existing}").to_arrow_table()
                            if existing else None, floor)

    scoring_started = time.perf_counter()
    if full:
        new_pairs = scored_pairs(None)
        scope = set(records["unique_id"])
    elif restore is not None:
        # every record of the last run but the fresh ones (a partial run: none is gone)
        scratch = mem.execute("select current_database()").fetchone()[0]
        mem.execute(f"create view kept_records as select {', '.join(LINK_COLUMNS)} "
                    f'from "{restore[0]}".linkage.person_records as p anti join '
                    f"{scratch}.main.fresh_records as f on f.unique_id = p.unique_id")
        new_pairs = scored_pairs("kept_records")
    else:
        # the kept records straight from the vault to Splink's engine (never through pandas)
        mem.register("kept_arrow", con.sql(
            f"select {', '.join(LINK_COLUMNS)} from linkage.person_records "
            "semi join kept_ids using (unique_id)").to_arrow_table())
        mem.execute("create or replace table kept_records as select * from kept_arrow")
        mem.unregister("kept_arrow")
        new_pairs = scored_pairs("kept_records" if n_kept else None)
    scoring_seconds = time.perf_counter() - scoring_started  # the part a Spark cluster takes

    cannot_new = record_feedback_cannot_links(con)
    cannot = stored_cannot_links(con)
    must, reviewed_apart = review_decisions(con)
    cannot |= reviewed_apart
    has_prior = bool(_has(con, "linkage.person_crosswalk"))

    con.execute("begin transaction")
    try:
        touched = set(new["unique_id"]) | gone
        con.register("new_pairs", new_pairs)
        _ids(con, "touched_ids", touched)
        if full:  # an incremental run has the last run's state, pairs included
            con.execute("create or replace table linkage.link_pairs as select * from new_pairs")
        else:
            con.execute("delete from linkage.link_pairs where unique_id_l in "
                        "(select uid from touched_ids) or unique_id_r in "
                        "(select uid from touched_ids)")
            con.execute("insert into linkage.link_pairs by name select * from new_pairs")
            scope = _affected(con, touched, new_pairs, threshold, cannot | must)
        scope_ids = sorted(scope)
        _ids(con, "scope_ids", scope_ids)
        pairs_in_scope = con.sql(
            "select * from linkage.link_pairs where unique_id_l in (select uid from scope_ids) "
            "and unique_id_r in (select uid from scope_ids)").to_arrow_table()
        mem.register("scope_arrow", pairs_in_scope)
        mem.execute("create or replace table scope_pairs as select * from scope_arrow")
        mem.unregister("scope_arrow")
        clusters, stats = cluster(mem, scope_ids, "scope_pairs", threshold, cannot=cannot,
                                  must=must, rosters=rosters, overwhelming=overwhelming)
        # the last run's person_ids of the records relinked (a person's records are all in
        # scope or none); every other person_id is one a new person must not take
        prior_in: dict[str, str] = {}
        if has_prior:
            _ids(con, "prior_scope", scope | gone)
            prior_in = dict(con.execute(
                "select source || ':' || record_key, person_id from linkage.person_crosswalk "
                "where source || ':' || record_key in (select uid from prior_scope)").fetchall())
            con.unregister("prior_scope")
        ids = person_ids(con, clusters, prior_in) if has_prior else assign_person_ids(
            clusters, prior_in)
        now_of = {u: ids[c] for u, c in zip(clusters["unique_id"], clusters["cluster_id"],
                                             strict=True)}
        model = json.loads(model_path.read_text())
        evidence = link_evidence(mem, "scope_pairs", model, clusters, threshold)
        evidence.insert(0, "person_id", evidence["unique_id_l"].map(now_of))
        release(mem, restore)
        mem = None

        if full:
            scope_frame = records[["source", "record_key", "unique_id", "dob", "sex"]]
        else:
            scope_frame = pd.concat([con.execute(
                "select source, record_key, unique_id, dob, sex from linkage.person_records "
                "where unique_id in (select uid from scope_ids) and unique_id in "
                "(select unique_id from kept_ids)").df(),
                new.loc[new["unique_id"].isin(scope), ["source", "record_key", "unique_id",
                                                       "dob", "sex"]]], ignore_index=True)
        scope_frame = scope_frame.copy()
        scope_frame["person_id"] = scope_frame["unique_id"].map(now_of)
        persons = best_values(con, scope_frame)
        _ids(con, "changed_ids", scope | gone, "uid")
        if full:
            con.register("frame", records)
            con.execute("create or replace table linkage.person_records as "
                        + typed("frame", records.columns))
        else:
            con.register("frame", new)
            _ids(con, "gone_ids", gone, "uid")
            con.execute("delete from linkage.person_records where unique_id in "
                        "(select uid from gone_ids) or unique_id in (select unique_id from frame)")
            con.execute("insert into linkage.person_records by name "
                        + typed("frame", new.columns))
            con.unregister("gone_ids")
        con.unregister("frame")
        crosswalk = scope_frame[["source", "record_key", "person_id"]]
        _replace_rows(con, "person_crosswalk", crosswalk, "source || ':' || record_key", full)
        con.register("frame", persons)
        if full or not _has(con, "linkage.persons"):
            con.execute("create or replace table linkage.persons as select * from frame")
        else:
            gone_persons = set(prior_in.values()) | set(now_of.values())
            _ids(con, "pids", gone_persons, "pid")
            con.execute("delete from linkage.persons where person_id in (select pid from pids)")
            con.execute("insert into linkage.persons by name select * from frame")
            con.unregister("pids")
        con.unregister("frame")
        _replace_rows(con, "link_evidence", evidence, "unique_id_l", full)
        events = id_events(prior_in, now_of, datetime.now(UTC).replace(tzinfo=None))
        con.execute("create table if not exists linkage.person_id_events "
                    "(run_at timestamp, person_id varchar, event varchar)")
        for col, kind in (("other_person_id", "varchar"), ("records", "integer")):
            con.execute(f"alter table linkage.person_id_events "
                        f"add column if not exists {col} {kind}")
        con.register("frame", events)
        con.execute("insert into linkage.person_id_events by name select * from frame")
        con.unregister("frame")
        # the queue is a function of the records, the pairs and the answers: a rerun leaves
        # it byte-equal
        con.execute("create or replace temp view everyone as select source || ':' || "
                    "record_key as unique_id, person_id as cluster_id "
                    "from linkage.person_crosswalk")
        review = review_candidates(con, "linkage.link_pairs", model, "everyone", threshold,
                                   review_size, must | cannot, flag_size).rename(
            columns={"cluster_id_l": "person_id_l", "cluster_id_r": "person_id_r"})
        con.execute("drop view everyone")
        con.register("frame", review)
        con.execute("create or replace table linkage.review_queue as select * from frame")
        con.unregister("frame")
        con.execute("create or replace table linkage.link_state as select ? as model, "
                    "cast(? as double) as threshold, ? as standard",
                    [fingerprint, threshold, _STANDARD])
        for name in ("touched_ids", "scope_ids", "changed_ids", "new_pairs"):
            con.unregister(name)
        con.execute("commit")
    except Exception:
        con.execute("rollback")
        if mem is not None:  # the scratch beside the vault goes with the failed run
            with contextlib.suppress(duckdb.Error):
                release(mem, restore)
        raise
    moved = sum(1 for u, p in prior_in.items() if u in now_of and now_of[u] != p)
    # one pass over the persons' sizes: records, persons, the largest, the share linked
    n_records, n_persons, largest, linked = con.execute(
        "select coalesce(sum(n), 0), count(*), coalesce(max(n), 0), "
        "coalesce(sum(n) filter (where n > 1), 0) from (select count(*) as n "
        "from linkage.person_crosswalk group by person_id)").fetchall()[0]
    linked_share = float(linked / max(n_records, 1))
    previous = con.execute(
        "select linked_share from linkage.run_stats order by run_at desc limit 1").fetchall()
    now = datetime.now(UTC).replace(tzinfo=None)
    con.execute("insert into linkage.run_stats by name select ? as run_at, ? as records, "
                "? as persons, ? as linked_share, ? as largest_cluster, ? as incremental, "
                "? as records_relinked, ? as retrain_reason, ? as unseen_name_share, "
                "? as scoring_seconds",
                [now, n_records, n_persons, linked_share, largest, not full, len(scope),
                 "; ".join(reasons) or None, unseen, round(scoring_seconds, 2)])
    old_ids, new_ids = set(prior_in.values()), set(now_of.values())
    return {"records": n_records, "persons": n_persons,
            "new_person_ids": len(new_ids - old_ids), "retired_person_ids": len(old_ids - new_ids),
            "merges": int((events.event == "merged").sum()),
            "splits": int((events.event == "split").sum()),
            "records_that_changed_person": moved,
            # the records read, hashed and compared with the last run (only the new
            # deliveries' when the caller said which those are)
            "records_read": int(n_read),
            "records_scored": len(records) if full else len(new),
            "records_relinked": len(scope), "incremental": int(not full),
            "pairs_linked": len(evidence) if full else int(con.execute(
                "select count(*) from linkage.link_evidence").fetchall()[0][0]),
            "model_trained": int(bool(reasons)),
            "cannot_links": len(cannot), "new_cannot_links": cannot_new,
            "clusters_split_by_cannot_links": stats["clusters_split_by_cannot_links"],
            "must_links": len(must),
            "clusters_joined_by_must_links": stats["clusters_joined_by_must_links"],
            "review_queue": len(review),
            "roster_pairs_kept_apart": stats["roster_pairs_kept_apart"],
            "largest_cluster": int(largest),
            "unseen_name_share": unseen,
            "retrain_reason": "; ".join(reasons),
            "linked_share": linked_share,
            "previous_linked_share": previous[0][0] if previous else None}


def person_ids(con: duckdb.DuckDBPyConnection, clusters: pd.DataFrame,
               prior_in: dict[str, str]) -> dict[str, str]:
    """`assign_person_ids` for the clusters relinked, no new id being one a person outside
    them has in linkage.person_crosswalk. The new ids are checked there afterwards instead of
    every person's id read first: 48 random bits all but never collide."""
    ids = assign_person_ids(clusters, prior_in)
    created = set(ids.values()) - set(prior_in.values())
    if not created:
        return ids
    _ids(con, "created_ids", created, "pid")
    try:
        taken = con.execute("select count(*) from linkage.person_crosswalk where person_id "
                            "in (select pid from created_ids)").fetchall()[0][0]
    finally:
        con.unregister("created_ids")
    if not taken:
        return ids
    others = {p for (p,) in con.execute(
        "select distinct person_id from linkage.person_crosswalk").fetchall()}
    return assign_person_ids(clusters, prior_in, others - set(prior_in.values()))


def _replace_rows(con: duckdb.DuckDBPyConnection, table: str, frame: pd.DataFrame, key: str,
                  full: bool) -> None:
    """Replace, in linkage.<table>, the rows of the records relinked (`changed_ids`)."""
    con.register("frame", frame)
    if full or not _has(con, f"linkage.{table}"):
        con.execute(f"create or replace table linkage.{table} as select * from frame")
    else:
        con.execute(f"delete from linkage.{table} where {key} in (select uid from changed_ids)")
        con.execute(f"insert into linkage.{table} by name select * from frame")
    con.unregister("frame")


def _affected(con: duckdb.DuckDBPyConnection, touched: set[str], new_pairs, threshold: float,
              decided: set[frozenset[str]]) -> set[str]:
    """The records whose person can change: the new, changed and gone records, the records
    they now link to, and every record of the persons all those belong to, closed over the
    links at the threshold (a person once split by a cannot-link is still linked to the
    other part) and over reviewers' decisions. Only current records (temp view
    link_present) are returned."""
    seeds = set(touched)
    for a, b, p in zip(new_pairs.column("unique_id_l").to_pylist(),
                       new_pairs.column("unique_id_r").to_pylist(),
                       new_pairs.column("match_probability").to_pylist(), strict=True):
        if p >= threshold:
            seeds |= {a, b}
    for pair in decided:
        seeds |= pair
    scope: set[str] = set()
    frontier = seeds
    while frontier:
        # the frontier's records, every record of the persons they belonged to (the last
        # run's crosswalk, still in place), and the records any of those now link to
        _ids(con, "frontier_ids", frontier, "uid")
        grown = {u for (u,) in con.execute(
            "select uid from frontier_ids union select x.source || ':' || x.record_key "
            "from linkage.person_crosswalk as x where x.person_id in (select person_id from "
            "linkage.person_crosswalk where source || ':' || record_key in "
            "(select uid from frontier_ids))").fetchall()} - scope
        con.unregister("frontier_ids")
        scope |= grown
        _ids(con, "grown_ids", grown, "uid")
        linked = con.execute(
            "select unique_id_r from linkage.link_pairs where match_probability >= ? and "
            "unique_id_l in (select uid from grown_ids) union select unique_id_l from "
            "linkage.link_pairs where match_probability >= ? and unique_id_r in "
            "(select uid from grown_ids)", [threshold, threshold]).fetchall()
        con.unregister("grown_ids")
        frontier = {u for (u,) in linked} - scope
    _ids(con, "scope_ids", scope, "uid")
    live = {u for (u,) in con.execute(
        "select unique_id from link_present where unique_id in (select uid from scope_ids)"
    ).fetchall()}
    con.unregister("scope_ids")
    return live


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
