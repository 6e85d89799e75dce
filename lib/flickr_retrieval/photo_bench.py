"""A photo library as a user has one, built from Flickr8k, and what indexing and searching it costs.

    flickr-retrieval-bench-photos --images 500 --out /tmp/library

Builds a folder of phone-sized JPEGs (each Flickr8k image upscaled to 4000x3000; every tenth one
stored sideways with an EXIF orientation tag, as a phone does; a few broken files), then measures
with a trained run's backbones: the first index (seconds, images per second), the index run again
with nothing changed, the index after adding 10 photos and changing 5, the peak memory of the
process, and the search page's first load and query latency over the collection. Each step runs
in this process, one after the other, with its own caches (a temporary ``RCP217_CACHE``).
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

from .errors import cli_errors

PHONE_SIZE = (4000, 3000)


def make_library(data, folder: Path, n: int, rng: np.random.Generator, start: int = 0) -> list[Path]:
    """``n`` phone-sized JPEGs from Flickr8k images ``start..start+n`` of the training split (every
    tenth stored sideways with EXIF orientation 6), in dated sub-folders."""
    ids = data.split("train").image_ids[start : start + n]
    out = []
    for k, image_id in enumerate(ids):
        with Image.open(data.image_path(image_id)) as im:
            big = im.convert("RGB").resize(PHONE_SIZE, Image.Resampling.BILINEAR)
        exif = Image.Exif()
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
    from .data import load_flickr8k
    from .results import load_run

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
    from . import gallery
    from .search import Searcher

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
    first = gallery.index_folder(root, "bench", backbones)
    s = time.perf_counter() - t
    lines.append(
        f"first index ({', '.join(backbones)}): {s:.1f} s, {first.images / s:.1f} images/s; {first.changes.summary()}; "
        f"{len(first.unreadable)} unreadable"
    )
    t = time.perf_counter()
    again = gallery.index_folder(root, "bench", backbones)
    lines.append(f"index again, nothing changed: {time.perf_counter() - t:.2f} s; {again.changes.summary()}")
    make_library(data, root, 10, rng, start=images)  # 10 new photos
    for path in files[1:6]:  # 5 edited: another picture in the same file
        with Image.open(path) as im:
            im.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(path, format="JPEG", quality=88)
    t = time.perf_counter()
    third = gallery.index_folder(root, "bench", backbones)
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
    lines.append(f"peak memory of this process: {_peak_mb():.0f} MB")
    return lines


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
