"""One row per contract per month: what the city paid, what it bought (services by code,
children served), and what changed (among lead-referred children: case management in time,
a lower next test), with the cost per child who reached an outcome. Suppressed like every
published table: no count from 1 to 10 can be read or worked out."""

from pipelines.suppression import publish

COUNTS = ["services", "services_lead_case_mgmt", "services_home_visit", "services_nutrition",
          "services_dev_screen", "services_other", "children_served"]
PAIRS = [("lead_referred_children", "case_management_in_time"),
         ("lead_referred_children", "next_test_lower")]


def model(dbt, session):
    dbt.config(materialized="table")
    params = dbt.ref("lead_parameters").df().set_index("parameter")["value"]
    facts = dbt.ref("int_contract_month_facts").df()
    measures = COUNTS + ["lead_referred_children", "case_management_in_time", "next_test_lower"]
    out = publish(facts, ["contract_id"], "month", measures, PAIRS,
                  k=int(params["min_published_count"]), add_totals=False)
    reached = out["next_test_lower"]
    out["cost_per_child_with_lower_next_test"] = (
        out["monthly_amount_usd"] / reached.where(reached > 0)).round(2)
    return out
