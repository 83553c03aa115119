"""City-scale benchmark: full run, weekly delta, and linkage against bare Splink and recordlinkage.

    python -m benchmarks.run [--sizes 10000 100000 1000000] [--results benchmarks/RESULTS.md]

For each city size, in a fresh process (so memory figures are its own):
1. generate the city (synthetic, messy, about three person-records per person);
2. run the whole asset graph on every delivery but the newest week's (as of a week ago): the
   full run, per-stage wall time and the peak RSS of the process tree (dbt included);
3. deliver the newest week (about 1% new rows) and run again as of today: the weekly delta;
4. on the final standardised records: Plumbline's linkage stage, bare Splink with the same
   settings (train, predict, cluster; nothing else), and the recordlinkage baseline where it
   fits (skipped above --baseline-max records), each with F1 against the ground truth.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

from benchmarks.rss import PeakRSS

AS_OF = date(2026, 6, 30)
STAGES = {"ingest": "raw_", "linkage": "person_crosswalk", "warehouse": "warehouse_sources",
          "dbt": "plumbline_dbt", "lists": "alert_lists"}


def stage_seconds(entries) -> dict[str, float]:
    """Wall seconds per stage from the run's step events (event log entries)."""
    start: dict[str, float] = {}
    spent: dict[str, float] = {}
    for entry in entries:
        e = entry.dagster_event
        if e is None or e.step_key is None:
            continue
        if e.event_type_value == "STEP_START":
            start[e.step_key] = entry.timestamp
        elif e.event_type_value in ("STEP_SUCCESS", "STEP_FAILURE") and e.step_key in start:
            stage = next((s for s, prefix in STAGES.items() if e.step_key.startswith(prefix)),
                         "checks")
            spent[stage] = spent.get(stage, 0.0) + entry.timestamp - start[e.step_key]
    return {k: round(v, 2) for k, v in spent.items()}


def run_graph(landing: Path, data: Path, as_of: date) -> dict:
    import dagster as dg

    os.environ.update(PLUMBLINE_LANDING=str(landing), PLUMBLINE_DATA_DIR=str(data),
                      PLUMBLINE_AS_OF=as_of.isoformat(), PLUMBLINE_PSEUDONYM_KEY="benchmark")
    from pipelines.dbt_manifest import prepare

    prepare()
    from pipelines.definitions import defs

    job = defs.resolve_implicit_global_asset_job_def()
    t = time.perf_counter()
    with PeakRSS() as mem, dg.DagsterInstance.ephemeral() as instance:
        result = job.execute_in_process(
            instance=instance, raise_on_error=True,
            run_config={"loggers": {"console": {"config": {"log_level": "ERROR"}}}})
        stages = stage_seconds(instance.all_logs(result.run_id))
    return {"seconds": round(time.perf_counter() - t, 1), "peak_rss_mb": round(mem.peak_mb),
            "stages": stages}


def f1_of(clusters, truth) -> dict:
    from benchmarks.linkage_quality import pairwise

    m = pairwise(clusters, truth)
    return {k: round(m[k], 4) for k in ("precision", "recall", "f1")}


def linkage_side_by_side(data: Path, city: Path, linkage_stage_seconds: float,
                         baseline_max: int) -> dict:
    import duckdb
    import pandas as pd

    from linkage.model import LINK_COLUMNS, settings, train
    from linkage.standardise import first_name_aliases

    with duckdb.connect(str(data / "vault.duckdb"), read_only=True) as con:
        records = con.execute("select * from linkage.person_records").df()
        ours = con.execute("select source || ':' || record_key as unique_id, "
                           "person_id as cluster_id from linkage.person_crosswalk").df()
    records["first_aliases"] = [list(first_name_aliases(n)) for n in records.first_name]
    truth = pd.read_csv(city / "ground_truth" / "records.csv", dtype=str)
    truth["unique_id"] = truth.source + ":" + truth.record_key
    truth = truth[["unique_id", "true_person_id"]]
    out = {"records": len(records),
           "plumbline": {"seconds": linkage_stage_seconds, **f1_of(ours, truth)}}

    from splink import DuckDBAPI, Linker

    t = time.perf_counter()
    with PeakRSS() as mem:
        con = duckdb.connect()
        con.execute("SET enable_progress_bar = false")
        con.execute("SET memory_limit = '6GB'")  # the same bound the pipeline's stage runs with
        con.execute(f"SET temp_directory = '{(data / 'bare_spill').as_posix()}'")
        linker = Linker(DuckDBAPI(connection=con).register(records[LINK_COLUMNS], table_name="r"),
                        settings(), log_level=None)
        train(linker)
        pairs = linker.inference.predict(threshold_match_probability=0.5)
        bare = linker.clustering.cluster_pairwise_predictions_at_threshold(
            pairs, threshold_match_probability=0.95).as_pandas_dataframe()[
            ["unique_id", "cluster_id"]]
        con.close()
    out["bare_splink"] = {"seconds": round(time.perf_counter() - t, 1),
                          "peak_rss_mb": round(mem.peak_mb), **f1_of(bare, truth)}

    if len(records) <= baseline_max:
        from benchmarks.linkage_baseline import recordlinkage_clusters

        t = time.perf_counter()
        with PeakRSS() as mem:
            rl = recordlinkage_clusters(records)
        out["recordlinkage"] = {"seconds": round(time.perf_counter() - t, 1),
                                "peak_rss_mb": round(mem.peak_mb), **f1_of(rl, truth)}
    return out


