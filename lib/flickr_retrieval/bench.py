"""Throughput of feature extraction on this machine: the package's batched path against a naive
one-item-at-a-time loop (no cache involved).

    flickr-retrieval-bench [--images 128] [--captions 512] [--backbones ...] [--encoders ...]
"""

from __future__ import annotations

import argparse
import time

import torch

from .backbones import OFFLINE_BACKBONES, load_image_backbone
from .data import load_flickr8k
from .features import extract_image_features
from .images import load_image
from .text import clean_caption
from .text_encoders import OFFLINE_TEXT_ENCODERS, encode_texts, load_text_encoder, pool


@torch.no_grad()
def naive_images(backbone, files) -> float:
    """Seconds for: open, preprocess and run each image on its own, plain module, default layout."""
    transform = backbone.spec.preprocessing.transform()
    start = time.perf_counter()
    for path in files:
        backbone.module(transform(load_image(path)).unsqueeze(0))
    return time.perf_counter() - start


@torch.no_grad()
def naive_texts(encoder, texts) -> float:
    """Seconds for: tokenize and encode each caption on its own."""
    start = time.perf_counter()
    for text in texts:
        tokens = encoder.tokenize([text])
        pool(encoder.model(**tokens).last_hidden_state, tokens["attention_mask"])
    return time.perf_counter() - start


def run(n_images: int = 128, n_captions: int = 512, backbones=None, encoders=None) -> list[dict]:
    data = load_flickr8k()
    split = data.split("all")
    files = [data.image_path(i) for i in split.image_ids[:n_images]]
    texts = [clean_caption(t) for t in split.captions[:n_captions]]
    rows = []
    for name in backbones or OFFLINE_BACKBONES:
        bb = load_image_backbone(name)
        naive = naive_images(bb, files)
        start = time.perf_counter()
        extract_image_features(bb, files)
        batched = time.perf_counter() - start
        rows.append({"model": name, "unit": "images/s", "naive": n_images / naive, "batched": n_images / batched})
    for name in encoders or OFFLINE_TEXT_ENCODERS:
        enc = load_text_encoder(name)
        naive = naive_texts(enc, texts)
        start = time.perf_counter()
        encode_texts(enc, texts)
        batched = time.perf_counter() - start
        rows.append({"model": name, "unit": "captions/s", "naive": n_captions / naive, "batched": n_captions / batched})
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=128, help="images per backbone")
    parser.add_argument("--captions", type=int, default=512, help="captions per text encoder")
    parser.add_argument("--backbones", nargs="*", default=None)
    parser.add_argument("--encoders", nargs="*", default=None)
    args = parser.parse_args(argv)
    rows = run(args.images, args.captions, args.backbones, args.encoders)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{'model':<20}{'unit':<12}{'naive loop':>12}{'batched':>10}{'speed-up':>10}")
    for r in rows:
        print(f"{r['model']:<20}{r['unit']:<12}{r['naive']:>12.1f}{r['batched']:>10.1f}{r['batched'] / r['naive']:>9.1f}x")


if __name__ == "__main__":
    main()
