"""Property-based tests (Hypothesis) of what reads text and files from users: the query language, the
dates it reads from plain English, names that must stay names, HTTP error messages that must not
leak folders, and the photo metadata reader. Each property holds for every input Hypothesis draws
(derandomized: the same examples on every run, no example database written into the tree); the
probe's hand-made cases stay in test_hostile_inputs.py and test_query_language.py."""

from __future__ import annotations

import datetime as dt
import io
import math
import string
import struct
from pathlib import Path

import pytest
from flickr_retrieval import paths
from flickr_retrieval.errors import QueryError, RunNameError
from flickr_retrieval.search import collection, photo_meta, query_language, spoken_dates
from flickr_retrieval.search.serve import without_paths
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

settings.register_profile(
    "rcp217", derandomize=True, database=None, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("rcp217")

#: Words a query is made of: plain words, filters, weights, negations, quotes, years and month names.
_WORDS = st.sampled_from(
    [
        "a",
        "dog",
        "in",
        "the",
        "snow",
        "-snow",
        "2:beach",
        '"red car"',
        '"',
        "-",
        ":",
        "date:2023",
        "date:2023-07",
        "date:2023-02-30",
        "date:99999",
        "before:2020",
        "after:9999",
        "after:9999-12-31",
        "year:1915",
        "place:Paris",
        "place:",
        "camera:Pixel",
        "folder:/a/b",
        "like:",
        "like:x.jpg",
        "-like:x.jpg",
        "0:dog",
        "11:dog",
        "10:dog",
        "July",
        "2023",
        "summer",
        "last",
        "year",
        "since",
        "from",
        "1915",
        "to",
        "1923",
        "Christmas",
        "2019-07-14",
        "near",
        "Lyon",
        "nice",
        "weather",
        "ｄｏｇ",
        "\u200b",
        "é",
        "日本",
    ]  # fmt: skip
)
_QUERIES = st.one_of(st.lists(_WORDS, max_size=16).map(" ".join), st.text(max_size=120))
_TODAY = st.dates(min_value=dt.date(1901, 1, 1), max_value=dt.date(2199, 12, 31))


@given(text=_QUERIES, today=_TODAY)
@settings(max_examples=400)
def test_any_query_is_read_or_refused_with_a_message_never_a_crash(text, today):
    try:
        query = query_language.parse(text, known_places={"lyon", "paris", "nice", "france"}, today=today)
    except QueryError as exc:
        assert str(exc)  # a message the user reads
        return
    terms = (*query.terms, *query.like)
    assert len(terms) <= query_language.MAX_TERMS
    assert all(math.isfinite(t.weight) and 0 < abs(t.weight) <= query_language.MAX_WEIGHT for t in terms)
    assert any(t.weight > 0 for t in terms) or query.browse
    if query.period is not None and query.period.start is not None and query.period.end is not None:
        assert query.period.start <= query.period.end


@given(day=st.dates(min_value=dt.date(1000, 1, 1), max_value=dt.date(9999, 12, 31)))
def test_a_date_filter_holds_its_day_and_before_and_after_exclude_it(day):
    moment = dt.datetime.combine(day, dt.time(12, 0))
    for value in (str(day.year), f"{day.year}-{day.month:02d}", day.isoformat()):
        period = query_language.parse_period(value)
        assert period.start <= moment and (period.end is None or moment < period.end), (value, period)
        before = query_language.parse_period(value, "before")
        assert before.start is None and before.end == period.start and not moment < before.end
        if period.end is not None:
            after = query_language.parse_period(value, "after")
            assert after.end is None and after.start == period.end and not after.start <= moment


@given(sentence=_QUERIES, today=_TODAY)
@settings(max_examples=400)
def test_a_date_read_from_a_sentence_is_words_of_it_and_an_ordered_period(sentence, today):
    reading = spoken_dates.read(sentence, today)
    if reading is None:
        return
    assert reading.text and reading.text in sentence and reading.label
    assert reading.start is not None or reading.end is not None
    if reading.start is not None and reading.end is not None:
        assert reading.start < reading.end


@given(month=st.integers(1, 12), year=st.integers(1900, 2099), today=_TODAY)
def test_a_month_and_year_in_plain_english_is_that_month(month, year, today):
    """Years of photographs (1900-2099; "from 1850" stays words, as spoken_dates says)."""
    import calendar

    reading = spoken_dates.read(f"a dog in {calendar.month_name[month]} {year}", today)
    assert reading is not None
    assert (reading.start, reading.end) == (
        dt.datetime(year, month, 1),
        dt.datetime(year + (month == 12), month % 12 + 1, 1),
    )


@given(name=st.text(max_size=120))
@settings(max_examples=500)
def test_a_run_or_collection_name_is_a_name_never_a_path(name):
    for check, error in ((paths.check_run_name, RunNameError), (collection.check_collection_name, QueryError)):
        try:
            accepted = check(name)
        except error:
            continue
        assert accepted == name and Path(name).name == name and name not in (".", "..")
        assert "/" not in name and "\\" not in name and "\x00" not in name and ".." not in name


_FOLDER_PART = st.text(alphabet=string.ascii_letters + string.digits + " ._-éß", min_size=1, max_size=12).filter(
    lambda p: p.strip(". ") == p and p not in (".", "..")
)


@given(parts=st.lists(_FOLDER_PART, min_size=1, max_size=4), name=_FOLDER_PART)
def test_an_error_message_for_http_never_names_the_servers_folders(parts, name):
    folder = "/home/" + "/".join(parts)
    message = f"cannot read {folder}/{name}: permission denied"
    said = without_paths(message, [folder])
    assert folder not in said and "/home/" not in said and name in said


_EXIF_TEXT = st.one_of(
    st.text(max_size=40),
    st.builds(lambda d: d.strftime("%Y:%m:%d %H:%M:%S"), st.datetimes(dt.datetime(1, 1, 1), dt.datetime(9999, 12, 31))),
)
_RATIONAL = st.floats(allow_nan=True, allow_infinity=True, width=32)


@given(
    taken=_EXIF_TEXT,
    make=st.text(max_size=20),
    model=st.text(max_size=20),
    lat=st.tuples(_RATIONAL, _RATIONAL, _RATIONAL),
    lon=st.tuples(_RATIONAL, _RATIONAL, _RATIONAL),
    refs=st.tuples(st.sampled_from(["N", "S", "X", ""]), st.sampled_from(["E", "W", "?", ""])),
    fmt=st.sampled_from(["JPEG", "PNG", "WEBP"]),
)
@settings(max_examples=60)
def test_the_metadata_reader_gives_its_fields_for_any_exif_and_never_raises(
    tmp_path_factory, taken, make, model, lat, lon, refs, fmt
):
    exif = Image.Exif()
    exif[photo_meta.MAKE], exif[photo_meta.MODEL] = make, model
    exif.get_ifd(photo_meta.EXIF_IFD)[photo_meta.DATETIME_ORIGINAL] = taken
    exif.get_ifd(photo_meta.GPS_IFD).update({1: refs[0], 2: lat, 3: refs[1], 4: lon})
    buffer = io.BytesIO()
    try:
        Image.new("RGB", (8, 8), "red").save(buffer, format=fmt, exif=exif)
    except (ValueError, TypeError, OSError, UnicodeError, struct.error):  # Pillow cannot write this EXIF
        return
    path = tmp_path_factory.mktemp("meta") / f"photo.{fmt.lower()}"
    path.write_bytes(buffer.getvalue())
    meta = photo_meta.read_meta(path)
    assert set(meta) == {"taken", "taken_from", "camera", "gps"}
    assert meta["taken_from"] in ("exif", "file", "none")
    if meta["taken"] is not None:
        dt.datetime.fromisoformat(meta["taken"])
    if meta["gps"] is not None:
        assert -90 <= meta["gps"][0] <= 90 and -180 <= meta["gps"][1] <= 180
        assert all(math.isfinite(x) for x in meta["gps"])


@given(data=st.binary(max_size=2048), head=st.sampled_from([b"", b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"RIFF"]))
@settings(max_examples=100)
def test_the_metadata_reader_survives_any_bytes_named_like_a_photo(tmp_path_factory, data, head):
    path = tmp_path_factory.mktemp("bytes") / "photo.jpg"
    path.write_bytes(head + data)
    meta = photo_meta.read_meta(path)
    assert meta["taken_from"] in ("file", "none", "exif")


@pytest.mark.parametrize("count", [query_language.MAX_TERMS + 1])
def test_the_term_cap_is_the_bound_the_properties_rely_on(count):
    """Beside the properties: their bound is the one the parser enforces."""
    with pytest.raises(QueryError, match="at most"):
        query_language.parse(" ".join(f'"term {n}"' for n in range(count)))


def test_two_date_filters_that_do_not_overlap_are_refused_with_a_message():
    """Found by the first property: "year:1915 July 2023" made a period that ends before it starts
    (no photo could pass, and the page said only that none did)."""
    with pytest.raises(QueryError, match="do not overlap"):
        query_language.parse("a dog year:1915 July 2023", today=dt.date(2026, 12, 7))
    assert query_language.parse("a dog year:2023 July 2023").period.label == "2023, July 2023"
