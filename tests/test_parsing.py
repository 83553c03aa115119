"""The contract's value formats: the suite judges each value once, the converters give what it
read (pipelines/parsing.py, expectations/suites.py)."""

from datetime import date, datetime

import pandas as pd
import pytest

from expectations.suites import validate
from pipelines.feeds import FEEDS
from pipelines.parsing import to_amount, to_date, to_percent, to_result, to_timestamp

TODAY = date(2026, 6, 30)


def verdicts(feed_name: str, column: str, values: list[str]) -> list[str | None]:
    """The suite's reason for each value of one column (None: accepted), every other column
    of the row left blank, so only that column's reasons are read."""
    (feed,) = [f for f in FEEDS if f.name == feed_name]
    text = pd.DataFrame({c: [v.strip() or None for v in values] if c == column
                         else [None] * len(values) for c in feed.columns}, dtype="object")
    failures, _ = validate(feed, text, TODAY)
    return [next((r for f, r in failures.get(i, []) if f == column), None)
            for i in range(len(values))]


@pytest.mark.parametrize(("text", "value", "censored"), [
    ("4.2", 4.2, False), ("<1.0", 1.0, True), ("< 3.3", 3.3, True), ("<2", 2.0, True),
    ("None Detected", 0.0, False), (" 37 ", 37.0, False),
])
def test_result_formats_the_contract_allows(text: str, value: float, censored: bool) -> None:
    r = to_result(text)
    assert (r.value, r.censored) == (value, censored)
    assert verdicts("health__blood_lead", "RESULT", [text]) == [None]


def test_result_that_cannot_be_a_value_is_rejected() -> None:
    bad = ["high", "4.2.1", "> 45", "-3"]
    assert all(to_result(t) is None for t in bad)
    assert verdicts("health__blood_lead", "RESULT", bad) == [
        "RESULT is not a number, a censored value such as <1.0, or 'None Detected'"] * 4


def test_dates_are_judged_once_with_a_reason_that_never_echoes_them() -> None:
    reasons = verdicts("health__blood_lead", "PAT_DOB",
                       ["02/30/2026", "2026-03-02", "03/02/1899", "07/01/2026", "03/02/2026",
                        ""])
    assert reasons == ["PAT_DOB is not a real date in MM/DD/YYYY form",
                       "PAT_DOB is not a real date in MM/DD/YYYY form",
                       "PAT_DOB is before 1900", "PAT_DOB is in the future", None, None]
    assert not any("02/30" in r for r in reasons if r)


def test_provider_dates_in_either_form() -> None:
    assert verdicts("providers__services", "service_date",
                    ["03/02/2026", "2026-03-02", "2026-02-30", "02/30/2026", "2026/03/02"]) == [
        None, None, "service_date is not a real date in YYYY-MM-DD form",
        "service_date is not a real date in MM/DD/YYYY form",
        "service_date is not a date in YYYY-MM-DD or MM/DD/YYYY form"]


def test_numbers_and_timestamps() -> None:
    assert to_percent("87.5%") == 87.5 and to_percent("nan") is None
    assert to_amount("$1,250.00") == 1250.0
    assert verdicts("schools__enrollment", "AttendanceRate", ["87.5", "101", "most"]) == [
        None, "AttendanceRate is not between 0 and 100", "AttendanceRate is not a number"]
    assert to_timestamp("2026-03-02T14:05:00Z") == datetime(2026, 3, 2, 14, 5)
    assert verdicts("feedback__alert_feedback", "recorded_at",
                    ["2026-03-02T14:05:00", "2026-13-02T14:05:00", "2026-07-02 10:00"]) == [
        None, "recorded_at is not an ISO date and time such as 2026-03-02T14:05:00",
        "recorded_at is in the future"]


def test_each_feed_date_format() -> None:
    assert to_date("03/02/2026", "%m/%d/%Y") == date(2026, 3, 2)
    assert to_date("20260302", "%Y%m%d") == date(2026, 3, 2)
    assert to_date("2026-02-30", "%Y-%m-%d") is None
