"""City-scale benchmark: a first full run, then four weekly deliveries, as an operator runs them.

    python -m benchmarks.run [--sizes 100000 1000000] [--results benchmarks/RESULTS.md]

For each city size, in a working folder of its own:
1. generate the city (synthetic, messy, seed 17, as of 2026-06-30: a first delivery dated
   2026-06-02, then a delivery every week);
2. drop the first delivery into a landing folder and run `plumbline run` as an operator does
   (a process of its own; the data dir kept): the full run, with the model trained;
3. drop each following week's files into the same landing folder and run `plumbline run`
   again, four times: the weekly runs;
   for every run: wall time, the peak RSS of the whole process tree (dbt included), seconds
   per stage (from the run's Dagster events), roster rows parsed or carried unchanged,
   records scored and relinked, and person_id churn (records whose person_id changed);
4. on the final records: F1 against the ground truth of the incrementally linked crosswalk
   and of a full relink of the same records (model retrained), and the comparisons each
   blocking rule makes (Splink's blocking analysis);
5. up to --side-by-side-max records: bare Splink and recordlinkage on the same records.

RESULTS.md is written entirely from these figures, with the date and the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime
from pathlib import Path

from benchmarks.rss import PeakRSS

AS_OF = date(2026, 6, 30)
SEED = 17
STAGES = {"ingest": "raw_", "linkage": "person_crosswalk", "warehouse": "warehouse_sources",
          "dbt": "plumbline_dbt", "lists": "alert_lists", "published": "published_outputs"}
SNAPSHOT_FEEDS = ("housing__residents", "schools__enrollment")


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
                         "other")
            spent[stage] = spent.get(stage, 0.0) + entry.timestamp - start[e.step_key]
    return {k: round(v, 2) for k, v in spent.items()}


def last_run(data: Path) -> dict:
    """The data dir's last run: seconds per stage, when the run was created and ended (epoch
    seconds), and when its dbt step started and ended."""
    import dagster as dg

    from pipelines.cli import prepare_dagster_home

    home = data / "dagster_home"
    prepare_dagster_home(home)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        record = instance.get_run_records(limit=1)[0]
        entries = instance.all_logs(record.dagster_run.run_id)
        dbt_step = [e.timestamp for e in entries if e.dagster_event is not None
                    and e.dagster_event.step_key == "plumbline_dbt" and
                    e.dagster_event.event_type_value in ("STEP_START", "STEP_SUCCESS")]
        return {"stages": stage_seconds(entries),
                "created": record.create_timestamp.timestamp(), "ended": record.end_time,
                "dbt_step": dbt_step}


def deliver(city: Path, landing: Path, extract: str) -> int:
    """Hard-link the files of one extract date into the landing folder, as a partner's drop."""
    n = 0
    for f in sorted((city / "landing").rglob(f"*_{extract}.csv")):
        target = landing / f.relative_to(city / "landing")
        target.parent.mkdir(parents=True, exist_ok=True)
        os.link(f, target)
        n += 1
    return n


def operator_run(landing: Path, data: Path, as_of: str, engine: str = "duckdb",
                 log_name: str = "") -> dict:
    """`plumbline run` in a process of its own; its wall time and the tree's peak RSS."""
    env = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}
    env.update(PLUMBLINE_LANDING=str(landing), PLUMBLINE_DATA_DIR=str(data),
               PLUMBLINE_AS_OF=as_of, PLUMBLINE_PSEUDONYM_KEY="benchmark",
               PLUMBLINE_ENGINE=engine)
    exe = Path(sys.executable).with_name("plumbline")
    dictionaries = _dictionaries()
    t, began = time.perf_counter(), time.time()
    with open(data.parent / (log_name or f"run_{as_of}.log"), "w") as log:
        proc = subprocess.Popen([str(exe), "run"], env=env, stdout=log, stderr=subprocess.STDOUT)
        with PeakRSS(proc.pid) as mem:
            code = proc.wait()
    seconds, finished = time.perf_counter() - t, time.time()
    if code != 0:
        raise SystemExit(f"plumbline run on {engine} as of {as_of} failed: see {log.name}")
    run = last_run(data)
    return {"as_of": as_of, "seconds": round(seconds, 1), "peak_rss_mb": round(mem.peak_mb),
            "stages": run["stages"],
            # the process before its Dagster run was created (interpreter, imports, the
            # definitions, the instance) and after the run ended (the summary, exiting)
            "before_run_s": round(run["created"] - began, 2),
            "after_run_s": round(finished - (run["ended"] or finished), 2),
            "dbt_step": run["dbt_step"],
            # the first run on a checkout (and after a change to the dbt project) builds the
            # public data dictionary with `dbt docs generate`, kept for every later run
            "dictionary_built": len(_dictionaries()) > len(dictionaries)}


