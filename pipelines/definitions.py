"""The one Dagster entry point: every Plumbline asset, resource and executor."""

from __future__ import annotations

import dagster as dg

from pipelines.defs.datalab.assets import datalab_assets
from pipelines.defs.delivery.assets import alert_lists, published_outputs
from pipelines.defs.ingest.assets import ingest_assets
from pipelines.defs.ingest.checks import freshness_checks
from pipelines.defs.ingest.sensors import landing_sensor
from pipelines.defs.linkage.assets import person_crosswalk
from pipelines.defs.resources import PlumblineSettings
from pipelines.defs.rules import rule_files
from pipelines.defs.schedules import (
    daily_freshness_job,
    daily_freshness_schedule,
    weekly_alert_lists_job,
    weekly_alert_lists_schedule,
)
from pipelines.defs.warehouse.assets import (
    dbt_resource,
    plumbline_dbt,
    warehouse_sources,
)

defs = dg.Definitions(
    assets=[*ingest_assets, person_crosswalk, warehouse_sources, plumbline_dbt, alert_lists,
            published_outputs, *datalab_assets, *rule_files],
    asset_checks=freshness_checks,
    jobs=[weekly_alert_lists_job, daily_freshness_job],
    schedules=[weekly_alert_lists_schedule, daily_freshness_schedule],
    sensors=[landing_sensor],
    resources={
        "plumbline": PlumblineSettings(),
        "dbt": dbt_resource(),
    },
    # DuckDB allows one writer per file: steps run one after another in one process.
    executor=dg.in_process_executor,
)