def one_size(people: int, workdir: Path, baseline_max: int) -> dict:
    from pipelines.synth.generator import generate_city

    city, data, landing = workdir / "city", workdir / "data", workdir / "landing"
    t = time.perf_counter()
    with PeakRSS() as mem:
        made = generate_city(city, people=people, seed=17, as_of=AS_OF, mess="messy")
    gen = {"seconds": round(time.perf_counter() - t, 1), "peak_rss_mb": round(mem.peak_mb),
           "records": made["records"]}

    newest = f"{AS_OF:%Y%m%d}.csv"
    for f in (city / "landing").rglob("*.csv"):  # everything but the newest week
        if not f.name.endswith(newest):
            target = landing / f.relative_to(city / "landing")
            target.parent.mkdir(parents=True, exist_ok=True)
            os.link(f, target)
    full = run_graph(landing, data, AS_OF - timedelta(days=7))
    rows_before, snapshots_before = _rows(data), _snapshot_rows(data)
    for f in (city / "landing").rglob(f"*{newest}"):
        target = landing / f.relative_to(city / "landing")
        target.parent.mkdir(parents=True, exist_ok=True)
        os.link(f, target)
    delta = run_graph(landing, data, AS_OF)
    delta["new_rows"] = _rows(data) - rows_before
    delta["new_row_share"] = round(delta["new_rows"] / max(rows_before, 1), 4)
    delta["snapshot_rows_resent"] = _snapshot_rows(data) - snapshots_before
    links = linkage_side_by_side(data, city, full["stages"].get("linkage", 0.0), baseline_max)
    return {"people": people, "generate": gen, "full": full, "delta": delta, "linkage": links}


SNAPSHOT_FEEDS = ("housing__residents", "schools__enrollment")


def _rows(data: Path) -> int:
    """Rows accepted from incremental feeds (full roster snapshots are re-sent every week by
    contract, so they are counted apart)."""
    import duckdb

    with duckdb.connect(str(data / "vault.duckdb"), read_only=True) as con:
        return con.execute("select sum(rows_accepted) from ingest.deliveries where feed not in "
                           f"{SNAPSHOT_FEEDS}").fetchall()[0][0]


def _snapshot_rows(data: Path) -> int:
    import duckdb

    with duckdb.connect(str(data / "vault.duckdb"), read_only=True) as con:
        return con.execute("select coalesce(sum(rows_accepted), 0) from ingest.deliveries "
                           f"where feed in {SNAPSHOT_FEEDS}").fetchall()[0][0]


def machine() -> str:
    mem = next((int(line.split()[1]) // 2**20 for line in Path("/proc/meminfo").read_text()
                .splitlines() if line.startswith("MemTotal")), 0)
    return (f"{os.cpu_count()} cores, {mem} GiB, {platform.platform()}, "
            f"Python {platform.python_version()}")


def report(results: list[dict]) -> str:
    lines = [f"Machine: {machine()}", f"Date: {date.today()}", "",
             ("| people | records | generate s | full run s | peak RSS MB | ingest s | linkage s |"
             " warehouse s | dbt s | lists s | delta run s | delta/full | new incremental rows |"
              " roster rows re-sent |"),
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        f, d = r["full"], r["delta"]
        s = f["stages"]
        lines.append(
            f"| {r['people']:,} | {r['generate']['records']:,} | {r['generate']['seconds']} |"
            f" {f['seconds']} | {f['peak_rss_mb']:,} | {s.get('ingest', 0)} |"
            f" {s.get('linkage', 0)} | {s.get('warehouse', 0)} | {s.get('dbt', 0)} |"
            f" {s.get('lists', 0)} | {d['seconds']} | {d['seconds'] / f['seconds']:.0%} |"
            f" {d['new_rows']:,} ({d['new_row_share']:.1%}) |"
            f" {d.get('snapshot_rows_resent', 0):,} |")
    lines += ["", ("| people | Plumbline linkage s (F1) | bare Splink s (F1) | recordlinkage s (F1) |"
              " Plumbline / bare Splink | recordlinkage / Plumbline |"),
              "|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        lk = r["linkage"]
        p, b, rl = lk["plumbline"], lk["bare_splink"], lk.get("recordlinkage")
        rl_cell = f"{rl['seconds']} ({rl['f1']})" if rl else "not run (too large)"
        ratio_rl = f"{rl['seconds'] / p['seconds']:.2f}x" if rl and p["seconds"] else "-"
        lines.append(f"| {r['people']:,} | {p['seconds']} ({p['f1']}) | {b['seconds']} "
                     f"({b['f1']}) | {rl_cell} | {p['seconds'] / b['seconds']:.2f}x | {ratio_rl} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--baseline-max", type=int, default=400_000,
                    help="run the recordlinkage baseline only up to this many records")
    ap.add_argument("--results", type=Path, help="write the tables to this Markdown file")
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one:
        print(json.dumps(one_size(a.one, a.workdir, a.baseline_max)))
        return
    results = []
    for people in a.sizes:
        with tempfile.TemporaryDirectory(prefix=f"bench{people}_") as tmp:
            proc = subprocess.run(
                [sys.executable, "-m", "benchmarks.run", "--one", str(people), "--workdir", tmp,
                 "--baseline-max", str(a.baseline_max)],
                capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                print(proc.stderr[-3000:], file=sys.stderr)
                raise SystemExit(f"the {people:,}-person benchmark failed")
            results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        print(report(results[-1:]).split("\n", 3)[-1], flush=True)
    text = report(results)
    print(text)
    if a.results:
        a.results.write_text("# Benchmark results\n\n" + text + "\n")



if __name__ == "__main__":
    main()
