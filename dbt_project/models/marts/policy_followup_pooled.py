"""One row per enabled rule's follow-up measure and period: steps due, steps taken in time and
the share, by month where every month can be published, else pooled into the quarter, else the
year (pipelines/pooling.py), and never so that a suppressed month can be worked out from the
monthly tables. Periods holding the as-of month are marked partial."""

from datetime import date

import pandas as pd

from pipelines.pooling import pool
from pipelines.suppression import followup_pairs


def city_known(table: pd.DataFrame, dim: str, month, column: str) -> bool:
    """Whether a reader has a month's city figure from a monthly table: its ALL row is
    published, or every other row of the month is and they add up to it."""
    rows = table[pd.to_datetime(table["month"]) == pd.to_datetime(month)]
    if rows.empty:
        return True  # no row that month: nothing fell due, and the reader can tell
    total = rows[rows[dim] == "ALL"]
    return bool(total[column].notna().all() and len(total)) or bool(
        rows.loc[rows[dim] != "ALL", column].notna().all())


def model(dbt, session):
    dbt.config(materialized="table")
    params = dbt.ref("lead_parameters").df().set_index("parameter")["value"]
    k = int(params["min_published_count"])
    configured = dbt.config.get("as_of")
    as_of = date.fromisoformat(configured) if configured else date.today()
    rules = dbt.ref("alert_rules").df()
    pairs = followup_pairs(rules)
    facts = dbt.ref("int_policy_facts_by_zip").df()
    by_zip = dbt.ref("policy_lead_followup_by_zip").df()
    by_band = dbt.ref("policy_lead_followup_by_band").df()
    long, public = [], []
    for due, in_time in pairs:
        measure = due.removesuffix("_due")
        city = facts.groupby("month", as_index=False)[[due, in_time]].sum()
        long.append(city.rename(columns={due: "due", in_time: "in_time"})
                    .assign(measure=measure))
        known = city.copy()
        for col in (due, in_time):
            known[col] = known[col].where(known["month"].map(
                lambda m, c=col: city_known(by_zip, "zip5", m, c)
                or city_known(by_band, "band", m, c)))
        public.append(known.rename(columns={due: "due", in_time: "in_time"})
                      .assign(measure=measure))
    facts_long = pd.concat(long, ignore_index=True)
    public_long = (pd.concat(public, ignore_index=True) if public else
                   pd.DataFrame(columns=["month", "due", "in_time", "measure"]))
    out = pool(facts_long, public_long, ["measure"], as_of, k)
    titles = rules.set_index("measure")["title"]
    out.insert(1, "rule_title", out["measure"].map(titles))
    return out
