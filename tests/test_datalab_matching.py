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
    design = M.match_until_balanced(pop, cfg)
    windows = M.pair_windows(pop, design.matches, FOLLOW_UP, RULES)
    return pop, design, M.estimate(windows, events, AS_OF, FOLLOW_UP, cfg, 11)


def test_matching_recovers_a_planted_effect_that_a_naive_comparison_overstates() -> None:
    children, cohort, events = city(seed=1, effect=0.2)
    pop, design, result = run(children, cohort, events)
    pairs = design.matches.pairs
    assert design.balanced and design.matches.matched >= 250
    assert not set(pairs["control"]) & set(cohort["person_id"])
    # with replacement: up to three comparison children each, weights summing to one per child
    assert pairs.groupby("treated")["weight"].sum().round(9).eq(1).all()
    assert pairs.groupby("treated").size().max() == 3
    assert result.call == "more"
    assert result.ci[0] <= 0.2 <= result.ci[1]
    had = set(events["person_id"])
    naive = (pop.treated["person_id"].isin(had).mean() - pop.pool["person_id"].isin(had).mean())
    assert naive > result.diff  # the cohort was younger and more often band B
    # band is matched exactly at every level of the seed; most match on everything
    t = pop.treated.set_index("person_id").loc[pairs["treated"]]
    c = pop.pool.set_index("person_id").loc[pairs["control"]]
    assert (t["band"].to_numpy() == c["band"].to_numpy()).all()
    assert design.matches.by_level()["1"] > 0.9 * design.matches.matched
    after = {b["covariate"]: b["after"] for b in design.balance}
    assert all(abs(v) <= 0.1 for v in after.values()), after


def test_a_program_with_no_effect_is_usually_called_no_detectable_difference() -> None:
    calls = [run(*city(seed=s, effect=0.0, n=600))[2].call for s in range(12)]
    assert calls.count("no_difference") >= 10, calls


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


def test_strata_coarsen_in_the_seeds_order_when_a_childs_own_is_empty() -> None:
    """A town where nobody outside the program was confirmed in the program children's
    half-year, and some program children live in an area nobody else does: they are matched
    on the year, or without the area, and the report can say how many were."""
    children, cohort, _ = city(seed=6, effect=0.0, n=600)
    in_cohort = children["person_id"].isin(cohort["person_id"])
    # every program child confirmed in the first half of 2025, everyone else in the second
    first_half = children["confirmation_date"].map(lambda d: d.month <= 6)
    keep = (in_cohort & first_half) | (~in_cohort & ~first_half)
    children = children[keep].copy()
    cohort = cohort[cohort["person_id"].isin(children["person_id"])]
    lonely = cohort["person_id"].iloc[:5]
    children.loc[children["person_id"].isin(lonely), "zip5"] = "29999"
    # calipers this wide let the strata alone decide (the lonely area alone would otherwise
    # mark those five as unlike anyone)
    cfg = dict(M.lab_settings(), caliper_sd=50.0, mahalanobis_caliper=50.0)
    pop = M.population(children, cohort, cfg)
    matches = M.match(pop, cfg)
    levels = matches.by_level()
    assert levels["1"] == 0  # no half-year has both
    assert levels["2"] > 0  # the year does
    first = matches.pairs.drop_duplicates("treated").set_index("treated")["level"]
    assert set(first.loc[lonely]) <= {"4", "5", "6"}  # matched without the area


def test_balance_decides_who_stays_and_refuses_figures_when_it_cannot() -> None:
    cfg = M.lab_settings()
    children, cohort, _ = city(seed=4, effect=0.0)
    # a third of the program's children are far older than anyone outside it
    older = children["person_id"].isin(cohort["person_id"].iloc[::3])
    children.loc[older, "age_months"] = children.loc[older, "age_months"] + 60
    pop = M.population(children, cohort, cfg)
    loose = M.balance(pop, M.match(pop, dict(cfg, caliper_sd=50.0, mahalanobis_caliper=50.0)),
                      cfg)
    assert {b["covariate"]: b["after"] for b in loose}["age in months"] > 0.1
    design = M.match_until_balanced(pop, dict(cfg, caliper_sd=50.0, mahalanobis_caliper=50.0))
    assert design.balanced and "left out so that the groups balance" in design.description
    assert all(abs(b["after"]) <= 0.1 for b in design.balance)
    # when most of the program is unlike anyone, balance cannot be had with 60 children
    children.loc[children["person_id"].isin(cohort["person_id"]), "age_months"] += 60
    small = cohort.iloc[:90]
    pop = M.population(children, small, cfg)
    design = M.match_until_balanced(pop, dict(cfg, caliper_sd=50.0, mahalanobis_caliper=50.0))
    assert not design.balanced
    figures, _ = verdict(design.matches.matched, design.balance, cfg, 11)
    assert not figures


