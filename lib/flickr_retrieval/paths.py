"""Where things live: the project root, the data set, the feature cache, figures and results.

Every location can be overridden by one environment variable, documented in the README:

``FLICKR8K_DIR``
    the Flickr8k folder (default: ``data/flickr8k/``, then ``../shared/flickr8k/``).
``RCP217_CACHE``
    the feature cache (default: ``data/cache/``).
``RCP217_ROOT``
    the project root (default: the folder holding this project's ``pyproject.toml``).
"""

from __future__ import annotations

import os
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
    """The on-disk feature cache (created on demand)."""
    path = Path(os.environ.get("RCP217_CACHE") or project_root() / "data" / "cache")
    path.mkdir(parents=True, exist_ok=True)
    return path


def figures_dir() -> Path:
    path = project_root() / "figures"
    path.mkdir(parents=True, exist_ok=True)
    return path


def results_dir(run: str | None = None) -> Path:
    """``results/`` or ``results/<run>/`` (created on demand)."""
    path = project_root() / "results"
    if run is not None:
        path = path / run
    path.mkdir(parents=True, exist_ok=True)
    return path
