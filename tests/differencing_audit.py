"""Can a suppressed figure be worked out by subtracting published ones?

Written apart from pipelines/suppression.py and pipelines/pooling.py on purpose: it knows only
what a reader of the published tables knows, and how the tables add up.

- policy_lead_followup_by_zip: each month's ZIP cells add up to the month's city row (ALL);
- policy_lead_followup_by_band: each month's band cells add up to the same city figure;
- policy_followup_pooled: a quarter's or year's figure is the sum of its months' city figures;
- agency_timeliness_monthly and agency_timeliness_pooled: an organisation's pooled period is the
  sum of its months.

Every published cell and every such sum is a known linear functional of the true counts. A
count (or a late count, due minus in time) is recoverable exactly when its functional lies in
the span of the known ones: orthogonal to their null space. A recoverable count of 1 to k-1
that was not published is a disclosure.
"""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd
from scipy.linalg import null_space


class System:
    def __init__(self) -> None:
        self.index: dict[tuple, int] = {}
        self.rows: list[dict[int, float]] = []
        self.truth: dict[int, float] = {}
        self.published: set[int] = set()

    def var(self, key: tuple, truth: float | None = None) -> int:
        if key not in self.index:
            self.index[key] = len(self.index)
        i = self.index[key]
        if truth is not None:
            self.truth[i] = float(truth)
        return i

    def known(self, coefficients: dict[int, float]) -> None:
        self.rows.append(coefficients)

    def publish(self, i: int) -> None:
        self.published.add(i)
        self.known({i: 1.0})

    def recoverable(self, vectors: list[dict[int, float]]) -> list[bool]:
        n = len(self.index)
        if not vectors:
            return []
        m = np.zeros((max(1, len(self.rows)), n))
        for r, row in enumerate(self.rows):
            for i, c in row.items():
                m[r, i] += c
        basis = null_space(m)  # every x the known functionals cannot see
        v = np.zeros((len(vectors), n))
        for r, row in enumerate(vectors):
            for i, c in row.items():
                v[r, i] += c
        return list(np.abs(v @ basis).max(axis=1, initial=0.0) < 1e-8)


def _months(frame: pd.DataFrame, column: str = "month") -> pd.Series:
    return pd.to_datetime(frame[column]).dt.strftime("%Y-%m")


def _audit(system: System, pairs: list[tuple[int, int]], k: int, what: str) -> list[str]:
    """`pairs`: (due var, in_time var) of every cell. Checks each unpublished due and in_time,
    and each late count, for recoverability with a value of 1 to k-1."""
    checks, labels = [], []
    names = {i: key for key, i in system.index.items()}
    for due, in_time in pairs:
        for vec, value, label in (
                ({due: 1.0}, system.truth.get(due), names[due]),
                ({in_time: 1.0}, system.truth.get(in_time), names[in_time]),
                ({due: 1.0, in_time: -1.0},
                 system.truth.get(due, 0) - system.truth.get(in_time, 0),
                 ("late",) + names[due][1:])):
            published = all(i in system.published for i in vec)
            if not published and value is not None and 1 <= value < k:
                checks.append(vec)
                labels.append(label)
    return [f"{what}: {label} can be worked out"
            for label, hit in zip(labels, system.recoverable(checks), strict=True) if hit]


def followup_disclosures(wh: duckdb.DuckDBPyConnection, k: int) -> list[str]:
    """Every follow-up count (or late count) of 1 to k-1 that the four follow-up tables, read
    together, give away."""
    by_zip = wh.execute("select * from marts.policy_lead_followup_by_zip").df()
    by_band = wh.execute("select * from marts.policy_lead_followup_by_band").df()
    pooled = wh.execute("select * from marts.policy_followup_pooled").df()
    zip_facts = wh.execute("select * from intermediate.int_policy_facts_by_zip").df()
    band_facts = wh.execute("select * from intermediate.int_policy_facts_by_band").df()
    for f in (by_zip, by_band, zip_facts, band_facts):
        f["m"] = _months(f)
    measures = sorted(c.removesuffix("_due") for c in by_zip.columns if c.endswith("_due"))
    problems = []
    for measure in measures:
        s = System()
        pairs = []
        for q in ("due", "in_time"):
            col = f"{measure}_{q}"
            city = zip_facts.groupby("m")[col].sum()
            for m, value in city.items():
                s.var(("city", m, q), value)
            for facts, dim, table in ((zip_facts, "zip5", by_zip), (band_facts, "band", by_band)):
                for m, cells in facts.groupby("m"):
                    total = s.var(("city", m, q))
                    row = {total: -1.0}
                    for _, cell in cells.iterrows():
                        row[s.var((dim, m, cell[dim], q), cell[col])] = 1.0
                    s.known(row)
                for _, r in table[table[col].notna()].iterrows():
                    key = ("city", r["m"], q) if r[dim] == "ALL" else (dim, r["m"], r[dim], q)
                    if key in s.index:
                        s.publish(s.index[key])
            mine = pooled[pooled["measure"] == measure]
            for _, p in mine.iterrows():
                if p["grain"] == "month":
                    continue
                span = pd.period_range(p["period_start"], p["period_end"], freq="M")
                s.known({s.index[("city", str(x), q)]: 1.0 for x in span
                         if ("city", str(x), q) in s.index})
        for key, i in list(s.index.items()):
            if key[-1] == "due":
                pairs.append((i, s.index[(*key[:-1], "in_time")]))
        problems += _audit(s, pairs, k, measure)
    return problems


def timeliness_disclosures(wh: duckdb.DuckDBPyConnection, k: int) -> list[str]:
    """The same for each organisation's own monthly and pooled timeliness."""
    monthly = wh.execute("select * from marts.agency_timeliness_monthly").df()
    pooled = wh.execute("select * from marts.agency_timeliness_pooled").df()
    facts = wh.execute("select * from intermediate.int_agency_timeliness_facts").df()
    for f in (monthly, facts):
        f["m"] = _months(f)
    problems = []
    for agency, rows in facts.groupby("agency"):
        s = System()
        for q, col in (("due", "steps_due"), ("in_time", "steps_in_time")):
            for _, r in rows.iterrows():
                s.var((r["m"], q), r[col])
            pub = monthly[(monthly["agency"] == agency) & monthly[col].notna()]
            for _, r in pub.iterrows():
                if (r["m"], q) in s.index:
                    s.publish(s.index[(r["m"], q)])
            for _, p in pooled[pooled["agency"] == agency].iterrows():
                span = pd.period_range(p["period_start"], p["period_end"], freq="M")
                row = {s.index[(str(x), q)]: 1.0 for x in span if (str(x), q) in s.index}
                if row:
                    s.known(row)
        pairs = [(i, s.index[(key[0], "in_time")]) for key, i in s.index.items()
                 if key[1] == "due"]
        problems += _audit(s, pairs, k, f"timeliness of {agency}")
    return problems
