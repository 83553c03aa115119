"""Data-lab benchmark: does the lab recover the effects planted in generated cities?

    python -m benchmarks.datalab [--cities 20] [--people 60000] [--workers 2]
                                 [--results benchmarks/DATALAB.md]

Each city is generated with its own seed; the generator plants a true effect of each program on
the chance of a follow-up blood lead test within 180 days (HHN +20 points, FSC none, WIC -15)
and writes the providers' cohort files. The whole asset graph runs on it exactly as in
production (`plumbline run`: ingest, linkage, dbt, the lab, erasure). The script then reads each
report's JSON from the outbox and prints, per program: how often the report gave figures, how
often its 95% interval covered the planted effect, and how often it said "no detectable
difference" (for FSC, the null program, that is the right call).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path

AS_OF = date(2026, 11, 24)
OUTCOME = "follow_up_test_180d"


def run_city(seed: int, people: int, root: Path) -> list[dict]:
    city, data = root / f"city{seed}", root / f"data{seed}"
    env = {**os.environ, "PLUMBLINE_DATA_DIR": str(data),
           "PLUMBLINE_LANDING": str(city / "landing"), "PLUMBLINE_AS_OF": AS_OF.isoformat(),
           "PLUMBLINE_PSEUDONYM_KEY": f"bench-{seed}", "DAGSTER_HOME": str(data / "dagster")}
    exe = Path(sys.executable).with_name("plumbline")
    started = time.monotonic()
    subprocess.run([str(exe), "generate", str(city), "--people", str(people), "--seed",
                    str(seed), "--as-of", AS_OF.isoformat()], env=env, check=True,
                   capture_output=True)
    done = subprocess.run([str(exe), "run"], env=env, capture_output=True, text=True,
                          check=False)
    if done.returncode != 0:
        raise RuntimeError(f"city {seed}: plumbline run failed:\n{done.stderr[-2000:]}")
    seconds = time.monotonic() - started
    with open(city / "ground_truth" / "datalab_programs.csv", newline="") as fh:
        planted = {r["provider"]: float(r["planted_effect"]) for r in csv.DictReader(fh)}
    rows = []
    for path in sorted((data / "outbox").glob("*/datalab/*.json")):
        report = json.loads(path.read_text())
        found = next((o for o in report["outcomes"] if o["outcome_id"] == OUTCOME), {})
        row = {"seed": seed, "provider": report["provider"], "seconds": round(seconds, 1),
               "planted": planted[report["provider"]], "figures": report["figures_given"],
               "matched": report["counts"]["matched"], "call": found.get("call", "none"),
               "estimate": found.get("difference"), "low": found.get("ci_low"),
               "high": found.get("ci_high")}
        row["covered"] = (row["low"] is not None
                          and row["low"] <= row["planted"] <= row["high"])
        rows.append(row)
    return rows


def summarise(rows: list[dict], cities: int, people: int) -> str:
    lines = [(f"# Data-lab benchmark: {cities} generated cities of {people:,} people, as of "
             f"{AS_OF}"), "",
             (f"Outcome: `{OUTCOME}` (the effect the generator plants). Each city runs the whole "
             "asset graph (`plumbline run`)."), "",
             ("| program | planted effect | reports | with figures | interval covers planted "
             "| called 'no detectable difference' | called more | called fewer "
             "| mean estimate | mean matched |"),
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for provider in sorted({r["provider"] for r in rows}):
        mine = [r for r in rows if r["provider"] == provider]
        given = [r for r in mine if r["estimate"] is not None]
        cov = sum(r["covered"] for r in given)
        calls = {c: sum(r["call"] == c for r in given) for c in ("no_difference", "more",
                                                                  "fewer")}
        mean = sum(r["estimate"] for r in given) / len(given) if given else float("nan")
        matched = [r["matched"] for r in mine if isinstance(r["matched"], int)]
        lines.append(
            f"| {provider} | {100 * mine[0]['planted']:+.0f} pts | {len(mine)} | {len(given)} "
            f"| {cov}/{len(given)} ({100 * cov / max(1, len(given)):.0f}%) "
            f"| {calls['no_difference']}/{len(given)} | {calls['more']} | {calls['fewer']} "
            f"| {100 * mean:+.1f} pts | {sum(matched) / max(1, len(matched)):.0f} |")
    secs = sorted({(r["seed"], r["seconds"]) for r in rows})
    lines += ["", (f"Wall time per city (generate + full run): median "
                  f"{sorted(s for _, s in secs)[len(secs) // 2]:.0f} s."), "",
              "| city seed | program | matched | estimate | 95% interval | call | covers |",
              "|---:|---|---:|---:|---|---|---|"]
    for r in sorted(rows, key=lambda r: (r["seed"], r["provider"])):
        est = "-" if r["estimate"] is None else f"{100 * r['estimate']:+.1f}"
        ci = "-" if r["low"] is None else f"{100 * r['low']:+.1f} to {100 * r['high']:+.1f}"
        lines.append(f"| {r['seed']} | {r['provider']} | {r['matched']} | {est} | {ci} "
                     f"| {r['call']} | {'yes' if r['covered'] else 'no'} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cities", type=int, default=20)
    parser.add_argument("--people", type=int, default=60000)
    parser.add_argument("--first-seed", type=int, default=101)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--results", type=Path, default=None)
    args = parser.parse_args(argv)
    seeds = range(args.first_seed, args.first_seed + args.cities)
    with tempfile.TemporaryDirectory(prefix="plumbline-datalab-") as tmp, \
            ThreadPoolExecutor(args.workers) as pool:
        rows = [r for city in pool.map(lambda s: run_city(s, args.people, Path(tmp)), seeds)
                for r in city]
    text = summarise(rows, args.cities, args.people)
    print(text)
    if args.results:
        args.results.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
