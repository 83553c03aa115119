"""The linkage stage as every caller runs it: the records, the roster rule and the settings all
come from the declarations (pipelines/feeds.py) and seeds/linkage_settings.csv, so the asset,
the benchmarks and the tests link exactly alike. Linkage itself is a library that reads none
of them."""

from __future__ import annotations

import duckdb

from linkage.run import run_linkage
from pipelines.feeds import FEEDS, Feed, distinct_rosters, person_records_sql
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
    return run_linkage(
        con, settings.linkage_dir, linkage_setting("match_probability_threshold"),
        person_records_sql(feeds), retrain=retrain, memory_limit=settings.linkage_memory,
        review_size=int(linkage_setting("review_queue_size")),
        rosters=distinct_rosters(feeds),
        overwhelming=linkage_setting("roster_overwhelming_probability"),
        # the persons the cluster-size check flags send their weakest links to the queue
        flag_size=int(linkage_setting("max_cluster_records")),
        sample_max=int(linkage_setting("training_sample_records")),
        drift={"growth": linkage_setting("retrain_growth"),
               "unseen_names": linkage_setting("retrain_unseen_name_share")},
        full=full, scorer=scorer)
