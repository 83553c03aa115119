"""One row per enabled rule's follow-up measure and period: steps due, steps taken in time and
the share, by month where every month can be published, else pooled into the quarter, else the
year (pipelines/pooling.py), and never so that a suppressed month can be worked out from the
monthly tables. Periods holding the as-of month are marked partial."""

from datetime import date

import pandas as pd

from pipelines.pooling import pool
from pipelines.suppression import followup_pairs


def unknown_months(table: pd.DataFrame, dim: str, column: str) -> set[pd.Timestamp]:
    """The months whose city figure a reader cannot get from a monthly table: its ALL row is
    suppressed and so is one of the month's other rows (else they add up to it). A month with
    no row at all is known: nothing fell due, and the reader can tell."""
    rows = table.assign(month=pd.to_datetime(table["month"]),
                        shown=table[column].notna(), total=table[dim] == "ALL")
    total_shown = rows[rows["total"]].groupby("month")["shown"].all()
    parts_shown = rows[~rows["total"]].groupby("month")["shown"].all()
    known = total_shown.reindex(rows["month"].unique(), fill_value=False) | \
        parts_shown.reindex(rows["month"].unique(), fill_value=True)
    return set(known[~known].index)


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
            hidden = (unknown_months(by_zip, "zip5", col)
                      & unknown_months(by_band, "band", col))
            known[col] = known[col].where(~pd.to_datetime(known["month"]).isin(hidden))
        public.append(known.rename(columns={due: "due", in_time: "in_time"})
                      .assign(measure=measure))
    facts_long = pd.concat(long, ignore_index=True)
    public_long = (pd.concat(public, ignore_index=True) if public else
                   pd.DataFrame(columns=["month", "due", "in_time", "measure"]))
    out = pool(facts_long, public_long, ["measure"], as_of, k)
    titles = rules.set_index("measure")["title"]
    out.insert(1, "rule_title", out["measure"].map(titles))
    return out