def _dictionaries() -> set[Path]:
    """The data dictionaries built on this checkout, one per dbt manifest (pipelines/publish)."""
    folder = Path(__file__).resolve().parent.parent / "dbt_project" / "target" / "dictionary"
    return set(folder.glob("*.html")) if folder.is_dir() else set()


def dbt_facts(data: Path, step: list[float] | None = None) -> dict:
    """What dbt itself spent in the run (its run_results.json and dbt.log): its own elapsed
    time, the seconds in models, tests and seeds, the slowest model, how long it parsed (and
    whether partially), and, with the dbt step's start and end, the seconds before dbt's first
    log line (the dbt process starting) and after its last (Dagster recording the events)."""
    runs = sorted((data / "dbt_runs").glob("*/run_results.json"), key=lambda p: p.stat().st_mtime)
    if not runs:
        return {}
    results = json.loads(runs[-1].read_text())
    by_kind: dict[str, float] = {}
    for node in results["results"]:
        kind = node["unique_id"].split(".")[0]
        by_kind[kind] = by_kind.get(kind, 0.0) + node["execution_time"]
    slowest = max((n for n in results["results"] if n["unique_id"].startswith("model.")),
                  key=lambda n: n["execution_time"], default=None)
    out = {"elapsed": round(results["elapsed_time"], 1), "nodes": len(results["results"]),
           **{k: round(v, 1) for k, v in by_kind.items()},
           "slowest_model": slowest["unique_id"].split(".")[-1] if slowest else "",
           "slowest_model_s": round(slowest["execution_time"], 2) if slowest else 0.0}
    log = runs[-1].with_name("dbt.log")
    if log.exists():
        lines = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
        stamps = [datetime.fromisoformat(x["info"]["ts"].rstrip("Z")).replace(tzinfo=UTC)
                  .timestamp() for x in lines]
        found = next((t for x, t in zip(lines, stamps, strict=True)
                      if x["info"].get("name") == "FoundStats"), stamps[0])
        out.update(log_s=round(stamps[-1] - stamps[0], 2), parse_s=round(found - stamps[0], 2),
                   partial_parse=any(x["info"].get("name") == "UnableToPartialParse"
                                     for x in lines) is False,
                   parse_skipped=any(x["info"].get("name") == "PartialParsingSkipParsing"
                                     for x in lines))
        if step and len(step) == 2:
            out.update(before_dbt_s=round(stamps[0] - step[0], 2),
                       after_dbt_s=round(step[1] - stamps[-1], 2))
    return out


def vault_facts(data: Path) -> dict:
    import duckdb

    with duckdb.connect(str(data / "vault.duckdb"), read_only=True) as con:
        crosswalk = dict(con.execute("select source || ':' || record_key, person_id "
                                     "from linkage.person_crosswalk").fetchall())
        stats = con.execute(
            "select records, persons, incremental, records_relinked, retrain_reason "
            "from linkage.run_stats order by run_at desc limit 1").fetchall()[0]
        ingest = con.execute(
            "select coalesce(sum(rows_read), 0), coalesce(sum(rows_unchanged), 0) "
            "from ingest.deliveries where feed in ? and status = 'ACCEPTED'",
            [list(SNAPSHOT_FEEDS)]).fetchall()[0]
    return {"crosswalk": crosswalk, "records": stats[0], "persons": stats[1],
            "incremental": bool(stats[2]), "records_relinked": stats[3],
            "retrain_reason": stats[4] or "", "roster_rows": int(ingest[0]),
            "roster_rows_unchanged": int(ingest[1])}


def churn(before: dict[str, str], after: dict[str, str]) -> float:
    both = [u for u in before if u in after]
    return sum(before[u] != after[u] for u in both) / max(len(both), 1)


