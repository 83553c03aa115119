"""Feed freshness from the contract's cadence (seeds/feed_cadence.csv), in one place.

Both the lists' stale-feed warning and the Dagster freshness checks read it, so the UI and
the caseworkers see the same verdict.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import date

import duckdb

from pipelines.feeds import FEEDS, Feed
from pipelines.stores import SEEDS_DIR as SEEDS
from pipelines.stores import has_table

LAST_EXTRACT_SQL = """
select feed, max(extract_date) as last_extract
from ingest.deliveries
where status = 'ACCEPTED' and extract_date <= ?
group by feed
"""


@dataclass(frozen=True)
class Freshness:
    feed: str
    cadence_days: int
    grace_days: int
    last_extract: date | None
    used_by: tuple[str, ...]
    as_of: date

    @property
    def age_days(self) -> int | None:
        return None if self.last_extract is None else (self.as_of - self.last_extract).days

    @property
    def stale(self) -> bool:
        return self.age_days is None or self.age_days > self.cadence_days + self.grace_days

    def sentence(self) -> str:
        when = (f"the last was dated {self.last_extract}" if self.last_extract
                else "none has arrived")
        return (f"{self.feed} is stale: a delivery is expected every {self.cadence_days} days "
                f"and {when}; alerts that depend on it may be missing or already resolved.")


def cadence_feeds(feeds: tuple[Feed, ...] = FEEDS) -> list[str]:
    """The declared feeds that have a contract cadence (a row of feed_cadence.csv), in the
    registry's order: each gets a freshness check. A row naming no declared feed is an error."""
    with open(SEEDS / "feed_cadence.csv", newline="") as fh:
        rows = {r["feed"] for r in csv.DictReader(fh)}
    declared = [f.name for f in feeds]
    unknown = sorted(rows - set(declared))
    if unknown:
        raise ValueError(f"seeds/feed_cadence.csv names feeds that are not declared in "
                         f"pipelines/feeds.py: {', '.join(unknown)}")
    return [name for name in declared if name in rows]


def feed_freshness(vault: duckdb.DuckDBPyConnection, as_of: date) -> list[Freshness]:
    last = (dict(vault.execute(LAST_EXTRACT_SQL, [as_of]).fetchall())
            if has_table(vault, "ingest", "deliveries") else {})
    with open(SEEDS / "feed_cadence.csv", newline="") as fh:
        return [Freshness(r["feed"], int(r["cadence_days"]), int(r["grace_days"]),
                          last.get(r["feed"]), tuple(filter(None, r["used_by_agencies"]
                                                            .split(";"))), as_of)
                for r in csv.DictReader(fh)]


def stale_by_agency(vault: duckdb.DuckDBPyConnection, as_of: date) -> dict[str, list[str]]:
    """agency -> a sentence per feed its alerts depend on that missed its cadence."""
    out: dict[str, list[str]] = {}
    for f in feed_freshness(vault, as_of):
        if f.stale:
            for agency in f.used_by:
                out.setdefault(agency, []).append(f.sentence())
    return out
