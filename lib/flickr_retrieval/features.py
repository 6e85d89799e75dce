"""Feature extraction with an on-disk cache: images through a backbone, captions through a text encoder.

The cache key holds everything that changes the numbers: the model, its weights (file hash or weights
id), the preprocessing, the pooling, and the ordered list of images or caption texts. A second call
with the same inputs reads the cache; anything else recomputes.

Command line (all 8091 images and 40455 captions, offline models by default)::

    flickr-retrieval-features --images efficientnet_lite0 mobilenet_v2 --text minilm
    flickr-retrieval-features --images efficientnet_lite0 mobilenet_v2 --text --views crops  # + 9 augmented views
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from . import cache
from .backbones import (
    BACKBONES,
    INFERENCE_PATH,
    OFFLINE_BACKBONES,
    ImageBackbone,
    inference_module,
    load_image_backbone,
)
from .data import Flickr8k, load_flickr8k
from .errors import cli_errors
from .helpers import progress
from .images import CROP_SCALE, VIEW_SETS, VIEWS, ImageFiles
from .text import clean_caption
from .text_encoders import OFFLINE_TEXT_ENCODERS, POOLINGS, TEXT_ENCODERS, encode_texts, load_text_encoder

FEATURE_CODE_VERSION = 1  # bump when a change of this module changes the numbers


@dataclass
class FeatureTable:
    """Row vectors with their ids.

    Attributes
    ----------
    ids : list[str]
        image ids (``<image>.jpg``) or caption ids (``<image>.jpg#<n>``).
    vectors : np.ndarray
        float32, shape (len(ids), dim).
    source : dict
        what made them (the cache key's parts).
    cache_file : Path or None
    from_cache : bool
    seconds : float
        time this call took (extraction, or just the cache read).
    """

    ids: list[str]
    vectors: np.ndarray
    source: dict = field(default_factory=dict)
    cache_file: Path | None = None
    from_cache: bool = False
    seconds: float = 0.0

    @property
    def dim(self) -> int:
        return self.vectors.shape[1]

    def rows(self, ids: list[str]) -> np.ndarray:
        """The vectors of ``ids``, in that order."""
        index = {name: i for i, name in enumerate(self.ids)}
        try:
            return self.vectors[[index[name] for name in ids]]
        except KeyError as exc:
            raise KeyError(f"no features for {exc.args[0]!r} in this table ({self.source.get('model')})") from None


@torch.inference_mode()
def extract_image_features(
    backbone: ImageBackbone,
    files: list[Path],
    batch_size: int | None = None,
    hflip: bool = False,
    *,
    crop: str | None = None,
    module: torch.nn.Module | None = None,
    bf16: bool = False,
    show_progress: bool = True,
) -> np.ndarray:
    """Run ``backbone`` over image files in batches; (len(files), dim) float32.

    ``batch_size`` defaults to the backbone's (:attr:`BackboneSpec.batch_size`, the fastest measured).
    ``hflip``/``crop``: the view (:meth:`ImagePreprocessing.transform`). ``module`` (default:
    :func:`backbones.inference_module`) and ``bf16`` (bfloat16 autocast) let the
    benchmark compare paths on the same loop.
    """
    from dataclasses import replace

    batch_size = batch_size or backbone.spec.batch_size
    preprocessing = replace(backbone.spec.preprocessing, hflip=hflip)
    loader = torch.utils.data.DataLoader(ImageFiles(files, preprocessing, crop), batch_size=batch_size, num_workers=0)
    module = module if module is not None else inference_module(backbone)
    out = np.zeros((len(files), backbone.spec.dim), dtype=np.float32)
    start = 0
    batches = progress(loader, f"{backbone.name} images", unit="batch") if show_progress else loader
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        for batch in batches:
            feats = module(batch.contiguous(memory_format=torch.channels_last))
            out[start : start + len(batch)] = feats.float().numpy()
            start += len(batch)
    return out


def image_cache_parts(backbone: str, weights: str, preprocessing: dict, ids: list[str], content: str) -> dict:
    """The cache key of image features: everything that changes them. ``content`` is a digest of the
    files' bytes (not only their names); the batch size is left out (float rounding only, tested)."""
    return {
        "kind": "image",
        "model": backbone,
        "weights": weights,
        "preprocessing": preprocessing,
        "inference": INFERENCE_PATH,
        "images": cache.sha256_lines(ids),
        "content": content,
        "n": len(ids),
        "code": FEATURE_CODE_VERSION,
    }


def image_features(
    data: Flickr8k,
    backbone: str = "efficientnet_lite0",
    image_ids: list[str] | None = None,
    *,
    pretrained: bool = True,
    hflip: bool = False,
    crop: str | None = None,
    batch_size: int | None = None,
) -> FeatureTable:
    """Features of ``image_ids`` (default: all 8091 images) through a backbone, cached.

    ``pretrained=False`` runs seeded random weights on purpose (the report's broken features);
    ``hflip=True`` mirrors every image first; ``crop`` takes one corner crop instead of the whole
    image (see :func:`view_features`).
    """
    t0 = time.perf_counter()
    ids = list(image_ids) if image_ids is not None else data.image_ids
    if backbone not in BACKBONES:
        raise ValueError(f"unknown image backbone {backbone!r}; choose one of {list(BACKBONES)}")
    spec = BACKBONES[backbone]
    loaded = None
    if pretrained:
        loaded = load_image_backbone(backbone)  # fails here, before any work, when weights are missing
        weights = loaded.weights
    else:
        weights = "random-init seed=0"
    preprocessing = {**spec.preprocessing.__dict__, "hflip": hflip}
    if crop is not None:  # only then: the keys of whole-image features stay what they were
        preprocessing.update(crop=crop, crop_scale=CROP_SCALE)
    parts = image_cache_parts(backbone, weights, preprocessing, ids, data.content_fingerprint(ids))

    def compute():
        model = loaded or load_image_backbone(backbone, pretrained=False, seed=0)
        files = [data.image_path(i) for i in ids]
        return {"vectors": extract_image_features(model, files, batch_size, hflip, crop=crop)}

    arrays, path, hit = cache.cached(f"image-{backbone}", parts, compute, expect={"vectors": (len(ids), spec.dim)})
    return FeatureTable(ids, arrays["vectors"], parts, path, hit, time.perf_counter() - t0)


def view_features(
    data: Flickr8k, backbone: str, view: str = "full", image_ids: list[str] | None = None
) -> FeatureTable:
    """Features of one augmented view (:data:`flickr_retrieval.images.VIEWS`) of every image, cached
    like :func:`image_features`; ``full`` is the whole image, the features every other run uses."""
    if view not in VIEWS:
        raise ValueError(f"unknown view {view!r}; choose one of {list(VIEWS)}")
    v = VIEWS[view]
    return image_features(data, backbone, image_ids, hflip=v.hflip, crop=v.crop)


def caption_features(
    caption_ids: list[str],
    texts: list[str],
    encoder: str = "minilm",
    pooling: str = "mean",
    *,
    batch_size: int = 64,
) -> FeatureTable:
    """Features of the given texts through a text encoder, cached (both poolings in one entry)."""
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
    if encoder not in TEXT_ENCODERS:
        raise ValueError(f"unknown text encoder {encoder!r}; choose one of {list(TEXT_ENCODERS)}")
    if len(caption_ids) != len(texts):
        raise ValueError("caption_ids and texts differ in length")
    t0 = time.perf_counter()
    loaded = load_text_encoder(encoder)
    parts = {
        "kind": "text",
        "model": encoder,
        "weights": loaded.weights,
        "max_length": loaded.spec.max_length,
        "texts": cache.sha256_lines(list(texts)),
        "ids": cache.sha256_lines(list(caption_ids)),
        "n": len(texts),
        "code": FEATURE_CODE_VERSION,
    }

    def compute():
        bar = lambda batches: progress(batches, f"{encoder} captions", unit="batch")  # noqa: E731
        return encode_texts(loaded, list(texts), batch_size, bar)

    dim = loaded.model.config.hidden_size
    arrays, path, hit = cache.cached(f"text-{encoder}", parts, compute, expect={p: (len(texts), dim) for p in POOLINGS})
    return FeatureTable(
        list(caption_ids), arrays[pooling], {**parts, "pooling": pooling}, path, hit, time.perf_counter() - t0
    )


def dataset_caption_features(data: Flickr8k, encoder: str = "minilm", pooling: str = "mean") -> FeatureTable:
    """All 40455 captions through the final pipeline (:func:`clean_caption`) and a text encoder."""
    split = data.split("all")
    return caption_features(split.caption_ids, [clean_caption(t) for t in split.captions], encoder, pooling)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Extract and cache Flickr8k features (all images, all captions).")
    for flag, what, known, default in (
        ("--images", "backbones", list(BACKBONES), OFFLINE_BACKBONES),
        ("--text", "text encoders", list(TEXT_ENCODERS), OFFLINE_TEXT_ENCODERS),
    ):
        parser.add_argument(flag, nargs="*", default=default, choices=known, help=f"{what} among {known}")
    parser.add_argument(
        "--views",
        default="full",
        choices=list(VIEW_SETS),
        help="augmented views of every image to extract too (crops: 6 views, flip: 2); default: the image only",
    )
    parser.add_argument(
        "--data", default=None, help="Flickr8k folder (default: FLICKR8K_DIR, data/flickr8k, ../shared/flickr8k)"
    )
    args = parser.parse_args(argv)
    with cli_errors("flickr-retrieval-features"):
        _extract_all(args)
    return 0


def _extract_all(args) -> None:
    data = load_flickr8k(args.data)
    print(f"Flickr8k at {data.root} ({data.layout}): {data.summary()}")
    for name in args.images:
        for view in VIEW_SETS[args.views]:
            table = view_features(data, name, view)
            rate = len(table.ids) / table.seconds
            how = "cache" if table.from_cache else f"{rate:.1f} images/s"
            label = name if view == "full" else f"{name} [{view}]"
            print(f"{label}: {table.vectors.shape} in {table.seconds:.1f} s ({how}) -> {table.cache_file}")
    for name in args.text:
        table = dataset_caption_features(data, name)
        rate = len(table.ids) / table.seconds
        how = "cache" if table.from_cache else f"{rate:.1f} captions/s"
        print(f"{name}: {table.vectors.shape} in {table.seconds:.1f} s ({how}) -> {table.cache_file}")


def describe(tables: dict[str, FeatureTable]):
    """A DataFrame of feature tables: shape, weights, cache use and time (rates only when computed)."""
    import pandas as pd

    rows = {}
    for name, t in tables.items():
        unit = "images/s" if t.source.get("kind") == "image" else "captions/s"
        rows[name] = {
            "rows": t.vectors.shape[0],
            "dim": t.vectors.shape[1],
            "weights": t.source.get("weights"),
            "from cache": t.from_cache,
            "seconds": round(t.seconds, 1),
            "throughput": "-" if t.from_cache else f"{len(t.ids) / t.seconds:.1f} {unit}",
            "cache file": t.cache_file.name if t.cache_file else None,
        }
    return pd.DataFrame.from_dict(rows, orient="index")


if __name__ == "__main__":
    sys.exit(main())
