"""The data lab's report: the same facts as JSON for systems and as one HTML page.

The page is written for a program manager: what was asked, how many could be compared, one plain
sentence per outcome (including when the program did no better, or worse), a chart of each
difference with its interval, and the balance of the matched groups. It names no child.
"""

from __future__ import annotations

import base64
import json
import math
import textwrap
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

from pipelines.datalab.matching import OutcomeResult
from pipelines.pages import render


@dataclass
class Report:
    report_id: str
    provider: str
    program: str
    file_name: str
    received_at: datetime
    as_of: date
    counts: dict[str, int]
    balance: list[dict]
    balance_ok: bool
    outcomes: list[OutcomeResult]
    figures_given: bool
    headline: str  # why there are, or are not, figures
    min_cell: int
    max_smd: float
    effective_comparison: float = 0.0
    by_level: dict[str, int] = field(default_factory=dict)
    levels: list[tuple[str, tuple[str, ...], str]] = field(default_factory=list)
    area_digits: int = 4
    confidence: float = 0.95
    power: float = 0.8
    design: str = ""  # the matching specification balance chose

    def small(self, n: int) -> bool:
        return 0 < n < self.min_cell

    def shown(self, n: int) -> str:
        return f"fewer than {self.min_cell}" if self.small(n) else f"{n:,}"


# Why a child the provider sent is not among the matched, in the order the lab finds out.
LEFT_OUT = (("unlinked", "not found in the city's records"),
            ("ambiguous", "matching more than one child in the city's records"),
            ("duplicates", "sent more than once (counted once)"),
            ("not_eligible", ("no confirmed elevated blood lead level in the year before they "
                             "started")),
            ("unmatched", "no similar child outside the program to compare them with"))


def left_out_groups(counts: dict[str, int], min_cell: int) -> list[dict[str, Any]]:
    """Who was left out and why, so that no count from 1 to min_cell - 1 can be read off,
    directly or by subtracting shown totals (rows read and matched are always shown).

    Reasons are taken in the order above; a reason with 1 to min_cell - 1 children is merged
    with the next until the group reaches min_cell; a small remainder joins the group before it.
    A single small group is shown as it is: it is rows read minus matched, which the reader has.
    When the matched count itself is small, the last group is "the rest" (no count).
    """
    groups: list[dict[str, Any]] = []
    current: dict[str, Any] = {"reasons": [], "keys": [], "children": 0}
    for key, reason in LEFT_OUT:
        n = int(counts.get(key, 0) or 0)
        if n == 0:
            continue
        current["reasons"].append(reason)
        current["keys"].append(key)
        current["children"] += n
        if current["children"] >= min_cell:
            groups.append(current)
            current = {"reasons": [], "keys": [], "children": 0}
    if current["children"]:
        if groups:
            last = groups[-1]
            last["reasons"] += current["reasons"]
            last["keys"] += current["keys"]
            last["children"] += current["children"]
        else:
            groups.append(current)
    if groups and 0 < counts.get("matched", 0) < min_cell:
        groups[-1]["children"] = None
    return groups


def eligible_shown(groups: list[dict[str, Any]]) -> bool:
    """Whether the eligible count can be printed: only when "no similar child" is a group of
    its own (or nobody was unmatched), so eligible minus matched reveals no small count."""
    with_unmatched = [g for g in groups if "unmatched" in g["keys"]]
    return not with_unmatched or (with_unmatched[0]["keys"] == ["unmatched"]
                                  and with_unmatched[0]["children"] is not None)


def pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def points(x: float) -> str:
    return f"{abs(100 * x):.0f}"


def sentence(r: OutcomeResult, min_cell: int, min_outcome: int) -> str:
    """One plain sentence for one outcome; the smallest difference the comparison could detect
    comes first, before any figure."""
    if r.call == "too_few":
        return (f"Whether children {r.label}: not reported, because only {r.pairs} matched "
                f"children have had the full window by now (at least {min_outcome} are "
                "needed).")
    if not r.small_cells and r.treated_with == 0 and r.comparison_with == 0:
        return (f"No child in either group {r.label} ({r.pairs} matched children whose window "
                "has ended): there is no difference to measure.")
    power = (f"With {r.pairs} matched children, this comparison could reliably detect a "
             f"difference of about {points(r.detectable)} points or more. ")
    if r.small_cells:
        shares = (f" (the two groups' shares are not shown: one of them has fewer than "
                  f"{min_cell} children with, or without, this outcome)")
        versus = ""
    else:
        shares = ""
        versus = (f": {pct(r.treated_share)} against {pct(r.comparison_share)} of similar "
                  "children")
    low, high = r.ci
    if r.call == "more":
        return (f"{power}More children in the program {r.label}{versus}, a difference of "
                f"{points(low)} to {points(high)} points{shares}.")
    if r.call == "fewer":
        return (f"{power}Fewer children in the program {r.label}{versus}, a difference of "
                f"{points(high)} to {points(low)} points fewer{shares}.")
    return (f"{power}No detectable difference in how many children {r.label}"
            f"{versus}; the difference could be anywhere from {100 * low:+.0f} to "
            f"{100 * high:+.0f} points{shares}.")


