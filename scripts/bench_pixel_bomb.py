"""Memory of the search page under hostile photos: a pixel bomb and large views of a photo near the limit.

    .venv/bin/python scripts/bench_pixel_bomb.py --run best

Builds a folder with a pixel bomb (a PNG of 10000 x 10000 pixels, a few hundred KB: refused from its
header by the index) and a photo just under the 64-megapixel limit (a PNG of 7900 x 8000), indexes
it, starts ``flickr-retrieval-serve`` on it in a child process on 127.0.0.1, and measures the
server's resident memory (peak, from /proc) before and after 3 concurrent ``?size=large`` views of
the large photo and of the bomb's position, and how long each took.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> tuple[float, float]:
    """(current, peak) resident memory of ``pid`` in MB."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def views(url: str, n: int) -> list[tuple[int, float]]:
    """``n`` concurrent GETs of ``url``: (status, seconds) each."""
    out = []

    def one():
        start = time.perf_counter()
        try:
            with urllib.request.urlopen(url, timeout=120) as answer:
                answer.read()
                status = answer.status
        except urllib.error.HTTPError as exc:
            status = exc.code
        out.append((status, time.perf_counter() - start))

    threads = [threading.Thread(target=one) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default="best")
    args = parser.parse_args()
    python = sys.executable
    with tempfile.TemporaryDirectory(prefix="rcp217-bomb-") as scratch:
        folder = Path(scratch) / "photos"
        folder.mkdir()
        Image.new("L", (10_000, 10_000)).save(folder / "bomb.png", optimize=True)
        rng = np.random.default_rng()  # new pixels each run: no view of it is cached yet
        tile = Image.fromarray(rng.integers(0, 255, (1000, 1000, 3), dtype=np.uint8))
        big = Image.new("RGB", (7_900, 8_000))
        for x in range(0, 7_900, 1000):
            for y in range(0, 8_000, 1000):
                big.paste(tile, (x, y))
        big.save(folder / "large.png")
        del big
        print(
            f"bomb.png {(folder / 'bomb.png').stat().st_size // 1024} KB (100 megapixels), "
            f"large.png {(folder / 'large.png').stat().st_size // 2**20} MB (63.2 megapixels)"
        )
        # the project's cache: the run's threshold reads Flickr8k's cached dev features (the collection is forgotten after)
        env = os.environ | {"PYTHONPATH": str(ROOT / "lib")}
        index = subprocess.run(
            [
                python,
                "-m",
                "flickr_retrieval.search.collection",
                str(folder),
                "--name",
                "bomb-bench",
                "--run",
                args.run,
                "--no-duplicates",
            ],
            env=env,
            capture_output=True,
            text=True,
        )
        print(index.stdout.strip() or index.stderr.strip())
        port = free_port()
        server = subprocess.Popen(
            [
                python,
                "-m",
                "flickr_retrieval.search.serve",
                "--port",
                str(port),
                "--run",
                args.run,
                "--collection",
                "bomb-bench",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            for _ in range(600):
                try:
                    with urllib.request.urlopen(f"{base}/api/search?q=a+dog&k=1", timeout=5) as answer:
                        ids = [h["image"] for h in json.load(answer)["hits"]]
                    break
                except OSError:
                    time.sleep(0.5)
            print(f"server loaded: {rss_mb(server.pid)[0]:.0f} MB resident")
            for label, path in (
                ("the 63-megapixel photo", ids[0]),
                ("a position past the collection", "/image/bomb-bench/5"),
            ):
                before = rss_mb(server.pid)
                timed = views(f"{base}{path}?size=large", 3)
                after = rss_mb(server.pid)
                print(
                    f"3 concurrent large views of {label}: statuses {sorted(s for s, _ in timed)}, "
                    f"{max(t for _, t in timed):.1f} s the slowest; resident {before[0]:.0f} -> {after[0]:.0f} MB, "
                    f"the process's peak {before[1]:.0f} -> {after[1]:.0f} MB"
                )
        finally:
            server.terminate()
            server.wait()
        subprocess.run(
            [
                python,
                "-c",
                "from flickr_retrieval.search import Collection; Collection.forget('bomb-bench')",
            ],
            env=env,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
