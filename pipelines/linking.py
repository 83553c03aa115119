"""The linkage stage as every caller runs it: the records, the roster rule and the settings all
come from the declarations (pipelines/feeds.py) and seeds/linkage_settings.csv, so the asset,
the benchmarks and the tests link exactly alike. Linkage itself is a library that reads none
of them."""

from __future__ import annotations

import hashlib

import duckdb

from linkage.run import run_linkage
from pipelines.feeds import (
    FEEDS,
    Feed,
    delivery_counts_sql,
    distinct_rosters,
    person_feeds,
    person_records_sql,
)
from pipelines.stores import Settings, linkage_setting


def relink(con: duckdb.DuckDBPyConnection, settings: Settings, retrain: bool = False,
           feeds: tuple[Feed, ...] = FEEDS, full: bool = False) -> dict[str, int]:
    """Link the week's new and changed records into the city's people (every record again
    when `full`, or when the model is retrained: asked, or by the drift the seed bounds)."""
    if settings.engine == "spark":
        return _relink_on_spark(con, settings, retrain, feeds, full)
    return _relink(con, settings, retrain, feeds, full)


def _relink_on_spark(con: duckdb.DuckDBPyConnection, settings: Settings, retrain: bool,
                     feeds: tuple[Feed, ...], full: bool) -> dict[str, int]:
    """The same linkage with its pairs scored on Spark; what Splink wrote there for lineage is
    removed when the stage ends, whatever happened."""
    from linkage.spark import SparkScorer
    from pipelines.spark import session, stop

    spark = session(settings, "plumbline-linkage")
    scorer = SparkScorer(spark, settings.linkage_dir / "spark_checkpoints")
    try:
        return _relink(con, settings, retrain, feeds, full, scorer)
    finally:
        scorer.close()
        stop(spark)


def _relink(con: duckdb.DuckDBPyConnection, settings: Settings, retrain: bool,
            feeds: tuple[Feed, ...], full: bool, scorer=None) -> dict[str, int]:
    records_sql = person_records_sql(feeds)
    fingerprint = hashlib.sha256(records_sql.encode()).hexdigest()[:16]
    deliveries_now(con, feeds)
    # asked to relink everything, or to retrain: every record is read again
    changed_sql = None if full or retrain else _changed_records_sql(con, feeds, fingerprint)
    counts = _run(con, settings, retrain, feeds, full, scorer, records_sql, changed_sql)
    # what this run linked: the next reads only the records of deliveries not among these
    con.execute("begin transaction")
    con.execute("delete from linkage.linked_deliveries")
    con.execute("insert into linkage.linked_deliveries select ?, feed, delivery_id, n "
                "from link_deliveries_now", [fingerprint])
    con.execute("commit")
    con.execute("drop table if exists temp.link_deliveries_now")
    con.execute("drop table if exists temp.link_new_deliveries")
    return counts


def deliveries_now(con: duckdb.DuckDBPyConnection, feeds: tuple[Feed, ...]) -> None:
    """temp.link_deliveries_now: each person-bearing feed's deliveries, with their row counts,
    as linkage is about to read them (and linkage.linked_deliveries, where they are kept)."""
    con.execute("create schema if not exists linkage")
    con.execute("create table if not exists linkage.linked_deliveries "
                "(fingerprint varchar, feed varchar, delivery_id varchar, n bigint)")
    con.execute("create or replace temp table link_deliveries_now as " + delivery_counts_sql(
        [(f.name, f.name) for f in person_feeds(feeds)]))


def _changed_records_sql(con: duckdb.DuckDBPyConnection, feeds: tuple[Feed, ...],
                         fingerprint: str) -> str | None:
    """The records of the deliveries linkage has not linked yet (new since its last run), or
    None when it must read every record: nothing linked yet, the records' SQL changed (a feed
    declared or changed), or a delivery it linked has changed or is gone.

    `linkage.linked_deliveries` holds each person-bearing feed's deliveries, with their row
    counts, as of the last run; `temp.link_deliveries_now` (`deliveries_now`) the same now."""
    prints = {p for (p,) in con.execute(
        "select distinct fingerprint from linkage.linked_deliveries").fetchall()}
    if prints != {fingerprint} or con.execute(
            "select 1 from (select feed, delivery_id, n from linkage.linked_deliveries "
            "except select feed, delivery_id, n from link_deliveries_now) limit 1").fetchall():
        return None
    con.execute("create or replace temp table link_new_deliveries as "
                "select feed, delivery_id from link_deliveries_now except "
                "select feed, delivery_id from linkage.linked_deliveries")
    return person_records_sql(feeds, only_new_in="temp.link_new_deliveries")


def _run(con: duckdb.DuckDBPyConnection, settings: Settings, retrain: bool,
         feeds: tuple[Feed, ...], full: bool, scorer, records_sql: str,
         changed_sql: str | None) -> dict[str, int]:
    return run_linkage(
        con, settings.linkage_dir, linkage_setting("match_probability_threshold"),
        records_sql, retrain=retrain, memory_limit=settings.linkage_memory,
        review_size=int(linkage_setting("review_queue_size")),
        rosters=distinct_rosters(feeds),
        overwhelming=linkage_setting("roster_overwhelming_probability"),
        # the persons the cluster-size check flags send their weakest links to the queue
        flag_size=int(linkage_setting("max_cluster_records")),
        sample_max=int(linkage_setting("training_sample_records")),
        drift={"growth": linkage_setting("retrain_growth"),
               "unseen_names": linkage_setting("retrain_unseen_name_share")},
        full=full, scorer=scorer, changed_records_sql=changed_sql)
