"""The linkage quality report: accuracy against ground truth, the baseline, FEBRL4, and churn.

    python -m benchmarks.linkage_quality [--people 10000] [--mess messy] [--seed 3] [--skip-febrl]

1. Generates a synthetic city and links it (ingest + linkage only) with the newest weekly
   extracts held back, then again with them: the person_id churn a weekly delta causes.
2. Scores Plumbline's linkage (Splink) against the ground truth: pairwise precision, recall,
   F1, and cluster metrics (B-cubed precision/recall, share of people reconstructed exactly).
3. Runs the independent recordlinkage baseline on the same standardised records.
4. Runs both on FEBRL4 (shipped with recordlinkage), a public reference point.
5. Lets a simulated reviewer answer the clerical review queue from the ground truth, runs
   linkage again, and scores it: what one round of `plumbline review` buys.

Each method runs in its own process, so its peak memory (RSS) is its own.
"""

from __future__ import annotations

import argparse
import itertools
import json
import multiprocessing as mp
import resource
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

import pandas as pd

AS_OF = date(2026, 6, 30)


# ---------------------------------------------------------------- metrics


def pairwise(pred: pd.DataFrame, truth: pd.DataFrame) -> dict[str, float]:
    """Precision, recall and F1 over all record pairs put in one cluster."""
    m = pred.merge(truth, on="unique_id")

    def pairs(col: str) -> set[tuple[str, str]]:
        out: set[tuple[str, str]] = set()
        for _, g in m.groupby(col):
            out.update(itertools.combinations(sorted(g.unique_id), 2))
        return out

    found, true = pairs("cluster_id"), pairs("true_person_id")
    tp = len(found & true)
    p = tp / len(found) if found else 1.0
    r = tp / len(true) if true else 1.0
    return {"precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0,
            "predicted_pairs": len(found), "true_pairs": len(true)}


def cluster_metrics(pred: pd.DataFrame, truth: pd.DataFrame) -> dict[str, float]:
    """B-cubed precision/recall, and the share of true people whose records form exactly one
    predicted cluster with nothing else in it."""
    m = pred.merge(truth, on="unique_id")
    size_pred = m.groupby("cluster_id").unique_id.transform("size")
    size_true = m.groupby("true_person_id").unique_id.transform("size")
    both = m.groupby(["cluster_id", "true_person_id"]).unique_id.transform("size")
    exact = m.groupby("true_person_id").apply(
        lambda g: g.cluster_id.nunique() == 1
        and (m.cluster_id == g.cluster_id.iloc[0]).sum() == len(g), include_groups=False)
    return {"bcubed_precision": float((both / size_pred).mean()),
            "bcubed_recall": float((both / size_true).mean()),
            "people_reconstructed_exactly": float(exact.mean()),
            "largest_cluster": int(size_pred.max())}


def _timed(fn, *args, **kwargs) -> dict:
    t = time.perf_counter()
    out = fn(*args, **kwargs)
    out["seconds"] = round(time.perf_counter() - t, 2)
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    return out


def _in_child(target, *args) -> dict:
    ctx = mp.get_context("spawn")
    with ctx.Pool(1) as pool:
        return pool.apply(target, args)


# ---------------------------------------------------------------- the city


def _link_city(landing: Path, data_dir: Path, keep) -> pd.DataFrame:
    """Ingest the person feeds whose files pass `keep`, link, return the crosswalk."""
    from pipelines.feeds import ENROLLMENT, HEALTH, RESIDENTS, SERVICES
    from pipelines.ingest import ingest_feed, pending_files
    from pipelines.linking import relink
    from pipelines.stores import Settings, connect

    settings = Settings(landing, data_dir, AS_OF, b"quality-report")
    for feed in (HEALTH, RESIDENTS, ENROLLMENT, SERVICES):
        files = [p.relative_to(landing).as_posix() for p in pending_files(landing, feed)
                 if keep(p)]
        ingest_feed(settings, feed, only=files)
    with connect(settings.vault_path) as con:
        t = time.perf_counter()
        stats = relink(con, settings)
        stats["link_seconds"] = round(time.perf_counter() - t, 2)
        cw = con.execute("select source || ':' || record_key as unique_id, person_id "
                         "from linkage.person_crosswalk").df()
    cw.attrs["stats"] = stats
    return cw


