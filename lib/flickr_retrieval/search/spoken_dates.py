"""Dates as people write them in a query, read as a capture-time period (pure functions).

    "in July 2023", "July 2023", "from 2019", "summer 2022", "the winter of 2021", "last summer",
    "this year", "last month", "Christmas 2019", "2023-07-14", "before 2020", "after March 2021",
    "since 2019", "until June 2020", "between 2018 and 2020", "from 2019 to 2021"

A bare year ("a 1967 Mustang") is never a date: it needs a word that makes it one (in, from,
during, before, after, since, until, between). Seasons are the northern hemisphere's meteorological
ones (spring March-May, summer June-August, autumn or fall September-November, winter December to
February, named by the year of its December). "last <season>" is the latest one that has ended by
``today``; "last year/month/week" the calendar one before today's. Each reading says what it took.
"""

from __future__ import annotations

import calendar
import datetime as dt
import re
from dataclasses import dataclass

MONTHS = (
    {m.lower(): n for n, m in enumerate(calendar.month_name) if m}
    | {m.lower(): n for n, m in enumerate(calendar.month_abbr) if m}
    | {"sept": 9}
)
_M = "|".join(sorted(MONTHS, key=len, reverse=True))
_Y = r"(?:19|20)\d\d"  # years of photographs; "from 1850" stays words
SEASONS = {"spring": 3, "summer": 6, "autumn": 9, "fall": 9, "winter": 12}  # the month each starts
_S = "|".join(SEASONS)


@dataclass(frozen=True)
class Reading:
    """A date read from a sentence: ``start`` (inclusive) to ``end`` (exclusive), None where open;
    ``label`` (what the filter is called), ``text`` (the words it was read from)."""

    start: dt.datetime | None
    end: dt.datetime | None
    label: str
    text: str


def _month(year: int, month: int) -> tuple[dt.datetime, dt.datetime]:
    return dt.datetime(year, month, 1), dt.datetime(year + (month == 12), month % 12 + 1, 1)


def _year(year: int) -> tuple[dt.datetime, dt.datetime]:
    return dt.datetime(year, 1, 1), dt.datetime(year + 1, 1, 1)


def _season(name: str, year: int) -> tuple[dt.datetime, dt.datetime, str]:
    first = SEASONS[name]
    start = dt.datetime(year, first, 1)
    end = dt.datetime(year + (first == 12), (first + 2) % 12 + 1, 1)
    months = f"{calendar.month_name[first]}-{calendar.month_name[(first + 1) % 12 + 1]}"
    return start, end, f"{name} {year} ({months}{' ' + str(year + 1) if first == 12 else ''})"


def _point(month: str | None, year: str) -> tuple[dt.datetime, dt.datetime, str]:
    """A month of a year, or a year: its start, end and name."""
    if month:
        n = MONTHS[month.lower()]
        return (*_month(int(year), n), f"{calendar.month_name[n]} {year}")
    return (*_year(int(year)), year)


def _iso(m: re.Match, today: dt.date) -> tuple | None:
    year, month, day = int(m["y"]), int(m["m"]), m["d"]
    try:
        if day:
            start = dt.datetime(year, month, int(day))
            return start, start + dt.timedelta(days=1), start.date().isoformat()
        return (*_month(year, month), f"{calendar.month_name[month]} {year}")
    except ValueError:  # 2023-13: not a date; the words are searched
        return None


def _christmas(m: re.Match, today: dt.date) -> tuple:
    year = int(m["y"]) if m["y"] else (today.year if today >= dt.date(today.year, 12, 27) else today.year - 1)
    return dt.datetime(year, 12, 24), dt.datetime(year, 12, 27), f"Christmas {year} (24-26 December)"


def _season_of_year(m: re.Match, today: dt.date) -> tuple:
    return _season(m["s"].lower(), int(m["y"]))