def test_outcome_windows_must_have_run_their_course_and_small_cells_hide_the_shares() -> None:
    children, cohort, events = city(seed=5, effect=0.2)
    cfg = M.lab_settings()
    pop = M.population(children, cohort, cfg)
    matches = M.match_until_balanced(pop, cfg).matches
    windows = M.pair_windows(pop, matches, FOLLOW_UP, RULES)
    early = M.estimate(windows, events, date(2025, 3, 1), FOLLOW_UP, cfg, 11)
    assert early.call == "too_few"
    few = events[~events["person_id"].isin(matches.pairs["treated"])].copy()
    few = pd.concat([few, events[events["person_id"].isin(matches.pairs["treated"])].head(5)])
    result = M.estimate(windows, few, AS_OF, FOLLOW_UP, cfg, 11)
    assert result.small_cells and result.call == "fewer"


def test_the_interval_covers_the_planted_effect_about_as_often_as_it_says() -> None:
    """Thirty small programs (about 80 children) with a planted +20 points: the 95% interval,
    which allows for reused comparison children, covers +20 in at least 26."""
    covered = 0
    for seed in range(30):
        children, cohort, events = city(seed=100 + seed, effect=0.2, n=500)
        _, _, result = run(children, cohort, events)
        covered += result.ci is not None and result.ci[0] <= 0.2 <= result.ci[1]
    assert covered >= 26, covered


def test_left_out_children_are_grouped_so_that_no_small_count_can_be_worked_out() -> None:
    from pipelines.datalab.report import eligible_shown, left_out_groups

    # the example: 250 read, 9 not found: never "fewer than 11" beside 250 and 241
    counts = {"unlinked": 9, "ambiguous": 0, "duplicates": 0, "not_eligible": 30,
              "unmatched": 4, "matched": 207}
    groups = left_out_groups(counts, 11)
    assert [g["children"] for g in groups] == [43]  # 9 + 30 + 4 together, one group
    assert not eligible_shown(groups)
    counts = {"unlinked": 15, "ambiguous": 2, "duplicates": 0, "not_eligible": 12,
              "unmatched": 20, "matched": 100}
    groups = left_out_groups(counts, 11)
    assert [g["children"] for g in groups] == [15, 14, 20] and eligible_shown(groups)
    for g in groups:
        assert g["children"] >= 11
    # nobody left out but a few: the one group is read minus matched, which the reader has
    assert [g["children"] for g in left_out_groups({"unlinked": 3, "matched": 77}, 11)] == [3]


def test_a_report_with_figures_prints_on_two_pages_with_its_sentences(tmp_path) -> None:
    """The page a program manager reads: Debian's Chromium prints it to at most two A4 pages
    (who it speaks for, what differed, balance, and what it cannot say)."""
    from datetime import datetime

    from playwright.sync_api import sync_playwright

    from pipelines.datalab.report import Report, write_report
    from pipelines.datalab.requests import verdict
    from tests.test_ui_browser import ARGS, CHROMIUM

    children, cohort, events = city(seed=1, effect=0.2)
    cfg = M.lab_settings()
    pop = M.population(children, cohort, cfg)
    design = M.match_until_balanced(pop, cfg)
    matches, bal = design.matches, design.balance
    results = []
    # as many outcomes as the seed has, one of them suppressed
    for outcome, evts in zip(M.outcome_definitions(), (events, events.iloc[::2],
                                                       events.iloc[::3], events.iloc[:3]),
                             strict=True):
        # each outcome's own window (a band's window of a rule where the seed says so)
        rules = RULES.assign(rule_code=outcome.get("window_rule") or "R")
        windows = M.pair_windows(pop, matches, outcome, rules)
        results.append(M.estimate(windows, evts, AS_OF, outcome, cfg, 11))
    assert [r.small_cells for r in results].count(True) == 1
    figures, headline = verdict(matches.matched, bal, cfg, 11)
    counts = {"rows_sent": len(cohort), "rows_rejected": 0, "linked": len(cohort),
              "unlinked": 0, "ambiguous": 0, "eligible": len(pop.treated),
              "matched": matches.matched, "unmatched": matches.unmatched,
              "comparison": matches.comparison, "comparison_pool": len(pop.pool)}
    rep = Report("DL-HHN-20261124-test", "HHN", "Lead-Safe Home Nursing", "cohort_20261124.csv",
                 datetime(2026, 11, 24, 9), AS_OF, counts, bal, True, results, figures,
                 headline, 11, cfg["max_abs_std_diff"],
                 effective_comparison=matches.effective_comparison,
                 by_level=matches.by_level(), levels=matches.levels, design=design.description)
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
    assert "shares are not shown: one of them has fewer than 11 children" in text
    assert "could reliably detect a difference of about" in text
    assert "observational comparison" in text and "first 4 digits of the ZIP code" in text
    assert "Who these figures speak for" in text and "eligible children were matched" in text
    assert "a difference of" in text and "against" in text
    assert "Were the groups alike?" in text and "age in months" in text
    assert pdf.count(b"/Type /Page") - pdf.count(b"/Type /Pages") <= 2  # two printed pages