def _level_shares(rep: Report) -> list[dict[str, Any]]:
    """How exactly the matched children were matched: each stratum level's share of them,
    to the nearest 10% (a share, not a count, so no small count shows)."""
    total = sum(rep.by_level.values())
    out = []
    for level, _, description in rep.levels:
        n = rep.by_level.get(level, 0)
        if n and total:
            out.append({"level": level, "exactly_on": description,
                        "share_of_matched": round(n / total, 1)})
    return out


def payload(rep: Report, min_outcome: int) -> dict[str, Any]:
    groups = left_out_groups(rep.counts, rep.min_cell)
    matched = rep.counts.get("matched", 0)
    comparison = rep.counts.get("comparison", 0)
    counts: dict[str, Any] = {
        "rows_sent": rep.counts.get("rows_sent", 0),
        "rows_rejected": rep.counts.get("rows_rejected", 0),
        "matched": f"<{rep.min_cell}" if rep.small(matched) else matched,
        "eligible": (None if not eligible_shown(groups) else
                     f"<{rep.min_cell}" if rep.small(rep.counts.get("eligible", 0))
                     else rep.counts.get("eligible", 0)),
        "comparison": f"<{rep.min_cell}" if rep.small(comparison) else comparison,
        "comparison_pool": (f"<{rep.min_cell}" if rep.small(rep.counts.get("comparison_pool", 0))
                            else rep.counts.get("comparison_pool", 0)),
        "effective_comparison_size": round(rep.effective_comparison, 1),
        "left_out": [{"reasons": g["reasons"], "children": g["children"]} for g in groups],
    }
    outcomes = []
    for r in rep.outcomes:
        item: dict[str, Any] = {"outcome_id": r.outcome_id, "label": r.label, "call": r.call,
                                "sentence": sentence(r, rep.min_cell, min_outcome)}
        if rep.figures_given and r.call in ("more", "fewer", "no_difference"):
            item |= {"pairs": r.pairs, "shares_suppressed": r.small_cells}
            if not r.small_cells:
                item |= {"program_with": r.treated_with,
                         "comparison_children": r.comparison_children,
                         "comparison_with": r.comparison_with,
                         "program_share": round(r.treated_share, 4),
                         "comparison_share": round(r.comparison_share, 4),
                         "difference": round(r.diff, 4),
                         "ci_low": round(r.ci[0], 4), "ci_high": round(r.ci[1], 4),
                         "detectable_difference": round(r.detectable, 4)}
            else:  # whole points only, so no count can be worked back from them
                item |= {"difference": round(r.diff, 2), "ci_low": round(r.ci[0], 2),
                         "ci_high": round(r.ci[1], 2),
                         "detectable_difference": round(r.detectable, 2)}
        outcomes.append(item)
    return {
        "report_id": rep.report_id, "provider": rep.provider, "program": rep.program,
        "request_file": rep.file_name, "received_at": rep.received_at.isoformat(),
        "as_of": rep.as_of.isoformat(), "figures_given": rep.figures_given,
        "summary": rep.headline, "counts": counts,
        "matched_exactly_on": _level_shares(rep),
        "matching_specification": rep.design,
        "balance_ok": rep.balance_ok,
        "balance": [{"covariate": b["covariate"], "before": _round(b["before"]),
                     "after": _round(b["after"])} for b in rep.balance],
        "outcomes": outcomes if rep.figures_given else [
            {"outcome_id": r.outcome_id, "label": r.label} for r in rep.outcomes],
        "method": method(rep),
        "limits": LIMITS,
    }


def _round(x: float) -> float | None:
    return None if x is None or (isinstance(x, float) and not math.isfinite(x)) else round(x, 3)


def method(rep: Report) -> str:
    return (
        "Each child you sent was looked up among the city's linked records with the city's "
        "record-linkage model; nobody was added or changed. Children with a confirmed elevated "
        "blood lead level in the year before their program start were each matched to up to "
        "three of the most similar children with a confirmed level who were not in your list "
        "(a comparison child can stand in for more than one of yours, and is weighted so): "
        "alike in their chance of being in the program given everything below, the nearest in "
        "age, earlier tests and confirmation date, and exactly the same band, sex, area "
        f"(first {rep.area_digits} digits of the ZIP code) and confirmation period where such a "
        "child exists, coarsening the period and then the area where none does. A comparison "
        "child's window starts as many days after their confirmation as your child's program "
        "did. Each difference is the average, over your matched children, of their outcome "
        "minus their comparison children's; its "
        f"{100 * rep.confidence:.0f}% interval allows for the matching and for comparison "
        "children used more than once (Abadie and Imbens). The smallest difference each "
        f"comparison could detect is given at {100 * rep.power:.0f}% power. Groups under "
        f"{rep.min_cell} are not shown.")


