"""One row per organisation and period: its own steps due and in time, by month where every
month can be published, else pooled into the quarter, else the year (pipelines/pooling.py),
never so that a suppressed month of agency_timeliness_monthly can be worked out. Periods holding
the as-of month are marked partial. Only the organisation's own figures."""

from datetime import date

from pipelines.pooling import pool


def model(dbt, session):
    dbt.config(materialized="table")
    params = dbt.ref("lead_parameters").df().set_index("parameter")["value"]
    k = int(params["min_published_count"])
    configured = dbt.config.get("as_of")
    as_of = date.fromisoformat(configured) if configured else date.today()
    facts = (dbt.ref("int_agency_timeliness_facts").df()
             .rename(columns={"steps_due": "due", "steps_in_time": "in_time"}))
    public = (dbt.ref("agency_timeliness_monthly").df()
              .rename(columns={"steps_due": "due", "steps_in_time": "in_time"}))
    return pool(facts[["agency", "month", "due", "in_time"]],
                public[["agency", "month", "due", "in_time"]], ["agency"], as_of, k)
