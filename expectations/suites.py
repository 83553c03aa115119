"""One Great Expectations suite per feed, built in code from the feed's declared fields.

The suite is the one judge of the row contract: ids present, codes in their vocabulary, dates in
the feed's format and real, not before 1900 and not in the future, results, numbers, percentages
and timestamps that read, values unique where the contract says so. What GX cannot read from the
text itself it reads from columns derived with the feed's own converters (a date's ordinal,
whether a number read): ingest keeps those converted values for the rows that passed, so nothing
is parsed or judged twice.

Every expectation is row-level with `mostly=1.0`: a failing row is rejected on its own with the
expectation's reason (kept in `meta`; the first per field), and the rest of the delivery is
accepted.
"""

from __future__ import annotations

import bisect
import json
import logging
import os
import sys
from contextlib import contextmanager
from datetime import date
from functools import cache, lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")  # nothing may call out of this machine


@contextmanager
def _spark_hidden():
    """Import GX without its probe for pyspark. Whenever pyspark is installed, GX imports it,
    its Spark Connect client and `pyspark.ml` (some 130 modules, 0.5 s of every run's start on
    a 2-core machine), and the suites only ever validate pandas frames. pyspark is installed
    for the Spark engine, which imports it itself when it runs; so unless it is loaded already,
    `import pyspark` fails (None in sys.modules) while GX loads, and GX records Spark as not
    installed."""
    if "pyspark" in sys.modules:
        yield
        return
    sys.modules["pyspark"] = None  # type: ignore[assignment]
    try:
        yield
    finally:
        if sys.modules.get("pyspark", 0) is None:
            del sys.modules["pyspark"]


@lru_cache(maxsize=1)
def _gx() -> tuple[Any, Any]:
    """Great Expectations and its expectations, imported on first use: ingest imports this
    module for `derive` without paying for GX, which judges deliveries in the worker process
    (pipelines/worker.py)."""
    with _spark_hidden():
        import great_expectations
        import great_expectations.expectations
    # GX's INFO lines (an ephemeral docs site's temporary folder) mean nothing to an operator
    for name in ("great_expectations", "great_expectations.core"):
        logging.getLogger(name).setLevel(logging.ERROR)
    return great_expectations, great_expectations.expectations


from pipelines.feeds import DATE_FORMATS, FEEDS, Feed, Field
from pipelines.parsing import convert_column

if TYPE_CHECKING:
    import great_expectations as gx
    import great_expectations.expectations as gxe

SUITES_DIR = Path(__file__).resolve().parent
RESULT_PATTERN = r"^\s*(?:<\s*\d+(?:\.\d+)?|\d+(?:\.\d+)?|[Nn]one [Dd]etected|[Nn]ot [Dd]etected|ND)\s*$"
# every failing row is rejected by itself; the delivery is kept (issue: nothing is lost)
ROW_LEVEL = "row-level: each failing row is rejected with this reason; the rest is accepted"


def _meta(field: Field, reason: str) -> dict[str, Any]:
    return {"field": field.column, "reason": f"{field.column} {reason}", "mostly": ROW_LEVEL}


def ordinal_column(field: Field) -> str:
    return f"{field.column}__ordinal"


def read_column(field: Field, form: str = "") -> str:
    """Derived: True where the text converted, False where it did not, null where blank."""
    return f"{field.column}__reads{form}"


def value_column(field: Field) -> str:
    return f"{field.column}__value"


EARLIEST = date(1900, 1, 1)


def expectations_for(feed: Feed, today: date) -> list[gxe.Expectation]:
    _, gxe = _gx()
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
            # read once, by strptime in the feed's format (the field's converter)
            out.append(gxe.ExpectColumnValuesToBeInSet(
                column=read_column(f), value_set=[True], mostly=1.0,
                meta=_meta(f, f"is not a real date in {DATE_FORMATS[f.fmt][1]} form")))
        if f.kind == "date" and f.fmt == "provider":
            out.append(gxe.ExpectColumnValuesToMatchRegexList(
                column=c, regex_list=[r"^\d{4}-\d{2}-\d{2}$", r"^\d{2}/\d{2}/\d{4}$"],
                match_on="any", mostly=1.0,
                meta=_meta(f, "is not a date in YYYY-MM-DD or MM/DD/YYYY form")))
            for form in ("us", "iso"):
                out.append(gxe.ExpectColumnValuesToBeInSet(
                    column=read_column(f, f"_{form}"), value_set=[True], mostly=1.0,
                    meta=_meta(f, f"is not a real date in {DATE_FORMATS[form][1]} form")))
        if f.kind == "date" or (f.kind == "timestamp" and f.past_only):
            # one range per date: its reason says which end it missed
            low = EARLIEST.toordinal() if f.kind == "date" else None
            high = today.toordinal() if f.past_only else None
            meta = _meta(f, "is before 1900") if low else _meta(f, "is in the future")
            if high:
                meta["reason_above"] = f"{c} is in the future"
            out.append(gxe.ExpectColumnValuesToBeBetween(
                column=ordinal_column(f), min_value=low, max_value=high, mostly=1.0,
                meta=meta))
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
            out.append(gxe.ExpectColumnValuesToBeInSet(
                column=read_column(f), value_set=[True], mostly=1.0,
                meta=_meta(f, "is not an ISO date and time such as 2026-03-02T14:05:00")))
        if f.kind == "percent":
            out.append(gxe.ExpectColumnValuesToBeInSet(
                column=read_column(f), value_set=[True], mostly=1.0,
                meta=_meta(f, "is not a number")))
            out.append(gxe.ExpectColumnValuesToBeBetween(
                column=value_column(f), min_value=0, max_value=100, mostly=1.0,
                meta=_meta(f, "is not between 0 and 100")))
        if f.kind == "amount":
            out.append(gxe.ExpectColumnValuesToBeInSet(
                column=read_column(f), value_set=[True], mostly=1.0,
                meta=_meta(f, "is not an amount in dollars")))
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
    suite = _gx()[0].ExpectationSuite(name=f"{feed.name}_delivery")
    for e in expectations_for(feed, today):
        suite.add_expectation(e)
    return suite


