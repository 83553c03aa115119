"""Who is compared with whom, whether the groups are alike, and what differed.

Design (docs/decisions/0004-data-lab-matching.md): each cohort child is matched 1:1, without
replacement, to a child with a confirmed EBLL who was not in the cohort, exactly on band, sex,
area (ZIP prefix) and confirmation period, and by nearest Mahalanobis distance on age in months,
prior tests and confirmation date within that stratum (scikit-learn's NearestNeighbors), within
a caliper. Balance is the standardised difference of every covariate before and after. Each
outcome is compared over the pairs whose windows have both run their course, with Newcombe's
interval for the difference of two proportions (statsmodels).

Everything here is pseudonymous: person_ids, dates, bands, counts.
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass, field
from datetime import date

import numpy as np
import pandas as pd
from sklearn.neighbors import NearestNeighbors
from statsmodels.stats.proportion import confint_proportions_2indep

from pipelines.stores import SEEDS_DIR, seed_values

CONTINUOUS = ("age_months", "prior_tests", "confirmation_day")
CATEGORICAL = ("band", "sex", "area")
COVARIATE_LABELS = {"age_months": "age in months", "prior_tests": "blood lead tests before",
                    "confirmation_day": "confirmation date", "band": "band", "sex": "sex",
                    "area": "area (ZIP)"}


def lab_settings() -> dict[str, float]:
    return seed_values("datalab_settings")


def outcome_definitions() -> list[dict[str, str]]:
    with open(SEEDS_DIR / "datalab_outcomes.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def min_published_count() -> int:
    return int(seed_values("lead_parameters", key="parameter")["min_published_count"])


def _prepare(children: pd.DataFrame, settings: dict[str, float]) -> pd.DataFrame:
    out = children.copy()
    out["confirmation_date"] = pd.to_datetime(out["confirmation_date"]).dt.date
    out["confirmation_day"] = [d.toordinal() for d in out["confirmation_date"]]
    digits = int(settings["area_zip_digits"])
    out["area"] = [z[:digits] if isinstance(z, str) and len(z) >= digits else "unknown"
                   for z in out["zip5"]]
    months = int(settings["period_months"])
    out["period"] = [f"{d.year}-{(d.month - 1) // months}" for d in out["confirmation_date"]]
    out["age_months"] = out["age_months"].astype("float64")
    out["age_missing"] = out["age_months"].isna()
    out["age_months"] = out["age_months"].fillna(out["age_months"].median())
    out["prior_tests"] = out["prior_tests"].astype("float64")
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
    episode is theirs). The pool is every child with a confirmed EBLL not in the cohort.
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
    return Population(treated, pool.reset_index(drop=True),
                      not_eligible=len(cohort) - len(treated), duplicates=duplicates)


def match(pop: Population, settings: dict[str, float], seed_text: str) -> pd.DataFrame:
    """1:1 greedy nearest-neighbour matching without replacement within exact strata.

    Returns one row per pair: treated person_id, control person_id, distance. Treated children
    are taken closest-first (ties in a fixed order from `seed_text`), so the result is the same
    on every run of the same request.
    """
    t, c = pop.treated, pop.pool
    if t.empty or c.empty:
        return pd.DataFrame(columns=["treated", "control", "distance"])
    both = np.vstack([t[list(CONTINUOUS)].to_numpy(), c[list(CONTINUOUS)].to_numpy()])
    cov = np.cov(both, rowvar=False) + np.eye(len(CONTINUOUS)) * 1e-6
    vi = np.linalg.inv(cov)
    caliper = settings["caliper"]
    seed = int(hashlib.sha256(seed_text.encode()).hexdigest()[:8], 16)
    rng = np.random.default_rng(seed)
    strata = ["band", "sex", "area", "period"]
    pairs = []
    controls_by = {k: g for k, g in c.groupby(strata, sort=True)}
    for key, group in t.groupby(strata, sort=True):
        pool = controls_by.get(key)
        if pool is None or pool.empty:
            continue
        nn = NearestNeighbors(metric="mahalanobis", metric_params={"VI": vi}, algorithm="brute")
        nn.fit(pool[list(CONTINUOUS)].to_numpy())
        k = min(len(pool), len(group) + 5)
        dist, idx = nn.kneighbors(group[list(CONTINUOUS)].to_numpy(), n_neighbors=k)
        order = np.lexsort((rng.random(len(group)), dist[:, 0]))
        used: set[int] = set()
        for i in order:
            for d, j in zip(dist[i], idx[i], strict=True):
                if d > caliper:
                    break
                if j not in used:
                    used.add(j)
                    pairs.append((group.iloc[i]["person_id"], pool.iloc[j]["person_id"], float(d)))
                    break
    return pd.DataFrame(pairs, columns=["treated", "control", "distance"])


def _smd(a: np.ndarray, b: np.ndarray) -> float:
    if len(a) == 0 or len(b) == 0:
        return float("nan")
    sd = np.sqrt((np.var(a, ddof=1 if len(a) > 1 else 0) + np.var(b, ddof=1 if len(b) > 1 else 0))
                 / 2)
    diff = float(np.mean(a) - np.mean(b))
    if sd == 0:
        return 0.0 if diff == 0 else float("inf")
    return diff / sd


def balance(pop: Population, pairs: pd.DataFrame) -> list[dict]:
    """Standardised differences (treated minus comparison) of every covariate, before matching
    (cohort vs the whole pool) and after (matched cohort vs matched comparison)."""
    t_all, c_all = pop.treated, pop.pool
    t_m = t_all[t_all["person_id"].isin(pairs["treated"])]
    c_m = c_all.set_index("person_id").loc[pairs["control"]].reset_index() if len(pairs) else \
        c_all.iloc[0:0]
    rows = []
    for col in CONTINUOUS:
        rows.append({"covariate": COVARIATE_LABELS[col],
                     "before": _smd(t_all[col].to_numpy(), c_all[col].to_numpy()),
                     "after": _smd(t_m[col].to_numpy(), c_m[col].to_numpy())})
    for col in CATEGORICAL:
        for level in sorted(set(t_all[col]) | set(c_all[col])):
            rows.append({
                "covariate": f"{COVARIATE_LABELS[col]}: {level}",
                "before": _smd((t_all[col] == level).to_numpy(float),
                               (c_all[col] == level).to_numpy(float)),
                "after": _smd((t_m[col] == level).to_numpy(float),
                              (c_m[col] == level).to_numpy(float))})
    return rows


@dataclass
class OutcomeResult:
    outcome_id: str
    label: str
    pairs: int = 0
    treated_with: int = 0
    comparison_with: int = 0
    diff: float | None = None
    ci: tuple[float, float] | None = None
    call: str = ""  # more | fewer | no_difference | suppressed | too_few
    notes: list[str] = field(default_factory=list)

    @property
    def treated_share(self) -> float | None:
        return self.treated_with / self.pairs if self.pairs else None

    @property
    def comparison_share(self) -> float | None:
        return self.comparison_with / self.pairs if self.pairs else None


def window_days(outcome: dict[str, str], band: str, rule_windows: pd.DataFrame) -> int:
    if outcome.get("window_days"):
        return int(float(outcome["window_days"]))
    rule = outcome["window_rule"]
    hit = rule_windows[(rule_windows["rule_code"] == rule) & (rule_windows["band"] == band)]
    if hit.empty:
        raise ValueError(f"outcome {outcome['outcome_id']}: no {rule} window for band {band}")
    return int(hit["window_days"].iloc[0])


def pair_windows(pop: Population, pairs: pd.DataFrame, outcome: dict[str, str],
                 rule_windows: pd.DataFrame) -> pd.DataFrame:
    """Each pair's window for one outcome, for both children (anchor, end).

    A comparison child has no program start: its window starts as many days after its own
    confirmation as the cohort child's program started after theirs.
    """
    t = pop.treated.set_index("person_id")
    c = pop.pool.set_index("person_id")
    rows = []
    for tp, cp in zip(pairs["treated"], pairs["control"], strict=True):
        tr, cr = t.loc[tp], c.loc[cp]
        lag = int(tr["lag_days"]) if outcome["anchor"] == "program_start" else 0
        days = window_days(outcome, tr["band"], rule_windows)
        ta = tr["confirmation_date"] + pd.Timedelta(days=lag)
        ca = cr["confirmation_date"] + pd.Timedelta(days=lag)
        rows.append((tp, cp, ta, ta + pd.Timedelta(days=days), ca, ca + pd.Timedelta(days=days)))
    return pd.DataFrame(rows, columns=["treated", "control", "t_from", "t_to", "c_from", "c_to"])


def estimate(windows: pd.DataFrame, events: pd.DataFrame, as_of: date,
             outcome: dict[str, str], settings: dict[str, float], min_cell: int
             ) -> OutcomeResult:
    """Compare one outcome over the pairs whose windows have both ended by the as-of date.

    `events`: person_id, event_date of the outcome's event model. An event counts when it falls
    after the window's start, up to and including its end.
    """
    res = OutcomeResult(outcome["outcome_id"], outcome["label"])
    done = windows[(windows["t_to"] <= as_of) & (windows["c_to"] <= as_of)]
    res.pairs = len(done)
    if res.pairs < settings["min_matched"]:
        res.call = "too_few"
        return res
    ev = events.copy()
    ev["event_date"] = pd.to_datetime(ev["event_date"]).dt.date
    by_person = ev.groupby("person_id")["event_date"].apply(list).to_dict()

    def had(pid: str, start: date, end: date) -> bool:
        return any(start < d <= end for d in by_person.get(pid, ()))

    res.treated_with = sum(had(p, a, b) for p, a, b in
                           zip(done["treated"], done["t_from"], done["t_to"], strict=True))
    res.comparison_with = sum(had(p, a, b) for p, a, b in
                              zip(done["control"], done["c_from"], done["c_to"], strict=True))
    cells = (res.treated_with, res.pairs - res.treated_with, res.comparison_with,
             res.pairs - res.comparison_with)
    if any(0 < x < min_cell for x in cells):
        res.call = "suppressed"
        return res
    res.diff = res.treated_share - res.comparison_share
    low, high = confint_proportions_2indep(
        res.treated_with, res.pairs, res.comparison_with, res.pairs, method="newcomb",
        compare="diff", alpha=1 - settings["confidence"])
    res.ci = (float(low), float(high))
    res.call = "more" if low > 0 else "fewer" if high < 0 else "no_difference"
    return res
