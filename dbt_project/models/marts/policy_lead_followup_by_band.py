"""One row per month and band (and all bands, band = ALL): children confirmed and follow-up
steps due and done in time with their shares, suppressed for publication like every table."""

from pipelines.suppression import FOLLOWUP_PAIRS, publish

PAIRS = FOLLOWUP_PAIRS


def model(dbt, session):
    dbt.config(materialized="table")
    params = dbt.ref("lead_parameters").df().set_index("parameter")["value"]
    facts = dbt.ref("int_policy_facts_by_band").df()
    measures = ["children_confirmed"] + [m for pair in PAIRS for m in pair]
    return publish(facts, ["month"], "band", measures, PAIRS,
                   k=int(params["min_published_count"]))
