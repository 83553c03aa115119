"""The Spark engine (PLUMBLINE_ENGINE=spark): the same asset graph with its heavy parts on Spark.

    linkage     the trained model scores the blocked pairs on Splink's Spark backend
                (linkage/spark.py); records reach Spark as Arrow, in memory
    warehouse   the src tables are Parquet under DATA_DIR/spark/src; `dbt build` runs through
                dbt-spark (profiles.yml's spark target), its tables Parquet under
                DATA_DIR/spark/warehouse with their catalog beside them
    the rest    lists, published outputs and the data lab read the warehouse through views in
                warehouse.duckdb over those Parquet tables (`mirror_warehouse`), so they run
                unchanged; the vault stays where it is, the one identifiable store

docs/running-on-spark.md says how to point this at a cluster.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import duckdb
import pyarrow as pa

from pipelines.stores import SPARK_CONF_DIR, Settings
from pipelines.warehouse import write_sources


def session(settings: Settings, app: str):
    """A Spark session for this run: Spark Connect when PLUMBLINE_SPARK_REMOTE names one, else
    PLUMBLINE_SPARK_MASTER (local mode by default), with Splink's similarity functions on its
    classpath (the jar inside Splink's wheel: nothing is downloaded)."""
    from pyspark.sql import SparkSession
    from splink.backends.spark import similarity_jar_location

    builder = SparkSession.builder.appName(app)
    if not settings.spark_remote and not (os.environ.get("JAVA_HOME") or shutil.which("java")):
        raise RuntimeError(
            "PLUMBLINE_ENGINE=spark starts Spark here, which needs Java 17 or newer: `make java` "
            "installs Debian's openjdk-17-jre-headless (or set PLUMBLINE_SPARK_REMOTE to a "
            "Spark Connect server)")
    if settings.spark_remote:
        # a Connect server loads Splink's jar itself (docs/running-on-spark.md)
        builder = builder.remote(settings.spark_remote)
    else:
        tmp = settings.spark_dir / "tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        builder = (builder.master(settings.spark_master)
                   .config("spark.driver.memory", settings.spark_memory)
                   .config("spark.jars", similarity_jar_location())
                   .config("spark.local.dir", str(tmp))
                   .config("spark.ui.enabled", "false")
                   .config("spark.ui.showConsoleProgress", "false")
                   .config("spark.driver.extraJavaOptions",
                           f"-Dlog4j.configurationFile={SPARK_CONF_DIR / 'log4j2.properties'}"))
    return (builder
            .config("spark.sql.shuffle.partitions", "4" if settings.spark_master.startswith(
                "local") and not settings.spark_remote else "200")
            .config("spark.sql.session.timeZone", "UTC")
            .getOrCreate())


def stop(spark) -> None:
    """End the session and, in local mode, its JVM: the run goes on (dbt starts a JVM of its
    own), and a stopped session's JVM would otherwise hold its heap until the run ends."""
    from pyspark import SparkContext

    gateway = getattr(spark.sparkContext, "_gateway", None) if not spark_is_remote(spark) \
        else None
    spark.stop()
    if gateway is None:
        return
    gateway.shutdown()
    proc = getattr(gateway, "proc", None)
    if proc is not None:
        if proc.stdin:
            proc.stdin.close()  # the JVM exits when its parent closes its stdin
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
    SparkContext._gateway = None
    SparkContext._jvm = None


def spark_is_remote(spark) -> bool:
    return type(spark).__module__.startswith("pyspark.sql.connect")


def write_spark_sources(tables: dict[str, pa.Table], folder: Path) -> None:
    """Each src table as Parquet in folder/<table>/, typed exactly as the DuckDB warehouse
    types it (the same tables through the same `write_sources`). A table is replaced whole: its
    new file is written beside the old one, then swapped in."""
    folder.mkdir(parents=True, exist_ok=True)
    with duckdb.connect(":memory:") as con:
        write_sources(con, tables)
        for name in tables:
            # a text column no row filled (an optional field a feed never sends) has DuckDB's
            # NULL type, which Parquet stores as a number: Spark reads it as text instead
            for column, kind in con.execute(
                    "select column_name, data_type from information_schema.columns "
                    "where table_schema = 'src' and table_name = ?", [name]).fetchall():
                if kind == '"NULL"':
                    con.execute(f'alter table src.{name} alter "{column}" type varchar')
            fresh = folder / f".{name}.new"
            shutil.rmtree(fresh, ignore_errors=True)
            fresh.mkdir()
            con.execute(f"copy src.{name} to '{(fresh / 'part-0.parquet').as_posix()}' "
                        "(format parquet)")
            target = folder / name
            old = folder / f".{name}.old"
            shutil.rmtree(old, ignore_errors=True)
            if target.exists():
                target.rename(old)
            fresh.rename(target)
            shutil.rmtree(old, ignore_errors=True)


