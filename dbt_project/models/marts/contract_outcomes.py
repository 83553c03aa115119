"""One row per contract per month, and one for the contract to date (month = ALL): what the
city paid, what it bought (services by code, children served), and what changed (among
lead-referred children: case management in time, a lower next test), with the cost per child
who reached an outcome. A month still under way is not complete (`month_complete`); a month's
outcomes are final only once `outcome_window_days` (lead_parameters) have passed since it ended
(`outcomes_final`); the page shows "not yet" until then, never a 0 that only means "too soon".
Suppressed like every published table: no count from 1 to 10 can be read or worked out."""

from datetime import date

import pandas as pd

from pipelines.suppression import TOTAL, publish

COUNTS = ["services", "services_lead_case_mgmt", "services_home_visit", "services_nutrition",
          "services_dev_screen", "services_other", "children_served"]
PAIRS = [("lead_referred_children", "case_management_in_time"),
         ("lead_referred_children", "next_test_lower")]
DESCRIBE = ["provider_code", "provider_name", "contract_amount_usd"]


def model(dbt, session):
    dbt.config(materialized="table")
    params = dbt.ref("lead_parameters").df().set_index("parameter")["value"]
    configured = dbt.config.get("as_of")
    as_of = date.fromisoformat(configured) if configured else date.today()
    facts = dbt.ref("int_contract_month_facts").df()
    measures = COUNTS + ["lead_referred_children", "case_management_in_time", "next_test_lower"]
    out = publish(facts, ["contract_id"], "month", measures, PAIRS,
                  k=int(params["min_published_count"]), add_totals=True)
    about = facts.groupby("contract_id")[DESCRIBE].first()
    to_date = out["month"] == TOTAL
    for col in DESCRIBE:
        out[col] = out["contract_id"].map(about[col])
    paid = facts.groupby("contract_id")["monthly_amount_usd"].sum()
    out.loc[to_date, "monthly_amount_usd"] = out.loc[to_date, "contract_id"].map(paid)
    # when each row's figures are complete
    this_month = pd.Timestamp(as_of).to_period("M")
    window = pd.Timedelta(days=int(params["outcome_window_days"]))
    month = pd.to_datetime(out["month"].where(~to_date), format="%Y-%m")
    month_end = month + pd.offsets.MonthEnd(0)
    out["month_complete"] = (month.dt.to_period("M") < this_month).fillna(False)
    out["outcomes_final"] = (month_end + window < pd.Timestamp(as_of)).fillna(False)
    last = month.groupby(out["contract_id"]).transform("max")
    out.loc[to_date, "outcomes_final"] = (
        last[to_date] + pd.offsets.MonthEnd(0) + window < pd.Timestamp(as_of)).fillna(False)
    reached = out["next_test_lower"]
    out["cost_per_child_with_lower_next_test"] = (
        out["monthly_amount_usd"] / reached.where(reached > 0)).round(2)
    return out.astype({"month_complete": bool, "outcomes_final": bool})
