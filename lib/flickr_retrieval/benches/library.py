"""A phone library with its ground truth, built from Flickr8k *test* images, and what a new user meets
on it: time to the first answer, indexing speed, the command's latency, the date and place phrases
read as meant, every planted filter found exactly, and the relevance line's two error rates.

    flickr-retrieval-bench-library                      # 300 photos, the search tools' default run
    flickr-retrieval-bench-library --images 120 --run best --fresh

The library: year/event folders 2019-2024; each photo's EXIF carries a capture time, one of three
cameras and the GPS position of one of :data:`PLACES` (a suburb of Lyon among them; every tenth photo
has no position); every 100th photo is a HEIC and every 30th a PNG without EXIF (dated by its file
time). What is measured, in this process and in the commands a user runs (``RCP217_CACHE`` a
temporary folder: its own index, store and thumbnails; the feature cache of Flickr8k is shared):

* **time to the first answer**: ``flickr-retrieval-index`` on the library then one
  ``flickr-retrieval-search``, as commands; with ``--fresh`` the runs folder and the run cache are
  empty first (``RCP217_RESULTS``, a run cache of its own), so the index command trains the first model
  (``quickstart``) as after a clone (the environment's install and Flickr8k's features are not counted);
* **photos per second** of that first index, and the **command's latency** (3 more searches);
* **phrases read as meant**: ``tests/data/query_phrases.json`` (dates and places as people write them);
* **filter exactness**: for each planted year, place and camera, the photos the query lists against
  those planted (HEIC included);
* **the relevance line**: short queries ("dog") and short filtered ones ("dog in Paris") that have
  relevant photos (a photo whose Flickr8k captions say the word at least three times of five) and are
  answered "nothing matches well" (false alarms); absurd sentences and absurd words that are not
  (misses); full sentences (a library photo's own caption) answered "nothing".
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from .. import paths
from ..errors import cli_errors

#: Where the photos were taken (latitude, longitude), and the place filter a person would type for each.
PLACES = {
    "Paris": ((48.8566, 2.3522), "Paris"),
    "Lyon": ((45.7640, 4.8357), "Lyon"),
    "Caluire-et-Cuire": ((45.7953, 4.8464), "Lyon"),  # a suburb: a person says "Lyon"
    "New York": ((40.7128, -74.0060), "New York"),
    "Tokyo": ((35.6762, 139.6503), "Tokyo"),
    "Sydney": ((-33.8688, 151.2093), "Sydney"),
    "Chamonix": ((45.9237, 6.8694), "Chamonix"),
    "Nice": ((43.7102, 7.2620), "Nice"),
    "London": ((51.5074, -0.1278), "London"),
}
CAMERAS = (("Google", "Pixel 7", "pixel"), ("Apple", "iPhone 13", "iphone"), ("Canon", "Canon EOS R6", "canon"))
YEARS = tuple(range(2019, 2025))
EVENTS = ("holidays", "weekend", "family", "walks")
#: Words short queries are made of: things Flickr8k's captions name often.
CONCEPTS = ("dog", "snow", "beach", "bike", "child", "water", "grass", "ball", "girl", "man", "woman", "boy", "street")
ABSURD = (
    "a spreadsheet of quarterly tax figures",
    "a close-up of a computer chip on a circuit board",
    "an x-ray of a broken wrist",
    "the moon landing module on the lunar surface",
    "a bowl of ramen with chopsticks",
    "a screenshot of a text message",
    "a microscope image of bacteria",
    "a stack of invoices on an office desk",
    "a satellite photo of a hurricane",
    "a chess board in the middle of a game",
)
#: Each photo's size: Flickr8k's 224 x 224 copy enlarged four times, its shape kept (stretched to a
#: phone's 4:3, the CNN's centre crop would see another picture than the one its captions describe).
#: Short absurd queries: the short queries' line must answer "nothing" to them too.
ABSURD_SHORT = (
    "spreadsheet",
    "microchip",
    "x-ray",
    "ramen",
    "invoices",
    "hurricane",
    "chessboard",
    "keyboard",
    "tax form",
    "lunar module",
)
PHOTO_SIZE = (896, 896)


def plant(k: int) -> dict:
    """What photo ``k`` of the library carries (its ground truth)."""
    place = None if k % 10 == 9 else list(PLACES)[k % len(PLACES)]
    fmt = "HEIF" if k % 100 == 5 else "PNG" if k % 30 == 29 else "JPEG"
    year = YEARS[k % len(YEARS)]
    make, model, word = CAMERAS[k % len(CAMERAS)]
    exif = fmt != "PNG"
    return {
        "format": fmt,
        "exif": exif,
        "taken": f"{year}-{1 + k % 12:02d}-{1 + k % 28:02d}T10:{k % 60:02d}:00" if exif else None,
        "year": year if exif else None,
        "place": place if exif else None,
        "camera": word if exif else None,
        "make_model": (make, model),
        "folder": f"{year}/{EVENTS[k % len(EVENTS)]}",
    }


def make_library(data, folder: Path, n: int) -> dict[str, dict]:
    """``n`` photos of Flickr8k's test split in ``folder`` (see the module's docstring): relative path
    -> its ground truth (with the Flickr8k image id it shows)."""
    from ..search.photo_meta import DATETIME_ORIGINAL, EXIF_IFD, GPS_IFD, MAKE, MODEL, enable_heif

    enable_heif()
    truth = {}
    for k, image_id in enumerate(data.split("test").image_ids[:n]):
        p = plant(k)
        suffix = {"HEIF": ".heic", "PNG": ".png", "JPEG": ".jpg"}[p["format"]]
        rel = f"{p['folder']}/IMG_{k:04d}{suffix}"
        target = folder / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        with Image.open(data.image_path(image_id)) as im:
            photo = im.convert("RGB").resize(PHOTO_SIZE, Image.Resampling.BILINEAR)
        if p["exif"]:
            exif = Image.Exif()
            exif[MAKE], exif[MODEL] = p["make_model"]
            exif.get_ifd(EXIF_IFD)[DATETIME_ORIGINAL] = p["taken"].replace("-", ":").replace("T", " ")
            if p["place"]:
                lat, lon = PLACES[p["place"]][0]
                exif.get_ifd(GPS_IFD).update(
                    {
                        1: "N" if lat >= 0 else "S",
                        2: (abs(lat), 0.0, 0.0),
                        3: "E" if lon >= 0 else "W",
                        4: (abs(lon), 0.0, 0.0),
                    }
                )
            photo.save(target, format=p["format"], quality=88, exif=exif.tobytes())
        else:
            photo.save(target, format="PNG")
        truth[rel] = {**p, "image_id": image_id}
    return truth


def phrases_read_as_meant(doc: dict) -> tuple[int, list[tuple[str, dict]]]:
    """How many of a phrase set's phrases (``tests/data/query_phrases.json``) read as written down, and
    the others with their reading."""
    from ..search.query_language import parse

    today, known = dt.date.fromisoformat(doc["today"]), set(doc["known_places"])
    wrong = []
    for item in doc["phrases"]:
        q = parse(item["phrase"], known, today=today)
        got = {
            "date": q.period.label if q.period else None,
            "place": q.place,
            "words": q.terms[0].text if q.terms else "",
        }
        if got != {k: item[k] for k in got}:
            wrong.append((item["phrase"], got))
    return len(doc["phrases"]) - len(wrong), wrong


def filter_exactness(searcher, truth: dict[str, dict]) -> list[dict]:
    """For each planted year, place (as a person types it) and camera: the photos the filter passes
    against those planted, and whether the answer lists them all (a near-duplicate group once, with
    its count of copies)."""
    checks = [(f"in {y}", lambda t, y=y: t["year"] == y) for y in YEARS]
    for typed in sorted({v[1] for v in PLACES.values()}):
        checks.append((f"in {typed}", lambda t, typed=typed: t["place"] is not None and PLACES[t["place"]][1] == typed))
    checks += [(f"camera:{w}", lambda t, w=w: t["camera"] == w) for *_, w in CAMERAS]
    from ..search.query_language import parse

    photos = searcher.collection
    rows = []
    for query, planted in checks:
        expected = {rel for rel, t in truth.items() if planted(t)}
        try:
            mask = photos.matching(parse(query, photos.place_names()))  # the photos the filter passes
            found = {i for i, keep in zip(photos.ids, mask) if keep}
            answer = searcher.ask(query, k=len(truth))  # what the user sees: each near-duplicate group once
            said = answer.said
            shown = sum(1 + h.copies for h in answer.hits)
        except Exception as exc:  # noqa: BLE001 - a refused filter is a finding of the bench
            found, said, shown = set(), f"refused: {exc}", 0
        heic = {rel for rel in expected if truth[rel]["format"] == "HEIF"}
        rows.append(
            {
                "query": query,
                "planted": len(expected),
                "found": len(found & expected),
                "extra": len(found - expected),
                "heic_planted": len(heic),
                "heic_found": len(heic & found),
                "exact": found == expected,
                "listed_all": shown == len(found),
                "shown": shown,
                "said": said,
            }
        )
    return rows


def _relevant(data, image_ids: list[str], word: str) -> set[str]:
    """The images whose captions say ``word`` (or its plural) in at least three of five."""
    pattern = re.compile(rf"\b{word}s?\b")
    return {i for i in image_ids if sum(bool(pattern.search(c.lower())) for c in data.captions[i]) >= 3}


def line_error_rates(searcher, data, truth: dict[str, dict]) -> dict:
    """The relevance line's false alarms (short, short filtered and full-sentence queries that have
    relevant photos, answered "nothing matches well") and misses (absurd queries that are not)."""
    by_file = {t["image_id"]: rel for rel, t in truth.items()}
    short, filtered = [], []
    for word in CONCEPTS:
        relevant = {by_file[i] for i in _relevant(data, list(by_file), word)}
        if not relevant:
            continue
        short.append((word, searcher.ask(word, k=10).nothing_matches))
        cities = [PLACES[truth[r]["place"]][1] for r in relevant if truth[r]["place"]]
        if cities:
            city = max(set(cities), key=cities.count)
            filtered.append((f"{word} in {city}", searcher.ask(f"{word} in {city}", k=10).nothing_matches))
    sentences = [(data.captions[t["image_id"]][0], None) for t in list(truth.values())[:: max(1, len(truth) // 20)]]
    sentences = [(s, searcher.ask(s, k=10).nothing_matches) for s, _ in sentences]
    absurd = [(q, not searcher.ask(q, k=10).nothing_matches) for q in ABSURD]
    absurd_short = [(q, not searcher.ask(q, k=10).nothing_matches) for q in ABSURD_SHORT]
    return {
        "short": short,
        "short_filtered": filtered,
        "sentences": sentences,
        "absurd_missed": absurd,
        "absurd_short_missed": absurd_short,
    }


def _command(name: str, args: list[str], env: dict) -> tuple[float, subprocess.CompletedProcess]:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", f"import sys; from {name} import main; sys.exit(main())", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=3600,
    )
    return time.perf_counter() - started, done


def run(images: int, run_name: str | None, fresh: bool, folder: Path | None) -> list[str]:
    from ..data import load_flickr8k
    from ..search.searcher import Searcher, default_run

    data = load_flickr8k()
    lines = []
    with tempfile.TemporaryDirectory(prefix="rcp217-library-") as scratch:
        scratch = Path(scratch)
        root = folder or scratch / "library"
        t = time.perf_counter()
        truth = make_library(data, root, images)
        formats = {f: sum(t_["format"] == f for t_ in truth.values()) for f in ("JPEG", "HEIF", "PNG")}
        lines.append(
            f"library: {len(truth)} photos of Flickr8k's test split at {PHOTO_SIZE[0]}x{PHOTO_SIZE[1]} ({formats['JPEG']} JPEG, "
            f"{formats['HEIF']} HEIC, {formats['PNG']} PNG without EXIF), {len(PLACES)} places, {len(CAMERAS)} cameras; "
            f"built in {time.perf_counter() - t:.0f} s"
        )
        env = {**os.environ, "RCP217_CACHE": str(scratch / "cache")}
        (scratch / "cache").mkdir()
        own = ("collections", "photo-features", "thumbnails") + (("runs",) if fresh else ())  # made here
        for entry in paths.cache_dir().glob("*"):  # Flickr8k's features and weights (and runs): what a machine keeps
            if entry.name not in own:
                (scratch / "cache" / entry.name).symlink_to(entry)
        if fresh:
            env["RCP217_RESULTS"] = str(scratch / "results")  # no trained run: the index command makes one
        run_args = [] if run_name is None else ["--run", run_name]
        index_s, indexed = _command("flickr_retrieval.search.index_cli", [str(root), "--name", "bench-library"], env)
        if indexed.returncode != 0:
            raise RuntimeError(f"flickr-retrieval-index failed: {indexed.stderr.strip()[-500:]}")
        first_s, first = _command(
            "flickr_retrieval.search.searcher",
            ["a dog runs", "--collection", "bench-library", "--paths", *run_args],
            env,
        )
        trained_now = fresh and "quickstart" in indexed.stdout
        lines.append(
            f"time to the first answer{' from an empty runs folder' if fresh else ''}: {index_s + first_s:.0f} s "
            f"(index {index_s:.0f} s{', the first model trained in it' if trained_now else ''}; first search {first_s:.1f} s)"
        )
        said = re.search(r"indexed (\d+) image\(s\) .* in ([\d.]+) s", indexed.stdout)
        if said:
            lines.append(
                f"indexing: {said.group(1)} photos in {float(said.group(2)):.1f} s "
                f"({int(said.group(1)) / float(said.group(2)):.1f} photos/s; metadata and near-duplicates included)"
            )
        latencies = [
            _command(
                "flickr_retrieval.search.searcher", [q, "--collection", "bench-library", "--paths", *run_args], env
            )[0]
            for q in ("snow in New York", "a child on a beach", "two dogs play")
        ]
        lines.append(
            f"command latency (flickr-retrieval-search, a cold process each): median {np.median(latencies):.1f} s "
            f"of {len(latencies)}"
        )
        doc = json.loads((paths.project_root() / "tests" / "data" / "query_phrases.json").read_text())
        right, wrong = phrases_read_as_meant(doc)
        lines.append(
            f"phrases read as meant: {right} of {len(doc['phrases'])}" + (f"; not: {wrong[:3]}" if wrong else "")
        )
        saved = {k: os.environ.get(k) for k in ("RCP217_CACHE", "RCP217_RESULTS")}
        try:
            os.environ["RCP217_CACHE"] = env["RCP217_CACHE"]
            if fresh:
                os.environ["RCP217_RESULTS"] = env["RCP217_RESULTS"]
            chosen = run_name or default_run()
            searcher = Searcher(chosen, "bench-library", data=data)
            rows = filter_exactness(searcher, truth)
            exact = sum(r["exact"] for r in rows)
            listed = sum(r["listed_all"] for r in rows)
            heic = (sum(r["heic_found"] for r in rows), sum(r["heic_planted"] for r in rows))
            lines.append(
                f"filters exact (run {chosen!r}): {exact} of {len(rows)}; HEIC photos found {heic[0]} of {heic[1]} times planted; "
                f"answers listing every photo that passes (near-duplicates once, with their count): {listed} of {len(rows)}"
            )
            for r in rows:
                if not (r["exact"] and r["listed_all"]):
                    lines.append(
                        f"  {r['query']!r}: {r['found']} of {r['planted']} planted found, {r['extra']} others, "
                        f"{r['shown']} listed with their copies ({r['said']})"
                    )
            rates = line_error_rates(searcher, data, truth)
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        for name, what in (
            ("short", "short queries with relevant photos answered 'nothing matches well'"),
            ("short_filtered", "short filtered queries with relevant photos answered 'nothing'"),
            ("sentences", "a library photo's own caption answered 'nothing'"),
            ("absurd_missed", "absurd sentences not answered 'nothing' (misses)"),
            ("absurd_short_missed", "absurd words not answered 'nothing' (misses)"),
        ):
            items = rates[name]
            bad = [q for q, wrong_ in items if wrong_]
            lines.append(f"{what}: {len(bad)} of {len(items)}" + (f" ({', '.join(bad[:6])})" if bad else ""))
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="A phone library with ground truth from Flickr8k test images: first answer, speed, filters, the line."
    )
    parser.add_argument("--images", type=int, default=300, help="photos in the library (default 300)")
    parser.add_argument("--run", default=None, help="the run to search with (default: the search tools' default)")
    parser.add_argument(
        "--fresh", action="store_true", help="start from an empty runs folder (the first model is trained)"
    )
    parser.add_argument("--out", default=None, help="build the library in this folder (default: a temporary one)")
    args = parser.parse_args(argv)
    with cli_errors("flickr-retrieval-bench-library"):
        for line in run(args.images, args.run, args.fresh, Path(args.out) if args.out else None):
            print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