def truth_of(city: Path):
    import pandas as pd

    truth = pd.read_csv(city / "ground_truth" / "records.csv", dtype=str)
    truth["unique_id"] = truth.source + ":" + truth.record_key
    return truth[["unique_id", "true_person_id"]]


def f1_of(crosswalk: dict[str, str], truth) -> dict:
    import pandas as pd

    from benchmarks.linkage_quality import pairwise

    clusters = pd.DataFrame({"unique_id": list(crosswalk), "cluster_id": list(crosswalk.values())})
    m = pairwise(clusters, truth)
    return {k: round(m[k], 4) for k in ("precision", "recall", "f1")}


def full_relink(data: Path, landing: Path, work: Path) -> dict:
    """Relink every record of the final vault with a freshly trained model, in a copy."""
    import duckdb

    from pipelines.linking import relink
    from pipelines.stores import Settings

    copy = work / "relink"
    shutil.rmtree(copy, ignore_errors=True)
    copy.mkdir()
    shutil.copy(data / "vault.duckdb", copy / "vault.duckdb")
    settings = Settings(landing, copy, AS_OF, b"benchmark")
    t = time.perf_counter()
    with duckdb.connect(str(copy / "vault.duckdb")) as con:
        relink(con, settings, retrain=True)
        crosswalk = dict(con.execute("select source || ':' || record_key, person_id "
                                     "from linkage.person_crosswalk").fetchall())
    return {"seconds": round(time.perf_counter() - t, 1), "crosswalk": crosswalk}


def blocking_counts(data: Path) -> list[dict]:
    """Comparisons each prediction blocking rule adds (exact counts, Splink's analysis)."""
    import duckdb
    from splink import DuckDBAPI
    from splink.blocking_analysis import count_comparisons_from_blocking_rules

    from linkage.model import BLOCKING_RULES

    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    with duckdb.connect(str(data / "vault.duckdb"), read_only=True) as vault:
        records = vault.sql("select unique_id, first_name, last_name, dob, zip, address_key, "
                            "medicaid_id, patient_id from linkage.person_records").to_arrow_table()
    con.register("records_arrow", records)
    con.execute("create table records as select * from records_arrow")
    db_api = DuckDBAPI(connection=con)
    found = count_comparisons_from_blocking_rules(
        db_api.register("records"), blocking_rules=BLOCKING_RULES, link_type="dedupe_only",
        record_sample_proportion=1.0)
    con.close()
    return [{"rule": r["blocking_rule"], "comparisons": int(r["marginal_comparison_count"])}
            for r in found]


def linkage_side_by_side(data: Path, truth) -> dict:
    """Bare Splink with the same settings (train on every record, predict, cluster) and the
    recordlinkage baseline, on the final standardised records."""
    import duckdb
    import pandas as pd
    from splink import DuckDBAPI, Linker

    from benchmarks.linkage_baseline import recordlinkage_clusters
    from linkage.model import LINK_COLUMNS, settings, train

    with duckdb.connect(str(data / "vault.duckdb"), read_only=True) as con:
        records = con.execute("select * from linkage.person_records").df()
    records["first_aliases"] = [list(a) for a in records["first_aliases"]]
    out = {}
    t = time.perf_counter()
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    linker = Linker(DuckDBAPI(connection=con).register(records[LINK_COLUMNS]), settings(),
                    log_level=None)
    train(linker)
    pairs = linker.inference.predict(threshold_match_probability=0.5)
    bare = linker.clustering.cluster_pairwise_predictions_at_threshold(
        pairs, threshold_match_probability=0.95).as_pandas_dataframe()
    con.close()
    out["bare_splink"] = {"seconds": round(time.perf_counter() - t, 1), **f1_of(
        dict(zip(bare.unique_id, bare.cluster_id.astype(str), strict=True)), truth)}
    t = time.perf_counter()
    rl = recordlinkage_clusters(records)
    out["recordlinkage"] = {"seconds": round(time.perf_counter() - t, 1), **f1_of(
        dict(zip(rl.unique_id, rl.cluster_id.astype(str), strict=True)), truth)}
    del pd
    return out


