"""When things run on their own: the weekly lists and the daily freshness checks."""

import dagster as dg

from pipelines.defs.ingest.checks import freshness_checks
from pipelines.stores import timezone_from_env

# a schedule's time zone is part of its definition, so it is read when the definitions load
TIMEZONE = timezone_from_env()

weekly_alert_lists_job = dg.define_asset_job(
    "weekly_alert_lists",
    selection=dg.AssetSelection.all(),
    description="Read any new deliveries, relink, rebuild the warehouse and the alerts, and "
                "write every agency's list.",
)

daily_freshness_job = dg.define_asset_job(
    "daily_freshness",
    selection=dg.AssetSelection.checks(*freshness_checks),
    description="Check that every feed delivered within its contract cadence.",
)

weekly_alert_lists_schedule = dg.ScheduleDefinition(
    name="weekly_alert_lists_schedule", job=weekly_alert_lists_job,
    cron_schedule="0 6 * * 1", execution_timezone=TIMEZONE,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    tags={"plumbline/trigger": "schedule"},
    description="Mondays 06:00: the week's alert lists, ready when caseworkers start.",
)

daily_freshness_schedule = dg.ScheduleDefinition(
    name="daily_freshness_schedule", job=daily_freshness_job,
    cron_schedule="0 7 * * *", execution_timezone=TIMEZONE,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    tags={"plumbline/trigger": "schedule"},
    description="Every day 07:00: flag feeds that missed their cadence.",
)
