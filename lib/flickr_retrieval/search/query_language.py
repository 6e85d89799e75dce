"""A photo query as people write one, parsed and said back.

    two dogs on a beach -indoors -"a red car" 2:sunset like:2024/a.jpg date:2023-07 place:Paris

- plain words form one sentence (the text encoder reads it whole);
- ``-word`` or ``-"a phrase"``: a term to avoid (its similarity is subtracted);
- ``2:word`` or ``2:"a phrase"``: a term of its own, with a weight (``0.5:...`` too);
- ``like:<image>``: an image of the collection as a term ("more like this", combined with words;
  ``-like:`` and ``2:like:`` work too);
- filters: ``date:2023``, ``date:2023-07``, ``date:2023-07-14``, ``year:2023``, ``before:<date>``
  (taken earlier than that period), ``after:<date>`` (later than it), ``place:<city, region or
  country>``, ``folder:<a folder of the collection>``, ``camera:<part of the camera's name>``;
  values with spaces in quotes (``place:"New York City"``).

Plain English is read too: "in July 2023", "from 2019", "during March 2021" become a date filter,
and "in <a place of the collection>" a place filter; the answer says how each was read
(:attr:`Query.notes`). Pure functions: nothing here reads a file or a model.
"""

from __future__ import annotations

import calendar
import datetime as dt
import re
from dataclasses import dataclass, field

from ..errors import QueryError
from . import spoken_dates as spoken_dates_

FILTERS = ("date", "year", "before", "after", "place", "folder", "camera")
_MONTHS = {m.lower(): n for n, m in enumerate(calendar.month_name) if m} | {
    m.lower(): n for n, m in enumerate(calendar.month_abbr) if m
}
_CHUNK = re.compile(r'[^\s"]*"[^"]*"?|\S+')
_WEIGHT = re.compile(r"^(\d+(?:\.\d+)?):(.+)$", re.S)
_KEYED = re.compile(r"^([A-Za-z]+):(.*)$", re.S)
MAX_WEIGHT = 10.0
#: Terms a query may hold (the sentence, weighted and avoided phrases, like: images): each costs one
#: pass through the text encoder or one image row, so a query's cost is bounded by this, not by its text.
MAX_TERMS = 12


@dataclass(frozen=True)
class Term:
    """A sentence and its weight (negative: a term to avoid)."""

    text: str
    weight: float = 1.0


@dataclass(frozen=True)
class Period:
    """Capture times from ``start`` (inclusive) to ``end`` (exclusive); None: unbounded."""

    start: dt.datetime | None
    end: dt.datetime | None
    label: str

    def holds(self, when: dt.datetime) -> bool:
        return (self.start is None or when >= self.start) and (self.end is None or when < self.end)

    def __and__(self, other: Period) -> Period:
        """Both periods at once; QueryError when they do not overlap ("year:1915 July 2023": no photo
        can be dated in both, and the user is told so rather than shown nothing)."""
        starts = [s for s in (self.start, other.start) if s is not None]
        ends = [e for e in (self.end, other.end) if e is not None]
        start, end = max(starts, default=None), min(ends, default=None)
        if start is not None and end is not None and start >= end:
            raise QueryError(f"the dates {self.label} and {other.label} do not overlap: keep one of them")
        return Period(start, end, f"{self.label}, {other.label}")


