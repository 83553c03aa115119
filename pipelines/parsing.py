"""Small pure parsers for the contract's value formats.

Each returns the parsed value, or raises `BadValue` with a reason in plain words. Reasons never
quote the value itself: a receipt or a log line must not echo personal data.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime


class BadValue(ValueError):
    """A value that cannot be what its field says."""


@dataclass(frozen=True)
class LeadResult:
    value: float  # ug/dL; for a censored result, the bound it is below
    censored: bool


_CENSORED = re.compile(r"^<\s*(\d+(?:\.\d+)?)$")
_NUMBER = re.compile(r"^\d+(?:\.\d+)?$")


def parse_result(text: str) -> LeadResult:
    """`4.2` -> 4.2; `<1.0` or `< 3.3` -> censored below the bound; `None Detected` -> 0."""
    t = text.strip()
    if not t:
        raise BadValue("is blank; a result is required")
    if t.lower() in ("none detected", "not detected", "nd"):
        return LeadResult(0.0, False)
    if m := _CENSORED.match(t):
        return LeadResult(float(m.group(1)), True)
    if _NUMBER.match(t):
        return LeadResult(float(t), False)
    raise BadValue("is not a number, a censored value such as <1.0, or 'None Detected'")


def _date(text: str, fmt: str, label: str, *, not_after: date | None) -> date | None:
    t = text.strip()
    if not t:
        return None
    try:
        d = datetime.strptime(t, fmt).date()
    except ValueError:
        raise BadValue(f"is not a real date in {label} form") from None
    if not_after is not None and d > not_after:
        raise BadValue("is in the future")
    if d.year < 1900:
        raise BadValue("is before 1900")
    return d


def parse_us_date(text: str, not_after: date | None = None) -> date | None:
    """Health's `MM/DD/YYYY`; blank is None."""
    return _date(text, "%m/%d/%Y", "MM/DD/YYYY", not_after=not_after)


def parse_iso_date(text: str, not_after: date | None = None) -> date | None:
    """Housing's and providers' `YYYY-MM-DD`; blank is None."""
    return _date(text, "%Y-%m-%d", "YYYY-MM-DD", not_after=not_after)


def parse_compact_date(text: str, not_after: date | None = None) -> date | None:
    """Schools' `YYYYMMDD`; blank is None."""
    return _date(text, "%Y%m%d", "YYYYMMDD", not_after=not_after)


def parse_provider_date(text: str, not_after: date | None = None) -> date | None:
    """Providers send ISO, some `MM/DD/YYYY`: the contract allows both."""
    t = text.strip()
    if "/" in t:
        return parse_us_date(t, not_after)
    return parse_iso_date(t, not_after)


def parse_code(text: str, allowed: frozenset[str], *, required: bool = True) -> str | None:
    t = text.strip()
    if not t:
        if required:
            raise BadValue("is blank; a code is required")
        return None
    if t not in allowed:
        raise BadValue(f"is not one of the allowed codes ({', '.join(sorted(allowed))})")
    return t


def parse_bool(text: str) -> bool | None:
    t = text.strip().lower()
    if not t:
        return None
    if t in ("true", "t", "yes", "y", "1"):
        return True
    if t in ("false", "f", "no", "n", "0"):
        return False
    raise BadValue("is not true, false or blank")


def parse_percent(text: str) -> float | None:
    t = text.strip().rstrip("%")
    if not t:
        return None
    try:
        v = float(t)
    except ValueError:
        raise BadValue("is not a number") from None
    if not 0 <= v <= 100:
        raise BadValue("is not between 0 and 100")
    return v


def parse_amount(text: str) -> float:
    t = text.strip().replace(",", "").lstrip("$")
    try:
        return float(t)
    except ValueError:
        raise BadValue("is not an amount in dollars") from None


def required_id(text: str) -> str:
    t = text.strip()
    if not t:
        raise BadValue("is missing; every row needs its id")
    return t


def parse_timestamp(text: str, not_after: date | None = None) -> datetime | None:
    """An ISO timestamp (`2026-03-02T14:05:00`, `2026-03-02 14:05`, or a date alone)."""
    t = text.strip()
    if not t:
        return None
    try:
        ts = datetime.fromisoformat(t)  # Python 3.11 reads "Z" and offsets itself
    except ValueError:
        raise BadValue("is not an ISO date and time such as 2026-03-02T14:05:00") from None
    if ts.tzinfo is not None:
        ts = ts.astimezone(UTC).replace(tzinfo=None)
    if not_after is not None and ts.date() > not_after:
        raise BadValue("is in the future")
    return ts
