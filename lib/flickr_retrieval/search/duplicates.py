"""Near-duplicate photos: the same picture mirrored, re-encoded or resized, grouped by their features.

Two photos are near-duplicates when the cosine of their pooled CNN features (the collection's first
backbone, the photo index's own vectors) exceeds a threshold **calibrated on Flickr8k**
(:func:`calibrate`): training images and copies made of them (mirrored, re-encoded as JPEG at
quality 40, resized to 3/4) must group, different training images must not. The threshold is the
cosine that at most :data:`FALSE_PAIR_RATE` of the pairs of different images exceed; it is measured
once per backbone and cached beside the feature cache. :func:`measure` reads the same on test
images: how many copies of each kind group with their original, and how many pairs of different
images group (false groupings per million pairs).

Groups (:func:`groups`): connected photos above the threshold, computed when a folder is indexed
(up to :data:`MAX_IMAGES` photos) and stored in its index; search shows one photo per group with
the number of its copies. ``flickr-retrieval-duplicates NAME`` lists them (:func:`flickr_retrieval.search.index_cli.duplicates_main`).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from .. import paths
from ..backbones import load_image_backbone
from ..cache import cache_key
from ..helpers import atomic_write, l2_normalise
from .photo_index import FeatureStore, embed_files, store_key

#: Calibration: the share of pairs of different images allowed to reach the threshold.
FALSE_PAIR_RATE = 1e-4
#: Images whose copies calibrate (train) and measure (test) the threshold.
CALIBRATION_IMAGES = 300
#: Collections larger than this are not grouped (every pair is compared: quadratic).
MAX_IMAGES = 20_000
#: How each copy is made from an original.
COPIES = {
    "mirrored": lambda im: im.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
    "re-encoded": lambda im: im,  # saved at quality 40 below
    "resized 3/4": lambda im: im.resize((im.width * 3 // 4, im.height * 3 // 4), Image.Resampling.LANCZOS),
}


def _vectors(files: list[Path], backbone, root: Path) -> np.ndarray:
    """Unit vectors of ``files`` through the photo index's own path (a scratch store under ``root``)."""
    store = FeatureStore(backbone, root=root)
    decoded = embed_files(files, [backbone], [store])
    bad = [f.name for f, d in zip(files, decoded) if d.error]
    if bad:
        raise ValueError(f"could not embed {bad}")
    return l2_normalise(store.get([d.sha256 for d in decoded]).astype(np.float64))


def _copies_of(sources: list[Path], folder: Path) -> dict[str, list[Path]]:
    """The originals (re-saved as they are) and each kind of copy, as files under ``folder``."""
    out: dict[str, list[Path]] = {"original": [], **{kind: [] for kind in COPIES}}
    for n, source in enumerate(sources):
        with Image.open(source) as image:
            image = image.convert("RGB")
            original = folder / f"{n}-original.png"
            image.save(original)
            out["original"].append(original)
            for kind, make in COPIES.items():
                target = folder / f"{n}-{kind.replace(' ', '_').replace('/', '-')}.jpg"
                make(image).save(target, quality=40 if kind == "re-encoded" else 90)
                out[kind].append(target)
    return out


def _copy_cosines(sources: list[Path], backbone) -> dict[str, np.ndarray]:
    """Each kind of copy's cosine to its original, and the cosines of every pair of different originals."""
    with tempfile.TemporaryDirectory(prefix="rcp217-duplicates-") as scratch:
        folder = Path(scratch)
        made = _copies_of(sources, folder)
        vectors = {kind: _vectors(files, backbone, folder / "store") for kind, files in made.items()}
    originals = vectors["original"]
    out = {kind: np.sum(originals * v, axis=1) for kind, v in vectors.items() if kind != "original"}
    pairs = originals @ originals.T
    out["different images"] = pairs[np.triu_indices(len(originals), k=1)]
    return out


def _sources(data, split: str, n: int) -> list[Path]:
    ids = data.split(split).image_ids
    picked = np.random.default_rng(0).choice(len(ids), size=min(n, len(ids)), replace=False)
    return [data.image_path(ids[i]) for i in sorted(picked)]