def warm() -> None:
    """Import GX and open its context ahead of the first delivery (the worker does, as it
    starts)."""
    _context()


@lru_cache(maxsize=1)
def _context() -> Any:
    ctx = _gx()[0].get_context(mode="ephemeral")
    ctx.variables.progress_bars = {"globally": False, "metric_calculations": False}
    return ctx


def derive(feed: Feed, text: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, pd.Series]]:
    """The frame the suite checks (the text, stripped with blanks as null, and the derived
    columns) and each field's converted values (null where blank or unconvertible)."""
    frame = text.copy()
    converted: dict[str, pd.Series] = {}
    for f in feed.fields:
        c = f.column
        if f.kind in ("id", "text", "code"):
            converted[c] = frame[c]  # the text is the value
            continue
        values = convert_column(frame[c], f.converter)
        converted[c] = values
        present = frame[c].notna()
        reads = values.notna().where(present, None)
        if f.kind == "date" and f.fmt == "provider":
            us = pd.Series([v is not None and "/" in v for v in frame[c].tolist()],
                           index=frame.index)
            frame[read_column(f, "_us")] = reads.where(us, None)
            frame[read_column(f, "_iso")] = reads.where(~us, None)
        if f.kind in ("timestamp", "percent", "amount") or (
                f.kind == "date" and f.fmt in DATE_FORMATS):
            frame[read_column(f)] = reads
        if f.kind == "percent":
            frame[value_column(f)] = values
        if f.kind == "date":
            frame[ordinal_column(f)] = values.map(lambda d: d.toordinal() if d else None)
        if f.kind == "timestamp":
            frame[ordinal_column(f)] = values.map(lambda t: t.date().toordinal() if t else None)
    return frame, converted


def validate(feed: Feed, text: pd.DataFrame, today: date
             ) -> tuple[dict[int, list[tuple[str, str]]], dict[str, pd.Series]]:
    """Run the feed's suite over a delivery's cells (text stripped, a blank as None):
    ({row index: [(field, reason), ...]}, each field's converted values). A row has at most one
    reason per field, the first that failed."""
    frame, converted = derive(feed, text)
    return _failures(feed, frame, today), converted


def judge(feed: Feed, text: pd.DataFrame, today: date) -> dict[int, list[tuple[str, str]]]:
    """`validate`'s verdicts alone: what the worker process answers (pipelines/worker.py),
    while ingest converts the same cells with `derive` in its own."""
    return _failures(feed, derive(feed, text)[0], today)


@cache
def _deliveries() -> Any:
    """GX's pandas data source for deliveries, made once per process."""
    return _context().data_sources.add_or_update_pandas("deliveries")


@cache
def _whole_frame(feed_name: str) -> Any:
    """The feed's dataframe asset in it and its whole-frame batch definition, made once per
    process (each made anew cost a write of GX's project config, and left one more asset
    behind)."""
    return (_deliveries().add_dataframe_asset(feed_name)
            .add_batch_definition_whole_dataframe("whole"))


@lru_cache(maxsize=32)
def _suite(feed: Feed, today: date) -> Any:
    """The feed's suite for deliveries judged on `today`, built once (a week's providers
    deliver several files)."""
    return build_suite(feed, today)


def judge_many(feed: Feed, texts: list[pd.DataFrame], today: date
               ) -> list[dict[int, list[tuple[str, str]]]]:
    """`judge` for several deliveries of one feed at once, in one validation (GX's cost is
    mostly per validation): each delivery's verdicts by its own row numbers. Only for suites
    whose every expectation judges a row alone (none unique across the rows)."""
    if any(f.unique for f in feed.fields):
        raise ValueError(f"{feed.name}: a suite with a unique field judges each file alone")
    frames = [derive(feed, t)[0] for t in texts]
    starts = [0]
    for frame in frames:
        starts.append(starts[-1] + len(frame))
    found = _failures(feed, pd.concat(frames, ignore_index=True), today) if starts[-1] else {}
    out: list[dict[int, list[tuple[str, str]]]] = [{} for _ in texts]
    for i, reasons in found.items():
        k = bisect.bisect_right(starts, i) - 1
        out[k][i - starts[k]] = reasons
    return out


def _failures(feed: Feed, frame: pd.DataFrame, today: date) -> dict[int, list[tuple[str, str]]]:
    if frame.empty:
        return {}
    batch = _whole_frame(feed.name).get_batch(batch_parameters={"dataframe": frame})
    result = batch.validate(_suite(feed, today), result_format={
        "result_format": "COMPLETE", "unexpected_index_column_names": None})
    failures: dict[int, list[tuple[str, str]]] = {}
    for r in result.results:
        if r.success:
            continue
        meta = r.expectation_config.meta or {}
        kwargs = r.expectation_config.kwargs
        for i in r.result.get("unexpected_index_list") or []:
            row = failures.setdefault(int(i), [])
            if any(field == meta["field"] for field, _ in row):
                continue
            reason = meta["reason"]
            if "reason_above" in meta and frame.at[i, kwargs["column"]] > kwargs["max_value"]:
                reason = meta["reason_above"]
            row.append((meta["field"], reason))
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
