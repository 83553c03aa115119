"""What goes back to partners: each agency's alert list, re-identified from the vault."""


import dagster as dg
import duckdb
from dagster_dbt import get_asset_key_for_model

from pipelines.defs.resources import PlumblineSettings
from pipelines.defs.warehouse.assets import dbt_project, plumbline_dbt
from pipelines.outbox import write_alert_lists
from pipelines.publish import PUBLISHED, publish_all
from pipelines.suppression import disclosed_small_cells, published_table_specs


@dg.asset(
    group_name="delivery",
    owners=["team:data-engineering"],
    kinds={"csv", "html"},
    deps=[get_asset_key_for_model([plumbline_dbt], "lead_alerts"), "list_columns",
          "agency_lists", "feed_cadence"],
    description=(
        "One list per organisation in `outbox/ORGANISATION/alerts_YYYYMMDD.csv` (health, "
        "housing, schools, each provider code): its own open alerts only, new since its last "
        "list first, then those that fell due this week, then the backlog, up to its weekly "
        "capacity; described with that organisation's own identifiers (seeds/list_columns.csv), "
        "with a printable page, a JSON summary and a feedback template beside it."
    ),
)
def alert_lists(context: dg.AssetExecutionContext, plumbline: PlumblineSettings
                ) -> dg.MaterializeResult:
    lists = write_alert_lists(plumbline.settings())
    context.log.info("alerts listed per organisation: " + ", ".join(
        f"{o} {len(x.rows)} (+{x.held_back_total} held back)" for o, x in lists.items()))
    metadata: dict[str, dg.MetadataValue] = {}
    for organisation, listing in lists.items():
        summary = listing.summary()
        for key in ("alerts_on_list", "new_since_last_list", "due_this_week", "backlog",
                    "held_back"):
            metadata[f"{organisation}_{key}"] = dg.MetadataValue.int(int(summary[key]))
    return dg.MaterializeResult(metadata=metadata)


@dg.asset(
    group_name="delivery",
    owners=["team:data-engineering"],
    kinds={"parquet", "json", "html"},
    deps=[get_asset_key_for_model([plumbline_dbt], m) for m in PUBLISHED],
    check_specs=[dg.AssetCheckSpec(
        "no_small_cells_published", asset="published_outputs",
        description="No published table shows a count from 1 to 10, a single suppressed cell "
                    "beside its published total, or a late count (due - in time) of 1 to 10.")],
    description=(
        "What is published after each run: DATA_DIR/published/ (Parquet and a DuckDB file of "
        "the suppressed marts), the OCDS release package and the indicators page in "
        "outbox/public/ with its data dictionary (dbt docs, static), and each organisation's "
        "personal-best chart in `outbox/ORGANISATION/`."
    ),
)
def published_outputs(context: dg.AssetExecutionContext, plumbline: PlumblineSettings):
    settings = plumbline.settings()
    out = publish_all(settings, dbt_project.manifest_path)
    context.log.info(f"published version {out['version']}")
    yield dg.MaterializeResult(metadata={
        "version": dg.MetadataValue.text(str(out["version"])),
        "ocds_releases": dg.MetadataValue.int(int(out["ocds_releases"])),
        "agency_charts": dg.MetadataValue.int(int(out["charts"]))})
    # the privacy promise, checked on what was actually published
    problems: dict[str, int] = {}
    with duckdb.connect(str(settings.data_dir / "published" / "plumbline.duckdb"),
                        read_only=True) as con:
        for name, keys, cell, measures, pairs in published_table_specs():
            table = con.execute(f"select * from {name}").df()
            present = [m for m in measures if m in table.columns]
            found = disclosed_small_cells(table, keys, cell, present,
                                          [p for p in pairs if set(p) <= set(present)])
            if found:
                problems[name] = len(found)
    yield dg.AssetCheckResult(
        check_name="no_small_cells_published", passed=not problems,
        severity=dg.AssetCheckSeverity.ERROR,
        description=("every published table hides counts from 1 to 10, a single suppressed "
                     "cell beside its total, and late counts of 1 to 10" if not problems else
                     f"{sum(problems.values())} small cells could be read or worked out"),
        metadata={"tables_with_problems": dg.MetadataValue.json(problems)})