def spark_tables(warehouse_dir: Path) -> dict[tuple[str, str], Path]:
    """(schema, table) -> folder of every table dbt-spark wrote (src excluded: the vault's)."""
    found = {}
    for schema_dir in sorted(warehouse_dir.glob("*.db")):
        schema = schema_dir.name.removesuffix(".db")
        if schema == "src":
            continue
        for table_dir in sorted(p for p in schema_dir.iterdir() if p.is_dir()):
            if any(table_dir.glob("*.parquet")):
                found[(schema, table_dir.name)] = table_dir
    return found


def mirror_warehouse(wh: duckdb.DuckDBPyConnection, warehouse_dir: Path) -> int:
    """Point warehouse.duckdb at the tables dbt built on Spark: one view per table over its
    Parquet files, in the same schema and name (marts.lead_alerts), replacing a DuckDB table
    of that name from a run on the other engine. Returns how many tables it mirrors."""
    tables = spark_tables(warehouse_dir)
    kinds = {(s, t): k for s, t, k in wh.execute(
        "select table_schema, table_name, table_type from information_schema.tables").fetchall()}
    for (schema, table), folder in tables.items():
        wh.execute(f'create schema if not exists "{schema}"')
        if kinds.get((schema, table)) == "BASE TABLE":
            wh.execute(f'drop table "{schema}"."{table}"')
        glob = (folder / "*.parquet").as_posix().replace("'", "''")
        wh.execute(f'create or replace view "{schema}"."{table}" as '
                   f"select * from read_parquet('{glob}')")
    return len(tables)


def engine_parity(one: Path, other: Path) -> dict[str, float | int]:
    """How alike two data dirs' results are (one run per engine on the same landing folder):
    the share of crosswalk pairs (two records, one person) found by both, and the share of
    open alerts found by both. person_ids and alert ids are random or salted per data dir, so
    a person is compared by the records it holds and an alert by its rule, that person, its
    due date and the organisation it goes to. Counts only; nothing identifiable is returned."""
    con = duckdb.connect(":memory:")
    for name, folder in (("a", one), ("b", other)):
        con.execute(f"attach '{(folder / 'vault.duckdb').as_posix()}' as v{name} (read_only)")
        con.execute(f"attach '{(folder / 'warehouse.duckdb').as_posix()}' as w{name} "
                    "(read_only)")
        con.execute(f"""create temp table records_{name} as
            select person_id, source || ':' || record_key as record
            from v{name}.linkage.person_crosswalk""")
        con.execute(f"""create temp table pairs_{name} as
            select x.record as one, y.record as other from records_{name} as x
            join records_{name} as y on x.person_id = y.person_id and x.record < y.record""")
        con.execute(f"""create temp table alerts_{name} as
            select a.rule_code, p.who, a.due_date, a.assigned_organisation
            from w{name}.marts.lead_alerts as a
            join (select person_id, string_agg(record, ',' order by record) as who
                  from records_{name} group by person_id) as p using (person_id)
            where a.status = 'OPEN'""")
    out: dict[str, float | int] = {}
    for what in ("pairs", "alerts"):
        a, b, both, either = con.execute(f"""
            select (select count(*) from {what}_a), (select count(*) from {what}_b),
                   (select count(*) from (select * from {what}_a intersect
                                          select * from {what}_b)),
                   (select count(*) from (select * from {what}_a union
                                          select * from {what}_b))""").fetchall()[0]
        out.update({f"{what}_one": a, f"{what}_other": b, f"{what}_both": both,
                    f"{what}_identical_share": round(both / either, 4) if either else 1.0})
    con.close()
    return out
