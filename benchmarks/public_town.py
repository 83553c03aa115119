"""What a small town's public page says: follow-up shares per rule, and nothing disclosed.

    python -m benchmarks.public_town [--towns 3] [--results benchmarks/PUBLIC_TOWN.md]

Each town (3,000-5,000 people in old housing: `plumbline generate --lead-burden 4
--program-reach 1.5`) runs through the whole graph. The script then reads what was published:
for each enabled rule, how many periods of policy_followup_pooled show a share and at which
grain; for each organisation, how many periods its personal best shows; whether any published
table shows a count from 1 to 10 (pipelines.suppression's own check) and whether the
independent differencing audit (tests/differencing_audit.py) can work one out.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import duckdb

from pipelines.suppression import disclosed_small_cells, published_table_specs
from tests.differencing_audit import followup_disclosures, timeliness_disclosures

AS_OF = date(2026, 11, 24)


def run_town(seed: int, root: Path) -> dict:
    people = 3000 + (seed * 997) % 2001
    city, data = root / f"town{seed}", root / f"data{seed}"
    env = {**os.environ, "PLUMBLINE_DATA_DIR": str(data),
           "PLUMBLINE_LANDING": str(city / "landing"), "PLUMBLINE_AS_OF": AS_OF.isoformat(),
           "PLUMBLINE_PSEUDONYM_KEY": f"town-{seed}", "DAGSTER_HOME": str(data / "dagster")}
    exe = Path(sys.executable).with_name("plumbline")
    subprocess.run([str(exe), "generate", str(city), "--people", str(people), "--seed",
                    str(seed), "--as-of", AS_OF.isoformat(), "--lead-burden", "4",
                    "--program-reach", "1.5"], env=env, check=True, capture_output=True)
    started = time.monotonic()
    done = subprocess.run([str(exe), "run"], env=env, capture_output=True, text=True,
                          check=False)
    if done.returncode:
        raise RuntimeError(f"town {seed}: plumbline run failed:\n{done.stderr[-2000:]}")
    seconds = time.monotonic() - started
    with duckdb.connect(str(data / "warehouse.duckdb"), read_only=True) as wh:
        pooled = wh.execute("select * from marts.policy_followup_pooled").df()
        agencies = wh.execute("select * from marts.agency_timeliness_pooled").df()
        rules = wh.execute("select rule_code, measure, title from rules.alert_rules "
                           "where enabled").df()
        facts = wh.execute("select * from intermediate.int_policy_facts_by_zip").df()
        audit = followup_disclosures(wh, 11) + timeliness_disclosures(wh, 11)
    with duckdb.connect(str(data / "published" / "plumbline.duckdb"), read_only=True) as pub:
        direct = []
        for name, keys, cell, measures, pairs in published_table_specs():
            table = pub.execute(f"select * from {name}").df()
            present = [m for m in measures if m in table.columns]
            direct += disclosed_small_cells(table, keys, cell, present,
                                            [p for p in pairs if set(p) <= set(present)])
    per_rule = {}
    for _, r in rules.iterrows():
        mine = pooled[(pooled["measure"] == r["measure"])
                      & (pooled["share_in_time"].notna() | pooled["share_bound"].notna())]
        due = int(facts[f"{r['measure']}_due"].sum())
        per_rule[r["title"]] = (len(mine), sorted(set(mine["grain"])), due)
    per_org = {a: len(g[g["share_in_time"].notna()]) for a, g in agencies.groupby("agency")}
    return {"seed": seed, "people": people, "seconds": round(seconds), "rules": per_rule,
            "organisations": per_org, "direct": len(direct), "by_difference": len(audit)}


def summarise(rows: list[dict]) -> str:
    lines = [f"# A small town's public page: {len(rows)} towns, as of {AS_OF}", "",
             "Written by `python -m benchmarks.public_town`; see its docstring.", "",
             ("| town seed | people | rule | periods with a share (or its bound) | grains "
             "| steps due in all |"),
             "|---:|---:|---|---:|---|---:|"]
    for r in rows:
        for title, (n, grains, due) in r["rules"].items():
            lines.append(f"| {r['seed']} | {r['people']:,} | {title} | {n} "
                         f"| {', '.join(grains) or '-'} | {due} |")
    lines += ["", ("| town seed | organisation periods with a share (personal best) "
              "| counts 1-10 published | counts 1-10 recoverable by difference | run (s) |"),
              "|---:|---|---:|---:|---:|"]
    for r in rows:
        orgs = ", ".join(f"{a} {n}" for a, n in sorted(r["organisations"].items()))
        lines.append(f"| {r['seed']} | {orgs} | {r['direct']} | {r['by_difference']} "
                     f"| {r['seconds']} |")
    every = all(n > 0 for r in rows for n, _, due in r["rules"].values() if due >= 11)
    lines += ["", (f"Every rule with at least 11 steps due shows at least one share: "
              f"{'yes' if every else 'NO'}. Counts from 1 to 10 published or recoverable: "
              f"{sum(r['direct'] + r['by_difference'] for r in rows)}.")]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--towns", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=201)
    parser.add_argument("--results", type=Path, default=None)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="plumbline-town-") as tmp:
        rows = [run_town(s, Path(tmp))
                for s in range(args.first_seed, args.first_seed + args.towns)]
    text = summarise(rows)
    print(text)
    if args.results:
        args.results.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
