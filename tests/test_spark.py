"""PLUMBLINE_ENGINE=spark: the test city through `plumbline run` on local Spark (Splink's Spark
backend, dbt-spark, Parquet tables) gives the same people and the same open alerts as the
DuckDB run of the same landing folder, and leaves no identity outside the vault."""

from __future__ import annotations

import duckdb
import pytest

from pipelines.spark import engine_parity, spark_tables
from tests.conftest import City, Run, plumbline_env, run_cli


@pytest.fixture(scope="module")
def spark_run(city: City, pipeline_run: Run, tmp_path_factory: pytest.TempPathFactory) -> Run:
    assert pipeline_run.returncode == 0, pipeline_run.stdout  # the DuckDB run to compare with
    data_dir = tmp_path_factory.mktemp("spark_data")
    env = {**plumbline_env(data_dir, city.landing), "PLUMBLINE_ENGINE": "spark"}
    proc = run_cli("run", env=env)
    return Run(city, data_dir, proc.stdout + proc.stderr, proc.returncode)


def test_the_spark_run_succeeds_and_builds_on_spark(spark_run: Run) -> None:
    assert spark_run.returncode == 0, spark_run.stdout[-3000:]
    assert "Open alerts:" in spark_run.stdout
    # dbt built Parquet tables under the data dir's Spark warehouse, and the Python stages
    # read them through the warehouse file's views
    tables = spark_tables(spark_run.data_dir / "spark" / "warehouse")
    assert ("marts", "lead_alerts") in tables and ("intermediate", "int_lead_confirmations") in tables
    with duckdb.connect(str(spark_run.data_dir / "warehouse.duckdb"), read_only=True) as wh:
        kind, = wh.execute("select table_type from information_schema.tables where "
                           "table_schema = 'marts' and table_name = 'lead_alerts'").fetchall()[0]
        assert kind == "VIEW"
    # Spark's per-statement warnings stay out of what the operator reads
    assert "WARN SparkSession" not in spark_run.stdout


def test_same_people_and_same_open_alerts_as_duckdb(spark_run: Run, pipeline_run: Run) -> None:
    assert spark_run.returncode == 0, spark_run.stdout[-3000:]
    parity = engine_parity(pipeline_run.data_dir, spark_run.data_dir)
    assert parity["pairs_one"] > 100 and parity["alerts_one"] > 10, parity
    assert parity["pairs_identical_share"] >= 0.99, parity
    assert parity["alerts_identical_share"] >= 0.99, parity
    # every organisation with an open alert got its list, on both engines
    lists = {p.relative_to(spark_run.data_dir / "outbox").parts[0]
             for p in (spark_run.data_dir / "outbox").rglob("alerts_*.csv")}
    duck = {p.relative_to(pipeline_run.data_dir / "outbox").parts[0]
            for p in (pipeline_run.data_dir / "outbox").rglob("alerts_*.csv")}
    assert lists == duck and lists


def test_no_identity_leaves_the_vault_on_spark(spark_run: Run) -> None:
    """What Spark keeps (src Parquet, warehouse tables) holds no name or birth date, and what
    Splink wrote on Spark for lineage (standardised names) is gone when the run ends."""
    assert spark_run.returncode == 0, spark_run.stdout[-3000:]
    data = spark_run.data_dir
    assert not (data / "linkage" / "spark_checkpoints").exists()
    with duckdb.connect(str(data / "vault.duckdb"), read_only=True) as vault:
        names = {n for (n,) in vault.execute(
            "select distinct upper(trim(last_name)) from linkage.person_records "
            "where length(trim(last_name)) >= 4").fetchall()}
        dobs = {d for (d,) in vault.execute(
            "select distinct dob from linkage.person_records where dob is not null").fetchall()}
    assert len(names) > 50
    con = duckdb.connect(":memory:")
    files = [p for p in (data / "spark").rglob("*.parquet")]
    assert files
    for f in files:
        frame = con.execute(f"select * from read_parquet('{f.as_posix()}')").df()
        for column in frame.columns:
            cells = frame[column].dropna().tolist()
            values = {str(v).upper().strip() for cell in cells
                      for v in (cell if hasattr(cell, "__len__") and not isinstance(cell, str)
                                else [cell])}
            leaked = values & (names | dobs)
            assert not leaked, f"{f.relative_to(data)}: column {column} holds identities"
