"""Months pooled into quarters, then years, until a share can be published.

A small town's monthly follow-up counts are almost all under 11 and suppressed, so a page of
months says nothing. For each series (a rule's steps due and in time, or one organisation's),
each quarter is shown month by month when all three months are published, else as the quarter
when that can be published; a year with a quarter that can be neither is shown as one period
when it can be, else as the months and quarters that could be. A pooled figure is
published only when

- its own counts could be published (due 0, or due, in time and late all 0 or at least k), and
- subtracting every figure already published for its months (the monthly tables) from it
  leaves 0 or at least k for due, in time and late alike: a pooled period never reveals the
  month it pooled.

Periods that contain the as-of month are marked partial: steps falling due later in the month
have not had their chance yet. Periods in which no step fell due are left out. A year whose
steps due can be shown but whose steps in time (or late) are fewer than k shows the bound that
suppression already implies ("under 8%"), never the count.
"""

from __future__ import annotations

import math
from datetime import date

import pandas as pd

PERIOD_COLUMNS = ["period", "grain", "period_start", "period_end", "steps_due",
                  "steps_in_time", "share_in_time", "share_bound", "partial"]


def _small(n: float, k: int) -> bool:
    return 1 <= n < k


def _publishable(due: int, in_time: int, k: int) -> bool:
    return due == 0 or not any(_small(x, k) for x in (due, in_time, due - in_time))


def _leaves_nothing_small(due: int, in_time: int, known_due: int, known_in: int, k: int
                          ) -> bool:
    rest_due, rest_in = due - known_due, in_time - known_in
    return not any(_small(x, k) for x in (rest_due, rest_in, rest_due - rest_in))


def _quarter(m: pd.Timestamp) -> str:
    return f"{m.year}-Q{(m.month - 1) // 3 + 1}"


def pool_series(facts: pd.DataFrame, public: pd.DataFrame, as_of: date, k: int
                ) -> pd.DataFrame:
    """One series, pooled. `facts`: month, due, in_time (every month, unsuppressed).
    `public`: month, due, in_time as a reader already knows them (null where suppressed and
    not derivable). Returns one row per published period (PERIOD_COLUMNS)."""
    f = facts.copy()
    f["month"] = pd.to_datetime(f["month"])
    f = f.groupby("month", as_index=False)[["due", "in_time"]].sum()
    pub = public.copy()
    pub["month"] = pd.to_datetime(pub["month"])
    pub = (pub.dropna(subset=["due", "in_time"], how="all").drop_duplicates("month")
           .set_index("month"))
    both = pub.dropna(subset=["due", "in_time"])
    now = pd.Timestamp(as_of).to_period("M").to_timestamp()
    rows = []

    def row(label: str, grain: str, months: pd.DataFrame, bounded: bool = False) -> dict:
        start = months["month"].min()
        if grain == "month":
            end = start
        elif grain == "quarter":
            end = start.to_period("Q").end_time.to_period("M").to_timestamp()
        else:
            end = pd.Timestamp(year=start.year, month=12, day=1)
        due, in_time = int(months["due"].sum()), int(months["in_time"].sum())
        bound = None
        if bounded:  # only what "fewer than k in time (or late)" already says
            bound = (f"under {math.ceil(100 * k / due)}%" if in_time < k
                     else f"over {math.floor(100 * (1 - k / due))}%")
        return {"period": label, "grain": grain, "period_start": start.date(),
                "period_end": end.date(), "steps_due": due,
                "steps_in_time": None if bounded else in_time,
                "share_in_time": None if bounded or not due else round(in_time / due, 3),
                "share_bound": bound, "partial": bool(end >= now)}

    def known(months: pd.DataFrame) -> tuple[int, int]:
        hit = pub.loc[pub.index.isin(months["month"])]
        return int(hit["due"].fillna(0).sum()), int(hit["in_time"].fillna(0).sum())

    for year, in_year in f.groupby(f["month"].dt.year):
        chosen, uncovered = [], False
        for label, in_q in in_year.groupby(in_year["month"].map(_quarter)):
            all_months = pd.date_range(in_q["month"].min().to_period("Q").start_time,
                                       periods=3, freq="MS")
            present = all_months[all_months <= max(now, in_q["month"].max())]
            if all(m in both.index for m in present):
                chosen += [row(m.strftime("%Y-%m"), "month", in_q[in_q["month"] == m])
                           for m in in_q["month"]]
                continue
            due, in_time = int(in_q["due"].sum()), int(in_q["in_time"].sum())
            kd, ki = known(in_q)
            if _publishable(due, in_time, k) and _leaves_nothing_small(due, in_time, kd, ki, k):
                chosen.append(row(label, "quarter", in_q))
            else:
                uncovered = True
        if not uncovered:
            rows += [r for r in chosen if r["steps_due"]]
            continue
        due, in_time = int(in_year["due"].sum()), int(in_year["in_time"].sum())
        # what a reader already has for this year: its published months, and nothing else
        kd, ki = known(in_year)
        if due and _publishable(due, in_time, k) and _leaves_nothing_small(due, in_time, kd,
                                                                             ki, k):
            rows.append(row(str(year), "year", in_year))
        elif due >= k and not _small(due - kd, k) and (in_time < k) != (due - in_time < k):
            # the steps due can be shown and only one of in time or late is small: the share
            # is shown as the bound that suppression already implies ("under 8%")
            rows.append(row(str(year), "year", in_year, bounded=True))
        else:
            # the year cannot be shown: its months and quarters that could be, each checked
            # against what the monthly tables publish, still are
            rows += [r for r in chosen if r["steps_due"]]
    return pd.DataFrame(rows, columns=PERIOD_COLUMNS)


def pool(facts: pd.DataFrame, public: pd.DataFrame, keys: list[str], as_of: date, k: int
         ) -> pd.DataFrame:
    """`pool_series` for every series in `facts` (keys + month, due, in_time); `public` has the
    same keys and the published monthly values."""
    out = []
    for key, series in facts.groupby(keys):
        key = key if isinstance(key, tuple) else (key,)
        mask = pd.Series(True, index=public.index)
        for col, value in zip(keys, key, strict=True):
            mask &= public[col] == value
        pooled = pool_series(series, public[mask], as_of, k)
        for col, value in zip(keys, key, strict=True):
            pooled.insert(0, col, value)
        out.append(pooled)
    cols = [*keys, *PERIOD_COLUMNS]
    return pd.concat(out, ignore_index=True)[cols] if out else pd.DataFrame(columns=cols)
