"""The data lab as assets: link each new request, report on it, then erase it.

Only counts reach Dagster metadata and logs: never a record id, a name or a person_id.
"""

from pathlib import Path

import dagster as dg
from dagster_dbt import get_asset_key_for_model

from pipelines.datalab.requests import (
    analyse_request,
    erase_answered,
    expire_rejected_requests,
    identifying_values,
    leftovers,
    link_request,
    requests_in,
    traces_of,
)
from pipelines.defs.resources import PlumblineSettings
from pipelines.defs.warehouse.assets import plumbline_dbt
from pipelines.ingest import ensure_vault
from pipelines.stores import connect

LAB_MODELS = ("int_datalab__children", "int_datalab_events__blood_lead_test",
              "int_datalab_events__test_below_confirmed_band",
              "int_datalab_events__environmental_investigation",
              "int_datalab_events__developmental_screen", "int_rule_windows")


@dg.asset(
    group_name="datalab",
    owners=["team:data-engineering"],
    kinds={"duckdb", "splink"},
    deps=["raw_datalab__cohort", "person_crosswalk", "linkage_settings"],
    description=(
        "Each new data-lab request's rows looked up among the integrated persons with the "
        "city's trained linkage model. The links stay in the request's own store; "
        "linkage.person_crosswalk and every person_id are left exactly as they were."
    ),
)
def datalab_links(context: dg.AssetExecutionContext, plumbline: PlumblineSettings
                  ) -> dg.MaterializeResult:
    settings = plumbline.settings()
    totals = {"requests": 0, "linked": 0, "unlinked": 0, "ambiguous": 0}
    with connect(settings.vault_path) as vault:
        ensure_vault(vault)
        for request in requests_in(vault, "RECEIVED"):
            counts = link_request(settings, vault, request)
            totals["requests"] += 1
            for k, v in counts.items():
                totals[k] += v
            context.log.info(f"request {request['request_id']}: " +
                             ", ".join(f"{k} {v}" for k, v in counts.items()))
    return dg.MaterializeResult(metadata={k: dg.MetadataValue.int(v) for k, v in totals.items()})


@dg.asset(
    group_name="datalab",
    owners=["team:data-engineering"],
    kinds={"json", "html"},
    deps=["datalab_links", "datalab_settings", "datalab_strata", "datalab_outcomes",
          *(get_asset_key_for_model([plumbline_dbt], m) for m in LAB_MODELS)],
    description=(
        "`outbox/PROVIDER/datalab/REPORT_ID.json` and `.html` for each linked request: the "
        "cohort against a matched comparison, balance before and after, each outcome of "
        "seeds/datalab_outcomes.csv with its difference and 95% interval, in plain sentences."
    ),
)
def datalab_reports(context: dg.AssetExecutionContext, plumbline: PlumblineSettings
                    ) -> dg.MaterializeResult:
    settings = plumbline.settings()
    if not settings.warehouse_path.exists():
        raise RuntimeError("the warehouse has not been built yet: run the whole graph once "
                           "before the data lab can answer requests")
    reports = []
    with connect(settings.vault_path) as vault, \
            connect(settings.warehouse_path, read_only=True) as warehouse:
        for request in requests_in(vault, "LINKED"):
            out = analyse_request(settings, vault, warehouse, request)
            reports.append(out)
            context.log.info(f"{out['report_id']}: matched {out['matched']}, figures "
                             f"{'given' if out['figures_given'] else 'withheld'}")
    return dg.MaterializeResult(metadata={
        "reports": dg.MetadataValue.int(len(reports)),
        "with_figures": dg.MetadataValue.int(sum(r["figures_given"] for r in reports)),
        "report_ids": dg.MetadataValue.json([r["report_id"] for r in reports])})


@dg.asset(
    group_name="datalab",
    owners=["team:data-engineering"],
    kinds={"duckdb"},
    deps=["datalab_reports", "datalab_settings"],
    check_specs=[dg.AssetCheckSpec(
        "nothing_left_behind", asset="datalab_erasure",
        description="No erased request still has its own store, or its bytes in landing, and "
                    "none of its record ids, street lines or surnames is in Dagster's storage, "
                    "the run logs, or the provider's receipts and reports.")],
    description=(
        "Erasure of every reported request: its landing file, its quarantined copies, its own "
        "store (rows, rejected rows, links). The vault's datalab.requests keeps the audit row "
        "(hash, counts, report id, erased_at) and the receipt is rewritten to say when."
    ),
)
def datalab_erasure(context: dg.AssetExecutionContext, plumbline: PlumblineSettings):
    settings = plumbline.settings()
    home = getattr(context.instance, "root_directory", None)
    with connect(settings.vault_path) as vault:
        ensure_vault(vault)
        # before the rows are gone: does any of them show in Dagster's storage, the run logs,
        # or what the provider got back? (file names only in the result, never the values)
        traced: dict[str, list[str]] = {}
        for request in requests_in(vault, "REPORTED"):
            folders = [Path(home)] if home else []
            folders += [settings.data_dir / "logs",
                        settings.outbox / request["provider"] / "receipts",
                        settings.outbox / request["provider"] / "datalab"]
            hits = traces_of(identifying_values(settings, request), folders)
            if hits:
                traced[request["request_id"]] = hits
        erased = erase_answered(settings, vault)
        expired = expire_rejected_requests(settings)
        if expired:
            context.log.info(f"erased {expired} rejected request file(s) past their retention")
        pending = len(requests_in(vault, "RECEIVED")) + len(requests_in(vault, "LINKED"))
        left = leftovers(settings, vault)
    context.log.info(f"erased {len(erased)} answered requests; {pending} still open")
    yield dg.MaterializeResult(metadata={"erased": dg.MetadataValue.int(len(erased)),
                                         "still_open": dg.MetadataValue.int(pending)})
    yield dg.AssetCheckResult(
        check_name="nothing_left_behind", passed=not left and not traced,
        severity=dg.AssetCheckSeverity.ERROR,
        description=(f"{len(left)} erased requests still have data on disk; {len(traced)} left "
                     "traces in Dagster's storage, the logs or the provider's outbox"
                     if left or traced else
                     "every erased request is gone from landing and its store, and none of its "
                     "record ids, street lines or surnames is in Dagster's storage, the run "
                     "logs or the provider's receipts and reports"),
        metadata={"requests_with_leftovers": dg.MetadataValue.json(left),
                  "files_with_traces": dg.MetadataValue.json(traced)})


datalab_assets = [datalab_links, datalab_reports, datalab_erasure]
DATALAB_ASSET_KEYS = [a.key for a in datalab_assets]
