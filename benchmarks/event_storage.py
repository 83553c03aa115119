"""What Dagster's run history costs a run: milliseconds per stored event, two storages.

    python -m benchmarks.event_storage [--events 300] [--results benchmarks/EVENT_STORAGE.md]

A weekly run stores some 500 events (each step's start and end, every materialization, every
dbt test's check result). Stored here, in a fresh instance each, alternately: materializations
of 40 assets, and asset check evaluations, through Dagster's ConsolidatedSqliteEventLogStorage
(what `plumbline run` used before) and PlumblineEventLogStorage (pipelines/dagster_storage.py).
Every event is read back before a figure counts. Printed and written: milliseconds per event,
the median of three rounds.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from datetime import date
from pathlib import Path

import dagster as dg
from dagster._core.test_utils import instance_for_test

STORAGES = {
    "Dagster's ConsolidatedSqliteEventLogStorage": ("dagster._core.storage.event_log",
                                                     "ConsolidatedSqliteEventLogStorage"),
    "PlumblineEventLogStorage": ("pipelines.dagster_storage", "PlumblineEventLogStorage"),
}


def one_round(module: str, cls: str, events: int) -> dict[str, float]:
    """Milliseconds per materialization and per check evaluation, in a fresh instance."""
    with tempfile.TemporaryDirectory() as d:
        overrides = {"event_log_storage": {"module": module, "class": cls,
                                           "config": {"base_dir": f"{d}/events"}}}
        with instance_for_test(overrides=overrides, temp_dir=d) as instance:
            keys = [dg.AssetKey(["marts", f"table_{i}"]) for i in range(40)]
            t = time.perf_counter()
            for i in range(events):
                instance.report_runless_asset_event(
                    dg.AssetMaterialization(asset_key=keys[i % 40], metadata={"rows": i}))
            materialization = (time.perf_counter() - t) / events * 1000
            t = time.perf_counter()
            for i in range(events):
                instance.report_runless_asset_event(dg.AssetCheckEvaluation(
                    asset_key=keys[i % 40], check_name="grain", passed=True,
                    metadata={"failing rows": 0}))
            check = (time.perf_counter() - t) / events * 1000
            stored = sum(len(instance.fetch_materializations(k, limit=events).records)
                         for k in keys)
            if stored != events:
                raise SystemExit(f"{cls}: {stored} of {events} materializations read back")
    return {"materialization_ms": materialization, "check_ms": check}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--events", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--results", type=Path, default=None)
    args = ap.parse_args()
    rounds: dict[str, list[dict[str, float]]] = {name: [] for name in STORAGES}
    for _ in range(args.rounds):
        for name, (module, cls) in STORAGES.items():  # alternately, so drift hits both
            rounds[name].append(one_round(module, cls, args.events))
    lines = ["# Run history: milliseconds per stored Dagster event", "",
             (f"Machine: {platform.machine()}, Python {platform.python_version()}. "
              f"Date: {date.today().isoformat()}. {args.events} events of each kind per round, "
              f"the median of {args.rounds} rounds, each storage in a fresh instance."), "",
             "| storage | materialization ms | check evaluation ms |", "|---|---:|---:|"]
    for name, rs in rounds.items():
        m = statistics.median(r["materialization_ms"] for r in rs)
        c = statistics.median(r["check_ms"] for r in rs)
        lines.append(f"| {name} | {m:.1f} | {c:.1f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.results:
        args.results.write_text(text)


if __name__ == "__main__":
    main()
