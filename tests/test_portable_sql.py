"""The dbt project is portable SQL: nothing DuckDB-only in a model, test or shared macro, so
the same project builds on DuckDB and on Spark (dbt-spark). Engine-specific SQL lives only in
dispatched implementations (`default__*`, `spark__*` macros)."""

from __future__ import annotations

import re

from pipelines.dbt_manifest import DBT_DIR

# DuckDB-only syntax and functions (Spark has none of them, or means something else)
DUCKDB_ONLY = {
    "qualify": r"\bqualify\b",
    "arg_max / arg_min": r"\barg_(max|min)(_null)?\s*\(",
    "list_contains / list functions": r"\blist_[a-z_]+\s*\(",
    "union all by name": r"\bunion\s+all\s+by\s+name\b",
    "date_diff": r"\bdate_diff\s*\(",
    "strftime": r"\bstrftime\s*\(",
    "generate_series / unnest": r"\b(generate_series|unnest)\s*\(",
    "string_split": r"\bstring_split\s*\(",
    ":: casts": r"::",
    "varchar (Spark wants string)": r"\bvarchar\b",
    "* exclude (DuckDB's name for except)": r"\*\s*exclude\b",
}


def portable_text(sql: str) -> str:
    """The SQL a model runs on every engine: without comments and without the dispatched
    per-engine implementations."""
    sql = re.sub(r"\{#.*?#\}", "", sql, flags=re.DOTALL)
    sql = re.sub(r"\{%-?\s*macro\s+(default|spark|duckdb)__.*?\{%-?\s*endmacro\s*-?%\}", "",
                 sql, flags=re.DOTALL)
    return "\n".join(line.split("--")[0] for line in sql.splitlines())


def test_no_duckdb_only_sql_in_the_dbt_project() -> None:
    files = [p for d in ("models", "macros", "tests") for p in (DBT_DIR / d).rglob("*.sql")]
    assert len(files) > 30
    found = []
    for path in files:
        text = portable_text(path.read_text())
        for what, pattern in DUCKDB_ONLY.items():
            for m in re.finditer(pattern, text, flags=re.IGNORECASE):
                line = text[:m.start()].count("\n") + 1
                found.append(f"{path.relative_to(DBT_DIR)}:{line}: {what}")
    assert not found, "DuckDB-only SQL (use macros/portable.sql):\n" + "\n".join(found)


def test_the_check_finds_what_it_looks_for() -> None:
    sample = ("select * from t qualify row_number() over () = 1 -- qualify in a comment\n"
              "{# arg_max(a, b) in a comment #} select arg_max(a, b), x::int from t\n"
              "{% macro default__f() %}strftime(d, '%Y'){% endmacro %}")
    text = portable_text(sample)
    hits = {what for what, p in DUCKDB_ONLY.items() if re.search(p, text, flags=re.IGNORECASE)}
    assert hits == {"qualify", "arg_max / arg_min", ":: casts"}