def splink_city(city: str, data: str, delta_weeks: int = 2) -> dict:
    """Plumbline's linkage on the city: first without the newest weekly extracts, then with
    them (the delta), as the weekly runs would see it."""
    landing, data_dir = Path(city) / "landing", Path(data)
    held = {f"{AS_OF - timedelta(days=7 * k):%Y%m%d}.csv" for k in range(delta_weeks)}
    t = time.perf_counter()
    before = _link_city(landing, data_dir, lambda p: p.name[-12:] not in held)
    first_seconds = time.perf_counter() - t
    t = time.perf_counter()
    after = _link_city(landing, data_dir, lambda p: True)
    delta_seconds = time.perf_counter() - t
    both = before.merge(after, on="unique_id", suffixes=("_before", "_after"))
    churned = int((both.person_id_before != both.person_id_after).sum())
    truth = pd.read_csv(Path(city) / "ground_truth" / "records.csv", dtype=str)
    truth["unique_id"] = truth.source + ":" + truth.record_key
    pred = after.rename(columns={"person_id": "cluster_id"})
    reviewed = simulated_review(data_dir, truth)
    return {
        **{f"reviewed_{k}": v for k, v in reviewed.items()},
        **pairwise(pred, truth[["unique_id", "true_person_id"]]),
        **cluster_metrics(pred, truth[["unique_id", "true_person_id"]]),
        "records": len(after), "delta_records": len(after) - len(before),
        "delta_share": (len(after) - len(before)) / len(before),
        "person_id_churn": churned / len(before), "records_changed_person": churned,
        "first_run_seconds": round(first_seconds, 2), "delta_run_seconds": round(delta_seconds, 2),
        "link_seconds": before.attrs["stats"]["link_seconds"],
        "delta_link_seconds": after.attrs["stats"]["link_seconds"],
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
    }


def simulated_review(data_dir: Path, truth: pd.DataFrame) -> dict:
    """A reviewer who answers every queued pair from the ground truth, then the next run
    (the model reused): pairwise scores after one round of review."""
    from linkage.constraints import record_review_decision
    from pipelines.linking import relink
    from pipelines.stores import Settings, connect

    true_of = dict(zip(truth.unique_id, truth.true_person_id, strict=True))
    with connect(data_dir / "vault.duckdb") as con:
        queue = con.execute("select unique_id_l, unique_id_r, linked "
                            "from linkage.review_queue").fetchall()
        answers = {"SAME": 0, "DIFFERENT": 0}
        for a, b, _ in queue:
            answer = "SAME" if true_of.get(a) == true_of.get(b) else "DIFFERENT"
            answers[answer] += 1
            record_review_decision(con, a, b, answer, "simulated reviewer (ground truth)")
        relink(con, Settings(data_dir / "landing", data_dir, AS_OF, b"quality-report"))
        cw = con.execute("select source || ':' || record_key as unique_id, "
                         "person_id as cluster_id from linkage.person_crosswalk").df()
    scores = pairwise(cw, truth[["unique_id", "true_person_id"]])
    return {"pairs_answered": len(queue), "answered_same": answers["SAME"],
            "answered_different": answers["DIFFERENT"],
            "wrongly_linked_in_queue": sum(1 for a, b, linked in queue
                                           if linked and true_of.get(a) != true_of.get(b)),
            "precision": scores["precision"], "recall": scores["recall"], "f1": scores["f1"]}


