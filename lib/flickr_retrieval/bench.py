"""Throughput of feature extraction on this machine: the package's batched path against a naive
one-item-at-a-time loop (no cache involved).

    flickr-retrieval-bench [--images 128] [--captions 512] [--backbones ...] [--encoders ...]
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from .backbones import BACKBONES, OFFLINE_BACKBONES, load_image_backbone
from .errors import cli_errors
from .data import load_flickr8k
from .features import extract_image_features
from .images import load_image
from .text import clean_caption
from .text_encoders import OFFLINE_TEXT_ENCODERS, TEXT_ENCODERS, encode_texts, load_text_encoder, pool


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
    if n_images < 1 or n_captions < 1:
        raise ValueError(f"need at least one image and one caption, got {n_images} and {n_captions}")
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


def positive_int(text: str) -> int:
    """An argparse type: an integer of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=positive_int, default=128, help="images per backbone (1 to 8091)")
    parser.add_argument("--captions", type=positive_int, default=512, help="captions per text encoder (1 to 40455)")
    parser.add_argument("--backbones", nargs="*", default=None, choices=list(BACKBONES))
    parser.add_argument("--encoders", nargs="*", default=None, choices=list(TEXT_ENCODERS))
    args = parser.parse_args(argv)
    if args.images > 8091 or args.captions > 40455:
        parser.error("--images is at most 8091 and --captions at most 40455 (all of Flickr8k)")
    with cli_errors("flickr-retrieval-bench"):
        _report(run(args.images, args.captions, args.backbones, args.encoders))
    return 0


def _report(rows: list[dict]) -> None:
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{'model':<20}{'unit':<12}{'naive loop':>12}{'batched':>10}{'speed-up':>10}")
    for r in rows:
        print(f"{r['model']:<20}{r['unit']:<12}{r['naive']:>12.1f}{r['batched']:>10.1f}{r['batched'] / r['naive']:>9.1f}x")


if __name__ == "__main__":
    sys.exit(main())