@dataclass(frozen=True)
class Query:
    terms: tuple[Term, ...] = ()
    like: tuple[Term, ...] = ()  # image ids of the collection, with weights
    period: Period | None = None
    place: str | None = None
    folder: str | None = None
    camera: str | None = None
    notes: tuple[str, ...] = field(default=())
    spoken_date: str = ""  # the words read as a date filter ("from 1915"), when any

    @property
    def filtered(self) -> bool:
        return any(v is not None for v in (self.period, self.place, self.folder, self.camera))

    @property
    def single(self) -> bool:
        """One sentence, weight 1, no other term: scored as a caption is (the calibrated case)."""
        return len(self.terms) == 1 and self.terms[0].weight == 1.0 and not self.like

    @property
    def browse(self) -> bool:
        """Filters alone ("in Paris", "date:2021-07"): the photos that pass them, newest first."""
        return self.filtered and not self.terms and not self.like

    @property
    def plain(self) -> bool:
        """A single sentence and no filter: an ordinary search."""
        return self.single and not self.filtered

    def describe(self) -> str:
        """The query as it was understood, e.g. ``searched "beach", not "indoors", filtered July 2023``."""

        def said(t: Term, what: str) -> str:
            w = abs(t.weight)
            return f'{what}"{t.text}"' + ("" if w == 1.0 else f" (weight {w:g})")

        parts = [said(t, "") for t in self.terms if t.weight > 0]
        parts += [said(t, "like ") for t in self.like if t.weight > 0]
        avoided = [said(t, "") for t in self.terms if t.weight < 0] + [
            said(t, "like ") for t in self.like if t.weight < 0
        ]
        if self.browse:
            return "listed the photos " + ", ".join(self.filter_labels()) + ", newest first"
        out = "searched " + (", ".join(parts) if parts else "nothing positive")
        if avoided:
            out += ", not " + ", not ".join(avoided)
        filters = self.filter_labels()
        if filters:
            out += ", filtered " + ", ".join(filters)
        return out

    def filter_labels(self) -> list[str]:
        """The filters in words ("July 2023", "in Paris", ...)."""
        return [
            f
            for f in (
                self.period and self.period.label,
                self.place and f"in {self.place}",
                self.folder and f"folder {self.folder}",
                self.camera and f"camera {self.camera}",
            )
            if f
        ]


def _or_open(end):
    """``end()``, or None (no end) past the last date Python can hold (the end of year 9999)."""
    try:
        return end()
    except (ValueError, OverflowError):
        return None


def parse_period(value: str, how: str = "date") -> Period:
    """``YYYY``, ``YYYY-MM`` or ``YYYY-MM-DD`` as a period; ``before``: earlier than it, ``after``:
    later than it. QueryError naming the forms otherwise."""
    text = value.strip()
    try:
        parts = [int(p) for p in text.split("-")]
        if not 1 <= len(parts) <= 3 or not 1000 <= parts[0] <= 9999:
            raise ValueError
        if len(parts) == 1:
            start, label = dt.datetime(parts[0], 1, 1), f"{parts[0]}"
            end = _or_open(lambda: dt.datetime(parts[0] + 1, 1, 1))
        elif len(parts) == 2:
            start = dt.datetime(parts[0], parts[1], 1)
            end = _or_open(lambda: dt.datetime(parts[0] + (parts[1] == 12), parts[1] % 12 + 1, 1))
            label = f"{calendar.month_name[parts[1]]} {parts[0]}"
        else:
            start = dt.datetime(parts[0], parts[1], parts[2])
            end, label = _or_open(lambda: start + dt.timedelta(days=1)), start.date().isoformat()
    except ValueError:
        raise QueryError(
            f"{how}:{value}: not a date; give a year, a month or a day: {how}:2023, {how}:2023-07 or {how}:2023-07-14"
        ) from None
    if how == "before":
        return Period(None, start, f"before {label}")
    if how == "after":
        if end is None:
            raise QueryError(f"after:{value}: nothing can be dated after the end of year 9999")
        return Period(end, None, f"after {label}")
    return Period(start, end, label)


def _unquote(text: str) -> str:
    return text[1:-1] if len(text) >= 2 and text[0] == text[-1] == '"' else text.strip('"')


