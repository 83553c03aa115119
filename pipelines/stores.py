"""Where Plumbline keeps things, and the settings that say where.

    DATA_DIR/vault.duckdb       the only identifiable store (raw rows, quarantine, linkage)
    DATA_DIR/warehouse.duckdb   pseudonymous only: person_id, keyed pseudonyms, ages in months
    DATA_DIR/outbox/<agency>/   receipts and alert lists going back to partners
    DATA_DIR/quarantine/        rejected deliveries, kept byte for byte
    DATA_DIR/requests/          a data-lab request's rows, only until it is answered and erased

Settings come from the environment (`PLUMBLINE_*`), read in one place.
"""

from __future__ import annotations

import csv
import fcntl
import logging
import os
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import duckdb

log = logging.getLogger("plumbline")

AGENCIES = ("health", "housing", "schools", "providers")
REPO_ROOT = Path(__file__).resolve().parent.parent
SEEDS_DIR = REPO_ROOT / "seeds"  # the rule tables: dbt seeds, also read by Python stages
DEFAULT_DATA_DIR = REPO_ROOT / "data"
SPARK_CONF_DIR = REPO_ROOT / "pipelines" / "spark_conf"  # Spark's log4j settings (errors only)


@dataclass(frozen=True)
class Settings:
    """Every setting of a deployment, read once (`load_settings`) from the PLUMBLINE_*
    environment variables listed in the README; nothing else reads the environment."""

    landing: Path
    data_dir: Path
    as_of: date
    pseudonym_key: bytes
    ocid_prefix: str = "ocds-plumbline"  # PLUMBLINE_OCID_PREFIX: the city's OCDS prefix
    buyer_name: str = "City Health Department"  # PLUMBLINE_BUYER_NAME: OCDS buyer/publisher
    linkage_memory: str = "3GB"  # PLUMBLINE_LINKAGE_MEMORY: DuckDB memory bound of linkage
    weekly_capacity: str = ""  # PLUMBLINE_WEEKLY_CAPACITY: "providers=25,HHN=10" overrides
    timezone: str = "UTC"  # PLUMBLINE_TIMEZONE: the schedules' time zone (IANA name)
    engine: str = "duckdb"  # PLUMBLINE_ENGINE: duckdb (one machine) or spark
    spark_master: str = "local[2]"  # PLUMBLINE_SPARK_MASTER: where Spark runs (local mode)
    spark_remote: str = ""  # PLUMBLINE_SPARK_REMOTE: a Spark Connect URL instead (sc://...)
    spark_memory: str = "3g"  # PLUMBLINE_SPARK_MEMORY: the local Spark driver's heap

    @property
    def vault_path(self) -> Path:
        return self.data_dir / "vault.duckdb"

    @property
    def warehouse_path(self) -> Path:
        return self.data_dir / "warehouse.duckdb"

    @property
    def outbox(self) -> Path:
        return self.data_dir / "outbox"

    @property
    def quarantine(self) -> Path:
        return self.data_dir / "quarantine"

    @property
    def requests_dir(self) -> Path:
        """Data-lab requests' own stores: identifiable, one file per open request."""
        return self.data_dir / "requests"

    def request_store(self, request_id: str) -> Path:
        return self.requests_dir / f"{request_id}.duckdb"

    @property
    def spark_dir(self) -> Path:
        """The Spark engine's files: src Parquet, the warehouse tables and their catalog."""
        return self.data_dir / "spark"

    @property
    def linkage_dir(self) -> Path:
        """The city's trained linkage model, and the linkage stage's spill space."""
        return self.data_dir / "linkage"


def seed_values(name: str, key: str = "setting") -> dict[str, float]:
    """A name-and-value rule table from seeds/ (`<key>,value,...`): thresholds are data."""
    with open(SEEDS_DIR / f"{name}.csv", newline="") as fh:
        return {row[key]: float(row["value"]) for row in csv.DictReader(fh)}


def linkage_setting(name: str) -> float:
    """A linkage setting from `seeds/linkage_settings.csv` (thresholds are data), passed to the
    linkage library by its callers."""
    settings = seed_values("linkage_settings")
    if name not in settings:
        raise KeyError(f"seeds/linkage_settings.csv has no setting {name!r}")
    return settings[name]