def _relative(m: re.Match, today: dt.date) -> tuple:
    which, unit = m["which"].lower(), m["unit"].lower()
    now = dt.datetime(today.year, today.month, today.day)
    if unit in SEASONS:
        year = today.year
        start, end, label = _season(unit, year)
        if which == "last":
            while end > now:  # the latest one that has ended
                year -= 1
                start, end, label = _season(unit, year)
        elif start > now:  # "this winter" before December: the one that began last year
            start, end, label = _season(unit, year - 1)
        return start, end, label
    if unit == "year":
        year = today.year - (which == "last")
        return (*_year(year), str(year))
    if unit == "month":
        year, month = (today.year, today.month) if which == "this" else divmod(today.year * 12 + today.month - 2, 12)
        if which == "last":
            month += 1
        return (*_month(year, month), f"{calendar.month_name[month]} {year}")
    monday = now - dt.timedelta(days=today.weekday()) - dt.timedelta(days=7 * (which == "last"))
    return monday, monday + dt.timedelta(days=7), f"the week of {monday.date().isoformat()}"


def _open(m: re.Match, today: dt.date) -> tuple:
    start, end, label = _point(m["m"], m["y"])
    how = m["how"].lower()
    if how == "before":
        return None, start, f"before {label}"
    if how == "after":
        return end, None, f"after {label}"
    if how == "since":
        return start, None, f"since {label}"
    return None, end, f"until {label} (included)"


def _range(m: re.Match, today: dt.date) -> tuple | None:
    start, _, first = _point(m["m1"], m["y1"])
    _, end, last = _point(m["m2"], m["y2"])
    return (start, end, f"{first} to {last}") if start < end else None


def _month_or_year(m: re.Match, today: dt.date) -> tuple:
    return _point(m["m"], m["y"])


#: (pattern, reader), most specific first; the earliest match in the sentence wins, then the longest.
PATTERNS = [
    (r"\b(?P<y>\d{4})-(?P<m>\d\d)(?:-(?P<d>\d\d))?\b", _iso),
    (
        rf"\b(?:(?:between|from)\s+)(?:(?P<m1>{_M})\.?\s+)?(?P<y1>{_Y})\s+(?:and|to|until)\s+(?:(?P<m2>{_M})\.?\s+)?(?P<y2>{_Y})\b",
        _range,
    ),
    (rf"\b(?:(?:at|on|during|over)\s+)?christmas(?:\s+(?:of\s+)?(?P<y>{_Y}))?\b", _christmas),
    (rf"\b(?:(?:in|during|over)\s+)?(?:the\s+)?(?P<s>{_S})\s+(?:of\s+)?(?P<y>{_Y})\b", _season_of_year),
    (rf"\b(?P<which>last|this)\s+(?P<unit>{_S}|year|month|week)\b", _relative),
    (rf"\b(?P<how>before|after|since|until)\s+(?:(?P<m>{_M})\.?\s+)?(?P<y>{_Y})\b", _open),
    (rf"\b(?:(?:in|from|during)\s+)?(?P<m>{_M})\.?\s+(?P<y>{_Y})\b", _month_or_year),
    (rf"\b(?:in|from|during)\s+(?P<m>)(?P<y>{_Y})\b", _month_or_year),
]
_COMPILED = [(re.compile(p, re.IGNORECASE), reader) for p, reader in PATTERNS]


def read(sentence: str, today: dt.date) -> Reading | None:
    """The first date phrase of ``sentence`` (see the module's docstring), or None."""
    found = []
    for pattern, reader in _COMPILED:
        for m in pattern.finditer(sentence):
            try:
                got = reader(m, today)
            except (ValueError, OverflowError):  # past what a date can hold
                got = None
            if got is not None:
                found.append((m.start(), -len(m.group(0)), m.group(0), got))
                break
    if not found:
        return None
    _, _, text, (start, end, label) = min(found, key=lambda f: (f[0], f[1]))
    return Reading(start, end, label, text)