#: Other names of places, as people write them, to the name the gazetteer gives (country codes for
#: countries): "USA", "the UK", "NYC".
PLACE_ALIASES = {
    **dict.fromkeys(
        (
            "usa",
            "u.s.",
            "u.s.a.",
            "the us",
            "the usa",
            "the united states",
            "united states of america",
            "america",
            "the states",
        ),
        "us",
    ),
    **dict.fromkeys(("uk", "u.k.", "the uk", "the united kingdom", "britain", "great britain"), "gb"),
    "nyc": "new york city",
    "the netherlands": "netherlands",
}
#: Place names that are also common English words: read as a place only when written with a capital
#: ("a walk in nice weather" is no filter on Nice; "photos in Nice" is).
COMMON_WORD_PLACES = frozenset(
    {"nice", "reading", "bath", "mobile", "orange", "split", "deal", "sale", "hope", "wells", "march", "may", "buffalo"}
)


def place_key(name: str, known_places: set[str]) -> str | None:
    """The known place name ``name`` stands for: itself, an alias (:data:`PLACE_ALIASES`), or the one
    known name it begins ("Chamonix" for "Chamonix-Mont-Blanc"); None when none."""
    key = " ".join(name.lower().split())
    key = PLACE_ALIASES.get(key, key)
    if key in known_places:
        return key
    longer = [k for k in known_places if k.startswith(key + "-") or k.startswith(key + " ")]
    return longer[0] if len(longer) == 1 else None


def _spoken_place(sentence: str, known_places: set[str]) -> tuple[str | None, str]:
    """The longest "in <known place>" (or "near", "at") of the sentence (1 to 4 words, aliases and
    name beginnings included: :func:`place_key`), and the sentence without it. A place that is also a
    common word counts only when capitalised."""
    words = sentence.split()
    for n in range(4, 0, -1):
        for i, w in enumerate(words[:-n] if n < len(words) else []):
            if w.lower() not in ("in", "near", "at"):
                continue
            candidate = " ".join(words[i + 1 : i + 1 + n]).strip(".,;!?")
            if candidate.lower() in COMMON_WORD_PLACES and not candidate[:1].isupper():
                continue
            if w.lower() == "at" and candidate.lower() in ("the", "a", "an"):
                continue
            key = place_key(candidate, known_places)
            if key is not None:
                return candidate, " ".join(words[:i] + words[i + 1 + n :])
    return None, sentence


_CAPITALISED_AFTER_IN = re.compile(r"\b(?:in|near)\s+((?:[A-Z][\w'-]+)(?:\s+[A-Z][\w'-]+)?)")


def _unknown_places(sentence: str, known_places: set[str]) -> list[str]:
    """For "in <Capitalised name>" that names no place of the collection: a note with the known names
    it is close to, if any (the words are searched)."""
    import difflib

    notes = []
    for name in _CAPITALISED_AFTER_IN.findall(sentence):
        near = difflib.get_close_matches(name.lower(), sorted(known_places), n=3, cutoff=0.75)
        if near:
            notes.append(f'no photo here is placed in "{name}" (searched as words); did you mean {", ".join(near)}?')
    return notes


