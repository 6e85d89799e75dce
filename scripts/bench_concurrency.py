"""Query latency of the search page under concurrent clients (bounded loops on 127.0.0.1).

    .venv/bin/python scripts/bench_concurrency.py --clients 1 10 50 --queries 200
    .venv/bin/python scripts/bench_concurrency.py --code /tmp/old-checkout/lib   # another version's server

Starts ``flickr-retrieval-serve`` (the package under ``--code``, default this checkout's) on a free
port with run ``best`` over all 8091 images, waits until it answers, then for each number of
clients sends ``--queries`` test captions in all, each client one request at a time, and prints the
median and 99th percentile of the request latencies seen by the clients.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 10, 50])
    parser.add_argument("--queries", type=int, default=200, help="requests per level, spread over the clients")
    parser.add_argument("--run", default="best")
    parser.add_argument("--code", default=str(ROOT / "lib"), help="the lib/ folder whose server to start")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "lib"))
    from flickr_retrieval.data import load_flickr8k

    captions = load_flickr8k().split("test").captions
    port = free_port()
    env = {**os.environ, "PYTHONPATH": args.code, "RCP217_ROOT": str(ROOT)}
    server = subprocess.Popen(
        [sys.executable, "-m", "flickr_retrieval.search.serve", "--run", args.run, "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}/api/search?"
    try:
        for _ in range(600):
            try:
                urllib.request.urlopen(base + "q=a+dog&k=1", timeout=5).read()
                break
            except OSError:
                time.sleep(0.5)
        else:
            raise SystemExit("the server did not start")
        for clients in args.clients:
            latencies, lock, errors = [], threading.Lock(), []
            per_client = max(1, args.queries // clients)

            def client(n: int, per_client=per_client, latencies=latencies, lock=lock, errors=errors) -> None:
                for i in range(per_client):
                    q = captions[(n * per_client + i) % len(captions)]
                    start = time.perf_counter()
                    try:
                        body = json.loads(
                            urllib.request.urlopen(base + urllib.parse.urlencode({"q": q, "k": 10}), timeout=120).read()
                        )
                        ok = "hits" in body
                    except OSError as exc:
                        ok, body = False, str(exc)
                    with lock:
                        (latencies if ok else errors).append(1000 * (time.perf_counter() - start) if ok else body)

            threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
            started = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            wall = time.perf_counter() - started
            latencies.sort()
            p = lambda q, lat=latencies: lat[min(len(lat) - 1, int(q * len(lat)))]
            print(
                f"{clients:3d} clients: {len(latencies)} queries in {wall:.1f} s ({len(latencies) / wall:.1f}/s), "
                f"p50 {p(0.5):.0f} ms, p99 {p(0.99):.0f} ms, errors {len(errors)}",
                flush=True,
            )
    finally:
        server.terminate()
        server.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
