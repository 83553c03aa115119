"""Dagster's run history in one SQLite file, written without a disk flush per event.

Dagster's consolidated SQLite event log (pipelines/dagster_instance.yaml) builds a new SQLAlchemy
engine and opens a new SQLite connection for every event it stores, and commits each with
SQLite's default `synchronous=FULL`: a flush of the write-ahead log to disk per event. A weekly
run stores about 500 events (a step's start and end, every materialization and every dbt test's
check result); on a 2-core machine that cost 11.2 ms a materialization and 11.5 ms a check
result (`make bench-events`), some 4 s of a 100k city's weekly run, whatever the week brought;
here, 1.6 and 1.2 ms; and 0.6 ms each once the asset table's columns are not read back from
SQLite for every asset event (measured again on 2026-12-07, when the stock storage took 4.9 and
5.4 ms: the machine's speed moves).

This storage keeps one engine and its pooled connections per process and sets
`synchronous=NORMAL`, SQLite's documented setting for write-ahead-log databases: every commit is
still atomic and the file is never corrupted, and only an operating-system crash or power cut in
the moment after a commit can lose the last events (never the warehouse's data, which is DuckDB's
and fsynced by it; a run that lost its end is marked failed by the next `plumbline run`).
Same tables, same file, same migrations: the webserver and `dagster` CLI read it unchanged.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Any

import sqlalchemy as db
from dagster._core.storage.event_log import ConsolidatedSqliteEventLogStorage
from dagster._core.storage.sql import create_engine
from dagster._core.storage.sqlite import SQLITE_BUSY_TIMEOUT_SECONDS


def _sqlite_engine(conn_string: str) -> db.engine.Engine:
    engine = create_engine(conn_string, pool_size=2, max_overflow=8,
                           connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS,
                                         "check_same_thread": False})

    @db.event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.execute("PRAGMA synchronous=NORMAL")

    return engine


class PlumblineEventLogStorage(ConsolidatedSqliteEventLogStorage):
    """ConsolidatedSqliteEventLogStorage with one engine per process and synchronous=NORMAL."""

    _engine_pid: int = -1
    _engine: db.engine.Engine | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._asset_key_columns: set[str] = set()  # columns found in the asset_keys table
        super().__init__(*args, **kwargs)

    def _shared_engine(self) -> db.engine.Engine:
        # a forked child must not share its parent's pooled connections
        if self._engine is None or self._engine_pid != os.getpid():
            self._engine = _sqlite_engine(self._conn_string)
            self._engine_pid = os.getpid()
        return self._engine

    @contextmanager
    def _connect(self):
        with self._shared_engine().connect() as conn, conn.begin():
            yield conn

    def has_table(self, table_name: str) -> bool:
        engine = self._shared_engine()
        with engine.connect() as conn:
            return bool(engine.dialect.has_table(conn, table_name))

    def _has_asset_key_col_on_connection(self, conn: Any, column_name: str) -> bool:
        # Dagster reads the asset_keys table's columns back from SQLite (a reflection through
        # SQLAlchemy) on every asset event it stores: some 200 a run. Columns are only ever
        # added (by `dagster instance migrate`), so a column found is remembered; one not found
        # is looked for again next time.
        if column_name in self._asset_key_columns:
            return True
        found = super()._has_asset_key_col_on_connection(conn, column_name)
        if found:
            self._asset_key_columns.add(column_name)
        return found

    def dispose(self) -> None:
        super().dispose()
        if self._engine is not None and self._engine_pid == os.getpid():
            self._engine.dispose()
        self._engine = None
