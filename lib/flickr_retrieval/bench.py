"""Throughput on this machine, every path side by side in one run (no cache involved): feature
extraction for each offline image backbone and text encoder, and one training line.

    flickr-retrieval-bench [--images 128] [--captions 512] [--backbones ...] [--encoders ...] [--no-compile]

Image paths, end to end from the JPEG files: a naive one-image-at-a-time loop; batches of 8 through
the reference module (what EfficientNet-Lite0 ran before its convolutions were made plain: BatchNorm
unfolded); the package's path (:func:`backbones.inference_module`); that path under bfloat16
autocast; and under ``torch.compile``. Each path's features are compared with the reference module's
(minimum per-image cosine). Text: naive loop, the package's length-sorted batches, and bfloat16.
Training: steps of the two-branch model at the study's sizes, float32 against bfloat16 autocast.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time

import numpy as np
import torch

from .backbones import BACKBONES, OFFLINE_BACKBONES, inference_module, load_image_backbone
from .data import load_flickr8k
from .errors import cli_errors
from .features import extract_image_features
from .images import load_image
from .text import clean_caption
from .text_encoders import OFFLINE_TEXT_ENCODERS, TEXT_ENCODERS, encode_texts, load_text_encoder, pool


#: The path the package uses, per kind of row: the ratios are taken against it.
PACKAGE_PATHS = ("batches of 8, package path", "length-sorted batches of 64, package path", "float32")


@torch.no_grad()
def naive_images(backbone, files) -> np.ndarray:
    """Open, preprocess and run each image on its own, plain module, default layout."""
    transform = backbone.spec.preprocessing.transform()
    return np.concatenate([backbone.module(transform(load_image(path)).unsqueeze(0)).numpy() for path in files])


@torch.no_grad()
def naive_texts(encoder, texts) -> None:
    """Tokenize and encode each caption on its own."""
    for text in texts:
        tokens = encoder.tokenize([text])
        pool(encoder.model(**tokens).last_hidden_state, tokens["attention_mask"])


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def _min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return float((a * b).sum(1).min())


def image_paths(name: str, files: list, compile_: bool = True) -> list[dict]:
    bb = load_image_backbone(name)
    reference_module = copy.deepcopy(bb.module).to(memory_format=torch.channels_last)  # bb.module stays as loaded
    extract = lambda **kw: extract_image_features(bb, files, show_progress=False, **kw)  # noqa: E731
    extract(module=reference_module)  # warm-up (allocator, oneDNN primitives)
    reference, t_ref = _timed(lambda: extract(module=reference_module))
    rows = [("naive loop, reference module", _timed(lambda: naive_images(bb, files))[1], None),
            ("batches of 8, reference module", t_ref, reference)]
    fast = inference_module(bb)
    paths_ = {"batches of 8, package path": fast}
    if compile_:
        try:
            compiled = torch.compile(fast)
            t_compile = _timed(lambda: extract(module=compiled))[1]  # the first pass compiles
            paths_[f"package path + torch.compile (first pass {t_compile:.0f} s)"] = compiled
        except Exception as exc:  # no compiler, unsupported op: say so
            rows.append((f"torch.compile failed: {type(exc).__name__}", float("nan"), None))
    for label, bf16 in ((None, False), ("package path + bfloat16 autocast", True)):
        for path, module in ([(label, fast)] if bf16 else paths_.items()):
            extract(module=module, bf16=bf16)  # warm-up
            out, seconds = _timed(lambda: extract(module=module, bf16=bf16))
            rows.append((path, seconds, out))
    return [{"model": name, "unit": "images/s", "path": path, "rate": len(files) / t, "cosine": None if out is None else _min_cosine(out, reference)}
            for path, t, out in rows]


def text_paths(name: str, texts: list[str]) -> list[dict]:
    enc = load_text_encoder(name)
    encode_texts(enc, texts[:64])
    _, t_naive = _timed(lambda: naive_texts(enc, texts))
    reference, t_batched = _timed(lambda: encode_texts(enc, texts))
    bf16, t_bf16 = _timed(lambda: encode_texts(enc, texts, bf16=True))
    return [
        {"model": name, "unit": "captions/s", "path": "naive loop", "rate": len(texts) / t_naive, "cosine": None},
        {"model": name, "unit": "captions/s", "path": "length-sorted batches of 64, package path", "rate": len(texts) / t_batched, "cosine": 1.0},
        {"model": name, "unit": "captions/s", "path": "package path + bfloat16 autocast", "rate": len(texts) / t_bf16, "cosine": _min_cosine(bf16["mean"], reference["mean"])},
    ]


def training_paths(steps: int = 30, batch: int = 128) -> list[dict]:
    """Steps per second of the reference contrastive recipe's model (two branches, 384-d text,
    2560-d image features, batch 128, InfoNCE), on random inputs of those sizes."""
    from .config import RunConfig
    from .models import ModelSpec, build_model
    from .objective import Objective
    from .inputs import Queries
    from .sampling import Batch

    rows = []
    for label, bf16 in (("float32", False), ("bfloat16 autocast", True)):
        config = RunConfig(loss="infonce", negatives="in_batch", image_backbone="a+b")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            objective = Objective(build_model(ModelSpec.from_config(config, 384, 2560)), config)
            optimizer = torch.optim.Adam(objective.parameters(), lr=1e-3)
            images = torch.randn(6000, 2560)
            make = lambda: Batch(Queries(torch.randn(batch, 384)), torch.randint(0, 6000, (batch,)), images)  # noqa: E731
            batches = [make() for _ in range(steps + 5)]
            objective.train()
            start = None
            for i, b in enumerate(batches):
                if i == 5:
                    start = time.perf_counter()
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                    loss = objective(b)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            seconds = time.perf_counter() - start
        rows.append({"model": "dual encoder training", "unit": "samples/s", "path": label, "rate": steps * batch / seconds, "cosine": None})
    return rows


def run(n_images: int = 128, n_captions: int = 512, backbones=None, encoders=None, compile_: bool = True, training: bool = True) -> list[dict]:
    if n_images < 1 or n_captions < 1:
        raise ValueError(f"need at least one image and one caption, got {n_images} and {n_captions}")
    data = load_flickr8k()
    split = data.split("all")
    files = [data.image_path(i) for i in split.image_ids[:n_images]]
    texts = [clean_caption(t) for t in split.captions[:n_captions]]
    rows = []
    for name in backbones or OFFLINE_BACKBONES:
        rows += image_paths(name, files, compile_)
    for name in encoders or OFFLINE_TEXT_ENCODERS:
        rows += text_paths(name, texts)
    if training:
        rows += training_paths()
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
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile path (it compiles for a minute or more)")
    parser.add_argument("--no-training", action="store_true", help="skip the training line")
    args = parser.parse_args(argv)
    if args.images > 8091 or args.captions > 40455:
        parser.error("--images is at most 8091 and --captions at most 40455 (all of Flickr8k)")
    with cli_errors("flickr-retrieval-bench"):
        _report(run(args.images, args.captions, args.backbones, args.encoders, not args.no_compile, not args.no_training))
    return 0


def _report(rows: list[dict]) -> None:
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{'model':<22}{'path':<62}{'rate':>10}  {'unit':<11}{'vs package':>11}{'min cosine':>12}")
    package = {r["model"]: r["rate"] for r in rows if r["path"] in PACKAGE_PATHS}
    for r in rows:
        base = package.get(r["model"])
        ratio = f"{r['rate'] / base:.2f}x" if base else "-"
        cosine = "-" if r["cosine"] is None else f"{r['cosine']:.5f}"
        print(f"{r['model']:<22}{r['path']:<62}{r['rate']:>10.1f}  {r['unit']:<11}{ratio:>11}{cosine:>12}")


if __name__ == "__main__":
    sys.exit(main())
