"""One row per month and band (and all bands, band = ALL): children confirmed and follow-up
steps due and done in time with their shares, suppressed for publication like every table."""

from pipelines.suppression import followup_pairs, publish


def model(dbt, session):
    dbt.config(materialized="table")
    params = dbt.ref("lead_parameters").df().set_index("parameter")["value"]
    pairs = followup_pairs(dbt.ref("alert_rules").df())
    facts = dbt.ref("int_policy_facts_by_band").df()
    measures = ["children_confirmed"] + [m for pair in pairs for m in pair]
    return publish(facts, ["month"], "band", measures, pairs,
                   k=int(params["min_published_count"]))
