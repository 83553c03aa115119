"""Converters for the contract's value formats: text in, a typed value out, or None.

They judge nothing. Whether a value is acceptable (present, a real date, not in the future, a
number between 0 and 100, ...) is the feed's Great Expectations suite's call alone
(`expectations/suites.py`), which reads the values these converters give; ingest then keeps
the converted values of the rows the suite passed. One rule, one place.

Each converter returns None for a blank and for text it cannot convert, and never raises.
Values are converted once per distinct text (`convert_column`): a roster repeats its dates.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import pandas as pd


@dataclass(frozen=True)
class LeadResult:
    value: float  # ug/dL; for a censored result, the bound it is below
    censored: bool


_CENSORED = re.compile(r"^<\s*(\d+(?:\.\d+)?)$")
_NUMBER = re.compile(r"^\d+(?:\.\d+)?$")
NOT_DETECTED = ("none detected", "not detected", "nd")


def to_result(text: str) -> LeadResult | None:
    """`4.2` -> 4.2; `<1.0` or `< 3.3` -> censored below the bound; `None Detected` -> 0."""
    t = text.strip()
    if t.lower() in NOT_DETECTED:
        return LeadResult(0.0, False)
    if m := _CENSORED.match(t):
        return LeadResult(float(m.group(1)), True)
    if _NUMBER.match(t):
        return LeadResult(float(t), False)
    return None


def to_date(text: str, fmt: str) -> date | None:
    """A real date in `fmt` (strptime), else None."""
    try:
        return datetime.strptime(text.strip(), fmt).date()
    except ValueError:
        return None


def to_timestamp(text: str) -> datetime | None:
    """An ISO timestamp (`2026-03-02T14:05:00`, `2026-03-02 14:05`, a date alone, an offset or
    `Z`), as UTC without a zone; else None."""
    try:
        ts = datetime.fromisoformat(text.strip())  # Python 3.11 reads "Z" and offsets itself
    except ValueError:
        return None
    return ts.astimezone(UTC).replace(tzinfo=None) if ts.tzinfo is not None else ts


def _finite(text: str) -> float | None:
    try:
        v = float(text)
    except ValueError:
        return None
    return v if math.isfinite(v) else None


def to_percent(text: str) -> float | None:
    """`87.5` or `87.5%` -> 87.5 (the range is the suite's to judge)."""
    return _finite(text.strip().rstrip("%"))


def to_amount(text: str) -> float | None:
    """`$1,250.00` -> 1250.0."""
    return _finite(text.strip().replace(",", "").lstrip("$"))


def to_bool(text: str) -> bool | None:
    t = text.strip().lower()
    return True if t == "true" else False if t == "false" else None


def convert_column(values: pd.Series, convert: Callable[[str], Any]) -> pd.Series:
    """`convert` applied once per distinct non-blank text; blanks (None) stay None."""
    lookup = {v: convert(v) for v in values.dropna().unique()}
    # a list, not Series.map: pandas would turn datetimes into Timestamps and None into NaT
    return pd.Series([None if v is None else lookup[v] for v in values.tolist()],
                     index=values.index, dtype="object")
