"""The lab's statistics on populations whose truth is known: matching, balance, intervals."""

from __future__ import annotations

import os
from datetime import date, timedelta
from pathlib import Path

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


def test_a_report_with_figures_prints_on_one_page_with_its_sentences(tmp_path) -> None:
    """The page a program manager reads: Debian's Chromium prints it to one A4 page."""
    from datetime import datetime

    from playwright.sync_api import sync_playwright

    from pipelines.datalab.report import Report, write_report
    from pipelines.datalab.requests import verdict
    from tests.test_ui_browser import ARGS, CHROMIUM

    children, cohort, events = city(seed=1, effect=0.2)
    cfg = M.lab_settings()
    pop = M.population(children, cohort, cfg)
    pairs = M.match(pop, cfg, "page")
    bal = M.balance(pop, pairs)
    results = []
    # as many outcomes as the seed has, one of them suppressed
    for outcome, evts in zip(M.outcome_definitions(), (events, events.iloc[::2],
                                                       events.iloc[::3], events.iloc[:3]),
                             strict=True):
        # each outcome's own window (a band's window of a rule where the seed says so)
        rules = RULES.assign(rule_code=outcome.get("window_rule") or "R")
        windows = M.pair_windows(pop, pairs, outcome, rules)
        results.append(M.estimate(windows, evts, AS_OF, outcome, cfg, 11))
    assert [r.call for r in results].count("suppressed") == 1
    figures, headline = verdict(len(pairs), bal, cfg, 11)
    counts = {"rows_sent": len(cohort), "rows_rejected": 0, "linked": len(cohort),
              "unlinked": 0, "ambiguous": 0, "eligible": len(pop.treated),
              "matched": len(pairs), "comparison": len(pairs), "comparison_pool": len(pop.pool)}
    rep = Report("DL-HHN-20261124-test", "HHN", "Lead-Safe Home Nursing", "cohort_20261124.csv",
                 datetime(2026, 11, 24, 9), AS_OF, counts, bal, True, results, figures,
                 headline, 11, cfg["max_abs_std_diff"])
    target = write_report(tmp_path, rep, 60).with_suffix(".html")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page()
        page.goto(target.as_uri())
        text = page.inner_text("body")
        pdf = page.pdf(format="A4", print_background=True)
        if os.environ.get("PLUMBLINE_SCREENSHOTS"):
            shots = Path(os.environ["PLUMBLINE_SCREENSHOTS"])
            shots.mkdir(parents=True, exist_ok=True)
            page.set_viewport_size({"width": 900, "height": 1200})
            page.screenshot(path=str(shots / "datalab_report.png"), full_page=True)
        browser.close()
    assert figures
    assert "More children in the program had a follow-up blood lead test" in text
    assert "not reported, because a group would show fewer than 11" in text
    assert "a difference of" in text and "against" in text
    assert "Were the groups alike?" in text and "age in months" in text
    assert pdf.count(b"/Type /Page") - pdf.count(b"/Type /Pages") == 1  # one printed page
