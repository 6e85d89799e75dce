"""A photo library as a user has one, built from Flickr8k, and what indexing and searching it costs.

    flickr-retrieval-bench-photos --images 500 --out /tmp/library

Builds a folder of phone-sized JPEGs (each Flickr8k image upscaled to 4000x3000; every tenth one
stored sideways with an EXIF orientation tag, as a phone does; a few broken files), then measures
with a trained run's backbones: the first index (seconds, images per second; metadata and
near-duplicate groups included), the index run again with nothing changed, the index after adding
10 photos and changing 5, the peak memory of the process, the search page's first load, query
latency over the collection with and without filters, the near-duplicate threshold read on test
images, and watch mode's latency from a photo written to its appearance in search. Every photo
carries a synthetic EXIF capture time (2023-2025) and GPS position (one of six cities). Each step
runs in this process, one after the other, with its own caches (a temporary ``RCP217_CACHE``).
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import cli_errors

PHONE_SIZE = (4000, 3000)
#: Where the synthetic photos were taken (latitude, longitude).
CITIES = {
    "Paris": (48.8566, 2.3522),
    "New York City": (40.7128, -74.006),
    "Tokyo": (35.6762, 139.6503),
    "Sydney": (-33.8688, 151.2093),
    "Nairobi": (-1.2921, 36.8219),
    "Lima": (-12.0464, -77.0428),
}


def _phone_exif(k: int) -> Image.Exif:
    """Photo ``k``'s EXIF: a capture time (2023-2025, spread over the months), a phone's name, and the
    GPS position of one of :data:`CITIES` (every seventh photo has none)."""
    exif = Image.Exif()
    exif.get_ifd(0x8769)[36867] = f"{2023 + k % 3}:{1 + k % 12:02d}:{1 + k % 28:02d} 12:{k % 60:02d}:00"
    exif[271], exif[272] = "Google", "Pixel 7"
    if k % 7:
        lat, lon = list(CITIES.values())[k % len(CITIES)]
        exif.get_ifd(0x8825).update(
            {1: "N" if lat >= 0 else "S", 2: (abs(lat), 0.0, 0.0), 3: "E" if lon >= 0 else "W", 4: (abs(lon), 0.0, 0.0)}
        )
    return exif


def make_library(data, folder: Path, n: int, rng: np.random.Generator, start: int = 0) -> list[Path]:
    """``n`` phone-sized JPEGs from Flickr8k images ``start..start+n`` of the training split (every
    tenth stored sideways with EXIF orientation 6), in dated sub-folders."""
    ids = data.split("train").image_ids[start : start + n]
    out = []
    for k, image_id in enumerate(ids):
        with Image.open(data.image_path(image_id)) as im:
            big = im.convert("RGB").resize(PHONE_SIZE, Image.Resampling.BILINEAR)
        exif = _phone_exif(start + k)
        if (start + k) % 10 == 0:
            big = big.transpose(Image.Transpose.ROTATE_90)  # stored sideways; the tag says how to turn it upright
            exif[0x0112] = 6
        path = folder / f"2025-{1 + (start + k) % 12:02d}" / f"IMG_{start + k:05d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        big.save(path, format="JPEG", quality=88, exif=exif)
        out.append(path)
    return out


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(images: int, run_name: str, folder: Path | None, queries: int = 20) -> list[str]:
    from ..data import load_flickr8k
    from ..results import load_run

    data = load_flickr8k()
    trained = load_run(run_name)
    backbones = list(trained.config.backbones)
    rng = np.random.default_rng(0)
    lines = []
    saved_cache = os.environ.get("RCP217_CACHE")
    with tempfile.TemporaryDirectory(prefix="rcp217-photos-") as scratch:
        try:
            os.environ["RCP217_CACHE"] = str(Path(scratch) / "cache")  # the bench's own index, store and thumbnails
            lines += _measure(
                data,
                trained,
                run_name,
                backbones,
                Path(folder) if folder else Path(scratch) / "library",
                images,
                queries,
                rng,
            )
        finally:
            if saved_cache is None:
                os.environ.pop("RCP217_CACHE", None)
            else:
                os.environ["RCP217_CACHE"] = saved_cache
    return lines


def _measure(data, trained, run_name, backbones, root, images, queries, rng) -> list[str]:
    from ..search import collection
    from ..search.searcher import Searcher

    lines = []
    t = time.perf_counter()
    files = make_library(data, root, images, rng)
    (root / "broken-download.jpg").write_bytes(files[0].read_bytes()[:5000])
    (root / "notes.txt").write_text("not a photo")
    size_mb = sum(f.stat().st_size for f in files) / 2**20
    lines.append(
        f"library: {len(files)} photos of {PHONE_SIZE[0]}x{PHONE_SIZE[1]} ({size_mb:.0f} MB; {len(files) // 10} with an EXIF "
        f"rotation), 2 unreadable files; built in {time.perf_counter() - t:.0f} s"
    )
    t = time.perf_counter()
    first = collection.Collection.index(root, "bench", backbones, duplicates=True, data=data)
    s = time.perf_counter() - t
    lines.append(
        f"first index ({', '.join(backbones)}, metadata and near-duplicates included): {s:.1f} s, "
        f"{first.images / s:.1f} images/s; {first.changes.summary()}; {len(first.unreadable)} unreadable; "
        f"{first.duplicates_said}"
    )
    t = time.perf_counter()
    again = collection.Collection.index(root, "bench", backbones)
    lines.append(f"index again, nothing changed: {time.perf_counter() - t:.2f} s; {again.changes.summary()}")
    make_library(data, root, 10, rng, start=images)  # 10 new photos
    for path in files[1:6]:  # 5 edited: another picture in the same file
        with Image.open(path) as im:
            im.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(path, format="JPEG", quality=88)
    t = time.perf_counter()
    third = collection.Collection.index(root, "bench", backbones)
    lines.append(f"index after adding 10 and changing 5: {time.perf_counter() - t:.1f} s; {third.changes.summary()}")
    t = time.perf_counter()
    searcher = Searcher(trained, "bench", data=data)
    lines.append(f"search page's first load of the collection (run {run_name!r}): {time.perf_counter() - t:.2f} s")
    latencies = []
    for q in data.split("test").captions[: queries + 1]:
        t = time.perf_counter()
        searcher.search(q, k=10)
        latencies.append(1000 * (time.perf_counter() - t))
    latencies = latencies[1:]  # the first query warms up
    lines.append(
        f"query latency over {len(searcher.image_ids)} photos: median {np.median(latencies):.1f} ms, "
        f"90th percentile {np.percentile(latencies, 90):.1f} ms ({len(latencies)} queries)"
    )
    for suffix in (" in July 2023", " place:Paris", " -indoors after:2023-12 place:Japan"):
        latencies, found = [], 0
        for q in data.split("test").captions[: queries + 1]:
            t = time.perf_counter()
            answer = searcher.ask(q + suffix, k=10)
            latencies.append(1000 * (time.perf_counter() - t))
            found = answer.candidates
        lines.append(
            f"query latency with {suffix.strip()!r} ({found} photos pass): median {np.median(latencies[1:]):.1f} ms, "
            f"90th percentile {np.percentile(latencies[1:], 90):.1f} ms"
        )
    lines += _duplicates_measured(data, backbones[0])
    lines.append(_watch_latency(data, trained, backbones, root, images + 10, rng))
    lines.append(f"peak memory of this process: {_peak_mb():.0f} MB")
    return lines


def _duplicates_measured(data, backbone: str) -> list[str]:
    from ..search import duplicates

    t = time.perf_counter()
    calibration = duplicates.calibrate(backbone, data)
    took = time.perf_counter() - t
    measured = duplicates.measure(backbone, calibration["threshold"], data)
    grouped = ", ".join(f"{kind} {100 * v:.1f}%" for kind, v in measured["copies_grouped"].items())
    return [
        f"near-duplicate threshold ({backbone}, calibrated on {calibration['images']} training images in {took:.0f} s): "
        f"{calibration['threshold']:.4f}",
        f"read on {measured['images']} test images: copies grouped with their original: {grouped}; "
        f"{measured['false_groupings_per_million_pairs']:.0f} false groupings per million pairs of different images; "
        f"precision of the pairs grouped {measured['precision']:.3f}",
    ]


def _watch_latency(data, trained, backbones, root: Path, start: int, rng) -> str:
    """Seconds from a photo written into a watched folder to its appearance in a search."""
    import threading

    from ..search import watch
    from ..search.searcher import Searcher

    updates, stop = [], threading.Event()
    watcher = threading.Thread(
        target=watch.watch_folder,
        args=(root, "bench", backbones),
        kwargs={"settle_s": 1.0, "stop": stop, "on_update": updates.append},
        daemon=True,
    )
    watcher.start()
    while not updates:
        time.sleep(0.1)
    t = time.perf_counter()
    (new,) = make_library(data, root, 1, rng, start=start)
    name = new.relative_to(root).as_posix()
    while True:
        time.sleep(0.2)
        if any(name in u.changes.added for u in updates):
            break
    searcher = Searcher(trained, "bench", data=data)
    seen = name in searcher.image_ids
    took = time.perf_counter() - t
    stop.set()
    watcher.join()
    return (
        f"watch mode: a photo written to the folder is in search {took:.1f} s later ({'found' if seen else 'NOT found'}; "
        "1 s of settling, the incremental index, the collection loaded again)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Build a phone-photo library from Flickr8k and measure indexing and search on it."
    )
    parser.add_argument("--images", type=int, default=500, help="photos in the library (default 500)")
    parser.add_argument(
        "--run", default="best", help="the trained run whose backbones index and whose model searches (default: best)"
    )
    parser.add_argument(
        "--out", default=None, help="build the library in this folder (default: a temporary one, removed after)"
    )
    args = parser.parse_args(argv)
    with cli_errors("flickr-retrieval-bench-photos"):
        for line in run(args.images, args.run, Path(args.out) if args.out else None):
            print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
