"""A data-lab request's life: linked, analysed and reported, then erased.

    RECEIVED  ingest accepted the file; its rows are in its own store (DATA_DIR/requests/)
    LINKED    each row looked up among the integrated persons (nothing in the crosswalk changes)
    REPORTED  the report is in outbox/<provider>/datalab/
    ERASED    the file, its store and every row made from it are gone; the audit row remains

Each step moves only requests that finished the step before, so a failed run leaves a request
where it was (nothing is erased before its report exists) and the next run takes it on.
The vault's `datalab.requests` row is the audit: hash, counts, report id, when it was erased.
"""

from __future__ import annotations

import csv
import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from linkage.lookup import find_persons
from linkage.model import MODEL_FILE
from linkage.run import standardise_records
from pipelines.datalab import matching as M
from pipelines.datalab.report import Report, write_report
from pipelines.ingest import file_sha256, receipt_stem, save_receipt
from pipelines.stores import Settings, connect, linkage_setting, seed_values

COHORT_SQL = """
select 'datalab' as source, record_id as record_key, client_first_name as first_name,
       null as middle_name, client_last_name as last_name, client_dob as dob, null as sex,
       client_address as street_line, null as unit, client_zip as zip, null as medicaid_id,
       null as patient_id, program_start
from raw.datalab__cohort
"""
EVENT_MODEL = re.compile(r"int_datalab_events__[a-z0-9_]+")


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def requests_in(vault: duckdb.DuckDBPyConnection, status: str) -> list[dict[str, Any]]:
    frame = vault.execute("select * from datalab.requests where status = ? order by received_at",
                          [status]).df()
    return frame.to_dict("records")


def _update(vault: duckdb.DuckDBPyConnection, request_id: str, **values: Any) -> None:
    sets = ", ".join(f"{k} = ?" for k in values)
    vault.execute(f"update datalab.requests set {sets} where request_id = ?",
                  [*values.values(), request_id])


# ---------------------------------------------------------------- linking


def link_request(settings: Settings, vault: duckdb.DuckDBPyConnection, request: dict
                 ) -> dict[str, int]:
    """Look each cohort row up among the integrated persons; the links stay in the request's
    store. Returns counts only."""
    store_path = settings.request_store(request["request_id"])
    with connect(store_path) as store:
        raw = store.execute(COHORT_SQL).df()
        if raw.empty:
            links = pd.DataFrame(columns=["record_id", "person_id", "match_probability",
                                          "status", "program_start"])
        else:
            records = standardise_records(raw.drop(columns=["program_start"]))
            found = find_persons(vault, records, settings.linkage_dir / MODEL_FILE,
                                 linkage_setting("match_probability_threshold"))
            links = found.assign(record_id=raw["record_key"].to_numpy(),
                                 program_start=raw["program_start"].to_numpy())
        store.execute("create schema if not exists lab")
        store.register("links", links[["record_id", "person_id", "match_probability", "status",
                                       "program_start"]])
        store.execute("create or replace table lab.links as select * from links")
        store.unregister("links")
    counts = {s.lower(): int((links["status"] == s).sum())
              for s in ("LINKED", "UNLINKED", "AMBIGUOUS")}
    _update(vault, request["request_id"], status="LINKED", **counts)
    return counts


# ---------------------------------------------------------------- analysing and reporting


