"""Who is compared with whom, whether the groups are alike, and what differed.

Design (docs/decisions/0004-data-lab-matching.md), after MatchIt's nearest-neighbour matching
and the Justice Data Lab's method:

1. A propensity score (scikit-learn's LogisticRegression on every covariate shown) sets a
   caliper: a comparison child's logit score must be within `caliper_sd` standard deviations
   of the program child's.
2. Within the caliper, each program child takes its `controls_per_child` nearest comparison
   children by Mahalanobis distance (age in months, tests before, confirmation date), **with
   replacement**, exactly within the finest stratum of seeds/datalab_strata.csv that has one;
   the strata coarsen in the seed's order (half-year, then year, then no period; area, then no
   area) until one does. A child with none at any level stays unmatched.
3. Balance decides: the weighted standardised difference of every covariate shown must be
   within `max_abs_std_diff` after matching, or the report gives no figures.
4. Each outcome is the mean, over matched program children whose windows have ended, of their
   outcome minus the mean of their comparison children's. Its interval is a normal interval with
   the matched-set variance plus a term for comparison children used more than once (Abadie and
   Imbens 2006); the detectable difference at `power` is stated before any figure.

Everything here is pseudonymous: person_ids, dates, bands, counts.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from datetime import date

import numpy as np
import pandas as pd

from pipelines.stores import SEEDS_DIR, seed_values

CONTINUOUS = ("age_months", "prior_tests", "confirmation_day")
CATEGORICAL = ("band", "sex", "area")
STRATA_COLUMNS = ("band", "sex", "area", "period", "year")


def lab_settings() -> dict[str, float]:
    return seed_values("datalab_settings")


def outcome_definitions() -> list[dict[str, str]]:
    with open(SEEDS_DIR / "datalab_outcomes.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def strata_levels() -> list[tuple[str, tuple[str, ...], str]]:
    """seeds/datalab_strata.csv in order: (level, the columns matched exactly, description)."""
    with open(SEEDS_DIR / "datalab_strata.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    levels = []
    for row in sorted(rows, key=lambda r: int(r["level"])):
        cols = tuple(c for c in row["exact_on"].split() if c)
        bad = set(cols) - set(STRATA_COLUMNS)
        if bad:
            raise ValueError(f"seeds/datalab_strata.csv level {row['level']}: "
                             f"{sorted(bad)} is not one of {list(STRATA_COLUMNS)}")
        levels.append((row["level"], cols, row["description"]))
    return levels


def min_published_count() -> int:
    return int(seed_values("lead_parameters", key="parameter")["min_published_count"])


def covariate_labels(settings: dict[str, float]) -> dict[str, str]:
    digits = int(settings["area_zip_digits"])
    return {"age_months": "age in months", "prior_tests": "blood lead tests before",
            "confirmation_day": "confirmation date", "band": "band", "sex": "sex",
            "area": f"area (first {digits} digits of the ZIP code)"}


def _prepare(children: pd.DataFrame, settings: dict[str, float]) -> pd.DataFrame:
    out = children.copy()
    out["confirmation_date"] = pd.to_datetime(out["confirmation_date"]).dt.date
    out["confirmation_day"] = [d.toordinal() for d in out["confirmation_date"]]
    digits = int(settings["area_zip_digits"])
    out["area"] = [z[:digits] if isinstance(z, str) and len(z) >= digits else "unknown"
                   for z in out["zip5"]]
    months = int(settings["period_months"])
    out["period"] = [f"{d.year}-{(d.month - 1) // months}" for d in out["confirmation_date"]]
    out["year"] = [str(d.year) for d in out["confirmation_date"]]
    out["age_months"] = out["age_months"].astype("float64")
    out["age_missing"] = out["age_months"].isna()
    median = out["age_months"].median()
    out["age_months"] = out["age_months"].fillna(0.0 if pd.isna(median) else median)
    out["prior_tests"] = out["prior_tests"].astype("float64").fillna(0.0)
    out["sex"] = out["sex"].fillna("U")
    return out


@dataclass
class Population:
    treated: pd.DataFrame  # one row per eligible cohort child: its episode and program_start
    pool: pd.DataFrame  # one row per possible comparison child: its first episode
    not_eligible: int
    duplicates: int


def population(children: pd.DataFrame, cohort: pd.DataFrame, settings: dict[str, float]
               ) -> Population:
    """The cohort's eligible children and the comparison pool.

    `cohort`: person_id and program_start of each linked cohort member. A member is eligible
    when a confirmed EBLL falls within the look-back before the program start (the latest such
    episode is theirs). The pool is every child with a confirmed EBLL not in the cohort, in
    person_id order (so a request's matches do not depend on the warehouse's row order).
    """
    kids = _prepare(children, settings)
    cohort = cohort.copy()
    cohort["program_start"] = pd.to_datetime(cohort["program_start"]).dt.date
    cohort = cohort.sort_values(["person_id", "program_start"])
    duplicates = int(cohort.duplicated("person_id").sum())
    cohort = cohort.drop_duplicates("person_id")  # the same child sent twice: the first start
    lookback = int(settings["eligibility_lookback_days"])
    merged = kids.merge(cohort, on="person_id")
    lag = [(s - c).days for s, c in zip(merged["program_start"], merged["confirmation_date"],
                                        strict=True)]
    merged["lag_days"] = lag
    merged = merged[(merged["lag_days"] >= 0) & (merged["lag_days"] <= lookback)]
    treated = (merged.sort_values(["person_id", "confirmation_date"])
               .drop_duplicates("person_id", keep="last").reset_index(drop=True))
    pool = kids[(kids["episode_number"] == 1) & ~kids["person_id"].isin(cohort["person_id"])]
    return Population(treated, pool.sort_values("person_id").reset_index(drop=True),
                      not_eligible=len(cohort) - len(treated), duplicates=duplicates)


def _design(frame: pd.DataFrame, levels: dict[str, list[str]]) -> np.ndarray:
    """Every covariate shown in the balance table, as columns: continuous ones, then a 0/1
    column per category level (the propensity model's inputs and the balance trimming's)."""
    parts = [frame[list(CONTINUOUS)].to_numpy(float)]
    for col in CATEGORICAL:
        parts.append(np.column_stack([(frame[col] == v).to_numpy(float)
                                      for v in levels[col]]) if levels[col] else
                     np.zeros((len(frame), 0)))
    return np.hstack(parts)


def propensity(pop: Population) -> tuple[np.ndarray, np.ndarray]:
    """The logit of each child's propensity to be in the program, from every covariate shown
    (continuous ones and each category's levels), for the program's children and the pool."""
    t, c = pop.treated, pop.pool
    levels = {col: sorted(set(t[col]) | set(c[col])) for col in CATEGORICAL}
    x = np.vstack([_design(t, levels), _design(c, levels)])
    y = np.r_[np.ones(len(t)), np.zeros(len(c))]
    # imported here: scipy and scikit-learn cost every run a second or two to load, and
    # only a data-lab request needs them
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    model.fit(x, y)
    p = np.clip(model.predict_proba(x)[:, 1], 1e-6, 1 - 1e-6)
    logit = np.log(p / (1 - p))
    return logit[:len(t)], logit[len(t):]


@dataclass
class Matches:
    """One row per (program child, comparison child) used: `weight` is 1 / how many comparison
    children that program child has; `level` the stratum level it was matched at."""
    pairs: pd.DataFrame
    levels: list[tuple[str, tuple[str, ...], str]]
    unmatched: int = 0

    @property
    def matched(self) -> int:
        return int(self.pairs["treated"].nunique())

    @property
    def comparison(self) -> int:
        return int(self.pairs["control"].nunique())

    def control_weights(self) -> pd.Series:
        return self.pairs.groupby("control")["weight"].sum()

    @property
    def effective_comparison(self) -> float:
        """Kish's effective sample size of the weighted comparison group."""
        w = self.control_weights()
        return float(w.sum() ** 2 / (w ** 2).sum()) if len(w) else 0.0

    def by_level(self) -> dict[str, int]:
        first = self.pairs.drop_duplicates("treated")
        return {level: int((first["level"] == level).sum()) for level, _, _ in self.levels}


PAIR_COLUMNS = ["treated", "control", "weight", "distance", "level"]


def match(pop: Population, settings: dict[str, float],
          levels: list[tuple[str, tuple[str, ...], str]] | None = None,
          tighten: float = 1.0) -> Matches:
    """Nearest-neighbour matching with replacement, within a propensity caliper, exactly
    within the finest stratum that has a comparison child (see the module's docstring).

    Deterministic: ties go to the pool's person_id order, so a request always gets the same
    matches.
    """
    levels = levels if levels is not None else strata_levels()
    t, c = pop.treated, pop.pool
    if t.empty or c.empty:
        return Matches(pd.DataFrame(columns=PAIR_COLUMNS), levels, unmatched=len(t))
    logit_t, logit_c = propensity(pop)
    width = tighten * settings["caliper_sd"] * float(np.std(np.r_[logit_t, logit_c], ddof=1))
    reach = tighten * settings["mahalanobis_caliper"]
    xt, xc = t[list(CONTINUOUS)].to_numpy(float), c[list(CONTINUOUS)].to_numpy(float)
    cov = np.cov(np.vstack([xt, xc]), rowvar=False) + np.eye(len(CONTINUOUS)) * 1e-6
    vi = np.linalg.inv(cov)
    k = int(settings["controls_per_child"])
    keys_t = {lv: t[list(cols)].astype(str).agg("|".join, axis=1).to_numpy() if cols
              else np.full(len(t), "") for lv, cols, _ in levels}
    keys_c = {lv: c[list(cols)].astype(str).agg("|".join, axis=1).to_numpy() if cols
              else np.full(len(c), "") for lv, cols, _ in levels}
    rows, unmatched = [], 0
    for i in range(len(t)):
        near = np.abs(logit_c - logit_t[i]) <= width
        for level, _, _ in levels:
            idx = np.flatnonzero(near & (keys_c[level] == keys_t[level][i]))
            if len(idx) == 0:
                continue
            diff = xc[idx] - xt[i]
            dist = np.sqrt(np.einsum("ij,jk,ik->i", diff, vi, diff))
            close = dist <= reach
            if not close.any():
                continue
            idx, dist = idx[close], dist[close]
            take = np.lexsort((idx, dist))[:k]
            for j in take:
                rows.append((t.at[i, "person_id"], c.at[idx[j], "person_id"], 1 / len(take),
                             float(dist[j]), level))
            break
        else:
            unmatched += 1
    return Matches(pd.DataFrame(rows, columns=PAIR_COLUMNS), levels, unmatched=unmatched)


@dataclass
class Design:
    matches: Matches
    balance: list[dict]
    balanced: bool
    description: str  # which specification of the ladder was used, in words


def _max_smd(bal: list[dict]) -> float:
    return max((abs(b["after"]) for b in bal if not np.isnan(b["after"])), default=0.0)


def match_until_balanced(pop: Population, settings: dict[str, float]) -> Design:
    """Let balance decide: the largest set of matched program children whose every covariate
    is within `max_abs_std_diff` (cardinality matching, after Zubizarreta 2014, solved greedily).

    Every program child with a comparison child within the calipers at any stratum level is
    matched first. While a covariate is out of balance, the program child (with its comparison
    children) whose leaving brings the worst standardised difference down most is left out, one
    at a time, as long as at least `min_matched` stay. Outcomes are never looked at. When
    balance cannot be reached, the report gives no figures and names what differs.
    """
    levels = strata_levels()
    full = match(pop, settings, levels)
    limit, floor = settings["max_abs_std_diff"], int(settings["min_matched"])
    if full.pairs.empty:
        return Design(full, balance(pop, full, settings), False, "nobody could be matched")
    t_all, c_all = pop.treated, pop.pool
    cats = {col: sorted(set(t_all[col]) | set(c_all[col])) for col in CATEGORICAL}
    xt_all, xc_all = _design(t_all, cats), _design(c_all, cats)
    var_t = xt_all.var(axis=0, ddof=1) if len(xt_all) > 1 else np.zeros(xt_all.shape[1])
    var_c = xc_all.var(axis=0, ddof=1) if len(xc_all) > 1 else np.zeros(xc_all.shape[1])
    sd = np.sqrt((var_t + var_c) / 2)
    used = sd > 0
    ids = full.pairs["treated"].drop_duplicates().tolist()
    t_index = pd.Series(range(len(t_all)), index=t_all["person_id"])
    c_index = pd.Series(range(len(c_all)), index=c_all["person_id"])
    tx = xt_all[t_index.loc[ids].to_numpy()]
    contrib = (full.pairs.assign(row=c_index.loc[full.pairs["control"]].to_numpy())
               .groupby("treated", sort=False))
    cx = np.vstack([
        (xc_all[g["row"].to_numpy()] * g["weight"].to_numpy()[:, None]).sum(axis=0)
        for _, g in ((i, contrib.get_group(i)) for i in ids)])
    active = np.ones(len(ids), bool)

    def worst(st: np.ndarray, sc: np.ndarray, n: np.ndarray) -> np.ndarray:
        diff = (st / n[..., None] - sc / n[..., None])[..., used] / sd[used]
        return np.abs(diff).max(axis=-1)

    left_out = 0
    while True:
        n = active.sum()
        st, sc = tx[active].sum(axis=0), cx[active].sum(axis=0)
        now = float(worst(st[None], sc[None], np.array([n]))[0]) if used.any() else 0.0
        if now <= limit or n <= floor:
            break
        rows = np.flatnonzero(active)
        after = worst(st - tx[rows], sc - cx[rows], np.full(len(rows), n - 1))
        active[rows[int(np.argmin(after))]] = False
        left_out += 1
    keep = {ids[i] for i in np.flatnonzero(active)}
    pairs = full.pairs[full.pairs["treated"].isin(keep)].reset_index(drop=True)
    kept = Matches(pairs, levels, unmatched=full.unmatched + left_out)
    bal = balance(pop, kept, settings)
    ok = _max_smd(bal) <= limit and kept.matched >= floor
    words = ("every match within the calipers kept" if left_out == 0 else
             f"{left_out} matched children left out so that the groups balance")
    return Design(kept, bal, ok, words)


def _wmean(x: np.ndarray, w: np.ndarray) -> float:
    return float(np.sum(x * w) / np.sum(w)) if len(x) and np.sum(w) else float("nan")


def _smd(diff: float, var_t: float, var_c: float) -> float:
    sd = np.sqrt((var_t + var_c) / 2)
    if not np.isfinite(diff):
        return float("nan")
    if sd == 0:
        return 0.0 if abs(diff) < 1e-12 else float("inf")
    return diff / sd


def balance(pop: Population, matches: Matches, settings: dict[str, float] | None = None
            ) -> list[dict]:
    """Standardised differences (program minus comparison) of every covariate and category
    level: before matching (cohort vs the whole pool) and after (matched program children vs
    their comparison children, weighted). Both use the spread before matching as the yardstick,
    so matching cannot look better by shrinking it."""
    labels = covariate_labels(settings or lab_settings())
    t_all, c_all = pop.treated, pop.pool
    pairs = matches.pairs
    t_m = t_all[t_all["person_id"].isin(pairs["treated"])]
    w = matches.control_weights()
    c_m = c_all.set_index("person_id").loc[w.index] if len(w) else c_all.iloc[0:0]
    wc = w.to_numpy(float)
    rows = []

    def row(name: str, ta: np.ndarray, ca: np.ndarray, tm: np.ndarray, cm: np.ndarray) -> dict:
        var_t = float(np.var(ta, ddof=1)) if len(ta) > 1 else 0.0
        var_c = float(np.var(ca, ddof=1)) if len(ca) > 1 else 0.0
        before = _smd(float(np.mean(ta) - np.mean(ca)) if len(ta) and len(ca) else np.nan,
                      var_t, var_c)
        after = _smd(float(np.mean(tm)) - _wmean(cm, wc) if len(tm) and len(cm) else np.nan,
                     var_t, var_c)
        return {"covariate": name, "before": before, "after": after}

    for col in CONTINUOUS:
        rows.append(row(labels[col], t_all[col].to_numpy(float), c_all[col].to_numpy(float),
                        t_m[col].to_numpy(float), c_m[col].to_numpy(float)))
    for col in CATEGORICAL:
        for level in sorted(set(t_all[col]) | set(c_all[col])):
            rows.append(row(f"{labels[col]}: {level}", (t_all[col] == level).to_numpy(float),
                            (c_all[col] == level).to_numpy(float),
                            (t_m[col] == level).to_numpy(float),
                            (c_m[col] == level).to_numpy(float)))
    return rows


@dataclass
class OutcomeResult:
    outcome_id: str
    label: str
    pairs: int = 0  # matched program children whose window (and a comparison's) has ended
    treated_with: int = 0
    comparison_children: int = 0  # distinct comparison children in those sets
    comparison_with: int = 0  # of them, how many had the outcome (in any of their windows)
    treated_share_: float | None = None
    comparison_share_: float | None = None
    diff: float | None = None
    se: float | None = None
    ci: tuple[float, float] | None = None
    detectable: float | None = None  # smallest difference found at the seed's power
    call: str = ""  # more | fewer | no_difference | too_few
    # a group has 1 to min_cell - 1 children with (or without) the outcome: the call and the
    # difference in whole points are given, the counts and the two shares are not
    small_cells: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def treated_share(self) -> float | None:
        return self.treated_share_

    @property
    def comparison_share(self) -> float | None:
        """The weighted share of the comparison children with the outcome."""
        return self.comparison_share_


def window_days(outcome: dict[str, str], band: str, rule_windows: pd.DataFrame) -> int:
    if outcome.get("window_days"):
        return int(float(outcome["window_days"]))
    rule = outcome["window_rule"]
    hit = rule_windows[(rule_windows["rule_code"] == rule) & (rule_windows["band"] == band)]
    if hit.empty:
        raise ValueError(f"outcome {outcome['outcome_id']}: no {rule} window for band {band}")
    return int(hit["window_days"].iloc[0])


def pair_windows(pop: Population, matches: Matches, outcome: dict[str, str],
                 rule_windows: pd.DataFrame) -> pd.DataFrame:
    """Each matched pair's window for one outcome, for both children (anchor, end).

    A comparison child has no program start: its window starts as many days after its own
    confirmation as the program child's program started after theirs.
    """
    pairs = matches.pairs
    cols = ["treated", "control", "t_from", "t_to", "c_from", "c_to"]
    if pairs.empty:
        return pd.DataFrame(columns=cols)
    t = pop.treated.set_index("person_id").loc[pairs["treated"]]
    c = pop.pool.set_index("person_id").loc[pairs["control"]]
    lag = (t["lag_days"].to_numpy(int) if outcome["anchor"] == "program_start"
           else np.zeros(len(pairs), int))
    days = np.array([window_days(outcome, b, rule_windows) for b in t["band"]])
    t_from = pd.to_datetime(t["confirmation_date"]).to_numpy() + lag.astype("timedelta64[D]")
    c_from = pd.to_datetime(c["confirmation_date"]).to_numpy() + lag.astype("timedelta64[D]")
    span = days.astype("timedelta64[D]")
    return pd.DataFrame({"treated": pairs["treated"].to_numpy(),
                         "control": pairs["control"].to_numpy(),
                         "t_from": t_from, "t_to": t_from + span,
                         "c_from": c_from, "c_to": c_from + span})


def _had(frame: pd.DataFrame, who: str, start: str, end: str, events: pd.DataFrame
         ) -> np.ndarray:
    """Whether each row's child had an event after its window's start, up to its end."""
    if frame.empty:
        return np.zeros(0, bool)
    rows = frame[[who, start, end]].reset_index(drop=True).reset_index()
    hits = rows.merge(events, left_on=who, right_on="person_id")
    inside = hits[(hits["event_date"] > hits[start]) & (hits["event_date"] <= hits[end])]
    out = np.zeros(len(rows), bool)
    out[inside["index"].unique()] = True
    return out


def estimate(windows: pd.DataFrame, events: pd.DataFrame, as_of: date,
             outcome: dict[str, str], settings: dict[str, float], min_cell: int
             ) -> OutcomeResult:
    """Compare one outcome over the matched sets whose windows have ended by the as-of date.

    `events`: person_id, event_date of the outcome's event model. An event counts when it falls
    after the window's start, up to and including its end. A program child counts when its
    window and at least one of its comparison children's windows have ended; the set is that
    child and those comparison children.
    """
    res = OutcomeResult(outcome["outcome_id"], outcome["label"])
    cut = pd.Timestamp(as_of)
    done = windows[(pd.to_datetime(windows["t_to"]) <= cut) &
                   (pd.to_datetime(windows["c_to"]) <= cut)].copy()
    res.pairs = int(done["treated"].nunique()) if len(done) else 0
    if res.pairs < settings["min_per_outcome"]:
        res.call = "too_few"
        return res
    ev = events[["person_id", "event_date"]].copy()
    ev["event_date"] = pd.to_datetime(ev["event_date"])
    for col in ("t_from", "t_to", "c_from", "c_to"):
        done[col] = pd.to_datetime(done[col])
    done["y_c"] = _had(done, "control", "c_from", "c_to", ev).astype(float)
    first = done.drop_duplicates("treated")
    y_t = pd.Series(_had(first, "treated", "t_from", "t_to", ev).astype(float),
                    index=first["treated"].to_numpy())
    sets = done.groupby("treated")
    k = sets["control"].size()
    ybar_c = sets["y_c"].mean()
    d = y_t.loc[ybar_c.index] - ybar_c
    n = len(d)
    res.treated_with = int(y_t.sum())
    res.treated_share_ = float(y_t.mean())
    res.comparison_share_ = float(ybar_c.mean())
    res.diff = float(d.mean())
    used = done.assign(inv=1 / done["treated"].map(k))
    res.comparison_children = int(used["control"].nunique())
    res.comparison_with = int(used.groupby("control")["y_c"].max().sum())
    # variance: the matched sets' own spread, plus what reusing a comparison child adds
    w = used.groupby("control")["inv"].sum()
    s = used.assign(inv2=used["inv"] ** 2).groupby("control")["inv2"].sum()
    p_c = res.comparison_share_
    reuse = float(((w ** 2 - s) * p_c * (1 - p_c)).sum())
    spread = float(((d - res.diff) ** 2).sum() / (n - 1)) if n > 1 else 0.0
    res.se = float(np.sqrt(spread / n + reuse / n ** 2))
    from scipy.stats import norm

    z = float(norm.ppf(1 - (1 - settings["confidence"]) / 2))
    res.detectable = float((z + norm.ppf(settings["power"])) * res.se)
    cells = (res.treated_with, res.pairs - res.treated_with, res.comparison_with,
             res.comparison_children - res.comparison_with)
    res.small_cells = any(0 < x < min_cell for x in cells)
    res.ci = (max(-1.0, res.diff - z * res.se), min(1.0, res.diff + z * res.se))
    low, high = res.ci
    res.call = "more" if low > 0 else "fewer" if high < 0 else "no_difference"
    return res
