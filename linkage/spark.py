"""Scoring on Spark: the trained model's blocked pairs, scored by Splink's Spark backend.

Scoring is the part of linkage that grows faster than the records (every blocked pair is
compared), so it is the part that moves to a cluster. Training stays on a sample (the same at
any size, linkage/model.py) and clustering, the id history and the constraints work on the
scored pairs, which grow with the records; they run where the vault is, as on DuckDB.

The caller owns the Spark session (local, a cluster, or Spark Connect): linkage is a library
and reads no settings. Records reach Spark as Arrow, in memory, and Splink's lineage breaks are
written to `checkpoint_dir`, which the caller puts inside the protected data dir and empties
when the run is done (`SparkScorer.close`).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pyarrow as pa

from linkage.model import pair_columns, spark_model


def _double_literal(node):
    """A float literal cast to double, as a double literal (`0.25D`): what Splink's own Spark
    dialect writes, so Spark never reads a probability as a 38-digit decimal."""
    from sqlglot import exp

    if (isinstance(node, (exp.Cast, exp.TryCast)) and isinstance(node.this, exp.Literal)
            and node.to.is_type(exp.DataType.Type.DOUBLE) and node.this.name != "Infinity"
            and not node.this.is_string):
        return exp.Var(this=f"{node.this.name}D")
    return node


def _spark_api():
    """Splink's SparkAPI, writing its SQL with sqlglot's own Spark dialect. Splink subclasses
    sqlglot's Spark generator for one rule (double literals, above), and sqlglot's compiled
    build (sqlglotc, which dagster-dbt's sqlglot[rs] brings) cannot instantiate an interpreted
    subclass of a compiled class ("interpreted classes cannot inherit from compiled"); the
    same rule as a tree transform needs no subclass."""
    import sqlglot
    from splink import SparkAPI

    class PortableSparkAPI(SparkAPI):
        def _setup_for_execute_sql(self, sql: str, physical_name: str) -> str:
            tree = sqlglot.parse_one(sql, read="spark")
            return tree.transform(_double_literal).sql(dialect="spark", pretty=True)

    return PortableSparkAPI


class SparkScorer:
    """Score pairs with a saved model on Spark; the same pairs as `model.score_pairs`."""

    def __init__(self, spark, checkpoint_dir: Path) -> None:
        self.spark = spark
        self.checkpoint_dir = checkpoint_dir
        checkpoint_dir.mkdir(parents=True, exist_ok=True)
        spark.sparkContext.setCheckpointDir(str(checkpoint_dir))
        partitions = int(spark.conf.get("spark.sql.shuffle.partitions", "8"))
        self.db_api = _spark_api()(spark_session=spark, break_lineage_method="parquet",
                               num_partitions_on_repartition=partitions)

    def _frame(self, table: pa.Table):
        return self.spark.createDataFrame(table)

    def score(self, model_path: Path, tf: dict[str, pd.DataFrame], new: pa.Table,
              existing: pa.Table | None, threshold: float) -> pa.Table:
        """Every blocked pair among the records of `new`, and between them and those of
        `existing`, at or above `threshold`: ids, match weight and probability, and each
        comparison's weight (the columns `model.score_pairs` keeps)."""
        from splink import Linker

        model = spark_model(json.loads(model_path.read_text()))
        model["retain_intermediate_calculation_columns"] = True
        keep = pair_columns(model)
        if new.num_rows == 0:  # a week with no new or changed record: nothing to score
            return pa.table({c: pa.array([], pa.string() if c.startswith("unique_id")
                                         else pa.float64()) for c in keep})
        new_sdf = self.db_api.register(self._frame(new))
        linker = Linker(new_sdf, model, log_level=None)
        for column, frame in tf.items():
            linker.table_management.register_term_frequency_lookup(
                self.db_api.register(self.spark.createDataFrame(frame)), column)
        found = [linker.inference.predict_within(new_sdf, threshold_match_probability=threshold,
                                                 warning_mode="never")]
        if existing is not None and existing.num_rows:
            found.append(linker.inference.predict_between(
                new_sdf, self.db_api.register(self._frame(existing)),
                threshold_match_probability=threshold, warning_mode="never"))
        parts = [f.as_spark_dataframe().select(*keep).toArrow() for f in found]
        self.db_api.delete_tables_created_by_splink_from_db()
        return pa.concat_tables([p.cast(parts[0].schema) for p in parts])

    def close(self) -> None:
        """Remove what Splink wrote for lineage (standardised names among it)."""
        shutil.rmtree(self.checkpoint_dir, ignore_errors=True)
