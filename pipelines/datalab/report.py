"""The data lab's report: the same facts as JSON for systems and as one HTML page.

The page is written for a program manager: what was asked, how many could be compared, one plain
sentence per outcome (including when the program did no better, or worse), a chart of each
difference with its interval, and the balance of the matched groups. It names no child.
"""

from __future__ import annotations

import base64
import html
import json
import math
import textwrap
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from pipelines.datalab.matching import OutcomeResult
from pipelines.publish import figure_png

OWN_COUNTS = {"rows_sent", "rows_rejected"}  # the provider's own numbers, on its receipt too


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

    def count_text(self, name: str) -> str:
        """Counts of children under the small-cell limit are shown as "fewer than 11" (but
        not the provider's own counts of rows it sent)."""
        n = self.counts.get(name, 0)
        small = 0 < n < self.min_cell and name not in OWN_COUNTS
        return f"fewer than {self.min_cell}" if small else f"{n:,}"


def pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def points(x: float) -> str:
    return f"{abs(100 * x):.0f}"


def sentence(r: OutcomeResult, min_cell: int, min_matched: int) -> str:
    """One plain sentence for one outcome."""
    if r.call == "too_few":
        return (f"Whether children {r.label}: not reported, because only {r.pairs} matched "
                f"pairs have had the full window by now (at least {min_matched} are needed).")
    if r.call == "suppressed":
        return (f"Whether children {r.label}: not reported, because a group would show fewer "
                f"than {min_cell} children.")
    t, c = pct(r.treated_share), pct(r.comparison_share)
    low, high = r.ci
    if r.call == "more":
        return (f"More children in the program {r.label}: {t} against {c} of similar children, "
                f"a difference of {points(low)} to {points(high)} points.")
    if r.call == "fewer":
        return (f"Fewer children in the program {r.label}: {t} against {c} of similar children, "
                f"a difference of {points(high)} to {points(low)} points fewer.")
    return (f"No detectable difference in how many children {r.label}: {t} in the program "
            f"against {c} of similar children; the difference could be anywhere from "
            f"{100 * low:+.0f} to {100 * high:+.0f} points.")


def payload(rep: Report, min_matched: int) -> dict[str, Any]:
    counts = {k: (v if k in OWN_COUNTS or not (0 < v < rep.min_cell) else f"<{rep.min_cell}")
              for k, v in rep.counts.items()}
    outcomes = []
    for r in rep.outcomes:
        item: dict[str, Any] = {"outcome_id": r.outcome_id, "label": r.label, "call": r.call,
                                "sentence": sentence(r, rep.min_cell, min_matched)}
        if rep.figures_given and r.call in ("more", "fewer", "no_difference"):
            item |= {"pairs": r.pairs, "program_with": r.treated_with,
                     "comparison_with": r.comparison_with,
                     "program_share": round(r.treated_share, 4),
                     "comparison_share": round(r.comparison_share, 4),
                     "difference": round(r.diff, 4),
                     "ci_low": round(r.ci[0], 4), "ci_high": round(r.ci[1], 4)}
        outcomes.append(item)
    return {
        "report_id": rep.report_id, "provider": rep.provider, "program": rep.program,
        "request_file": rep.file_name, "received_at": rep.received_at.isoformat(),
        "as_of": rep.as_of.isoformat(), "figures_given": rep.figures_given,
        "summary": rep.headline, "counts": counts,
        "balance_ok": rep.balance_ok,
        "balance": [{"covariate": b["covariate"], "before": _round(b["before"]),
                     "after": _round(b["after"])} for b in rep.balance],
        "outcomes": outcomes if rep.figures_given else [
            {"outcome_id": r.outcome_id, "label": r.label} for r in rep.outcomes],
        "method": METHOD,
    }


def _round(x: float) -> float | None:
    return None if x is None or (isinstance(x, float) and not math.isfinite(x)) else round(x, 3)


METHOD = (
    "Each child you sent was looked up among the city's linked records with the city's "
    "record-linkage model; nobody was added or changed. Children with a confirmed elevated "
    "blood lead level in the year before their program start were each matched to one child "
    "with a confirmed level who was not in your list: the same band, sex, area and six-month "
    "period of confirmation, and the nearest in age, earlier tests and confirmation date. A "
    "comparison child's window starts as many days after their confirmation as your child's "
    "program did. Each difference has a 95% interval (Newcombe). Groups under 11 are not shown."
)


def chart(rep: Report) -> bytes:
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


