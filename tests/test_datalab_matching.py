"""The lab's statistics on populations whose truth is known: matching, balance, intervals."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd

from pipelines.datalab import matching as M
from pipelines.datalab.requests import verdict

AS_OF = date(2026, 11, 24)
FOLLOW_UP = {"outcome_id": "follow_up_test_180d", "label": "had a follow-up test",
             "anchor": "program_start", "window_days": "180", "window_rule": ""}
RULES = pd.DataFrame({"rule_code": ["R"] * 4, "band": list("ABCD"), "window_days": [60, 30, 14, 7]})


def city(seed: int, effect: float, n: int = 1500, confounded: bool = True):
    """Children with confirmed EBLLs; younger and band-B children join more often and are
    followed up more often anyway. Returns (children, cohort, follow-up events)."""
    rng = np.random.default_rng(seed)
    band = rng.choice(["A", "B"], size=n, p=[0.75, 0.25])
    age = rng.integers(6, 70, size=n)
    conf = [date(2025, 1, 1) + timedelta(days=int(d)) for d in rng.integers(0, 365, size=n)]
    children = pd.DataFrame({
        "person_id": [f"P{i}" for i in range(n)], "confirmation_date": conf, "band": band,
        "band_lower_ug_dl": np.where(band == "A", 3.5, 10.0), "age_months": age,
        "sex": rng.choice(["F", "M"], size=n), "zip5": rng.choice(["21201", "21217"], size=n),
        "prior_tests": rng.integers(0, 3, size=n), "episode_number": 1})
    young, high = age < 24, band == "B"
    join = 0.15 + (0.15 * young + 0.1 * high if confounded else 0)
    treated = rng.random(n) < join
    lag = rng.integers(7, 60, size=n)
    cohort = pd.DataFrame({"person_id": children["person_id"][treated],
                           "program_start": [c + timedelta(days=int(g)) for c, g, t in
                                             zip(conf, lag, treated, strict=True) if t]})
    chance = 0.4 + 0.12 * high + 0.1 * young + effect * treated
    tested = rng.random(n) < chance
    events = pd.DataFrame({
        "person_id": children["person_id"][tested],
        "event_date": [c + timedelta(days=int(d)) for c, d, t in
                       zip(conf, rng.integers(70, 170, size=n), tested, strict=True) if t]})
    return children, cohort, events


def run(children, cohort, events, settings=None):
    cfg = settings or M.lab_settings()
    pop = M.population(children, cohort, cfg)
    pairs = M.match(pop, cfg, "test")
    windows = M.pair_windows(pop, pairs, FOLLOW_UP, RULES)
    return pop, pairs, M.estimate(windows, events, AS_OF, FOLLOW_UP, cfg, 11)


def test_matching_recovers_a_planted_effect_that_a_naive_comparison_overstates() -> None:
    children, cohort, events = city(seed=1, effect=0.2)
    pop, pairs, result = run(children, cohort, events)
    assert len(pairs) >= 200
    assert len(set(pairs["control"])) == len(pairs)  # without replacement
    assert not set(pairs["control"]) & set(cohort["person_id"])
    assert result.call == "more"
    assert result.ci[0] <= 0.2 <= result.ci[1]
    had = set(events["person_id"])
    naive = (pop.treated["person_id"].isin(had).mean() - pop.pool["person_id"].isin(had).mean())
    assert naive > result.diff  # the cohort was younger and more often band B
    # every matched pair shares band, sex, area and period exactly
    t = pop.treated.set_index("person_id").loc[pairs["treated"]]
    c = pop.pool.set_index("person_id").loc[pairs["control"]]
    for col in ("band", "sex", "area", "period"):
        assert (t[col].to_numpy() == c[col].to_numpy()).all()
    after = {b["covariate"]: b["after"] for b in M.balance(pop, pairs)}
    assert all(abs(v) <= 0.1 for v in after.values()), after


def test_a_program_with_no_effect_is_usually_called_no_detectable_difference() -> None:
    calls = [run(*city(seed=s, effect=0.0))[2].call for s in range(8)]
    assert calls.count("no_difference") >= 6, calls


def test_a_harmful_program_is_called_fewer() -> None:
    _, _, result = run(*city(seed=3, effect=-0.2))
    assert result.call == "fewer" and result.ci[1] < 0


def test_too_few_matched_or_unbalanced_groups_give_no_figures() -> None:
    cfg = M.lab_settings()
    figures, headline = verdict(59, [], cfg, 11)
    assert not figures and "at least 60" in headline
    figures, headline = verdict(
        120, [{"covariate": "age in months", "before": 0.5, "after": 0.31}], cfg, 11)
    assert not figures and "age in months (+0.31)" in headline
    figures, _ = verdict(120, [{"covariate": "age in months", "before": 0.5, "after": 0.05}],
                         cfg, 11)
    assert figures


def test_a_wide_caliper_lets_unlike_children_in_and_balance_shows_it() -> None:
    children, cohort, _events = city(seed=4, effect=0.0)
    # the cohort is much older than everyone else
    older = children["person_id"].isin(cohort["person_id"])
    children.loc[older, "age_months"] = children.loc[older, "age_months"] + 30
    cfg = dict(M.lab_settings(), caliper=50.0)
    pop = M.population(children, cohort, cfg)
    bal = {b["covariate"]: b["after"] for b in M.balance(pop, M.match(pop, cfg, "t"))}
    assert bal["age in months"] > 0.1
    narrow = M.match(pop, M.lab_settings(), "t")
    assert len(narrow) < len(M.match(pop, cfg, "t"))


def test_outcome_windows_must_have_run_their_course_and_small_cells_are_suppressed() -> None:
    children, cohort, events = city(seed=5, effect=0.2)
    cfg = M.lab_settings()
    pop = M.population(children, cohort, cfg)
    pairs = M.match(pop, cfg, "test")
    windows = M.pair_windows(pop, pairs, FOLLOW_UP, RULES)
    early = M.estimate(windows, events, date(2025, 3, 1), FOLLOW_UP, cfg, 11)
    assert early.call == "too_few"
    few = events[~events["person_id"].isin(pairs["treated"])].copy()
    few = pd.concat([few, events[events["person_id"].isin(pairs["treated"])].head(5)])
    assert M.estimate(windows, few, AS_OF, FOLLOW_UP, cfg, 11).call == "suppressed"
