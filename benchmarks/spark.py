"""Local Spark beside DuckDB: the same city through `plumbline run` on each engine, per stage.

    python -m benchmarks.spark [--sizes 100000 1000000] [--results benchmarks/SPARK.md]
                               [--json benchmarks/spark.json] [--from-json FILE]

For each city size (synthetic, messy, seed 17, every delivery up to 2026-06-30):
1. a full run on DuckDB and a full run with PLUMBLINE_ENGINE=spark (local[2]), each
   `plumbline run` in a process of its own with a data dir of its own, as an operator runs it:
   wall time, the peak RSS of the process tree (Spark's JVMs included), seconds per stage
   (from the run's Dagster events), and the seconds linkage spent scoring pairs (the part
   that runs on Spark) apart from the rest of the linkage stage;
2. how alike the two runs are: the share of crosswalk pairs and of open alerts both found
   (pipelines.spark.engine_parity);
3. from the two sizes, each stage's growth, and a projection for a 20M-person state on a
   stated cluster (the assumptions are printed with it).

SPARK.md is written entirely from these figures, with the date and the machine.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import tempfile
import time
from datetime import date
from pathlib import Path

from benchmarks.run import AS_OF, SEED, dbt_facts, operator_run

ENGINES = ("duckdb", "spark")
STATE = 20_000_000
# the cluster the projection is for: executors x cores, and the share of perfect scaling a
# shuffle-heavy job keeps on it (stated, not measured here)
CLUSTER = {"executors": 16, "cores_per_executor": 4, "efficiency": 0.5, "local_cores": 2}


def engine_run(landing: Path, data: Path, engine: str) -> dict:
    run = operator_run(landing, data, AS_OF.isoformat(), engine, f"run_{engine}.log")
    import duckdb

    with duckdb.connect(str(data / "vault.duckdb"), read_only=True) as vault:
        records, scoring = vault.execute(
            "select records, scoring_seconds from linkage.run_stats "
            "order by run_at desc limit 1").fetchall()[0]
    return {"engine": engine, "seconds": run["seconds"], "peak_rss_mb": run["peak_rss_mb"],
            "stages": run["stages"], "scoring_seconds": round(scoring or 0.0, 1),
            "records": records, "dbt": dbt_facts(data)}


def one_size(people: int, work: Path) -> dict:
    from pipelines.spark import engine_parity
    from pipelines.synth.generator import generate_city

    city = work / "city"
    t = time.perf_counter()
    generate_city(city, people=people, seed=SEED, as_of=AS_OF, mess="messy")
    out = {"people": people, "generate_seconds": round(time.perf_counter() - t, 1), "runs": {}}
    for engine in ENGINES:
        landing = work / f"landing_{engine}"  # each run erases the data-lab requests it answers
        shutil.copytree(city / "landing", landing, copy_function=os.link)
        data = work / f"data_{engine}"
        data.mkdir()
        out["runs"][engine] = engine_run(landing, data, engine)
        print(f"  {people:,} people on {engine}: {out['runs'][engine]['seconds']} s", flush=True)
    out["parity"] = engine_parity(work / "data_duckdb", work / "data_spark")
    return out


def stage_rows(run: dict) -> dict[str, float]:
    """Seconds per stage, linkage split into scoring and the rest (clustering, ids)."""
    stages = dict(run["stages"])
    linkage = stages.pop("linkage", 0.0)
    return {"ingest": stages.get("ingest", 0.0), "linkage: scoring": run["scoring_seconds"],
            "linkage: the rest": round(max(linkage - run["scoring_seconds"], 0.0), 1),
            "warehouse sources": stages.get("warehouse", 0.0), "dbt": stages.get("dbt", 0.0),
            "lists": stages.get("lists", 0.0), "published": stages.get("published", 0.0),
            "other": stages.get("other", 0.0)}


# where each stage runs on the Spark engine, so what a cluster divides
ON_SPARK = {"linkage: scoring", "dbt"}


def projection(sizes: list[dict]) -> list[dict]:
    """Each stage at 20M people, from its growth between the two largest sizes measured on
    local Spark: local time x (20M / N)^b, b its measured exponent (at least 1: nothing is
    assumed to grow slower than the records). Stages on Spark are then divided by the
    cluster's cores over the local ones, times the efficiency; the rest run where the vault
    is, as measured here."""
    small, large = sizes[-2], sizes[-1]
    a, b = stage_rows(small["runs"]["spark"]), stage_rows(large["runs"]["spark"])
    ratio = large["people"] / small["people"]
    cores = CLUSTER["executors"] * CLUSTER["cores_per_executor"]
    speedup = cores / CLUSTER["local_cores"] * CLUSTER["efficiency"]
    rows = []
    for stage in b:
        t0, t1 = max(a[stage], 0.1), max(b[stage], 0.1)
        growth = max(1.0, math.log(t1 / t0) / math.log(ratio)) if t1 > t0 else 1.0
        local = t1 * (STATE / large["people"]) ** growth
        cluster = local / speedup if stage in ON_SPARK else local
        rows.append({"stage": stage, "at_small": a[stage], "at_large": b[stage],
                     "exponent": round(growth, 2), "local_20m_s": round(local),
                     "cluster_20m_s": round(cluster), "on_spark": stage in ON_SPARK})
    return rows


def render(results: list[dict], machine: str, when: str) -> str:
    lines = [
        "# Local Spark beside DuckDB",
        "",
        f"Written by `python -m benchmarks.spark` on {when}, on {machine}. Every figure below is",
        "measured by that script, except the projection, which is computed from them with the",
        "assumptions it states.",
        "",
        "Each run is `plumbline run` in a process of its own, a full run of a synthetic city",
        "(messy, seed 17, every delivery up to 2026-06-30), once with the default engine and",
        "once with `PLUMBLINE_ENGINE=spark` (local[2]: Splink's Spark backend for scoring,",
        "dbt-spark for the warehouse, Parquet tables). Peak RSS is the whole process tree's,",
        "Spark's JVMs included.",
        "",
    ]
    for size in results:
        d, s = size["runs"]["duckdb"], size["runs"]["spark"]
        lines += [f"## {size['people']:,} people ({d['records']:,} person-records)", "",
                  "| stage | DuckDB (s) | local Spark (s) |", "|---|---:|---:|"]
        rd, rs = stage_rows(d), stage_rows(s)
        lines += [f"| {k} | {rd[k]:.1f} | {rs[k]:.1f} |" for k in rd]
        lines += [f"| **whole run (wall)** | **{d['seconds']:.1f}** | **{s['seconds']:.1f}** |",
                  f"| peak RSS (MB) | {d['peak_rss_mb']:,} | {s['peak_rss_mb']:,} |",
                  (f"| dbt's own elapsed (s) | {d['dbt'].get('elapsed', 0)} | "
                  f"{s['dbt'].get('elapsed', 0)} |"), ""]
        p = size["parity"]
        lines += [(f"Same results: {p['pairs_both']:,} of {p['pairs_one']:,} DuckDB crosswalk "
                  f"pairs ({p['pairs_other']:,} on Spark): **{p['pairs_identical_share']:.2%}** "
                  f"identical; {p['alerts_both']:,} of {p['alerts_one']:,} open alerts "
                  f"({p['alerts_other']:,} on Spark): **{p['alerts_identical_share']:.2%}** "
                  "identical."), ""]
    if len(results) >= 2:
        c = CLUSTER
        cores = c["executors"] * c["cores_per_executor"]
        rows = projection(results)
        small, large = results[-2]["people"], results[-1]["people"]
        lines += [
            f"## Projection: a state of {STATE:,} people", "",
            (f"Assumptions (stated, not measured): each stage keeps the growth it showed from "
            f"{small:,} to {large:,} people on local Spark (never slower than linear); the "
            f"stages on Spark (scoring, dbt) run on a cluster of {c['executors']} executors x "
            f"{c['cores_per_executor']} cores ({cores} cores) at {c['efficiency']:.0%} of "
            f"perfect scaling over this machine's {c['local_cores']} cores; the other stages "
            "run where the vault is, on one machine like this one. Splink's own Spark "
            "guidance is that blocking, not the cluster, decides the cost (a rule whose "
            "blocks grow with the city cannot be bought back with executors), and that "
            "shuffle partitions should match the work (about 200 for hundreds of millions of "
            "comparisons, 1 for a tiny job); Splink describes itself as linking 100+ million "
            "records on Spark. The figures are an order of magnitude, not a promise."), "",
            (f"| stage | {small:,} (s) | {large:,} (s) | growth exponent | 20M, local (s) | "
            f"20M, {cores}-core cluster (s) |"), "|---|---:|---:|---:|---:|---:|"]
        lines += [f"| {r['stage']}{' (Spark)' if r['on_spark'] else ''} | {r['at_small']:.1f} "
                  f"| {r['at_large']:.1f} | {r['exponent']} | {r['local_20m_s']:,} | "
                  f"{r['cluster_20m_s']:,} |" for r in rows]
        total_local = sum(r["local_20m_s"] for r in rows)
        total_cluster = sum(r["cluster_20m_s"] for r in rows)
        lines += [(f"| **whole full run** | | | | **{total_local:,}** ({total_local / 3600:.1f} h) "
                  f"| **{total_cluster:,}** ({total_cluster / 3600:.1f} h) |"), ""]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--results", type=Path, default=Path("benchmarks/SPARK.md"))
    ap.add_argument("--json", type=Path, default=None, help="also save the figures here")
    ap.add_argument("--from-json", type=Path, default=None,
                    help="render the report from figures saved by an earlier run")
    ap.add_argument("--workdir", type=Path, default=None, help="keep the cities and data here")
    args = ap.parse_args(argv)
    machine = (f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores, "
               f"Python {platform.python_version()}")
    if args.from_json:
        saved = json.loads(args.from_json.read_text())
        args.results.write_text(render(saved["sizes"], saved["machine"], saved["date"]))
        print(f"wrote {args.results}")
        return 0
    results = []
    when = date.today().isoformat()
    for people in args.sizes:
        work = Path(tempfile.mkdtemp(prefix=f"spark{people}_", dir=args.workdir))
        print(f"{people:,} people in {work}", flush=True)
        results.append(one_size(people, work))
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
        if args.json:  # after each size, so a long run's figures survive its end
            args.json.write_text(json.dumps(
                {"date": when, "machine": machine, "sizes": results}, indent=1))
    report = render(results, machine, when)
    args.results.write_text(report)
    print(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
