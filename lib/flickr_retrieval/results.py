"""Exports of a trained run: ``results/<run>/metrics.json``, ``test_similarity.npz`` and ``model.pt``.

``metrics.json`` holds the run's full config, every metric, timings and package versions (committed).
``test_similarity.npz`` holds ``similarity`` (float32, captions x images of the test split),
``caption_ids`` (``<image>.jpg#<n>``) and ``image_ids`` (``<image>.jpg``) (rebuilt, not committed).
"""

from __future__ import annotations

import json
import platform
from importlib import metadata
from pathlib import Path

import numpy as np

from . import paths
from .checkpoint import TrainedModel
from .errors import RunNameError
from .precision import read_cpu

PACKAGES = ("torch", "torchvision", "transformers", "numpy", "scikit-learn", "flickr-retrieval")


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def checkpoint_path(run: str) -> Path:
    return paths.results_dir(run) / "model.pt"


def trained_runs() -> list[str]:
    """Runs under ``results/`` that have a checkpoint."""
    return sorted(p.parent.name for p in paths.results_dir().glob("*/model.pt"))


def load_run(run: str) -> TrainedModel:
    """The trained run named ``run`` (a name under ``results/``, never a path)."""
    path = checkpoint_path(paths.check_run_name(run))
    if not path.is_file():
        have = trained_runs()
        raise RunNameError(
            f"unknown run {run!r}: no {path}. Trained runs here: "
            + (
                ", ".join(have)
                if have
                else "none (flickr-retrieval-index FOLDER --name NAME trains a first one, about 5 minutes; "
                "or run notebooks 05 and 07)"
            )
        )
    return TrainedModel.load(path)


#: The runs the search tools start with, in order of preference: notebook 19's distilled student
#: (exported only when it beats TB on dev), notebook 10's dev choice (the field's encoders), then 07's,
#: then 07's recipe trained by :mod:`flickr_retrieval.quickstart`.
DEFAULT_RUNS = ("distilled", "field_best", "best", "quickstart")


def default_run() -> str:
    """The first of :data:`DEFAULT_RUNS` that has a checkpoint here (``quickstart`` when none has:
    ``flickr-retrieval-index`` then trains it)."""
    return next((run for run in DEFAULT_RUNS if checkpoint_path(run).is_file()), DEFAULT_RUNS[-1])


def export_run(
    trained: TrainedModel,
    similarity: np.ndarray,
    caption_ids: list[str],
    image_ids: list[str],
    metrics: dict,
    timings: dict | None = None,
    extra: dict | None = None,
) -> Path:
    """Write the three exports of ``trained`` (named by ``trained.config.name``); return the folder.

    ``metrics``: the test protocol's results; its arrays (``similarity``, ``ranks``) and timings
    (``seconds``) are left out of ``metrics.json``."""
    metrics = {k: v for k, v in metrics.items() if k not in ("similarity", "ranks", "seconds")}
    if similarity.shape != (len(caption_ids), len(image_ids)):
        raise ValueError(
            f"similarity {similarity.shape} does not match {len(caption_ids)} captions x {len(image_ids)} images"
        )
    folder = paths.results_dir(trained.config.name)
    folder.mkdir(parents=True, exist_ok=True)
    trained.save(folder / "model.pt")
    np.savez_compressed(
        folder / "test_similarity.npz",
        similarity=similarity.astype(np.float32),
        caption_ids=np.array(caption_ids),
        image_ids=np.array(image_ids),
    )
    record = {
        "run": trained.config.name,
        "config": trained.config.to_dict(),
        "config_unused": trained.config.unused_fields(),  # read by neither this model nor this loss
        "test": metrics,
        "training": {
            "best_epoch": trained.best_epoch,
            "epochs_run": len(trained.history),
            "temperature": trained.temperature,
            "history": [
                {k: round(v, 4) if isinstance(v, float) else v for k, v in row.items() if k != "seconds"}
                for row in trained.history
            ],
        },
        "seed_offset": trained.seed_offset,  # RCP217_SEED_OFFSET when it was trained (0: the study's own seeds)
        "precision": trained.precision,  # the arithmetic it was trained in (config "auto": this machine's)
        "cpu": read_cpu().describe(),
        "timings_s": timings or {},
        "versions": package_versions(),
        **(extra or {}),
    }
    # numbers rounded so that committed files do not churn on float noise; the config exactly (a learning rate of 2e-5 is not 0)
    (folder / "metrics.json").write_text(json.dumps({**rounded(record), "config": record["config"]}, indent=1) + "\n")
    return folder


def load_metrics(run: str) -> dict:
    path = paths.results_dir(run) / "metrics.json"
    if not path.is_file():
        raise FileNotFoundError(f"no {path}: run the notebook that trains '{run}' first")
    return json.loads(path.read_text())


def rounded(value, digits: int = 4):
    """Round floats in a nested structure, so that committed files do not churn on float noise."""
    if isinstance(value, float):
        return round(value, digits)
    if isinstance(value, dict):
        return {k: rounded(v, digits) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [rounded(v, digits) for v in value]
    return value