def one_size(people: int, workdir: Path, weeks: int, side_by_side_max: int) -> dict:
    from pipelines.synth.generator import generate_city

    city, data, landing = workdir / "city", workdir / "data", workdir / "landing"
    t = time.perf_counter()
    made = generate_city(city, people=people, seed=SEED, as_of=AS_OF, mess="messy")
    generated = round(time.perf_counter() - t, 1)
    extracts = sorted({f.name.rsplit("_", 1)[1][:8] for f in (city / "landing").rglob("*.csv")
                       if f.name.rsplit("_", 1)[-1][:8].isdigit()})
    first, following = extracts[0], extracts[1:1 + weeks]
    runs = []
    before: dict[str, str] = {}
    seen_roster = (0, 0)
    for i, extract in enumerate([first, *following]):
        files = deliver(city, landing, extract)
        as_of = f"{extract[:4]}-{extract[4:6]}-{extract[6:]}"
        run = operator_run(landing, data, as_of)
        facts = vault_facts(data)
        after = facts.pop("crosswalk")
        roster = (facts.pop("roster_rows"), facts.pop("roster_rows_unchanged"))
        run.update(facts, files=files, week=i, dbt=dbt_facts(data, run.pop("dbt_step")),
                   churn=round(churn(before, after), 5) if before else None,
                   roster_rows=roster[0] - seen_roster[0],
                   roster_rows_unchanged=roster[1] - seen_roster[1])
        before, seen_roster = after, roster
        runs.append(run)
        print(json.dumps({"people": people, **run}), file=sys.stderr, flush=True)
    truth = truth_of(city)
    incremental = f1_of(before, truth)
    relinked = full_relink(data, landing, workdir)
    out = {"people": people, "records": made["records"], "generate_seconds": generated,
           "runs": runs, "incremental_f1": incremental,
           "full_relink": {"seconds": relinked["seconds"], **f1_of(relinked["crosswalk"], truth)},
           "relink_churn": round(churn(before, relinked["crosswalk"]), 5),
           "blocking": blocking_counts(data)}
    if made["records"] <= side_by_side_max:
        out["side_by_side"] = linkage_side_by_side(data, truth)
    return out


def machine() -> str:
    mem = next((int(line.split()[1]) // 2**20 for line in Path("/proc/meminfo").read_text()
                .splitlines() if line.startswith("MemTotal")), 0)
    return (f"{os.cpu_count()} cores, {mem} GiB, {platform.platform()}, "
            f"Python {platform.python_version()}{reclaim()}")


def reclaim() -> str:
    """The kernel's proactive reclaim, where it runs: on this kind of virtual machine DAMON
    pages out memory left idle for about a minute, page cache included, so a run started that
    long after the last reads its libraries from disk again (a cold start, as a week's wait
    gives any machine)."""
    try:
        for kdamond in Path("/sys/kernel/mm/damon/admin/kdamonds").glob("[0-9]*"):
            if (kdamond / "state").read_text().strip() != "on":
                continue
            for context in kdamond.glob("contexts/[0-9]*"):
                aggr_us = int((context / "monitoring_attrs/intervals/aggr_us").read_text())
                for scheme in context.glob("schemes/[0-9]*"):
                    if (scheme / "action").read_text().strip() == "pageout":
                        age = int((scheme / "access_pattern/age/min").read_text())
                        return (f"; the kernel pages out memory idle for {age * aggr_us / 1e6:.0f}"
                                " s (DAMON), so a run's imports often start cold")
    except (OSError, ValueError):
        pass
    return ""


def _s(run: dict, stage: str) -> float:
    return run["stages"].get(stage, 0.0)


