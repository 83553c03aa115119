"""The stores as a run holds them: the vault open across a run's steps."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from pipelines.stores import checkpointing, connect, held_open


def _other_process(path: Path, sql: str) -> subprocess.CompletedProcess[str]:
    code = f"import duckdb; print(duckdb.connect({str(path)!r}).execute({sql!r}).fetchall())"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=False)


def test_a_store_held_open_gives_each_step_a_connection_of_its_own(tmp_path: Path) -> None:
    path = tmp_path / "vault.duckdb"
    with held_open(path):
        with connect(path) as step:
            step.execute("create table t as select 1 as x")
            step.execute("create temp table scratch as select 1 as y")
        with connect(path, read_only=True) as later:
            assert later.execute("select x from t").fetchall() == [(1,)]
            # a step's temporary tables went with its connection
            assert later.execute("select count(*) from duckdb_tables() "
                                 "where table_name = 'scratch'").fetchone() == (0,)
        # the file stays this process's while the run holds it: another process waits
        busy = _other_process(path, "select 1")
        assert busy.returncode != 0 and "lock" in busy.stderr.lower()
    # let go at the run's end: another process opens it and finds what the steps wrote
    done = _other_process(path, "select x from t")
    assert done.returncode == 0 and done.stdout.strip() == "[(1,)]"


def test_a_held_store_is_checkpointed_while_another_process_works(tmp_path: Path) -> None:
    path = tmp_path / "vault.duckdb"
    wal = path.with_name(path.name + ".wal")
    with held_open(path):
        with connect(path) as step:
            step.execute("create table t as select range as x from range(200000)")
        assert wal.exists() and wal.stat().st_size > 0  # written, not yet checkpointed
        with checkpointing(path):
            pass  # dbt builds the warehouse here, in its own process
        assert not wal.exists() or wal.stat().st_size == 0
        with connect(path, read_only=True) as later:
            assert later.execute("select count(*) from t").fetchone() == (200000,)
    # a store that is not held: nothing to do, and nothing goes wrong
    with checkpointing(tmp_path / "other.duckdb"):
        pass
    assert not (tmp_path / "other.duckdb").exists()
