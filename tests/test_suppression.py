"""The marts' small-cell suppression (dbt_project/macros/suppression.sql), run by dbt itself on
DuckDB over hand-made and random tables, and judged by pipelines.suppression's check."""

import itertools
import json
import os
import random
import subprocess
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from pipelines.dbt_manifest import dbt_executable
from pipelines.suppression import TOTAL, disclosed_small_cells

DBT_PROJECT = Path(__file__).resolve().parent.parent / "dbt_project"
MEASURES = ["tested", "due", "in_time"]
PAIRS = [("due", "in_time")]


def _dbt(data_dir: Path, *args: str) -> str:
    env = {**os.environ, "PLUMBLINE_DATA_DIR": str(data_dir)}
    done = subprocess.run(
        [dbt_executable(), "--quiet", *args, "--profiles-dir", str(DBT_PROJECT),
         "--target-path", str(data_dir / "target")],
        cwd=DBT_PROJECT, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def suppress(tmp_path_factory):
    """suppress(frame) -> the frame as the marts would publish it (groups: month, cells:
    zip5). One dbt call per frame; put many groups in one frame."""
    data_dir = tmp_path_factory.mktemp("suppression")
    _dbt(data_dir, "seed", "--select", "lead_parameters")

    def run(frame: pd.DataFrame) -> pd.DataFrame:
        with duckdb.connect(str(data_dir / "warehouse.duckdb")) as con:
            con.register("frame", frame)
            con.execute("create or replace table main.fixture as select * from frame")
        out = _dbt(data_dir, "show", "--limit", "-1", "--output", "json", "--inline",
                   "{{ suppressed_cells('main.fixture', ['month'], 'zip5', "
                   f"{MEASURES!r}, {[list(p) for p in PAIRS]!r}) }}}}")
        shown = pd.DataFrame(json.loads(out)["show"])
        return shown.astype({m: "Int64" for m in MEASURES})

    return run


def table(rows: list[tuple]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["month", "zip5", *MEASURES])


def cell(out: pd.DataFrame, month: str, zip5: str) -> pd.Series:
    (row,) = out[(out.month == month) & (out.zip5 == zip5)].itertuples(index=False)
    return pd.Series(row._asdict())


def test_hand_made_tables(suppress) -> None:
    out = suppress(table([
        # a count under 11 is hidden, a 0 is shown
        ("small", "21201", 0, 40, 25), ("small", "21202", 5, 50, 30),
        # one hidden cell beside a published total: the smallest other non-zero goes too
        ("complement", "a", 5, 0, 0), ("complement", "b", 20, 0, 0),
        ("complement", "c", 30, 0, 0),
        # a late count (due - in time) under 11 hides in time, and so the share
        ("late", "a", 0, 40, 35), ("late", "b", 0, 60, 20),
    ]))
    z1, z2 = cell(out, "small", "21201"), cell(out, "small", "21202")
    assert (z1.tested, z1.due, z1.in_time, z1.share_in_time) == (0, 40, 25, 0.625)
    assert pd.isna(z2.tested)
    tested = dict(zip(out[out.month == "complement"].zip5, out[out.month == "complement"].tested))
    assert pd.isna(tested["a"]) and pd.isna(tested["b"]) and tested["c"] == 30
    assert tested[TOTAL] == 55
    a = cell(out, "late", "a")
    assert a.due == 40 and pd.isna(a.in_time) and pd.isna(a.share_in_time)
    assert cell(out, "late", TOTAL).due == 100


def test_random_tables_never_disclose_a_small_cell(suppress) -> None:
    rng = random.Random(3)
    rows = []
    for t in range(300):
        rows += [(f"t{t}-{m}", z, rng.choice([0, 0, 1, 3, 9, 10, 11, 12, 40, 200]),
                  due := rng.choice([0, 2, 11, 15, 30, 80]), rng.randint(0, due))
                 for m, z in itertools.product(["m1", "m2"], ["a", "b", "c", "d"])]
    out = suppress(table(rows))
    assert len(out) == len(rows) + 600  # every cell, and a total per group
    assert disclosed_small_cells(out, ["month"], "zip5", MEASURES, PAIRS) == []
    shown = out.dropna(subset=["due", "in_time"])
    assert len(shown) > len(out) / 4  # it does not hide everything to be safe
