"""Search at scale: query latency, memory and recall of the exact scan and of the approximate index
for 10^4, 10^5 and 10^6 images.

    flickr-retrieval-bench-index --sizes 10000 100000 1000000

Flickr8k has 8091 images, so larger collections are synthetic, built from a trained run's real
embeddings: each synthetic image is one of the 8091 embedded images plus Gaussian noise (per
dimension, ``--noise`` times that dimension's spread over the real images), L2-normalised as the
run's embeddings are. The queries are real: Flickr8k captions through the run's text branch (500
dev captions calibrate the approximate index, as the search tools do; 1000 test captions, which
it never saw, measure its recall@10 against the exact scan). Latency is per query, one query at a
time as the search page asks, median over ``--timed`` queries after one warm-up.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time

import numpy as np
import torch

from ..errors import cli_errors
from ..search.vector_index import ApproximateIndex, ExactIndex, recall_at, top_rows

SIZES = (10_000, 100_000, 1_000_000)


def synthetic_images(
    real: np.ndarray, n: int, noise: float, rng: np.random.Generator, chunk: int = 100_000
) -> np.ndarray:
    """``n`` unit vectors, each a row of ``real`` plus per-dimension Gaussian noise, normalised."""
    spread = real.std(axis=0).astype(np.float32)
    out = np.empty((n, real.shape[1]), dtype=np.float32)
    for start in range(0, n, chunk):
        rows = real[rng.integers(0, len(real), min(chunk, n - start))]
        block = rows + noise * spread * rng.standard_normal(rows.shape, dtype=np.float32)
        out[start : start + len(rows)] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def _latency_ms(index, queries: np.ndarray, k: int = 10) -> float:
    index.search(queries[:1], k)  # warm-up
    times = []
    for q in queries:
        t = time.perf_counter()
        index.search(q[None], k)
        times.append(1000 * (time.perf_counter() - t))
    return float(np.median(times))


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def embedded_flickr8k(run: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """The run's embeddings of all 8091 images, of 500 dev captions and of 1000 test captions
    (from the cached caption features), and its similarity."""
    from ..data import load_flickr8k
    from ..inputs import FeatureSpace, Normaliser, as_tensor
    from ..models import Queries
    from ..results import load_run

    trained = load_run(run)
    config, model = trained.config, trained.model.eval()
    data = load_flickr8k()
    text_norm = trained.text_norm or Normaliser(config.feature_norm)
    image_norms = trained.image_norms or [Normaliser(config.feature_norm) for _ in config.backbones]
    space = FeatureSpace(config, data, text_norm, image_norms)
    images, _ = space.images(data.split("all").image_ids)
    with torch.no_grad():
        image_emb = model.embed_images(as_tensor(images)).float().numpy()
        dev = model.embed_queries(Queries(as_tensor(space.text(data.split("dev").caption_ids[:500])))).float().numpy()
        test = model.embed_queries(Queries(as_tensor(space.text(data.split("test").caption_ids[::5])))).float().numpy()
    return image_emb, dev, test, model.similarity


def run(run_name: str, sizes=SIZES, noise: float = 0.5, timed: int = 100, seed: int = 0) -> list[str]:
    real, calibration, held_out, similarity = embedded_flickr8k(run_name)
    rng = np.random.default_rng(seed)
    lines = [
        f"run {run_name!r}: {real.shape[1]}-d {similarity} embeddings; synthetic images = one of the {len(real)} real ones + "
        f"{noise} x its spread of Gaussian noise; {len(calibration)} dev captions calibrate, {len(held_out)} test captions measure",
        "| images | exact: query | exact: memory | approximate: build | cells / nprobe | recall@10 (calibration / test captions) "
        "| approximate: query | approximate: memory |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    timed_queries = held_out[:timed]
    for n in sizes:
        vectors = synthetic_images(real, n, noise, rng)
        exact = ExactIndex(vectors, similarity)
        exact_ms = _latency_ms(exact, timed_queries)
        start = time.perf_counter()
        approximate = ApproximateIndex(vectors, similarity, calibration, seed=seed)
        build_s = time.perf_counter() - start
        recall = recall_at(top_rows(approximate, held_out), top_rows(exact, held_out))
        approximate_ms = _latency_ms(approximate, timed_queries)
        lines.append(
            f"| {n:,} | {exact_ms:.2f} ms | {exact.nbytes() / 2**20:.0f} MB | {build_s:.1f} s | {approximate.cells} / "
            f"{approximate.nprobe} | {approximate.recall_at_10:.3f} / {recall:.3f} | {approximate_ms:.2f} ms | "
            f"{approximate.nbytes() / 2**20:.0f} MB |"
        )
        del vectors, exact, approximate
    lines.append(f"peak memory of this process: {_peak_mb():.0f} MB; torch threads {torch.get_num_threads()}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Exact scan against FAISS's approximate index on 10^4-10^6 synthetic images."
    )
    parser.add_argument(
        "--run", default=None, help="the trained run whose embeddings are used (default: field_best if made, else best)"
    )
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=list(SIZES), help="collection sizes (default 10^4 10^5 10^6)"
    )
    parser.add_argument(
        "--noise", type=float, default=0.5, help="noise per dimension, in units of the real embeddings' spread"
    )
    parser.add_argument("--timed", type=int, default=100, help="single queries timed per size (median reported)")
    args = parser.parse_args(argv)
    with cli_errors("flickr-retrieval-bench-index"):
        from ..results import default_run

        for line in run(args.run or default_run(), args.sizes, args.noise, args.timed):
            print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