def parse(
    text: str, known_places: set[str] | None = None, spoken_dates: bool = True, today: dt.date | None = None
) -> Query:
    """Parse a query (see the module's docstring). ``known_places``: the lower-case place names of the
    collection's photos (cities, regions, countries, country codes); plain "in <place>" is read as a
    filter only for those. ``spoken_dates``: read "in July 2023", "summer 2022", "last year",
    "before 2020" ... as a date filter (:mod:`spoken_dates`, relative to ``today``, default the
    machine's date; the searcher parses again without, and searches those words, where such a filter
    cannot apply). QueryError for a filter that cannot be read."""
    plain, terms, like, notes = [], [], [], []
    period = place = folder = camera = None
    spoken_date = ""
    for chunk in _CHUNK.findall(text):
        negative = chunk.startswith("-") and len(chunk) > 1
        body = chunk[1:] if negative else chunk
        weight = 1.0
        m = _WEIGHT.match(body)
        if m:
            weight = float(m.group(1))
            if not 0 < weight <= MAX_WEIGHT:
                raise QueryError(f"{chunk}: a weight is a number above 0 and at most {MAX_WEIGHT:g}")
            body = m.group(2)
        keyed = _KEYED.match(body)
        key = keyed.group(1).lower() if keyed else None
        if key == "like":
            image = _unquote(keyed.group(2))
            if not image:
                raise QueryError("like: give an image of the collection, e.g. like:2024/beach.jpg")
            like.append(Term(image, -weight if negative else weight))
            continue
        if key in FILTERS:
            value = _unquote(keyed.group(2)).strip()
            if negative or m:
                raise QueryError(f"{chunk}: a filter takes no '-' and no weight")
            if not value:
                raise QueryError(
                    f"{key}: give a value, e.g. {key}:{'2023-07' if key in ('date', 'before', 'after') else 'Paris'}"
                )
            if key in ("date", "year", "before", "after"):
                p = parse_period(value, "date" if key == "year" else key)
                period = p if period is None else period & p
            elif key == "place":
                place = value
            elif key == "folder":
                folder = value.strip("/")
            else:
                camera = value
            continue
        phrase = _unquote(body).strip()
        if not phrase:
            continue
        if negative:
            terms.append(Term(phrase, -weight))
        elif m or body.startswith('"'):
            terms.append(Term(phrase, weight))
        else:
            plain.append(phrase)
    sentence = " ".join(plain)
    spoken = spoken_dates_.read(sentence, today or dt.date.today()) if spoken_dates else None
    if spoken:
        p = Period(spoken.start, spoken.end, spoken.label)
        period = p if period is None else period & p
        notes.append(f'read "{spoken.text}" as a date filter ({p.label})')
        spoken_date = spoken.text
        sentence = sentence.replace(spoken.text, " ", 1).strip()
    if known_places and place is None:
        found, rest = _spoken_place(sentence, known_places)
        if found:
            place, sentence = found, rest
            notes.append(f'read "in {found}" as a place filter')
        else:
            notes += _unknown_places(sentence, known_places)
    sentence = " ".join(sentence.split())
    if sentence:
        terms.insert(0, Term(sentence))
    query = Query(tuple(terms), tuple(like), period, place, folder, camera, tuple(notes), spoken_date)
    if len(terms) + len(like) > MAX_TERMS:
        raise QueryError(
            f"the query has {len(terms) + len(like)} terms (at most {MAX_TERMS}): join the words that belong together into one phrase"
        )
    if not any(t.weight > 0 for t in (*query.terms, *query.like)) and not query.browse:
        raise QueryError(
            "the query has nothing to look for: give words (or like:<image>) besides the terms to avoid and the filters"
        )
    return query


def matches(query: Query, image_id: str, meta: dict | None, near=None) -> bool:
    """Whether an image passes the query's filters: ``meta`` is its entry in the collection's index
    (``taken``, ``camera``, ``place``: :mod:`flickr_retrieval.search.photo_meta`; None when it has none).
    ``near(meta)``: whether the photo lies near the place filter's city though its own place is named
    otherwise (a suburb); None: names only."""
    if query.folder is not None:
        folder = image_id.rsplit("/", 1)[0] if "/" in image_id else ""
        if not (folder == query.folder or folder.startswith(query.folder + "/")):
            return False
    if query.period is None and query.place is None and query.camera is None:
        return True
    meta = meta or {}
    if query.period is not None:
        taken = meta.get("taken")
        if not taken or not query.period.holds(dt.datetime.fromisoformat(taken)):
            return False
    if query.camera is not None and query.camera.lower() not in (meta.get("camera") or "").lower():
        return False
    if query.place is not None:
        names = place_names(meta.get("place"))
        if place_key(query.place, names) is None and not (near is not None and near(meta)):
            return False
    return True


def place_names(place: dict | None) -> set[str]:
    """The lower-case names a place answers to: city, region, country, country code."""
    if not place:
        return set()
    return {str(place.get(k, "")).lower() for k in ("city", "region", "country", "country_code")} - {""}
