"""A cache of trained runs, keyed like the feature cache, so that a second ``./run_all.sh`` retrains
nothing that has not changed.

The key holds everything the trained weights depend on: the config (except its name, so that two
notebooks training the same config share one run), a digest of the exact input tensors (features,
splits, sentences), the starting run of a fine-tuning, the source of every module that training
goes through, and the torch version. Entries are checkpoints (:mod:`flickr_retrieval.checkpoint`,
loaded as data) with a readable ``.json`` of the key beside them. ``RCP217_RUN_CACHE=0`` turns the
cache off.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import hashlib
import json
import os
import warnings

import numpy as np
import torch

from . import cache, imports, paths
from .checkpoint import TrainedModel, state_digest
from .config import RunConfig
from .config import seed_offset as config_seed_offset
from .errors import CheckpointError
from .split_features import SplitFeatures
from .train import train

#: Where training starts: every package module these import, at any depth (inside functions too),
#: decides what training produces (:func:`training_modules`).
TRAINING_ROOTS = ("train",)


@functools.cache
def training_modules() -> tuple[str, ...]:
    """The modules whose code decides what training produces: :data:`TRAINING_ROOTS` and everything
    they reach through the package's imports (:mod:`flickr_retrieval.imports`), sorted."""
    return imports.reach(TRAINING_ROOTS)


def code_version() -> str:
    """A digest of the code of :func:`training_modules` and the torch version.

    The code is read as a syntax tree without docstrings and import lines, so that reformatting a
    module, editing a comment or a docstring, or moving an import (a module moved to a subpackage)
    does not retrain anything, while any change to what runs does.
    """
    digest = hashlib.sha256(torch.__version__.encode())
    for name in training_modules():
        digest.update(code_digest(imports.file_of(name).read_text()).encode())
    return digest.hexdigest()[:16]


def code_digest(source: str) -> str:
    """SHA-256 of the syntax tree of ``source`` with comments, layout, docstrings and import lines left out."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list):
            node.body = [n for n in body if not isinstance(n, (ast.Import, ast.ImportFrom))] or [ast.Pass()]
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and body:
            first = body[0]
            if (
                isinstance(first, ast.Expr)
                and isinstance(first.value, ast.Constant)
                and isinstance(first.value.value, str)
            ):
                node.body = body[1:] or [ast.Pass()]
    return hashlib.sha256(ast.dump(tree, annotate_fields=False).encode()).hexdigest()


def features_digest(features: dict[str, SplitFeatures], splits: tuple[str, ...] = ("train", "dev")) -> str:
    """A digest of the exact inputs training reads: each split's tensors, caption-to-image map,
    ids and sentences."""
    digest = hashlib.sha256()
    for name in splits:
        f = features[name]
        for array in (
            f.text.numpy(),
            f.image.numpy(),
            np.asarray(f.caption_image),
            np.asarray(f.image_cnn, dtype=np.float32),
        ):
            digest.update(str(array.shape).encode())
            digest.update(np.ascontiguousarray(array).tobytes())
        if f.image_views is not None:  # only then: the digests of runs without views stay what they were
            digest.update(np.ascontiguousarray(f.image_views.numpy()).tobytes())
        for teacher in (f.teacher_text, f.teacher_image):  # likewise: only runs that learn from a teacher
            if teacher is not None:
                digest.update(str(tuple(teacher.shape)).encode())
                digest.update(np.ascontiguousarray(teacher.numpy()).tobytes())
        digest.update(cache.sha256_lines(f.caption_ids + f.image_ids + list(f.sentences)).encode())
    return digest.hexdigest()[:24]


def run_key_parts(
    config: RunConfig, features: dict[str, SplitFeatures], init: TrainedModel | None = None, offset: int = 0
) -> dict:
    return {
        "kind": "run",
        "config": {k: v for k, v in config.to_dict().items() if k != "name"},
        "inputs": features_digest(features),
        "init": None if init is None else (init.run_key or state_digest(init.objective.state_dict())[:24]),
        "seed_offset": offset,
        "precision": config.effective_precision,  # the arithmetic, whatever the config says ("auto" included)
        "code": code_version(),
    }


def enabled() -> bool:
    return os.environ.get("RCP217_RUN_CACHE", "1") != "0"


def train_cached(
    config: RunConfig,
    features: dict[str, SplitFeatures],
    *,
    init: TrainedModel | None = None,
    seed_offset: int | None = None,
    **kwargs,
) -> TrainedModel:
    """:func:`flickr_retrieval.train.train`, or the same run read back from the run cache.

    ``seed_offset``: the shift of every training seed (None: ``RCP217_SEED_OFFSET``, read here, at the
    study's entry point). The returned run carries ``from_cache`` (True when read) and ``run_key``.
    """
    offset = config_seed_offset() if seed_offset is None else seed_offset
    parts = run_key_parts(config, features, init, offset)
    key = cache.cache_key(parts)
    path = paths.cache_dir() / "runs" / f"run-{key}.pt"
    if enabled() and path.is_file():
        try:
            trained = TrainedModel.load(path)
        except CheckpointError as exc:
            warnings.warn(f"ignoring run-cache entry {path} ({exc}); training again", stacklevel=2)
        else:
            if {k: v for k, v in trained.config.to_dict().items() if k != "name"} == parts["config"]:
                return dataclasses.replace(trained, config=config, from_cache=True, run_key=key)
            warnings.warn(
                f"ignoring run-cache entry {path}: its config differs from its key; training again", stacklevel=2
            )
    trained = dataclasses.replace(train(config, features, init=init, seed_offset=offset, **kwargs), run_key=key)
    if enabled():
        trained.save(path)
        path.with_suffix(".json").write_text(
            json.dumps({**parts, "name": config.name}, indent=1, sort_keys=True) + "\n"
        )
    return trained