def report(results: list[dict], when: str) -> str:
    lines = [f"Machine: {machine()}", f"Date: {when}",
             (f"City: synthetic, messy, seed {SEED}; the first delivery, then one a week. "
             "Every run is `plumbline run` in a process of its own, the data dir kept, as an "
             "operator runs it. Peak RSS is sampled from /proc for the process and all its "
             "children (dbt included) every 0.2 s."), "",
             "## Every run", "",
             ("| people | run | as of | wall s | peak RSS MB | ingest s | linkage s | warehouse s"
             " | dbt s | published s | lists s | other s | roster rows parsed / unchanged |"
             " records | records relinked | person_id churn | model trained |"),
             "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in results:
        for run in r["runs"]:
            parsed = run["roster_rows"] - run["roster_rows_unchanged"]
            lines.append(
                f"| {r['people']:,} | {'full' if run['week'] == 0 else 'week ' + str(run['week'])}"
                f" | {run['as_of']} | {run['seconds']} | {run['peak_rss_mb']:,} |"
                f" {_s(run, 'ingest')} | {_s(run, 'linkage')} | {_s(run, 'warehouse')} |"
                f" {_s(run, 'dbt')} | {_s(run, 'published')} | {_s(run, 'lists')} |"
                f" {_s(run, 'other')} | {parsed:,} / {run['roster_rows_unchanged']:,} |"
                f" {run['records']:,} |"
                f" {run['records_relinked']:,} |"
                f" {'-' if run['churn'] is None else format(run['churn'], '.3%')} |"
                f" {run['retrain_reason'] or 'no'} |")
    lines += ["", "## Linkage: incremental against a full relink of the same records", "",
              ("| people | records | incremental F1 (P / R) | full relink F1 (P / R) | F1 gap |"
              " full relink s | person_ids that differ |"),
              "|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        i, f = r["incremental_f1"], r["full_relink"]
        lines.append(f"| {r['people']:,} | {r['runs'][-1]['records']:,} | {i['f1']} "
                     f"({i['precision']} / {i['recall']}) | {f['f1']} ({f['precision']} / "
                     f"{f['recall']}) | {i['f1'] - f['f1']:+.4f} | {f['seconds']} |"
                     f" {r['relink_churn']:.2%} |")
    lines += ["", ("## Comparisons per blocking rule (each rule's pairs not found by an earlier "
              "one)"), "", "| rule | " + " | ".join(f"{r['people']:,}" for r in results)
              + (" | growth |" if len(results) > 1 else " |"),
              "|---|" + "---:|" * (len(results) + (len(results) > 1))]
    for k, rule in enumerate(results[0]["blocking"]):
        counts = [r["blocking"][k]["comparisons"] for r in results]
        growth = (f" | {counts[-1] / max(counts[0], 1):.1f}x" if len(results) > 1 else "")
        lines.append(f"| `{rule['rule']}` | " + " | ".join(f"{c:,}" for c in counts)
                     + growth + " |")
    totals = [sum(b["comparisons"] for b in r["blocking"]) for r in results]
    records = [r["runs"][-1]["records"] for r in results]
    lines.append("| **all rules** | " + " | ".join(f"**{t:,}**" for t in totals)
                 + (f" | **{totals[-1] / max(totals[0], 1):.1f}x** for "
                    f"{records[-1] / records[0]:.1f}x the records |" if len(results) > 1
                    else " |"))
    side = [r for r in results if "side_by_side" in r]
    if side:
        lines += ["", "## The same records through bare Splink and recordlinkage", "",
                  ("| people | Plumbline full relink s (F1) | bare Splink s (F1) | "
                  "recordlinkage s (F1) |"), "|---:|---:|---:|---:|"]
        for r in side:
            b, rl = r["side_by_side"]["bare_splink"], r["side_by_side"]["recordlinkage"]
            lines.append(f"| {r['people']:,} | {r['full_relink']['seconds']} "
                         f"({r['full_relink']['f1']}) | {b['seconds']} ({b['f1']}) | "
                         f"{rl['seconds']} ({rl['f1']}) |")
    lines += ["", "## Against the targets", "", *targets(results), "",
              "## Where the time goes", "", *where_time_goes(results)]
    return "\n".join(lines)


def _weekly(r: dict) -> list[dict]:
    return [run for run in r["runs"] if run["week"] > 0]


def targets(results: list[dict]) -> list[str]:
    by = {r["people"]: r for r in results}
    rows = ["| target | measured | |", "|---|---|---|"]

    def row(name: str, text: str, ok: bool) -> None:
        rows.append(f"| {name} | {text} | {'met' if ok else '**missed**'} |")

    big = by.get(1_000_000)
    if big:
        full, weekly = big["runs"][0], _weekly(big)
        typical, worst = _median([w["seconds"] for w in weekly]), _heaviest(weekly)
        row("1M weekly run ≤ 30 s", f"{typical} s, the median of {len(weekly)} weeks ("
            f"{_heaviest_text(worst)})", typical <= 30)
        row("1M weekly run ≤ 10% of the full run",
            f"{typical / full['seconds']:.1%} (median week; {worst['seconds'] / full['seconds']:.0%}"
            " the heaviest)", typical <= 0.1 * full["seconds"])
        row("1M full run ≤ 5 min", f"{full['seconds']} s", full["seconds"] <= 300)
        peak = max(run["peak_rss_mb"] for run in big["runs"])
        row("1M peak RSS ≤ 6 GiB", f"{peak:,} MB (the highest of its {len(big['runs'])} runs)",
            peak <= 6 * 1024)
        worst_churn = max(w["churn"] for w in weekly)
        row("1M person_id churn < 0.5% a week", f"{worst_churn:.3%} (worst week)",
            worst_churn < 0.005)
    small = by.get(100_000)
    if small and big:
        a, b = _s(small["runs"][0], "linkage"), _s(big["runs"][0], "linkage")
        ratio = b / max(a, 0.1)
        row("linkage stage at 1M ≤ 12× its time at 100k (full runs)",
            f"{ratio:.1f}× ({a} s → {b} s; a full relink with training "
            f"{small['full_relink']['seconds']} s → {big['full_relink']['seconds']} s)",
            ratio <= 12)
    for r in results:
        gap = abs(r["incremental_f1"]["f1"] - r["full_relink"]["f1"])
        row(f"{r['people']:,}: incremental F1 within 0.002 of a full relink over "
            f"{len(_weekly(r))} weeks", f"{gap:.4f}", gap <= 0.002)
    if small:
        weekly = _weekly(small)
        typical, full_s = _median([w["seconds"] for w in weekly]), small["runs"][0]["seconds"]
        row("100k weekly run ≤ 35% of the full run (`plumbline run`)",
            f"{typical / full_s:.1%} ({typical} s, the median of {len(weekly)} weeks, of "
            f"{full_s} s; {_heaviest_text(_heaviest(weekly))})", typical <= 0.35 * full_s)
    return rows


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return round(ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2, 1)


def _heaviest(weekly: list[dict]) -> dict:
    return max(weekly, key=lambda w: w["seconds"])


def _heaviest_text(w: dict) -> str:
    """The heaviest week in words: what it carried besides the week's new rows."""
    parsed = w["roster_rows"] - w["roster_rows_unchanged"]
    extra = []
    if parsed:
        extra.append(f"{parsed:,} roster rows parsed")
    if _s(w, "other") >= 1:
        extra.append(f"{_s(w, 'other')} s answering data-lab requests")
    return (f"the heaviest, {w['as_of']}: {w['seconds']} s"
            + (f", with {' and '.join(extra)}" if extra else ""))


def _outside(run: dict) -> str:
    """The seconds of a run outside its Dagster run, in words."""
    if "before_run_s" not in run:
        return "the process starting, loading the definitions and writing the summary"
    return (f"{run['before_run_s']} s before the Dagster run was created (the interpreter, "
            "importing the definitions with Dagster and dagster-dbt while the worker process "
            f"imports Great Expectations, the instance), {run['after_run_s']} s after it ended "
            "(the summary, exiting), and the steps' hand-overs")


def where_time_goes(results: list[dict]) -> list[str]:
    out = []
    for r in results:
        every_week = _weekly(r)
        if not every_week:
            continue
        heaviest = _heaviest(every_week)
        # the ordinary weeks (the heaviest, when rosters or data-lab requests come, apart)
        weekly = [w for w in every_week if w is not heaviest] or every_week
        n = len(weekly)
        mean = {s: sum(_s(w, s) for w in weekly) / n for s in (*STAGES, "other")}
        wall = sum(w["seconds"] for w in weekly) / n
        in_steps = sum(mean.values())
        parts = ", ".join(f"{s} {v:.1f} s" for s, v in sorted(mean.items(), key=lambda kv: -kv[1])
                          if v >= 0.05)
        full = r["runs"][0]
        fparts = ", ".join(f"{s} {v:.1f} s" for s, v in sorted(
            full["stages"].items(), key=lambda kv: -kv[1]) if v >= 0.05)
        built = (" Its publication built the data dictionary (`dbt docs generate`, once per "
                 "dbt project version on a checkout), which later runs reuse."
                 if full.get("dictionary_built") else "")
        out.append(f"- **{r['people']:,} people, full run ({full['seconds']} s):** {fparts}; "
                   f"the rest ({full['seconds'] - sum(full['stages'].values()):.1f} s): "
                   f"{_outside(full)}.{built}")
        before = sum(w.get("before_run_s", 0.0) for w in weekly) / n
        after = sum(w.get("after_run_s", 0.0) for w in weekly) / n
        out.append(f"- **{r['people']:,} people, an ordinary weekly run (mean {wall:.1f} s over "
                   f"{n}):** {parts}; the rest ({wall - in_steps:.1f} s): "
                   f"{_outside({'before_run_s': round(before, 1), 'after_run_s': round(after, 1)})}.")
        if heaviest is not weekly[0] or len(every_week) == 1:
            hparts = ", ".join(f"{s} {v:.1f} s" for s, v in sorted(
                heaviest["stages"].items(), key=lambda kv: -kv[1]) if v >= 0.05)
            out.append(f"- **{r['people']:,} people, {_heaviest_text(heaviest)}:** {hparts} "
                       "('other' is the data lab matching and reporting).")
        dbt = [w["dbt"] for w in weekly if w.get("dbt")]
        if dbt:
            d = dbt[-1]
            step = _s(weekly[-1], "dbt")
            text = (f"- **{r['people']:,} people, dbt in the last weekly run:** the step took "
                    f"{step} s; dbt's own run of its {d['nodes']} nodes {d['elapsed']} s (models "
                    f"{d.get('model', 0)} s, tests {d.get('test', 0)} s, seeds "
                    f"{d.get('seed', 0)} s; the slowest model, {d['slowest_model']}, "
                    f"{d['slowest_model_s']} s).")
            if "before_dbt_s" in d:
                text += (f" Around it: {d['before_dbt_s']} s from the step's start to dbt's "
                         f"first log line (the dbt process starting), {d['parse_s']} s "
                         f"{_parse_text(d)}, and {d['after_dbt_s']} s after dbt's last line "
                         "(Dagster recording the step's materializations and checks, and the "
                         "tables' metadata).")
            out.append(text)
    return out


def _parse_text(d: dict) -> str:
    """How dbt came by its parsed project, from its log (results before parse_skipped was
    recorded say only that the saved parse was used)."""
    if not d.get("partial_parse"):
        return "parsing the whole project"
    skipped = d.get("parse_skipped")
    if skipped is None:
        return "loading the project from its saved parse (partial parsing)"
    return ("loading the project from its saved parse, nothing re-parsed" if skipped
            else "loading its saved parse and re-parsing what changed")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--weeks", type=int, default=4)
    ap.add_argument("--side-by-side-max", type=int, default=150_000,
                    help="run bare Splink and recordlinkage only up to this many records")
    ap.add_argument("--results", type=Path, help="write the report to this Markdown file")
    ap.add_argument("--json", type=Path, help="also write every figure as JSON")
    ap.add_argument("--from-json", type=Path,
                    help="write the report from figures an earlier run saved with --json")
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one:
        print(json.dumps(one_size(a.one, a.workdir, a.weeks, a.side_by_side_max)))
        return
    if a.from_json:
        saved = json.loads(a.from_json.read_text())
        if isinstance(saved, list):  # saved before the date was saved with the figures
            when = date.fromtimestamp(a.from_json.stat().st_mtime).isoformat()
            saved = {"date": when, "results": saved}
        text = report(saved["results"], saved["date"])
        print(text)
        if a.results:
            a.results.write_text("# Benchmark results\n\n" + text + "\n")
        return
    from pipelines.dbt_manifest import prepare

    prepare()
    results = []
    for people in a.sizes:
        with tempfile.TemporaryDirectory(prefix=f"bench{people}_") as tmp:
            proc = subprocess.run(
                [sys.executable, "-m", "benchmarks.run", "--one", str(people), "--workdir", tmp,
                 "--weeks", str(a.weeks), "--side-by-side-max", str(a.side_by_side_max)],
                stdout=subprocess.PIPE, text=True, check=False)
            if proc.returncode != 0:
                raise SystemExit(f"the {people:,}-person benchmark failed")
            results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        if a.json:
            a.json.write_text(json.dumps({"date": date.today().isoformat(),
                                          "machine": machine(), "results": results}, indent=1))
    text = report(results, date.today().isoformat())
    print(text)
    if a.results:
        a.results.write_text("# Benchmark results\n\n" + text + "\n")


if __name__ == "__main__":
    main()
