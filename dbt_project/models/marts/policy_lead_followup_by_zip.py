"""One row per month and ZIP (and the city, zip5 = ALL): children tested, elevated, confirmed,
and follow-up steps due and done in time with their shares. Suppressed for publication: no
count from 1 to 10 can be read or worked out (pipelines/suppression.py)."""

from pipelines.suppression import FOLLOWUP_PAIRS, publish

CHILDREN = ["children_tested", "children_elevated", "children_confirmed"]
PAIRS = FOLLOWUP_PAIRS


def model(dbt, session):
    dbt.config(materialized="table")
    params = dbt.ref("lead_parameters").df().set_index("parameter")["value"]
    facts = dbt.ref("int_policy_facts_by_zip").df()
    measures = CHILDREN + [m for pair in PAIRS for m in pair]
    return publish(facts, ["month"], "zip5", measures, PAIRS,
                   k=int(params["min_published_count"]))
