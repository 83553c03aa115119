"""Cannot-links: what caseworkers told us are not one child, honoured by every later run.

A `WRONG_PERSON` answer on an alert says the records in it were linked to the wrong child. The
records in an alert are its evidence (the health test it started from) and the answering
agency's own records of that child, as its list showed them: the evidence is kept apart from
those. Health's list shows only the test itself, so a health answer keeps the test apart from
every other record of that person. The pairs are stored in the vault
(`linkage.cannot_links`) and every clustering respects them: a cluster that would join a
cannot-link pair is rebuilt from its match edges, strongest first, never joining two groups
that hold such a pair.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

import duckdb

DDL = """
create table if not exists linkage.cannot_links (
    uid_a varchar, uid_b varchar, reason varchar, alert_id varchar, created_at timestamp
)
"""

# WRONG_PERSON answers not yet turned into cannot-links, with the evidence and the person the
# list showed: the neutral table ingest writes when feedback arrives (feedback.wrong_person)
NEW_FROM_FEEDBACK = """
select distinct w.alert_id, w.evidence_test_id, w.person_id, w.organisation
from feedback.wrong_person as w
where w.alert_id not in (select alert_id from linkage.cannot_links where alert_id is not null)
"""


# The answering organisation's own records of the child, as its list showed them: health's
# list shows only the test, so health's answer separates it from every record; housing and
# schools answer for their own rosters; a provider (its code) for its own client records.
OWN_RECORDS = """(? = 'health'
    or source = ?
    or (source = 'providers' and starts_with(record_key, ? || '-')))"""


def record_feedback_cannot_links(con: duckdb.DuckDBPyConnection) -> int:
    """Turn new WRONG_PERSON answers into stored cannot-link pairs; returns how many pairs."""
    con.execute("create schema if not exists linkage")
    con.execute(DDL)
    have_items = con.execute(
        "select count(*) from information_schema.tables "
        "where table_schema = 'feedback' and table_name = 'wrong_person'").fetchall()[0][0]
    have_crosswalk = con.execute(
        "select count(*) from information_schema.tables "
        "where table_schema = 'linkage' and table_name = 'person_crosswalk'").fetchall()[0][0]
    if not (have_items and have_crosswalk):
        return 0
    now = datetime.now(UTC).replace(tzinfo=None)
    rows = []
    for alert_id, test_id, person_id, agency in con.execute(NEW_FROM_FEEDBACK).fetchall():
        evidence = f"health:{test_id}"
        others = con.execute(
            "select source || ':' || record_key from linkage.person_crosswalk "
            "where person_id = ? and " + OWN_RECORDS, [person_id, agency, agency, agency]
        ).fetchall()
        rows += [(evidence, uid, "WRONG_PERSON feedback", alert_id, now)
                 for (uid,) in others if uid != evidence]
        if not others or all(uid == evidence for (uid,) in others):
            # nothing to separate any more; remember the answer so it is not re-read
            rows.append((evidence, evidence, "WRONG_PERSON feedback (nothing to split)",
                         alert_id, now))
    if rows:
        con.executemany("insert into linkage.cannot_links values (?, ?, ?, ?, ?)", rows)
    return sum(1 for r in rows if r[0] != r[1])


def stored_cannot_links(con: duckdb.DuckDBPyConnection) -> set[frozenset[str]]:
    con.execute("create schema if not exists linkage")
    con.execute(DDL)
    return {frozenset(p) for p in con.execute(
        "select uid_a, uid_b from linkage.cannot_links where uid_a <> uid_b").fetchall()}


def constrained_clusters(members: Iterable[str], edges: Iterable[tuple[str, str, float]],
                         cannot: set[frozenset[str]]) -> dict[str, str]:
    """Union the strongest edges first, skipping any union that would join a cannot-link pair.

    Returns unique_id -> a representative unique_id of its group.
    """
    parent = {m: m for m in members}
    forbidden: dict[str, set[str]] = {m: set() for m in parent}
    for pair in cannot:
        a, b = tuple(pair)
        if a in parent and b in parent:
            forbidden[a].add(b)
            forbidden[b].add(a)
    group: dict[str, set[str]] = {m: {m} for m in parent}

    def find(x: str) -> str:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b, _ in sorted(edges, key=lambda e: -e[2]):
        ra, rb = find(a), find(b)
        if ra == rb or forbidden[ra] & group[rb]:
            continue
        if len(group[ra]) < len(group[rb]):
            ra, rb = rb, ra
        parent[rb] = ra
        group[ra] |= group.pop(rb)
        forbidden[ra] |= forbidden.pop(rb)
    return {m: find(m) for m in parent}


REVIEW_DDL = """
create table if not exists linkage.review_decisions (
    uid_a varchar, uid_b varchar, decision varchar, decided_by varchar, decided_at timestamp
)
"""
DECISIONS = ("SAME", "DIFFERENT")


def review_decisions(con: duckdb.DuckDBPyConnection
                     ) -> tuple[set[frozenset[str]], set[frozenset[str]]]:
    """A reviewer's answers on queued pairs, the latest per pair: (must-links: the same
    person; cannot-links: not the same). Every later run honours them."""
    con.execute("create schema if not exists linkage")
    con.execute(REVIEW_DDL)
    rows = con.execute(
        "select uid_a, uid_b, arg_max(decision, decided_at) from linkage.review_decisions "
        "group by all").fetchall()
    must = {frozenset((a, b)) for a, b, d in rows if d == "SAME" and a != b}
    cannot = {frozenset((a, b)) for a, b, d in rows if d == "DIFFERENT" and a != b}
    return must, cannot


def record_review_decision(con: duckdb.DuckDBPyConnection, uid_a: str, uid_b: str,
                           decision: str, decided_by: str) -> None:
    """Save one answer (who and when with it); the next run honours it."""
    if decision not in DECISIONS:
        raise ValueError(f"a review decision is one of {DECISIONS}, not {decision!r}")
    con.execute("create schema if not exists linkage")
    con.execute(REVIEW_DDL)
    con.execute("insert into linkage.review_decisions values (?, ?, ?, ?, ?)",
                [uid_a, uid_b, decision, decided_by, datetime.now(UTC).replace(tzinfo=None)])
