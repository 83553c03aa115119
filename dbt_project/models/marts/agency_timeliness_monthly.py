"""One row per agency and month: the agency's own timeliness against its own past ("personal
best"): steps due, steps in time, the share, the agency's own median share and its best month.
No other agency's figures in its rows, no workers; small cells suppressed."""

import pandas as pd

from pipelines.suppression import publish


def model(dbt, session):
    dbt.config(materialized="table")
    params = dbt.ref("lead_parameters").df().set_index("parameter")["value"]
    facts = dbt.ref("int_agency_timeliness_facts").df()
    out = publish(facts, ["agency"], "month", ["steps_due", "steps_in_time"],
                  [("steps_due", "steps_in_time")], k=int(params["min_published_count"]),
                  add_totals=False)
    share = out["share_steps_in_time"]
    out["own_median_share"] = share.groupby(out["agency"]).transform("median")
    best = share.groupby(out["agency"]).transform("max")
    out["is_best_month"] = share.notna() & (share == best)
    out["is_latest_month"] = out["month"] == out.groupby("agency")["month"].transform("max")
    return out.astype({"is_best_month": bool, "is_latest_month": bool}).pipe(pd.DataFrame)
