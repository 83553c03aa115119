"""One Great Expectations suite per feed, built in code from the feed's declared fields.

The suites check the contract where GX has a native expectation: ids present, codes in their
vocabulary, dates in the feed's format and real (strftime), not in the future, results that parse.
Every expectation is row-level with `mostly=1.0`: a failing row is rejected on its own with the
expectation's reason (kept in `meta`), and the rest of the delivery is accepted.
"""

from __future__ import annotations

import json
import logging
import os
from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import Any

import pandas as pd

os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")  # nothing may call out of this machine

import great_expectations as gx
import great_expectations.expectations as gxe

from pipelines.feeds import DATE_FORMATS, FEEDS, Feed, Field

for _name in ("great_expectations", "great_expectations.core"):
    logging.getLogger(_name).setLevel(logging.ERROR)

SUITES_DIR = Path(__file__).resolve().parent
RESULT_PATTERN = r"^\s*(?:<\s*\d+(?:\.\d+)?|\d+(?:\.\d+)?|[Nn]one [Dd]etected|[Nn]ot [Dd]etected|ND)\s*$"
# every failing row is rejected by itself; the delivery is kept (issue: nothing is lost)
ROW_LEVEL = "row-level: each failing row is rejected with this reason; the rest is accepted"


def _meta(field: Field, reason: str) -> dict[str, Any]:
    return {"field": field.column, "reason": f"{field.column} {reason}", "mostly": ROW_LEVEL}


def ordinal_column(field: Field) -> str:
    return f"{field.column}__ordinal"


def expectations_for(feed: Feed, today: date) -> list[gxe.Expectation]:
    out: list[gxe.Expectation] = []
    for f in feed.fields:
        c = f.column
        if f.required:
            out.append(gxe.ExpectColumnValuesToNotBeNull(
                column=c, mostly=1.0,
                meta=_meta(f, "is missing; every row needs its id" if f.kind == "id"
                           else "is blank; a value is required")))
        if f.kind == "code" and f.codes:
            out.append(gxe.ExpectColumnValuesToBeInSet(
                column=c, value_set=sorted(f.codes), mostly=1.0,
                meta=_meta(f, f"is not one of the allowed codes ({', '.join(sorted(f.codes))})")))
        if f.kind == "date" and f.fmt in DATE_FORMATS:
            fmt, label = DATE_FORMATS[f.fmt]
            out.append(gxe.ExpectColumnValuesToMatchStrftimeFormat(
                column=c, strftime_format=fmt, mostly=1.0,
                meta=_meta(f, f"is not a real date in {label} form")))
        if f.kind == "date" and f.fmt == "provider":
            out.append(gxe.ExpectColumnValuesToMatchRegexList(
                column=c, regex_list=[r"^\d{4}-\d{2}-\d{2}$", r"^\d{2}/\d{2}/\d{4}$"],
                match_on="any", mostly=1.0,
                meta=_meta(f, "is not a date in YYYY-MM-DD or MM/DD/YYYY form")))
        if f.kind == "date" and f.past_only:
            out.append(gxe.ExpectColumnValuesToBeBetween(
                column=ordinal_column(f), max_value=today.toordinal(), mostly=1.0,
                meta=_meta(f, "is in the future")))
        if f.kind == "result":
            out.append(gxe.ExpectColumnValuesToMatchRegex(
                column=c, regex=RESULT_PATTERN, mostly=1.0,
                meta=_meta(f, "is not a number, a censored value such as <1.0, or "
                              "'None Detected'")))
        if f.kind == "timestamp":
            out.append(gxe.ExpectColumnValuesToMatchRegex(
                column=c, regex=r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?(Z|[+-]\d{2}:?\d{2})?$",
                mostly=1.0, meta=_meta(f, "is not an ISO date and time such as "
                                          "2026-03-02T14:05:00")))
        if f.unique:
            out.append(gxe.ExpectColumnValuesToBeUnique(
                column=c, mostly=1.0,
                meta=_meta(f, "appears on more than one row of this file; each row needs its "
                              "own, so every copy is rejected")))
        if f.kind == "bool":
            out.append(gxe.ExpectColumnValuesToBeInSet(
                column=c, value_set=["true", "false", "TRUE", "FALSE", "True", "False"],
                mostly=1.0, meta=_meta(f, "is not true, false or blank")))
    return out


def build_suite(feed: Feed, today: date) -> gx.ExpectationSuite:
    _context()  # GX binds suites to an active (ephemeral) context
    suite = gx.ExpectationSuite(name=f"{feed.name}_delivery")
    for e in expectations_for(feed, today):
        suite.add_expectation(e)
    return suite


@lru_cache(maxsize=1)
def _context() -> Any:
    ctx = gx.get_context(mode="ephemeral")
    ctx.variables.progress_bars = {"globally": False, "metric_calculations": False}
    return ctx


def _derived(feed: Feed, text: pd.DataFrame) -> pd.DataFrame:
    """Blank -> null, and each past-only date's ordinal for the not-in-the-future check."""
    frame = text.apply(lambda s: s.str.strip()).replace("", None)
    for f in feed.fields:
        if f.kind == "date" and f.past_only:
            if f.fmt == "provider":
                a = pd.to_datetime(frame[f.column], format="%Y-%m-%d", errors="coerce")
                b = pd.to_datetime(frame[f.column], format="%m/%d/%Y", errors="coerce")
                parsed = a.fillna(b)
            else:
                parsed = pd.to_datetime(frame[f.column], format=DATE_FORMATS[f.fmt][0],
                                        errors="coerce")
            frame[ordinal_column(f)] = [d.toordinal() if pd.notna(d) else None
                                        for d in parsed.dt.date]
    return frame


def validate(feed: Feed, text: pd.DataFrame, today: date) -> dict[int, list[tuple[str, str]]]:
    """Run the feed's suite over a delivery's text; {row index: [(field, reason), ...]}."""
    if text.empty:
        return {}
    ctx = _context()
    frame = _derived(feed, text)
    batch = (ctx.data_sources.add_or_update_pandas("deliveries")
             .add_dataframe_asset(f"{feed.name}_{id(frame)}")
             .add_batch_definition_whole_dataframe("whole")
             .get_batch(batch_parameters={"dataframe": frame}))
    result = batch.validate(build_suite(feed, today), result_format={
        "result_format": "COMPLETE", "unexpected_index_column_names": None})
    failures: dict[int, list[tuple[str, str]]] = {}
    for r in result.results:
        if r.success:
            continue
        meta = r.expectation_config.meta or {}
        for i in r.result.get("unexpected_index_list") or []:
            failures.setdefault(int(i), []).append((meta["field"], meta["reason"]))
    return failures


def export_suites(folder: Path = SUITES_DIR, today: date = date(2026, 1, 1)) -> list[Path]:
    """Write one JSON per suite (`expectations/<suite>.json`) for review and for other tools.

    The not-in-the-future bound depends on the delivery date; the exported copy shows it for
    `today`, and the suite run on each delivery uses that delivery's date.
    """
    paths = []
    for feed in FEEDS:
        suite = build_suite(feed, today)
        path = folder / f"{suite.name}.json"
        spec = suite.to_json_dict()
        spec.pop("id", None)  # random per build
        for e in spec.get("expectations", []):
            e.pop("id", None)
        path.write_text(json.dumps(spec, indent=2, sort_keys=True) + "\n")
        paths.append(path)
    return paths


if __name__ == "__main__":
    for p in export_suites():
        print(p)
