"""The pseudonym key's fingerprint, its rotation, and the key-independent episode anchor.

Every keyed pseudonym in the warehouse is an HMAC under `PLUMBLINE_PSEUDONYM_KEY`. The vault
records a fingerprint of the key it was built with (an HMAC of a fixed label, never the key),
so a run with another key stops with a plain message instead of silently changing every
pseudonym. `plumbline rotate-key` is the deliberate way to change it: it checks the old key
against the fingerprint, records the new one, removes a local old key file, and the next build
re-keys every pseudonym.

Alert ids must survive a rotation (partners hold them in their feedback files), so they are
built on an *anchor* per test, an HMAC under a salt the vault creates once and keeps: stable
for the life of the data dir, independent of the pseudonym key, and as unguessable as a
pseudonym to anyone without the vault.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import UTC, datetime

import duckdb

from pipelines.stores import has_table

KEYS_DDL = """
create schema if not exists keys;
create table if not exists keys.fingerprint (fingerprint varchar, recorded_at timestamp);
create table if not exists keys.anchor_salt (salt varchar, created_at timestamp);
"""


class KeyMismatch(RuntimeError):
    """The pseudonym key is not the one the data dir was built with."""


def fingerprint(key: bytes) -> str:
    return hmac.new(key, b"plumbline pseudonym key fingerprint v1", hashlib.sha256).hexdigest()[:16]


def recorded_fingerprint(vault: duckdb.DuckDBPyConnection) -> str | None:
    if not has_table(vault, "keys", "fingerprint"):
        return None
    row = vault.execute("select fingerprint from keys.fingerprint "
                        "order by recorded_at desc limit 1").fetchone()
    return row[0] if row else None


def mismatch_message(recorded: str, key: bytes) -> str:
    return (f"The pseudonym key (fingerprint {fingerprint(key)}) is not the one this data dir "
            f"was built with (fingerprint {recorded}). Run with the original "
            "PLUMBLINE_PSEUDONYM_KEY, or change it on purpose with `plumbline rotate-key` "
            "(PLUMBLINE_OLD_PSEUDONYM_KEY=<old> PLUMBLINE_PSEUDONYM_KEY=<new>).")


def check_key(vault: duckdb.DuckDBPyConnection, key: bytes) -> None:
    """Record the key's fingerprint on first use; refuse another key afterwards."""
    vault.execute(KEYS_DDL)
    recorded = recorded_fingerprint(vault)
    if recorded is None:
        vault.execute("insert into keys.fingerprint values (?, ?)",
                      [fingerprint(key), datetime.now(UTC).replace(tzinfo=None)])
    elif recorded != fingerprint(key):
        raise KeyMismatch(mismatch_message(recorded, key))


def rotate(vault: duckdb.DuckDBPyConnection, old: bytes, new: bytes) -> None:
    """Replace the recorded key with a new one, after checking the old one."""
    vault.execute(KEYS_DDL)
    recorded = recorded_fingerprint(vault)
    if recorded is not None and recorded != fingerprint(old):
        raise KeyMismatch("The old key given is not the one this data dir was built with "
                          f"(fingerprint {fingerprint(old)}, recorded {recorded}).")
    vault.execute("delete from keys.fingerprint")
    vault.execute("insert into keys.fingerprint values (?, ?)",
                  [fingerprint(new), datetime.now(UTC).replace(tzinfo=None)])


def anchor_salt(vault: duckdb.DuckDBPyConnection) -> bytes:
    """The data dir's own salt for episode anchors, created once."""
    vault.execute(KEYS_DDL)
    row = vault.execute("select salt from keys.anchor_salt limit 1").fetchone()
    if row is None:
        salt = secrets.token_hex(32)
        vault.execute("insert into keys.anchor_salt values (?, ?)",
                      [salt, datetime.now(UTC).replace(tzinfo=None)])
        return salt.encode()
    return row[0].encode()