def baseline_city(city: str, data: str) -> dict:
    """The recordlinkage baseline on the same standardised records Splink saw."""
    import duckdb

    from benchmarks.linkage_baseline import recordlinkage_clusters
    from linkage.standardise import first_name_aliases

    with duckdb.connect(str(Path(data) / "vault.duckdb"), read_only=True) as con:
        records = con.execute("select * from linkage.person_records").df()
    records["first_aliases"] = [list(first_name_aliases(n)) for n in records.first_name]
    truth = pd.read_csv(Path(city) / "ground_truth" / "records.csv", dtype=str)
    truth["unique_id"] = truth.source + ":" + truth.record_key

    def run() -> dict:
        pred = recordlinkage_clusters(records)
        return {**pairwise(pred, truth[["unique_id", "true_person_id"]]),
                **cluster_metrics(pred, truth[["unique_id", "true_person_id"]])}

    return _timed(run)


def febrl4() -> dict:
    from benchmarks.linkage_baseline import febrl4_report

    return febrl4_report()


# ---------------------------------------------------------------- report


def report(people: int, mess: str, seed: int, skip_febrl: bool = False,
           delta_weeks: int = 2) -> dict:
    from pipelines.synth.generator import generate_city

    with tempfile.TemporaryDirectory() as tmp:
        city, data = Path(tmp) / "city", Path(tmp) / "data"
        generate_city(city, people=people, seed=seed, as_of=AS_OF, mess=mess)
        out = {"city": {"people": people, "mess": mess, "seed": seed},
               "splink": _in_child(splink_city, str(city), str(data), delta_weeks)}
        out["recordlinkage"] = _in_child(baseline_city, str(city), str(data))
    if not skip_febrl:
        out["febrl4"] = _in_child(febrl4)
    return out


def print_report(r: dict) -> None:
    s, b = r["splink"], r["recordlinkage"]
    c = r["city"]
    print(f"Linkage quality: synthetic city of {c['people']} people, mess={c['mess']}, "
          f"seed={c['seed']}, {s['records']} person-records")
    print(f"{'':28}{'Plumbline (Splink)':>20}{'recordlinkage':>16}")
    for key in ("precision", "recall", "f1", "bcubed_precision", "bcubed_recall",
                "people_reconstructed_exactly", "largest_cluster", "peak_rss_mb"):
        print(f"{key:28}{s[key]:>20.4f}{b[key]:>16.4f}" if isinstance(s[key], float)
              else f"{key:28}{s[key]:>20}{b[key]:>16}")
    print(f"{'seconds (linkage stage)':28}{s['link_seconds']:>20}{b['seconds']:>16}")
    print("  (Plumbline: standardise, train, predict, cluster, write the vault; recordlinkage:"
          " index, compare, classify, cluster on the already standardised records)")
    print(f"Weekly delta: {s['delta_records']} new records ({s['delta_share']:.2%}); "
          f"person_id churn {s['person_id_churn']:.3%} ({s['records_changed_person']} records); "
          f"delta linkage {s['delta_link_seconds']} s (model reused)")
    print(f"After a simulated reviewer answered the {s['reviewed_pairs_answered']} queued pairs "
          f"({s['reviewed_answered_same']} same, {s['reviewed_answered_different']} not; "
          f"{s['reviewed_wrongly_linked_in_queue']} had been linked wrongly) and the next run: "
          f"precision {s['reviewed_precision']:.4f} recall {s['reviewed_recall']:.4f} "
          f"F1 {s['reviewed_f1']:.4f} (before review F1 {s['f1']:.4f})")
    if "febrl4" in r:
        f = r["febrl4"]
        for name in ("splink", "recordlinkage"):
            m = f[name]
            print(f"FEBRL4 {name:14} precision {m['precision']:.4f} recall {m['recall']:.4f} "
                  f"F1 {m['f1']:.4f} ({m['seconds']} s)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--people", type=int, default=10_000)
    ap.add_argument("--mess", default="messy", choices=["clean", "normal", "messy"])
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--skip-febrl", action="store_true")
    ap.add_argument("--delta-weeks", type=int, default=2,
                    help="newest weekly extracts held back and delivered as the delta")
    ap.add_argument("--json", type=Path, help="also write the figures to this file")
    a = ap.parse_args()
    r = report(a.people, a.mess, a.seed, a.skip_febrl, a.delta_weeks)
    print_report(r)
    if a.json:
        a.json.write_text(json.dumps(r, indent=2, default=str))


if __name__ == "__main__":
    main()

