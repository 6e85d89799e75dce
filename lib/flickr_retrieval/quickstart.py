"""A first model for the search tools, straight after a clone: the study's recipe trained once.

The search tools search with a trained run (``results/<run>/model.pt``), which the notebooks make
(07: ``best``; 10: ``field_best``) and which a clone does not hold. Rather than ask a new user to run
notebooks first, :func:`train` trains the recipe notebook 07 chose on dev, read from its committed
``results/best/metrics.json`` (two CNNs and MiniLM, InfoNCE, 8 epochs), on Flickr8k's training split,
seed 0, and exports it as the run ``quickstart``: about 4 minutes of feature extraction and 1 of
training on a 2-core CPU, once (features and run cached). Its test numbers are those of 07's seed 0
(the same config and data); ``results/quickstart/metrics.json`` says what it measured.
"""

from __future__ import annotations

import json
import time

from . import analysis, paths, results
from .config import RunConfig
from .data import Flickr8k, load_flickr8k
from .inputs import FeatureSpace
from .runs import train_cached

NAME = "quickstart"
#: The committed export whose config is the recipe (notebook 07's dev choice).
RECIPE_RUN = "best"


def recipe() -> RunConfig:
    """Notebook 07's dev choice, from its committed ``metrics.json``, named :data:`NAME`, seed 0."""
    path = paths.project_root() / "results" / RECIPE_RUN / "metrics.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))["config"]
    except (OSError, ValueError, KeyError) as exc:
        raise FileNotFoundError(
            f"the recipe of the first model is read from {path}, which is missing or damaged ({exc})"
        ) from None
    return RunConfig.from_dict({**config, "name": NAME, "seed": 0})


def train(data: Flickr8k | None = None, config: RunConfig | None = None, say=print) -> dict:
    """Train ``config`` (default :func:`recipe`) on ``data`` (default Flickr8k where
    :func:`load_flickr8k` finds it), score it on the test split, export it as the run ``config.name``.
    Returns ``{"folder", "seconds", "t2i"}``; ``say`` is told each step."""
    started = time.perf_counter()
    config = config or recipe()
    data = data or load_flickr8k()
    say(
        f"training a first model for search ({config.name}: {config.image_backbone} + {config.text_encoder}, "
        f"notebook 07's recipe; once, about 5 minutes on a 2-core CPU when no feature is cached)"
    )
    space = FeatureSpace(config, data)
    feats = {name: space.split(name) for name in ("train", "dev", "test")}
    say(f"features ready ({time.perf_counter() - started:.0f} s); training {config.max_epochs} epochs")
    trained = train_cached(config, feats, text_norm=space.text_norm, image_norms=space.image_norms, seed_offset=0)
    result = analysis.strict_and_lenient(trained, feats["test"], n_boot=200)
    folder = results.export_run(
        trained,
        result["similarity"],
        feats["test"].caption_ids,
        feats["test"].image_ids,
        {k: v for k, v in result.items() if k not in ("similarity", "seconds")},
        timings={"train": trained.seconds, "total": time.perf_counter() - started},
        extra={"made_by": "flickr_retrieval.quickstart (notebook 07's recipe, seed 0)"},
    )
    t2i = result["strict"]["t2i"]
    seconds = time.perf_counter() - started
    say(
        f"{config.name} ready in {seconds:.0f} s: test R@1 {t2i['R@1']:.1f}, R@5 {t2i['R@5']:.1f}, "
        f"R@10 {t2i['R@10']:.1f} (text to image, 1000 images) -> {folder}"
    )
    return {"folder": folder, "seconds": seconds, "t2i": t2i}
