from datetime import date

import pytest

from pipelines.parsing import (
    BadValue,
    parse_compact_date,
    parse_iso_date,
    parse_provider_date,
    parse_result,
    parse_us_date,
)


@pytest.mark.parametrize(("text", "value", "censored"), [
    ("4.2", 4.2, False), ("<1.0", 1.0, True), ("< 3.3", 3.3, True), ("<2", 2.0, True),
    ("None Detected", 0.0, False), (" 37 ", 37.0, False),
])
def test_result_formats_the_contract_allows(text: str, value: float, censored: bool) -> None:
    r = parse_result(text)
    assert (r.value, r.censored) == (value, censored)


@pytest.mark.parametrize("text", ["high", "", "4.2.1", "> 45", "-3"])
def test_result_that_cannot_be_a_value_is_rejected(text: str) -> None:
    with pytest.raises(BadValue):
        parse_result(text)


def test_impossible_date_is_rejected_without_echoing_it() -> None:
    with pytest.raises(BadValue) as exc:
        parse_us_date("02/30/2026")
    assert "02/30" not in str(exc.value)


def test_future_date_is_rejected() -> None:
    with pytest.raises(BadValue, match="future"):
        parse_iso_date("2027-01-02", not_after=date(2026, 6, 30))


def test_each_feed_date_format() -> None:
    assert parse_us_date("03/02/2026") == date(2026, 3, 2)
    assert parse_iso_date("2026-03-02") == date(2026, 3, 2)
    assert parse_compact_date("20260302") == date(2026, 3, 2)
    assert parse_provider_date("03/02/2026") == parse_provider_date("2026-03-02")
    assert parse_us_date("  ") is None
