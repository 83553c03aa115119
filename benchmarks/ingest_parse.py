"""How long ingest takes to read, validate and type a city's deliveries (no vault writes).

    python -m benchmarks.ingest_parse --people 60000 --seed 7 --results benchmarks/INGEST_PARSE.md

Generates a city (or reads `--landing`), then runs `ingest.parse_delivery` on every delivery
file of every feed, and prints and writes rows per second and the rows accepted and rejected,
so a change to validation can be checked for speed and for the same verdicts.
"""

from __future__ import annotations

import argparse
import hashlib
import platform
import tempfile
import time
from collections import Counter
from datetime import date, datetime
from pathlib import Path

from pipelines.feeds import FEEDS
from pipelines.ingest import (
    Delivery,
    UnreadableDelivery,
    extract_date_of,
    parse_delivery,
    pending_files,
)


def parse_all(landing: Path) -> dict:
    rows = accepted = 0
    reasons: Counter[str] = Counter()
    digest = hashlib.sha256()
    seconds = 0.0
    for feed in FEEDS:
        for path in pending_files(landing, feed):
            relative = path.relative_to(landing).as_posix()
            data = path.read_bytes()
            d = Delivery(feed, path, relative, hashlib.sha256(data).hexdigest(), len(data),
                         extract_date_of(feed, relative.split("/", 1)[1]))
            today = max(date.today(), d.extract_date or date.min)
            t = time.perf_counter()
            try:
                parse_delivery(d, data, today)
            except UnreadableDelivery as exc:
                reasons[f"file: {exc}"] += 1
                continue
            finally:
                seconds += time.perf_counter() - t
            rows += d.rows_read
            accepted += d.rows_accepted
            for r in d.rejections:
                reasons[r.reason] += 1
                digest.update(f"{relative}|{r.line}|{r.field}|{r.reason}\n".encode())
            for r in d.rows:
                digest.update(repr(sorted((k, str(v)) for k, v in r.items())).encode())
    return {"rows": rows, "accepted": accepted, "seconds": seconds, "reasons": reasons,
            "digest": digest.hexdigest()[:16]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--people", type=int, default=60000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--landing", type=Path)
    ap.add_argument("--results", type=Path)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        landing = args.landing
        if landing is None:
            from pipelines.synth.generator import generate_city
            generate_city(Path(tmp), people=args.people, seed=args.seed,
                          as_of=date(2026, 11, 24), mess="normal")
            landing = Path(tmp) / "landing"
        r = parse_all(landing)
    lines = [
        "# Ingest: reading, validating and typing the deliveries",
        "",
        (f"Measured {datetime.now():%Y-%m-%d %H:%M} on {platform.machine()}, "
         f"{platform.python_implementation()} {platform.python_version()}, by "
         "`python -m benchmarks.ingest_parse` (written by the benchmark)."),
        "",
        f"- city: {args.people} people, seed {args.seed}" if args.landing is None
        else f"- landing: {args.landing}",
        (f"- rows read: {r['rows']}, accepted: {r['accepted']}, "
         f"rejected reasons: {sum(r['reasons'].values())}"),
        (f"- seconds in parse_delivery: {r['seconds']:.2f} "
         f"({r['rows'] / r['seconds']:,.0f} rows/s)"),
        f"- verdicts digest (rows and rejections): {r['digest']}",
        "",
        "| reason | rows |", "|---|---:|",
        *(f"| {k} | {v} |" for k, v in r["reasons"].most_common()),
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.results:
        args.results.write_text(text)


if __name__ == "__main__":
    main()
