"""The published charts, drawn with matplotlib: each function takes the published frame it
shows and returns PNG bytes.

`publish_all` has them drawn in the worker process (pipelines/worker.py) while it writes the
snapshot, the OCDS package and the CSVs, so the drawing (about a second for a city's eight
charts) and matplotlib's import overlap the rest of the publication on a second core.
"""

from __future__ import annotations

import io

import matplotlib
import pandas as pd

matplotlib.use("Agg")
import matplotlib.dates as mdates
import matplotlib.pyplot as plt


def warm() -> None:
    """matplotlib's modules and fonts loaded ahead of the first chart (the worker does this
    while it waits, so the publication does not)."""
    figure_png(plt.subplots(figsize=(1, 1))[0])


def draw(charts: dict[str, object]) -> dict[str, object]:
    """Every chart of a publication at once: {"personal_best": {agency: frame}, "tested":
    frame, "followup": frame} gives the same keys with PNG bytes."""
    return {"personal_best": {agency: personal_best_chart(agency, frame)
                              for agency, frame in charts["personal_best"].items()},
            "tested": tested_chart(charts["tested"]),
            "followup": followup_chart(charts["followup"])}


def figure_png(fig) -> bytes:
    """A finished chart as PNG bytes, spines trimmed, and the figure closed."""
    fig.axes[0].spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def _midpoint(frame: pd.DataFrame) -> pd.Series:
    start = pd.to_datetime(frame["period_start"])
    end = pd.to_datetime(frame["period_end"]) + pd.offsets.MonthEnd(0)
    return start + (end - start) / 2


def share_trend(ax, frame: pd.DataFrame, label: str, colour: str) -> None:
    """One series of pooled shares as a trend line: a filled marker per month, a wider bar
    for a pooled quarter or year, a hollow marker for a partial period."""
    f = frame.sort_values("period_start")
    f = f[f["share_in_time"].notna()]
    if f.empty:
        return
    x, y = _midpoint(f), f["share_in_time"].astype(float) * 100
    ax.plot(x, y, color=colour, linewidth=1.4, label=label)
    for grain, size in (("month", 18), ("quarter", 45), ("year", 80)):
        done = (f["grain"] == grain) & ~f["partial"].astype(bool)
        part = (f["grain"] == grain) & f["partial"].astype(bool)
        ax.scatter(x[done], y[done], s=size, color=colour, zorder=3)
        ax.scatter(x[part], y[part], s=size, facecolors="white", edgecolors=colour, zorder=3)


def personal_best_chart(agency: str, frame: pd.DataFrame) -> bytes:
    """A run chart of the organisation's own share of steps taken in time, by month where it
    can be published and pooled into quarters or years where not: its median line, its best
    period marked, the latest highlighted. No other organisation."""
    f = frame.sort_values("period_start")
    fig, ax = plt.subplots(figsize=(9, 3.6), dpi=110)
    shown_ = f[f["share_in_time"].notna()]
    if len(shown_):
        share_trend(ax, f, "share in time", "#3b6ea5")
        x = _midpoint(shown_)
        median = float(shown_["share_in_time"].median()) * 100
        ax.axhline(median, color="#888", linestyle="--", linewidth=1,
                   label=f"your median ({median:.0f}%)")
        best = shown_["share_in_time"].astype(float).idxmax()
        ax.scatter([x[best]], [shown_.loc[best, "share_in_time"] * 100], s=110, color="#2e8b57",
                   zorder=4, label=f"your best period ({shown_.loc[best, 'period']})")
        last = shown_.index[-1]
        ax.scatter([x[last]], [shown_.loc[last, "share_in_time"] * 100], s=110,
                   facecolors="none", edgecolors="#d2691e", linewidths=2, zorder=5,
                   label=f"latest ({shown_.loc[last, 'period']})")
        ax.set_xlim(x.min() - pd.Timedelta(days=30), x.max() + pd.Timedelta(days=30))
    else:
        ax.text(0.5, 0.5, "Fewer than 11 steps have fallen due so far, even over a whole year",
                transform=ax.transAxes, ha="center", va="center", color="#666")
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%Y-%m"))
    ax.set_ylim(0, 105)
    ax.set_ylabel("% of steps taken in time")
    ax.set_title(f"{agency}: your own timeliness against your own past")
    ax.legend(loc="lower left", fontsize=8, frameon=False)
    return figure_png(fig)


def tested_chart(city: pd.DataFrame) -> bytes:
    """Children tested each month, city-wide."""
    fig, ax = plt.subplots(figsize=(9, 3.2), dpi=110)
    ax.bar(pd.to_datetime(city["month"]), city["children_tested"].astype("float"), width=20,
           color="#3b6ea5")
    ax.set_title("Children tested for lead each month (city)")
    return figure_png(fig)


def followup_chart(pooled: pd.DataFrame) -> bytes:
    """Each follow-up rule's share of steps taken in time, city-wide, by month or pooled."""
    fig, ax = plt.subplots(figsize=(9, 3.6), dpi=110)
    colours = ["#3b6ea5", "#d2691e", "#2e8b57", "#8b3a62", "#6b6b00", "#444"]
    for (_, series), colour in zip(pooled.groupby("rule_title", sort=True), colours * 3):
        share_trend(ax, series, str(series["rule_title"].iloc[0]), colour)
    ax.set_ylim(0, 105)
    ax.set_ylabel("% of steps taken in time")
    ax.set_title("Follow-up steps taken in time (city), by month or pooled period")
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%Y-%m"))
    if len(pooled):
        ax.legend(loc="lower left", fontsize=7, frameon=False)
    else:
        ax.text(0.5, 0.5, "No follow-up step has fallen due yet", transform=ax.transAxes,
                ha="center", va="center", color="#666")
    return figure_png(fig)
