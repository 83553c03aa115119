"""One row per month and ZIP (and the city, zip5 = ALL): children tested, elevated, confirmed,
and follow-up steps due and done in time with their shares. Suppressed for publication: no
count from 1 to 10 can be read or worked out (pipelines/suppression.py)."""

from pipelines.suppression import followup_pairs, publish

CHILDREN = ["children_tested", "children_elevated", "children_confirmed"]


def model(dbt, session):
    dbt.config(materialized="table")
    params = dbt.ref("lead_parameters").df().set_index("parameter")["value"]
    pairs = followup_pairs(dbt.ref("alert_rules").df())
    facts = dbt.ref("int_policy_facts_by_zip").df()
    measures = CHILDREN + [m for pair in pairs for m in pair]
    return publish(facts, ["month"], "zip5", measures, pairs,
                   k=int(params["min_published_count"]))
