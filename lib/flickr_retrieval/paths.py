"""Where things live: the project root, the data set, the feature cache, figures and results.

Every location can be overridden by one environment variable, documented in docs/reproducibility.md:

``FLICKR8K_DIR``
    the Flickr8k folder (default: ``data/flickr8k/``, then ``../shared/flickr8k/``).
``RCP217_CACHE``
    the feature cache (default: ``data/cache/``).
``RCP217_ROOT``
    the project root (default: the folder holding this project's ``pyproject.toml``).
``RCP217_RESULTS``, ``RCP217_FIGURES``
    where exports and figures go (default: ``results/`` and ``figures/``); ``QUICK=1 ./run_all.sh``
    points them under ``report/quick/`` so that a smoke run never overwrites the study's results.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

_PROJECT_MARKER = "flickr-retrieval"


def _is_project_root(folder: Path) -> bool:
    pyproject = folder / "pyproject.toml"
    return pyproject.is_file() and _PROJECT_MARKER in pyproject.read_text(encoding="utf-8")


def project_root() -> Path:
    """The project's root folder.

    Found from ``RCP217_ROOT``, else from this file (editable install), else by walking up from the
    current directory (notebooks run from ``notebooks/``).
    """
    if os.environ.get("RCP217_ROOT"):
        return Path(os.environ["RCP217_ROOT"]).resolve()
    candidates = [Path(__file__).resolve().parents[2], *Path.cwd().resolve().parents]
    candidates.insert(1, Path.cwd().resolve())
    for folder in candidates:
        if _is_project_root(folder):
            return folder
    raise FileNotFoundError(
        "Cannot find the rcp217 project root (a pyproject.toml naming 'flickr-retrieval'). "
        "Run from inside the project or set RCP217_ROOT."
    )


def flickr8k_candidates() -> list[Path]:
    """The folders searched for Flickr8k, in order."""
    if os.environ.get("FLICKR8K_DIR"):
        return [Path(os.environ["FLICKR8K_DIR"]).expanduser().resolve()]
    root = project_root()
    return [root / "data" / "flickr8k", (root.parent / "shared" / "flickr8k").resolve()]


def cache_dir() -> Path:
    """The on-disk feature cache. Only a path: writers create it (:func:`cache.save_arrays`)."""
    return Path(os.environ.get("RCP217_CACHE") or project_root() / "data" / "cache")


def figures_dir() -> Path:
    """``figures/``. Only a path: :func:`plots.save` creates it when it writes."""
    return Path(os.environ.get("RCP217_FIGURES") or project_root() / "figures")


_RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+=-]{0,99}$")


def check_run_name(run: str) -> str:
    """``run`` when it is a plain name (letters, digits, ``._+=-``, no path separator, not ``.``
    or ``..``), else :class:`~flickr_retrieval.errors.RunNameError`. Run names are names, never paths."""
    from .errors import RunNameError

    if not isinstance(run, str) or not _RUN_NAME.fullmatch(run) or run in (".", "..") or ".." in run:
        raise RunNameError(
            f"invalid run name {run!r}: use letters, digits and . _ + = - only (a name, not a path), at most 100 characters"
        )
    return run


def results_dir(run: str | None = None) -> Path:
    """``results/`` or ``results/<run>/``. Only a path: nothing is created (exports create it)."""
    path = Path(os.environ.get("RCP217_RESULTS") or project_root() / "results")
    return path if run is None else path / check_run_name(run)