def page(rep: Report, data: dict[str, Any]) -> str:
    e = html.escape
    sentences = "".join(f"<li>{e(o['sentence'])}</li>" for o in data["outcomes"]
                        if "sentence" in o)
    rows = ""
    if rep.figures_given:
        for o in data["outcomes"]:
            if "program_share" in o:
                rows += (f"<tr><td>{e(o['label'])}</td><td>{o['pairs']}</td>"
                         f"<td>{pct(o['program_share'])}</td><td>{pct(o['comparison_share'])}</td>"
                         f"<td>{100 * o['difference']:+.0f}</td>"
                         f"<td>{100 * o['ci_low']:+.0f} to {100 * o['ci_high']:+.0f}</td></tr>")
            else:
                rows += (f"<tr><td>{e(o['label'])}</td><td colspan=5>not reported (see "
                         "above)</td></tr>")
    table = (f"""<table><tr><th>outcome</th><th>pairs</th><th>program</th><th>similar children</th>
<th>difference (points)</th><th>95% interval</th></tr>{rows}</table>""" if rows else "")
    lines = [
        f"<tr><td>{e(b['covariate'])}</td><td>{_fmt(b['before'])}</td>"
        f"<td class={'bad' if b['after'] is not None and abs(b['after']) > rep.max_smd else 'ok'}>"
        f"{_fmt(b['after'])}</td></tr>" for b in data["balance"]]
    half = (len(lines) + 1) // 2
    head = "<tr><th>covariate</th><th>before</th><th>after</th></tr>"
    bal = "".join(f"<table>{head}{''.join(part)}</table>"
                  for part in (lines[:half], lines[half:]) if part)
    png = base64.b64encode(chart(rep)).decode()
    c = rep.count_text
    return f"""<!doctype html><html lang=en><head><meta charset=utf-8>
<title>Data lab report {e(rep.report_id)}: {e(rep.program)}</title>
<style>body{{font-family:system-ui,sans-serif;margin:1.5em;max-width:56em;font-size:12.5px}}
h1{{font-size:20px;margin:.2em 0}}h2{{font-size:15px;margin:.6em 0 .2em}}p,ul{{margin:.4em 0}}
table{{border-collapse:collapse;margin:.4em 0}}td,th{{border:1px solid #ccc;padding:1px 5px;
text-align:left}}.bad{{color:#b22222;font-weight:bold}}.ok{{color:#2e6b3a}}
img{{max-width:100%}}.balance{{display:flex;gap:1.5em;align-items:flex-start}}
.small{{font-size:11px;color:#555}}@page{{size:A4;margin:12mm}}
@media print{{body{{margin:0}}}}</style></head><body>
<h1>What did {e(rep.program)} change?</h1>
<p class=small>Report {e(rep.report_id)} for {e(rep.provider)}, request {e(rep.file_name)}
received {rep.received_at:%Y-%m-%d}; outcomes as of {rep.as_of}.</p>
<p><b>{e(rep.headline)}</b></p>
<p>You sent {c('rows_sent')} children ({c('rows_rejected')} rows could not be read; see your
receipt). We found {c('linked')} in the city's records ({c('unlinked')} not found,
{c('ambiguous')} matching more than one child). {c('eligible')} had a confirmed elevated blood
lead level in the year before they started. {c('matched')} of them were matched to
{c('comparison')} similar children, out of {c('comparison_pool')} who could have been chosen.</p>
<ul>{sentences}</ul>
{table}
<img alt="difference for each outcome with its 95% interval" src="data:image/png;base64,{png}">
<h2>Were the groups alike?</h2>
<p class=small>Standardised differences (program minus comparison), before and after matching;
after matching each should be within ±{rep.max_smd:g}.</p>
<div class=balance>{bal}</div>
<p class=small>{e(METHOD)} What you sent is erased as soon as this report is written; your
receipt says when.</p>
</body></html>"""


def _fmt(x: float | None) -> str:
    return "–" if x is None else f"{x:+.2f}"


def write_report(folder: Path, rep: Report, min_matched: int) -> Path:
    """outbox/<provider>/datalab/<report_id>.json and .html; returns the JSON's path."""
    folder.mkdir(parents=True, exist_ok=True)
    data = payload(rep, min_matched)
    (folder / f"{rep.report_id}.html").write_text(page(rep, data), encoding="utf-8")
    target = folder / f"{rep.report_id}.json"
    target.write_text(json.dumps(data, indent=2), encoding="utf-8")
    return target
