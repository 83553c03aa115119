"""What the published tables must not disclose, and the judge of it.

The suppression itself is SQL, in the marts (dbt_project/macros/suppression.sql and pooling.sql),
so that it runs where the tables are built, on any engine. Its rules:

- Primary: a count from 1 to k-1 is suppressed (0 is published: it discloses nobody).
- Pairs: for a (due, in_time) pair, the implied count due - in_time (late) must not be 1 to
  k-1 either; when it is, in_time is suppressed, so late cannot be worked out.
- Complementary: within a group (a month), the cells of a measure add up to the published
  total; if exactly one cell is suppressed, it could be worked out from the total, so the
  smallest other non-zero cell is suppressed too (or, failing one, the total).
- Shares are published only where both their counts are.

This module holds what the Python stages need of it: the published follow-up pairs, each
published table's layout, and `disclosed_small_cells`, the check the delivery stage runs on
everything before it is published (and the tests use as their judge).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

TOTAL = "ALL"

SEEDS_DIR = Path(__file__).resolve().parent.parent / "seeds"


def followup_pairs(rules: pd.DataFrame) -> list[tuple[str, str]]:
    """The published follow-up measures, (steps due, steps taken in time), of every enabled
    rule in the alert_rules seed, in rule-code order: a rule switched off is published nowhere."""
    on = rules[rules["enabled"].astype(str).str.lower().isin(["true", "1"])]
    return [(f"{m}_due", f"{m}_in_time") for m in on.sort_values("rule_code")["measure"]]


FOLLOWUP_PAIRS = followup_pairs(pd.read_csv(SEEDS_DIR / "alert_rules.csv", dtype=str))


def disclosed_small_cells(table: pd.DataFrame, group_keys: list[str], cell: str,
                          measures: list[str], pairs: list[tuple[str, str]], k: int = 11
                          ) -> list[str]:
    """What an outsider could read or work out from a published table: each a sentence.

    Used by the tests as the judge of `publish`: published counts 1..k-1, a single suppressed
    cell beside a published total, or a late count (due - in_time) of 1..k-1.
    """
    problems = []
    for m in measures:
        small = table[(table[m] >= 1) & (table[m] < k)]
        problems += [f"{m}={v} published" for v in small[m]]
    is_total = table[cell] == TOTAL
    if is_total.any() and measures:
        # per group and measure: its suppressed cells, and its totals that are suppressed too
        gaps = pd.DataFrame({**{(m, "cells"): ~is_total & table[m].isna() for m in measures},
                             **{(m, "totals"): is_total & table[m].isna() for m in measures}})
        per_group = gaps.groupby([table[k] for k in group_keys]).sum()
        for key, row in per_group.iterrows():
            key = key if isinstance(key, tuple) else (key,)
            problems += [f"{key} {m}: one suppressed cell beside a published total"
                         for m in measures if row[(m, "cells")] == 1 and row[(m, "totals")] == 0]
    for due, in_time in pairs:
        both = table[due].notna() & table[in_time].notna()
        late = table.loc[both, due] - table.loc[both, in_time]
        problems += [f"late={v} derivable" for v in late[(late >= 1) & (late < k)]]
    return problems


def published_table_specs() -> list[tuple[str, list[str], str, list[str], list[tuple[str, str]]]]:
    """Each published table: (name, group keys, cell column, counts, (due, in_time) pairs),
    for the suppression check on what was published."""
    followups = [m for pair in FOLLOWUP_PAIRS for m in pair]
    contract_counts = ["services", "services_lead_case_mgmt", "services_home_visit",
                       "services_nutrition", "services_dev_screen", "services_other",
                       "children_served", "lead_referred_children", "case_management_in_time",
                       "next_test_lower"]
    return [
        ("policy_lead_followup_by_zip", ["month"], "zip5",
         ["children_tested", "children_elevated", "children_confirmed", *followups],
         FOLLOWUP_PAIRS),
        ("policy_lead_followup_by_band", ["month"], "band", ["children_confirmed", *followups],
         FOLLOWUP_PAIRS),
        ("agency_timeliness_monthly", ["agency"], "month", ["steps_due", "steps_in_time"],
         [("steps_due", "steps_in_time")]),
        ("policy_followup_pooled", ["measure"], "period", ["steps_due", "steps_in_time"],
         [("steps_due", "steps_in_time")]),
        ("agency_timeliness_pooled", ["agency"], "period", ["steps_due", "steps_in_time"],
         [("steps_due", "steps_in_time")]),
        ("contract_outcomes", ["contract_id"], "month", contract_counts,
         [("lead_referred_children", "case_management_in_time"),
          ("lead_referred_children", "next_test_lower")]),
    ]
