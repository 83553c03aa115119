"""Do alert ids and feedback survive a weekly delivery that relinks people?

    python -m benchmarks.alert_ids [--people 3600] [--seed 5] [--results benchmarks/ALERT_IDS.md]

A generated city is delivered in two weeks through `plumbline run`, as an operator runs it (the
data dir kept, the next week's files dropped in). After week 1, every organisation answers
every alert on its list (IN_PROGRESS). Week 2's records merge and split some people. Printed
and written: alerts open in both weeks, how many kept their id, how many kept their feedback,
and linkage's merges and splits that week.
"""

from __future__ import annotations

import argparse
import csv
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

import duckdb

from pipelines.synth.generator import generate_city

AS_OF = date(2026, 6, 30)
WEEK1 = AS_OF - timedelta(days=7)
PLUMBLINE = Path(sys.executable).parent / "plumbline"


def _env(data: Path, landing: Path, as_of: date) -> dict[str, str]:
    import os

    return dict(os.environ, PLUMBLINE_DATA_DIR=str(data), PLUMBLINE_LANDING=str(landing),
                PLUMBLINE_AS_OF=as_of.isoformat(), PLUMBLINE_PSEUDONYM_KEY="benchmark-key",
                DAGSTER_HOME=str(data / "dagster_home"))


def _copy(src: Path, dst: Path, keep) -> None:
    for f in src.rglob("*.csv"):
        stamp = re.findall(r"(\d{8})\.csv$", f.name)
        if stamp and keep(stamp[0]):
            target = dst / f.relative_to(src)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f, target)


def _run(data: Path, landing: Path, as_of: date) -> float:
    start = time.perf_counter()
    proc = subprocess.run([str(PLUMBLINE), "run"], env=_env(data, landing, as_of),
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        sys.exit(f"plumbline run failed:\n{proc.stderr[-3000:]}")
    return time.perf_counter() - start


def _open_alerts(data: Path) -> dict[tuple[str, str], tuple[str, int]]:
    with duckdb.connect(str(data / "warehouse.duckdb"), read_only=True) as con:
        rows = con.execute("select rule_code, evidence_test_key, alert_id, contact_attempts "
                           "from marts.lead_alerts where status = 'OPEN'").fetchall()
    return {(r, k): (a, n) for r, k, a, n in rows}


def measure(people: int, seed: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        generate_city(root / "city", people=people, seed=seed, as_of=AS_OF)
        source, landing, data = root / "city" / "landing", root / "landing", root / "data"
        _copy(source, landing, lambda s: s <= f"{WEEK1:%Y%m%d}")
        t1 = _run(data, landing, WEEK1)
        week1 = _open_alerts(data)
        answered: set[str] = set()
        for listing in (data / "outbox").glob(f"*/alerts_{WEEK1:%Y%m%d}.csv"):
            with open(listing, newline="", encoding="utf-8") as fh:
                ids = [r["alert_id"] for r in csv.DictReader(fh)]
            folder = landing / "feedback" / listing.parent.name
            folder.mkdir(parents=True, exist_ok=True)
            with open(folder / f"alert_feedback_{WEEK1:%Y%m%d}.csv", "w", newline="") as fh:
                w = csv.writer(fh)
                w.writerow(["alert_id", "status", "note", "recorded_by", "recorded_at"])
                w.writerows([a, "IN_PROGRESS", "", "bench", f"{WEEK1}T09:00:00"] for a in ids)
            answered |= set(ids)
        _copy(source, landing, lambda s: s > f"{WEEK1:%Y%m%d}")
        t2 = _run(data, landing, AS_OF)
        week2 = _open_alerts(data)
        with duckdb.connect(str(data / "vault.duckdb"), read_only=True) as con:
            events = dict(con.execute(
                "select event, count(*) from linkage.person_id_events where run_at = "
                "(select max(run_at) from linkage.person_id_events) group by 1").fetchall())
    both = set(week1) & set(week2)
    kept = sum(week1[k][0] == week2[k][0] for k in both)
    answered_both = [k for k in both if week1[k][0] in answered]
    with_feedback = [k for k in answered_both if week2[k][1] >= 1]
    return {"people": people, "seed": seed, "week1_open": len(week1), "week2_open": len(week2),
            "answered_week1": len(answered), "open_both_weeks": len(both), "kept_id": kept,
            "answered_and_open": len(answered_both), "kept_feedback": len(with_feedback),
            "merges": events.get("merged", 0), "splits": events.get("split", 0),
            "created": events.get("created", 0), "retired": events.get("retired", 0),
            "week1_seconds": t1, "week2_seconds": t2}


def report(r: dict) -> str:
    share = r["kept_id"] / r["open_both_weeks"] if r["open_both_weeks"] else 1.0
    return "\n".join([
        "# Alert ids and feedback across a weekly relink",
        "",
        (f"Written by `python -m benchmarks.alert_ids` on {date.today()} "
         f"({platform.machine()}, {platform.python_version()}); a generated city of "
         f"{r['people']:,} people (seed {r['seed']}), week 1 as of {WEEK1}, week 2 as of "
         f"{AS_OF}."),
        "",
        "| figure | value |",
        "|---|---:|",
        f"| alerts open after week 1 | {r['week1_open']} |",
        f"| answered IN_PROGRESS after week 1 (every listed alert) | {r['answered_week1']} |",
        f"| alerts open after week 2 | {r['week2_open']} |",
        f"| open in both weeks (same rule and episode) | {r['open_both_weeks']} |",
        f"| of those, kept their alert id | {r['kept_id']} ({share:.1%}) |",
        f"| answered in week 1 and open in both weeks | {r['answered_and_open']} |",
        f"| of those, still carry the week-1 answer | {r['kept_feedback']} |",
        f"| linkage in week 2: persons merged / split | {r['merges']} / {r['splits']} |",
        (f"| linkage in week 2: person ids created / retired | {r['created']} / "
         f"{r['retired']} |"),
        (f"| run time week 1 / week 2 (s) | {r['week1_seconds']:.1f} / "
         f"{r['week2_seconds']:.1f} |"),
        "",
        "Alerts held back by a weekly capacity in week 1 were on no list, so got no answer.",
        "",
    ])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--people", type=int, default=3600)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--results", type=Path, default=None)
    args = parser.parse_args()
    text = report(measure(args.people, args.seed))
    print(text)
    if args.results:
        args.results.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
