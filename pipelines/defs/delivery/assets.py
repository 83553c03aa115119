"""What goes back to partners: each agency's alert list, re-identified from the vault."""


import dagster as dg
from dagster_dbt import get_asset_key_for_model

from pipelines.defs.resources import PlumblineSettings
from pipelines.defs.warehouse.assets import plumbline_dbt
from pipelines.outbox import write_alert_lists
from pipelines.publish import publish_all


@dg.asset(
    group_name="delivery",
    owners=["team:data-engineering"],
    kinds={"csv"},
    deps=[get_asset_key_for_model([plumbline_dbt], "lead_alerts")],
    description=(
        "outbox/<agency>/alerts_<YYYYMMDD>.csv: each agency's open alerts, most urgent first, "
        "with the reason and next step, described with that agency's own identifiers."
    ),
)
def alert_lists(context: dg.AssetExecutionContext, plumbline: PlumblineSettings
                ) -> dg.MaterializeResult:
    counts = write_alert_lists(plumbline.settings())
    context.log.info("open alerts per agency: " + ", ".join(f"{a} {n}" for a, n in counts.items()))
    return dg.MaterializeResult(
        metadata={f"open_alerts_{a}": dg.MetadataValue.int(n) for a, n in counts.items()})


@dg.asset(
    group_name="delivery",
    owners=["team:data-engineering"],
    kinds={"parquet", "json", "html"},
    deps=[get_asset_key_for_model([plumbline_dbt], m) for m in (
        "policy_lead_followup_by_zip", "policy_lead_followup_by_band",
        "agency_timeliness_monthly", "contract_outcomes")],
    description=(
        "What is published after each run: DATA_DIR/published/ (Parquet and a DuckDB file of "
        "views over the suppressed marts), the OCDS release package and the indicators page in "
        "outbox/public/, and each agency's personal-best chart in outbox/<agency>/."
    ),
)
def published_outputs(context: dg.AssetExecutionContext, plumbline: PlumblineSettings
                      ) -> dg.MaterializeResult:
    out = publish_all(plumbline.settings())
    context.log.info(f"published version {out['version']}")
    return dg.MaterializeResult(metadata={
        "version": dg.MetadataValue.text(str(out["version"])),
        "ocds_releases": dg.MetadataValue.int(int(out["ocds_releases"])),
        "agency_charts": dg.MetadataValue.int(int(out["charts"]))})