def calibrate(backbone_name: str, data=None, n: int = CALIBRATION_IMAGES, say=None) -> dict:
    """The threshold for ``backbone_name``, calibrated on ``n`` Flickr8k training images and their
    copies (cached per backbone and ``n``): ``{"threshold", "backbone", "images", "copies_grouped"
    (per kind, on the training images), "false_pair_rate"}``. ``say``: called with a line before a
    calibration that is not cached yet (it takes minutes: the indexer says what it is doing)."""
    backbone = load_image_backbone(backbone_name)
    key = cache_key({"duplicates": 1, "store": store_key(backbone), "n": n, "rate": FALSE_PAIR_RATE})[:16]
    path = paths.cache_dir() / f"duplicates-{backbone_name}-{key}.json"
    try:
        cached = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(cached.get("threshold"), float):
            return cached
    except (OSError, ValueError, AttributeError):
        pass
    if data is None:
        from ..data import load_flickr8k

        data = load_flickr8k()
    if say is not None:
        say(
            f"calibrating the near-duplicate threshold of {backbone_name} on {n} Flickr8k training images and "
            f"{len(COPIES)} copies of each (once per backbone, then cached: a few minutes on 2 cores)"
        )
    cosines = _copy_cosines(_sources(data, "train", n), backbone)
    different = cosines.pop("different images")
    threshold = float(np.quantile(different, 1.0 - FALSE_PAIR_RATE, method="higher"))
    result = {
        "threshold": threshold,
        "backbone": backbone_name,
        "images": len(cosines["mirrored"]),
        "copies_grouped": {kind: float(np.mean(c > threshold)) for kind, c in cosines.items()},
        "false_pair_rate": float(np.mean(different > threshold)),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda handle: handle.write(json.dumps(result, indent=1).encode("utf-8")))
    return result


def measure(backbone_name: str, threshold: float, data=None, n: int = CALIBRATION_IMAGES) -> dict:
    """The threshold read on ``n`` Flickr8k **test** images: the share of each kind of copy that groups
    with its original, false groupings per million pairs of different images, and the precision of
    the pairs grouped (copies against copies and different pairs, equal numbers of each kind)."""
    if data is None:
        from ..data import load_flickr8k

        data = load_flickr8k()
    cosines = _copy_cosines(_sources(data, "test", n), load_image_backbone(backbone_name))
    different = cosines.pop("different images")
    found = {kind: float(np.mean(c > threshold)) for kind, c in cosines.items()}
    false_rate = float(np.mean(different > threshold))
    true_pairs = sum(np.sum(c > threshold) for c in cosines.values())
    false_pairs = false_rate * len(cosines["mirrored"]) * (len(cosines["mirrored"]) - 1) / 2
    return {
        "copies_grouped": found,
        "false_groupings_per_million_pairs": 1e6 * false_rate,
        "precision": float(true_pairs / max(true_pairs + false_pairs, 1e-9)),
        "images": len(cosines["mirrored"]),
    }


def groups(vectors: np.ndarray, threshold: float, chunk: int = 2048) -> list[list[int]]:
    """Connected sets (two or more) of rows whose cosine exceeds ``threshold``, each sorted, largest
    first (ties: by first row)."""
    unit = l2_normalise(np.asarray(vectors, dtype=np.float32))
    parent = list(range(len(unit)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for start in range(0, len(unit), chunk):
        block = unit[start : start + chunk] @ unit.T
        rows, cols = np.nonzero(block > threshold)
        for r, c in zip(rows + start, cols):
            if c > r:
                a, b = root(r), root(c)
                if a != b:
                    parent[max(a, b)] = min(a, b)
    members: dict[int, list[int]] = {}
    for i in range(len(unit)):
        members.setdefault(root(i), []).append(i)
    return sorted((m for m in members.values() if len(m) > 1), key=lambda m: (-len(m), m[0]))


def collection_groups(
    ids: list[str], vectors: np.ndarray, backbone: str, data=None, say=None
) -> tuple[list[list[str]], str]:
    """The near-duplicate groups of a collection's photos (``ids``, their ``backbone`` vectors), and a
    line saying how they were found (or why not); ``say`` as :func:`calibrate`'s."""
    if len(ids) > MAX_IMAGES:
        return [], f"near-duplicates not grouped: more than {MAX_IMAGES} photos (every pair would be compared)"
    try:
        calibration = calibrate(backbone, data, say=say)
    except Exception as exc:  # no Flickr8k to calibrate on: the index is complete without groups
        return [], f"near-duplicates not grouped: the threshold could not be calibrated ({exc})"
    named = [[ids[i] for i in g] for g in groups(vectors, calibration["threshold"])]
    copies = sum(len(g) - 1 for g in named)
    return named, (
        f"{len(named)} group(s) of near-duplicates ({copies} copies), cosine of {backbone} features > "
        f"{calibration['threshold']:.4f} (calibrated on Flickr8k: at most {FALSE_PAIR_RATE:g} of pairs of different images)"
    )