def analyse_request(settings: Settings, vault: duckdb.DuckDBPyConnection,
                    warehouse: duckdb.DuckDBPyConnection, request: dict) -> dict[str, Any]:
    """Match, compare and write the report. Returns counts and the report's id."""
    cfg = M.lab_settings()
    min_cell = M.min_published_count()
    with connect(settings.request_store(request["request_id"]), read_only=True) as store:
        cohort = store.execute(
            "select person_id, program_start from lab.links where status = 'LINKED'").df()
    children = warehouse.execute("select * from intermediate.int_datalab__children").df()
    rule_windows = warehouse.execute("select * from intermediate.int_rule_windows").df()
    pop = M.population(children, cohort, cfg)
    design = M.match_until_balanced(pop, cfg)
    matches, bal = design.matches, design.balance
    results = []
    for outcome in M.outcome_definitions():
        if not EVENT_MODEL.fullmatch(outcome["event_model"]):
            raise ValueError(f"datalab_outcomes: {outcome['event_model']!r} is not an event "
                             "model (int_datalab_events__<name>)")
        events = warehouse.execute(
            f"select person_id, event_date from intermediate.{outcome['event_model']}").df()
        windows = M.pair_windows(pop, matches, outcome, rule_windows)
        results.append(M.estimate(windows, events, settings.as_of, outcome, cfg, min_cell))

    matched = matches.matched
    figures, headline = verdict(matched, bal, cfg, min_cell)
    worst = unbalanced(bal, cfg)
    counts = {"rows_sent": int(request["rows_read"]),
              "rows_rejected": int(request["rows_rejected"]),
              "linked": int(request["linked"]), "unlinked": int(request["unlinked"]),
              "ambiguous": int(request["ambiguous"]), "duplicates": pop.duplicates,
              "eligible": len(pop.treated), "not_eligible": pop.not_eligible,
              "matched": matched, "unmatched": matches.unmatched,
              "comparison": matches.comparison, "comparison_pool": len(pop.pool)}
    report_id = f"DL-{request['provider']}-{settings.as_of:%Y%m%d}-{request['request_id'][:8]}"
    rep = Report(report_id, request["provider"], request["program"] or "(no rows)",
                 request["file_name"], request["received_at"], settings.as_of, counts, bal,
                 not worst, results, figures, headline, min_cell, cfg["max_abs_std_diff"],
                 effective_comparison=matches.effective_comparison,
                 by_level=matches.by_level(), levels=matches.levels,
                 area_digits=int(cfg["area_zip_digits"]), confidence=cfg["confidence"],
                 power=cfg["power"], design=design.description)
    target = write_report(settings.outbox / request["provider"] / "datalab", rep,
                          int(cfg["min_per_outcome"]))
    _update(vault, request["request_id"], status="REPORTED", duplicates=pop.duplicates,
            eligible=len(pop.treated), matched=matched, comparison_pool=len(pop.pool),
            comparison=matches.comparison, balance_ok=not worst, figures_given=figures,
            report_id=report_id, report_path=target.relative_to(settings.outbox).as_posix(),
            reported_at=_now())
    return {"report_id": report_id, "matched": matched, "figures_given": figures,
            "calls": {r.outcome_id: r.call for r in results}}


def unbalanced(bal: list[dict], cfg: dict[str, float]) -> list[dict]:
    return [b for b in bal if not pd.isna(b["after"]) and abs(b["after"]) > cfg["max_abs_std_diff"]]


def verdict(matched: int, bal: list[dict], cfg: dict[str, float], min_cell: int
            ) -> tuple[bool, str]:
    """Whether the report gives figures, and the sentence that says why (or why not).
    `matched`: how many of the program's children were matched."""
    min_matched = int(cfg["min_matched"])
    if matched < min_matched:
        how_many = (f"Only {matched} of the children in the program" if matched >= min_cell
                    else f"Fewer than {min_cell} of the children in the program" if matched
                    else "None of the children in the program")
        return False, (
            f"{how_many} could be matched to similar children who were not in it; at least "
            f"{min_matched} are needed for a fair comparison, so this report gives no figures.")
    worst = unbalanced(bal, cfg)
    if worst:
        names = ", ".join(f"{b['covariate']} ({b['after']:+.2f})" for b in worst[:4])
        return False, (
            f"After matching, the two groups still differ on {names}: a comparison would not "
            "be fair, so this report gives no figures.")
    return True, (
        f"{matched} children in the program were each compared with up to "
        f"{int(cfg['controls_per_child'])} similar children with a confirmed elevated blood lead "
        "level who were not in it.")


# ---------------------------------------------------------------- erasure


def _landing_copy(settings: Settings, request: dict) -> Path | None:
    """The request's landing file, if it is still there with the request's bytes (a corrected
    file re-sent under the same name is another request, and is left alone)."""
    path = settings.landing / request["path"]
    return path if path.exists() and file_sha256(path) == request["sha256"] else None


def expire_rejected_requests(settings: Settings, now: datetime | None = None) -> int:
    """A request rejected whole is held in quarantine until that provider's next request is
    answered, and never longer than the retention the seed sets; returns how many were erased."""
    days = seed_values("datalab_settings")["rejected_request_retention_days"]
    cutoff = (now or _now()).timestamp() - days * 86400
    erased = 0
    for held in settings.quarantine.glob("*/*cohort_*.csv"):
        if held.stat().st_mtime < cutoff:
            held.unlink()
            erased += 1
    return erased


