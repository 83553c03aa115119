"""Standardising what partners type, so that comparisons see the person and not the typing.

Names: accents folded, case and punctuation dropped, nicknames mapped to a canonical given name
(the `nicknames` package's curated table). Addresses: parsed into house number, direction, street
name, USPS Pub 28 street type and unit (scourgify's tables), so `123 North Oak Street, Apt. 3` and
`123 N OAK ST #3` give one key. The same address key drives linkage and the housing rule.
"""

from __future__ import annotations

import re
from functools import lru_cache

from scourgify.address_constants import (
    DIRECTIONAL_REPLACEMENTS,
    OCCUPANCY_TYPE_ABBREVIATIONS,
    STREET_TYPE_ABBREVIATIONS,
)
from unidecode import unidecode

_NON_ALNUM = re.compile(r"[^A-Z0-9 ]+")
_SPACES = re.compile(r"\s+")

_DIRECTIONS = {**DIRECTIONAL_REPLACEMENTS, **{v: v for v in DIRECTIONAL_REPLACEMENTS.values()}}
_STREET_TYPES = dict(STREET_TYPE_ABBREVIATIONS)
_UNIT_WORDS = set(OCCUPANCY_TYPE_ABBREVIATIONS) | set(OCCUPANCY_TYPE_ABBREVIATIONS.values()) | {
    "APT", "APARTMENT", "UNIT", "STE", "SUITE", "NO", "NUMBER", "RM", "ROOM", "FL", "FLOOR"}
# a unit at the end of a street line: "APT 3", "# 3", "UNIT 2B", "APT. 4"
_UNIT_TAIL = re.compile(
    r"(?:\s|,)+(?:(?:" + "|".join(sorted(_UNIT_WORDS, key=len, reverse=True)) + r")\b\.?\s*#?|#)\s*"
    r"([A-Z0-9-]+)\s*$")


def clean_text(value: str | None) -> str:
    """Upper-case ASCII letters, digits and single spaces."""
    if not value:
        return ""
    s = unidecode(str(value)).upper()
    s = s.replace("'", "").replace("`", "")
    s = _NON_ALNUM.sub(" ", s)
    return _SPACES.sub(" ", s).strip()


@lru_cache(maxsize=200_000)
def std_name(value: str | None) -> str | None:
    s = clean_text(value)
    return s or None


@lru_cache(maxsize=200_000)
def std_last_name(value: str | None) -> str | None:
    """`Garcia-Lopez`, `GARCIA LOPEZ`, `De La Cruz` -> one token with no spaces."""
    s = clean_text(value)
    return s.replace(" ", "") or None


@lru_cache(maxsize=200_000)
def std_guardian(value: str | None) -> tuple[str | None, str | None]:
    """A guardian's name as the partners write it -> (first given name, surname).

    Health writes `LAST, FIRST`; schools write free text, usually `First Last`, sometimes
    with a middle name or initial. Initials are dropped; a free-text surname is every token
    after the first given name, joined (`Maria Luisa Garcia` -> `LUISAGARCIA`, which the
    comparison reads as containing `GARCIA`)."""
    if not value or not str(value).strip():
        return None, None
    text = str(value)
    if "," in text:
        last, _, first = text.partition(",")
        given = [t for t in clean_text(first).split(" ") if len(t) > 1]
        return (given[0] if given else None), std_last_name(last)
    tokens = [t for t in clean_text(text).split(" ") if len(t) > 1]
    if len(tokens) < 2:
        return None, (tokens[0] if tokens else None)
    return tokens[0], "".join(tokens[1:])


@lru_cache(maxsize=50_000)
def first_name_aliases(value: str | None) -> tuple[str, ...]:
    """Names this given name is a nickname of, or that are nicknames of it (`BILL` <-> `WILLIAM`).

    The relation is used directly, never chained: chaining nickname tables joins strangers
    (`ROBERT` and `WILLIAM` share `BILL` in some tables).
    """
    s = std_name(value)
    if not s:
        return ()
    first = s.split(" ")[0].lower()
    nn = _nicknamer()
    return tuple(sorted(n.upper() for n in (nn.nicknames_of(first) | nn.canonicals_of(first))))


_NN = None


def _nicknamer():
    global _NN
    if _NN is None:
        from nicknames import NickNamer

        _NN = NickNamer()
    return _NN


_SEX = {"M": "M", "MALE": "M", "BOY": "M", "MAN": "M", "F": "F", "FEMALE": "F", "GIRL": "F",
        "WOMAN": "F"}


def std_sex(value: str | None) -> str | None:
    """`M`, `Male`, `boy` -> M; `U`, `Nonbinary`, blank -> None (unknown, not a mismatch)."""
    return _SEX.get(clean_text(value))


@lru_cache(maxsize=100_000)
def std_zip(value: str | None) -> str | None:
    s = re.sub(r"[^0-9]", "", str(value or ""))
    return s[:5] if len(s) >= 5 else None


def _norm_unit(unit: str | None) -> str | None:
    u = clean_text(unit)
    if not u:
        return None
    tokens = [t for t in u.split(" ") if t not in _UNIT_WORDS]
    u = "".join(tokens).lstrip("0") or "0"
    return u or None


@lru_cache(maxsize=500_000)
def std_address(street_line: str | None, unit: str | None = None) -> tuple[str | None, str | None]:
    """(street key, unit) from a free-text street line and an optional separate unit field.

    The street key is `NUMBER [DIR] NAME TYPE` with USPS abbreviations; the unit is its bare
    designator (`APT 3`, `#3`, `Unit 3` -> `3`).
    """
    raw = unidecode(str(street_line or "")).upper().replace(".", " ").strip()
    found_unit = None
    m = _UNIT_TAIL.search(" " + raw.replace(",", " , "))
    if m:
        found_unit = m.group(1)
        raw = (" " + raw.replace(",", " , "))[: m.start()]
    tokens = clean_text(raw).split(" ")
    tokens = [t for t in tokens if t]
    if not tokens:
        return None, _norm_unit(unit) or _norm_unit(found_unit)
    out: list[str] = []
    for i, t in enumerate(tokens):
        if i == 1 and t in _DIRECTIONS and len(tokens) > 3:
            out.append(_DIRECTIONS[t])
        elif i == len(tokens) - 1 and i >= 2 and t in _STREET_TYPES:
            out.append(_STREET_TYPES[t])
        elif i == len(tokens) - 1 and t in _DIRECTIONS and i >= 3:
            out.append(_DIRECTIONS[t])  # a post-direction: "123 Oak St North"
        else:
            out.append(t)
    return " ".join(out), _norm_unit(unit) or _norm_unit(found_unit)


def address_key(street_line: str | None, unit: str | None = None) -> str | None:
    """One key per dwelling: street key and unit, e.g. `123 N OAK ST #3`."""
    street, u = std_address(street_line, unit)
    if not street:
        return None
    return f"{street} #{u}" if u else street