LIMITS = (
    "This is an observational comparison, not a trial. It adjusts only for what the city's "
    "records hold (band, age, sex, area, when the level was confirmed, earlier tests); it "
    "cannot adjust for what they do not, such as why a family joined the program. The "
    "comparison children may have had other services: the figures compare your program with "
    "what similar children otherwise got.")


def chart(rep: Report) -> bytes:
    from pipelines.charts import figure_png, plt  # matplotlib only for a week with reports

    shown = [r for r in rep.outcomes if r.ci is not None]
    fig, ax = plt.subplots(figsize=(7, 0.7 + 0.45 * max(1, len(shown))), dpi=110)
    if shown:
        ys = list(range(len(shown)))[::-1]
        for y, r in zip(ys, shown, strict=True):
            colour = {"more": "#2e8b57", "fewer": "#b22222"}.get(r.call, "#555")
            ax.plot([100 * r.ci[0], 100 * r.ci[1]], [y, y], color=colour, linewidth=3)
            ax.scatter([100 * r.diff], [y], color=colour, s=40, zorder=3)
        ax.set_yticks(ys, [textwrap.fill(r.label, 34) for r in shown], fontsize=7)
        ax.set_ylim(-0.6, len(shown) - 0.4)
        ax.axvline(0, color="#888", linewidth=1, linestyle="--")
        ax.tick_params(axis="x", labelsize=8)
        ax.set_xlabel("points: program minus similar children, with the 95% interval",
                      fontsize=8)
    else:
        ax.text(0.5, 0.5, "No figures in this report", transform=ax.transAxes, ha="center",
                va="center", color="#666")
        ax.set_yticks([])
    return figure_png(fig)


def who(rep: Report, data: dict[str, Any]) -> dict[str, Any]:
    """Who the figures speak for, and who was left out and why: no count from 1 to 10, and no
    pair of shown totals whose difference is one."""
    c = data["counts"]
    matched = rep.counts.get("matched", 0)
    return {
        "sent": f"{c['rows_sent']:,}",
        "rejected": f"{c['rows_rejected']:,}" if c["rows_rejected"] else "",
        "read": f"{c['rows_sent'] - c['rows_rejected']:,}",
        "matched": rep.shown(matched),
        "eligible": (rep.shown(rep.counts.get("eligible", 0)) if c["eligible"] is not None
                     else ""),
        "left_out": [{"children": "the rest" if g["children"] is None
                      else f"{g['children']:,}", "reasons": "; or ".join(g["reasons"])}
                     for g in c["left_out"]],
        "compared": bool(matched),
        "comparison": rep.shown(rep.counts.get("comparison", 0)),
        "pool": rep.shown(rep.counts.get("comparison_pool", 0)),
        "effective": f"{rep.effective_comparison:.0f}",
        "levels": [f"{pct(x['share_of_matched'])} matched exactly on {x['exactly_on']}"
                   for x in data["matched_exactly_on"]],
    }


def page(rep: Report, data: dict[str, Any]) -> str:
    rows = []
    if rep.figures_given:
        for o in data["outcomes"]:
            if "difference" in o:
                shares = ((pct(o["program_share"]), pct(o["comparison_share"]))
                          if "program_share" in o else ("not shown", "not shown"))
                rows.append({"reported": True, "cells": [
                    o["label"], o["pairs"], shares[0], shares[1],
                    f"{100 * o['difference']:+.0f}",
                    f"{100 * o['ci_low']:+.0f} to {100 * o['ci_high']:+.0f}",
                    f"{100 * o['detectable_difference']:.0f}"]})
            else:
                rows.append({"reported": False, "label": o["label"]})
    lines = [{"covariate": b["covariate"], "before": _fmt(b["before"]),
              "after": _fmt(b["after"]),
              "state": "bad" if b["after"] is not None and abs(b["after"]) > rep.max_smd
              else "ok"} for b in data["balance"]]
    half = (len(lines) + 1) // 2
    return render(
        "datalab_report.html.j2", r=rep, received=f"{rep.received_at:%Y-%m-%d}",
        who=who(rep, data), sentences=[o["sentence"] for o in data["outcomes"]
                                       if "sentence" in o],
        rows=rows, confidence=f"{100 * rep.confidence:.0f}", power=f"{100 * rep.power:.0f}",
        png=base64.b64encode(chart(rep)).decode(), max_smd=f"{rep.max_smd:g}",
        balance=[part for part in (lines[:half], lines[half:]) if part],
        limits=LIMITS, method=method(rep))


def _fmt(x: float | None) -> str:
    return "–" if x is None else f"{x:+.2f}"


def write_report(folder: Path, rep: Report, min_outcome: int) -> Path:
    """outbox/<provider>/datalab/<report_id>.json and .html; returns the JSON's path."""
    folder.mkdir(parents=True, exist_ok=True)
    data = payload(rep, min_outcome)
    (folder / f"{rep.report_id}.html").write_text(page(rep, data), encoding="utf-8")
    target = folder / f"{rep.report_id}.json"
    target.write_text(json.dumps(data, indent=2), encoding="utf-8")
    return target