def ingest_setting(name: str) -> float:
    """An ingest setting from `seeds/ingest_settings.csv`."""
    settings = seed_values("ingest_settings")
    if name not in settings:
        raise KeyError(f"seeds/ingest_settings.csv has no setting {name!r}")
    return settings[name]


def data_dir_from_env() -> Path:
    return Path(os.environ.get("PLUMBLINE_DATA_DIR", DEFAULT_DATA_DIR)).resolve()


def landing_from_env() -> Path:
    return Path(os.environ.get("PLUMBLINE_LANDING", data_dir_from_env() / "landing")).resolve()


def has_table(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> bool:
    """Whether a store already has a table (a new data dir has none of them yet)."""
    return bool(con.execute(
        "select count(*) from information_schema.tables where table_schema = ? "
        "and table_name = ?", [schema, table]).fetchall()[0][0])


def private_by_default() -> None:
    """Everything Plumbline creates is readable by its own user only (0700 folders, 0600
    files), whatever the deployment's umask: the vault, quarantine, requests, each
    organisation's outbox and Dagster's storage hold identities. What is meant to be shared is
    opened up explicitly (`share`)."""
    os.umask(0o077)


def share(folder: Path) -> None:
    """Open a published folder to group and others (0755 folders, 0644 files): the published
    snapshot and the public pages only (docs/deployment.md)."""
    if not folder.exists():
        return
    folder.chmod(0o755)
    for p in folder.rglob("*"):
        if not p.is_symlink():
            p.chmod(0o755 if p.is_dir() else 0o644)


def load_settings() -> Settings:
    private_by_default()
    data_dir = data_dir_from_env()
    landing = landing_from_env()
    as_of_text = os.environ.get("PLUMBLINE_AS_OF", "").strip()
    as_of = date.fromisoformat(as_of_text) if as_of_text else date.today()
    env = os.environ
    return Settings(landing, data_dir, as_of, pseudonym_key(data_dir),
                    ocid_prefix=env.get("PLUMBLINE_OCID_PREFIX", "").strip() or "ocds-plumbline",
                    buyer_name=(env.get("PLUMBLINE_BUYER_NAME", "").strip()
                                or "City Health Department"),
                    linkage_memory=env.get("PLUMBLINE_LINKAGE_MEMORY", "").strip() or "3GB",
                    weekly_capacity=env.get("PLUMBLINE_WEEKLY_CAPACITY", "").strip(),
                    timezone=timezone_from_env(), engine=engine_from_env(),
                    spark_master=env.get("PLUMBLINE_SPARK_MASTER", "").strip() or "local[2]",
                    spark_remote=env.get("PLUMBLINE_SPARK_REMOTE", "").strip(),
                    spark_memory=env.get("PLUMBLINE_SPARK_MEMORY", "").strip() or "3g")


ENGINES = ("duckdb", "spark")


def engine_from_env() -> str:
    """PLUMBLINE_ENGINE: `duckdb` (the default: DuckDB files on one machine) or `spark`."""
    engine = os.environ.get("PLUMBLINE_ENGINE", "").strip().lower() or "duckdb"
    if engine not in ENGINES:
        raise ValueError(f"PLUMBLINE_ENGINE is {engine!r}: set it to one of "
                         f"{', '.join(ENGINES)} (or leave it unset for duckdb)")
    return engine


def timezone_from_env() -> str:
    """PLUMBLINE_TIMEZONE, the zone the schedules run in (default UTC)."""
    return os.environ.get("PLUMBLINE_TIMEZONE", "").strip() or "UTC"


def pseudonym_key(data_dir: Path) -> bytes:
    """The secret behind every keyed pseudonym.

    Production sets `PLUMBLINE_PSEUDONYM_KEY`. Without it (the demo), a random key is created
    once in the data dir, so pseudonyms stay stable across runs on this machine; a warning says
    so, because anyone who can read the data dir can then recompute pseudonyms.
    """
    env = os.environ.get("PLUMBLINE_PSEUDONYM_KEY", "").strip()
    if env:
        return env.encode()
    key_file = data_dir / "pseudonym.key"
    if not key_file.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        key_file.write_text(secrets.token_hex(32))
        key_file.chmod(0o600)
        log.warning(
            "PLUMBLINE_PSEUDONYM_KEY is not set: created a local key in %s (demo only; "
            "set the variable from a secret store in production)", key_file)
    return key_file.read_text().strip().encode()


@contextmanager
def connect(path: Path, *, read_only: bool = False, wait_seconds: float = 300.0
            ) -> Iterator[duckdb.DuckDBPyConnection]:
    """Open a DuckDB file, waiting while another process holds its write lock.

    DuckDB allows one writing process per file. Two Plumbline runs at once (the sensor's and
    one by hand) therefore queue here instead of failing with an obscure lock error; after
    `wait_seconds` the error says plainly which store was busy.
    """
    held = _HELD.get(path.resolve())
    if held is not None:  # open for the whole run already: another connection to it
        con = held.cursor()
        try:
            con.execute("SET enable_progress_bar = false")
            yield con
        finally:
            con.close()
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + wait_seconds
    delay = 0.2
    while True:
        try:
            con = duckdb.connect(str(path), read_only=read_only)
            break
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower() or time.monotonic() > deadline:
                raise RuntimeError(
                    f"{path.name} is in use by another process (another Plumbline run?) and "
                    f"stayed busy for {wait_seconds:.0f}s; try again when it has finished"
                ) from None
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
    try:
        con.execute("SET enable_progress_bar = false")
        yield con
    finally:
        con.close()


# stores this process keeps open across a run's steps (`held_open`), by resolved path
_HELD: dict[Path, duckdb.DuckDBPyConnection] = {}


@contextmanager
def held_open(path: Path) -> Iterator[None]:
    """Keep a DuckDB file open in this process while a run's steps come and go.

    Each step opens the vault and closes it again: opening reads its catalog, closing writes
    a checkpoint, some 15 ms and more each, about thirty times in a weekly run. Inside this,
    `connect` hands each step a connection of its own to the file already open (its own
    transactions and temporary tables, as before); the file is closed, and checkpointed, once
    at the end. Other processes wait for it as they wait for any step."""
    key = path.resolve()
    if key in _HELD:
        yield
        return
    with connect(path) as con:
        _HELD[key] = con
        try:
            yield
        finally:
            _HELD.pop(key, None)


@contextmanager
def checkpointing(path: Path) -> Iterator[None]:
    """While the body runs, write a held store's checkpoint on a thread of this process.

    A held store (`held_open`) is checkpointed when it closes, at the run's end: 0.4 s of a
    1M city's weekly run (compressing what ingest and linkage wrote), on one core while the
    other waits. The dbt step runs in a process of its own and leaves the vault alone, and
    DuckDB lets go of Python while it checkpoints, so there the checkpoint is written beside
    dbt instead, and the close has only what the later steps wrote. A checkpoint that cannot
    run (another transaction open) is left to the close. Stores not held: nothing to do."""
    held = _HELD.get(path.resolve())
    if held is None:
        yield
        return

    def write() -> None:
        con = held.cursor()
        try:
            con.execute("CHECKPOINT")
        except duckdb.Error:
            pass  # the close checkpoints it
        finally:
            con.close()

    worker = threading.Thread(target=write, name="plumbline-checkpoint", daemon=True)
    worker.start()
    try:
        yield
    finally:
        worker.join()


@contextmanager
def warehouse_lock(data_dir: Path) -> Iterator[None]:
    """Serialise the steps that write the warehouse across processes.

    dbt-duckdb cannot wait for DuckDB's file lock, so two runs (a scheduled one and one by
    hand) would make the later `dbt build` fail obscurely; this lock makes it wait instead.
    """
    with _file_lock(data_dir, "warehouse.lock", "writing the warehouse"):
        yield


@contextmanager
def publication_lock(data_dir: Path) -> Iterator[None]:
    """Serialise publications across processes: a publication clears what a killed one left
    (its half-written DuckDB file), which must never be another run's file in the making, and
    the published folder shows one run's output, not two runs' interleaved."""
    with _file_lock(data_dir, "published.lock", "publishing"):
        yield


@contextmanager
def _file_lock(data_dir: Path, name: str, doing: str) -> Iterator[None]:
    data_dir.mkdir(parents=True, exist_ok=True)
    with open(data_dir / name, "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.warning("another Plumbline run is %s; waiting for it", doing)
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
