"""The project's DuckDB materializations (dbt_project/macros/materializations.sql): each table
and view replaced in one statement, a relation that changes kind replaced too, and anything
they do not handle built by dbt-duckdb's own materialization."""

import os
import shutil
import subprocess
from pathlib import Path

import duckdb

from pipelines.dbt_manifest import DBT_DIR, dbt_executable


def _project(root: Path, models: dict[str, str]) -> Path:
    """A dbt project with this project's settings and macros, and only `models`."""
    project = root / "project"
    shutil.copytree(DBT_DIR / "macros", project / "macros")
    for name in ("dbt_project.yml", "profiles.yml"):
        shutil.copy(DBT_DIR / name, project / name)
    (project / "seeds").mkdir()
    text = (project / "dbt_project.yml").read_text()
    (project / "dbt_project.yml").write_text(text.replace('["../seeds"]', '["seeds"]'))
    (project / "models").mkdir()
    for name, sql in models.items():
        (project / "models" / f"{name}.sql").write_text(sql)
    return project


def _run(project: Path, data: Path) -> str:
    # what other tests in this process left in the environment (DBT_TARGET_PATH, set by the
    # Dagster resource, say) must not send this project's artifacts elsewhere
    env = {k: v for k, v in os.environ.items() if not k.startswith("DBT_")}
    env.update(PLUMBLINE_DATA_DIR=str(data), PLUMBLINE_ENGINE="duckdb",
               DBT_TARGET_PATH=str(project / "target"))
    done = subprocess.run([dbt_executable(), "run", "--profiles-dir", str(project)],
                          cwd=project, env=env, capture_output=True, text=True, timeout=300,
                          check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def _relations(data: Path) -> dict[str, str]:
    with duckdb.connect(str(data / "warehouse.duckdb"), read_only=True) as con:
        return dict(con.execute("select table_name, table_type from information_schema.tables "
                                "where table_schema = 'main'").fetchall())


def _statements(project: Path, model: str) -> str:
    return (project / "target" / "run" / "plumbline" / "models" / f"{model}.sql").read_text()


def test_tables_and_views_are_replaced_in_one_statement_and_may_change_kind(tmp_path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    project = _project(tmp_path, {
        "counts": "{{ config(materialized='table') }}\nselect 1 as n union all select 2",
        "shown": "{{ config(materialized='view') }}\nselect n * 10 as n from {{ ref('counts') }}",
        "with_header": "{{ config(materialized='table', sql_header='set threads=1;') }}\n"
                       "select 3 as n",
    })
    _run(project, data)
    _run(project, data)  # a second build replaces what the first built
    assert _relations(data) == {"counts": "BASE TABLE", "shown": "VIEW",
                                "with_header": "BASE TABLE"}
    assert "create or replace table" in _statements(project, "counts")
    assert "create or replace view" in _statements(project, "shown")
    # a SQL header is dbt-duckdb's to handle: its own materialization built it
    assert "create or replace" not in _statements(project, "with_header")
    with duckdb.connect(str(data / "warehouse.duckdb"), read_only=True) as con:
        assert sorted(con.execute("select n from shown").fetchall()) == [(10,), (20,)]

    # the view becomes a table and the table a view: each replaced, no leftovers
    (project / "models" / "shown.sql").write_text(
        "{{ config(materialized='table') }}\nselect n * 10 as n from {{ ref('counts') }}")
    (project / "models" / "counts.sql").write_text(
        "{{ config(materialized='view') }}\nselect 1 as n union all select 2")
    _run(project, data)
    assert _relations(data) == {"counts": "VIEW", "shown": "BASE TABLE",
                                "with_header": "BASE TABLE"}
    with duckdb.connect(str(data / "warehouse.duckdb"), read_only=True) as con:
        assert sorted(con.execute("select n from shown").fetchall()) == [(10,), (20,)]