def erase_request(settings: Settings, vault: duckdb.DuckDBPyConnection, request: dict
                  ) -> datetime:
    """Delete the request's file and everything made from it; keep the audit row.

    Gone: the landing copy (if it still holds these bytes), the provider's quarantined request
    files, the request's own store (rows, rejected rows' text, links). Kept: the vault's
    `datalab.requests` row (hash, counts, report id, erased_at) and the report.
    """
    landing_copy = _landing_copy(settings, request)
    if landing_copy:
        landing_copy.unlink()
    for held in (settings.quarantine / request["provider"]).glob("*cohort_*.csv"):
        held.unlink()
    store = settings.request_store(request["request_id"])
    for path in (store, store.with_name(store.name + ".wal")):
        path.unlink(missing_ok=True)
    erased_at = _now()
    _update(vault, request["request_id"], status="ERASED", erased_at=erased_at)
    receipt = (settings.outbox / request["provider"] / "receipts" /
               f"{receipt_stem(request['file_name'], request['sha256'])}.json")
    if receipt.exists():
        payload = json.loads(receipt.read_text(encoding="utf-8"))
        payload["request"] = {
            "request_id": request["request_id"], "report_id": request["report_id"],
            "report": request["report_path"], "answered_from_audit": False,
            "erased_at": erased_at.isoformat(timespec="seconds")}
        save_receipt(receipt, payload)
    return erased_at


def identifying_values(settings: Settings, request: dict) -> list[str]:
    """What would identify the request's people if it turned up elsewhere: its record ids,
    street lines and long surnames (short names and dates are too common to search for)."""
    store = settings.request_store(request["request_id"])
    if not store.exists():
        return []
    with connect(store, read_only=True) as con:
        rows = con.execute("select record_id, client_address, client_last_name "
                           "from raw.datalab__cohort").fetchall()
        rejected = con.execute("select raw_text from ingest.rejected_rows").fetchall()
    found = {v.strip() for rid, street, last in rows
             for v, least in ((rid, 4), (street, 8), (last, 7)) if v and len(v.strip()) >= least}
    for (raw,) in rejected:
        found |= {v.strip() for v in next(csv.reader([raw or ""]), []) if len(v.strip()) >= 8
                  and not re.fullmatch(r"[\d/ -]+", v.strip())}
    return sorted(found)


def any_of(values: list[str]) -> re.Pattern[bytes]:
    """A pattern that finds any of `values` (as UTF-8 bytes), built as a trie: one branch per
    distinct next byte, not one alternative per value. A request's thousands of ids, street
    lines and surnames as a plain alternation made Python's `re` try each at every byte
    (14 s a megabyte); the trie tries one path (0.1 s)."""
    trie: dict = {}
    for value in values:
        node = trie
        for byte in value.encode():
            node = node.setdefault(byte, {})
        node[None] = {}  # a value ends here

    def emit(node: dict) -> bytes:
        branches = [re.escape(bytes([byte])) + emit(child)
                    for byte, child in sorted((k, v) for k, v in node.items() if k is not None)]
        if not branches:
            return b""
        body = branches[0] if len(branches) == 1 else b"(?:" + b"|".join(branches) + b")"
        return b"(?:" + body + b")?" if None in node else body

    return re.compile(emit(trie))


def traces_of(values: list[str], folders: list[Path]) -> list[str]:
    """The files under `folders` (Dagster's storage, logs, receipts) holding any of the values:
    names of files only, never what matched."""
    if not values:
        return []
    pattern = any_of(values)
    hits = []
    for folder in folders:
        for path in (folder.rglob("*") if folder.is_dir() else []):
            if path.is_file() and not path.is_symlink() and pattern.search(path.read_bytes()):
                hits.append(path.name)
    return sorted(set(hits))


def erase_answered(settings: Settings, vault: duckdb.DuckDBPyConnection) -> list[str]:
    done = []
    for request in requests_in(vault, "REPORTED"):
        erase_request(settings, vault, request)
        done.append(request["request_id"])
    return done


def leftovers(settings: Settings, vault: duckdb.DuckDBPyConnection) -> list[str]:
    """What an erased request should no longer have: its store, its landing file's bytes.
    Returns the request ids (never file contents) of any that still do."""
    left = []
    for request in requests_in(vault, "ERASED"):
        if settings.request_store(request["request_id"]).exists() or \
                _landing_copy(settings, request):
            left.append(request["request_id"])
    return left
