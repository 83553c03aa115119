"""CSV cells a spreadsheet will not run: every CSV Plumbline writes goes through here.

Partner free text travels from one agency's system into another agency's spreadsheet (a
referral carries health's guardian name to a provider). A text cell that starts with `=`, `+`,
`-`, `@`, a tab or a carriage return would be read as a formula, so it is prefixed with a
single quote, as OWASP recommends for CSV injection. Numbers stay numbers: only text cells are
touched, and a number column is written as numbers.
"""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd

FORMULA_STARTERS = ("=", "+", "-", "@", "\t", "\r")


def neutralise(value: object) -> object:
    """One cell: a text that a spreadsheet would run as a formula gets a leading quote."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTERS):
        return "'" + value
    return value


def safe_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Dates as ISO text, and every text cell neutralised."""
    out = frame.copy()
    for col in out.columns:
        if pd.api.types.is_datetime64_any_dtype(out[col]):
            out[col] = out[col].dt.strftime("%Y-%m-%d")
        elif out[col].dtype == object:
            out[col] = out[col].map(neutralise)
    return out


def write_csv(frame: pd.DataFrame, path: Path) -> None:
    """Write `frame` as CSV atomically, safe to open in a spreadsheet."""
    buf = io.StringIO()
    safe_frame(frame).to_csv(buf, index=False)
    atomic_text(path, buf.getvalue())


def atomic_text(path: Path, text: str) -> None:
    """A partner never sees a half-written file: write beside it, then rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
