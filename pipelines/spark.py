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

import shutil
from pathlib import Path

import duckdb
import pandas as pd

from pipelines.stores import REPO_ROOT, Settings
from pipelines.warehouse import write_sources

CONF_DIR = REPO_ROOT / "pipelines" / "spark_conf"  # Spark's log4j settings (errors only)


def session(settings: Settings, app: str):
    """A Spark session for this run: Spark Connect when PLUMBLINE_SPARK_REMOTE names one, else
    PLUMBLINE_SPARK_MASTER (local mode by default), with Splink's similarity functions on its
    classpath (the jar inside Splink's wheel: nothing is downloaded)."""
    from pyspark.sql import SparkSession
    from splink.backends.spark import similarity_jar_location

    builder = SparkSession.builder.appName(app)
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
                   .config("spark.driver.extraJavaOptions",
                           f"-Dlog4j.configurationFile={CONF_DIR / 'log4j2.properties'}"))
    return (builder
            .config("spark.sql.shuffle.partitions", "4" if settings.spark_master.startswith(
                "local") and not settings.spark_remote else "200")
            .config("spark.sql.session.timeZone", "UTC")
            .getOrCreate())


def write_spark_sources(tables: dict[str, pd.DataFrame], folder: Path) -> None:
    """Each src table as Parquet in folder/<table>/, typed exactly as the DuckDB warehouse
    types it (the same frames through the same `write_sources`). A table is replaced whole: its
    new file is written beside the old one, then swapped in."""
    folder.mkdir(parents=True, exist_ok=True)
    with duckdb.connect(":memory:") as con:
        write_sources(con, tables)
        for name in tables:
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
