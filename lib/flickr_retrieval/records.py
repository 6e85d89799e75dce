"""Run records: what the comparisons need from one trained run, small enough to commit
(``results/runs/<notebook>/<row>-seed<k>.npz``, about 15 KB: the test ranks of every caption and
image, the lenient ranks, the dev curve and the kept epoch; no weights, no similarity matrix).

``./run_all.sh`` trains every run and writes every record. The test command can re-train only a
sample (``RCP217_RETRAIN=sample``: the first seed of every row, see :func:`retrain_all`) and read
the other seeds' runs from the committed records, so that CI re-executes the whole study within its
time; every number can still be reproduced from scratch with ``./run_all.sh``.

Records are data: read with ``allow_pickle=False``, shapes and fields checked.
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import cache, paths
from .checkpoint import TrainedModel
from .config import RunConfig, seed_offset
from .errors import CheckpointError
from .results import rounded

RETRAIN_VARIABLE = "RCP217_RETRAIN"
FORMAT = 1


def retrain_all() -> bool:
    """False when ``RCP217_RETRAIN=sample``: only the first seed of each row is trained, the other
    seeds are read from committed records. True otherwise (``all``, the default)."""
    value = os.environ.get(RETRAIN_VARIABLE, "all").strip() or "all"
    if value not in ("all", "sample"):
        raise ValueError(f"{RETRAIN_VARIABLE} must be 'all' or 'sample', got {value!r}")
    return value == "all"


@dataclass
class RunRecord:
    """One trained run as the comparisons see it.

    ``ranks``: ``t2i`` (one per test caption), ``i2t`` (one per test image), ``lenient`` (one per
    caption); ``history``: the dev values per epoch; ``best_epoch``: the kept epoch."""

    config: RunConfig
    ranks: dict[str, np.ndarray]
    history: list[dict]
    best_epoch: int
    seconds: float
    seed_offset: int = 0
    members: list[str] = field(
        default_factory=list
    )  # an ensemble's: one description per member (see :func:`member_id`)

    def kept(self) -> dict:
        return next(h for h in self.history if h["epoch"] == self.best_epoch)

    @classmethod
    def of(cls, trained: TrainedModel, ranks: dict[str, np.ndarray]) -> RunRecord:
        history = [{k: v for k, v in h.items() if k != "seconds"} for h in trained.history]
        return cls(
            trained.config,
            {k: np.asarray(v) for k, v in ranks.items()},
            history,
            trained.best_epoch,
            trained.seconds,
            seed_offset(),
        )

    def save(self, path: Path) -> None:
        meta = {
            "format": FORMAT,
            "config": self.config.to_dict(),
            "history": rounded(self.history),
            "best_epoch": self.best_epoch,
            "seconds": round(self.seconds, 2),
            "seed_offset": self.seed_offset,  # the config exactly: a learning rate of 2e-5 is not 0
            "members": list(self.members),
        }
        arrays = {
            f"ranks_{k}": np.asarray(v, dtype=np.int16 if np.max(v) < 2**15 else np.int32)
            for k, v in self.ranks.items()
        }
        cache.save_arrays(path, {"meta": np.array(json.dumps(meta, sort_keys=True)), **arrays})

    @classmethod
    def load(cls, path: Path, n_captions: int, n_images: int) -> RunRecord:
        """Read a record; :class:`CheckpointError` naming the file when it is damaged or does not
        fit a test split of ``n_captions`` captions and ``n_images`` images."""
        try:
            with np.load(path, allow_pickle=False) as npz:
                meta = json.loads(str(npz["meta"]))
                ranks = {k: npz[f"ranks_{k}"] for k in ("t2i", "i2t", "lenient")}
            if meta.get("format") != FORMAT:
                raise ValueError(f"format {meta.get('format')!r}, expected {FORMAT}")
            config = RunConfig.from_dict(meta["config"])
            expected = {"t2i": n_captions, "i2t": n_images, "lenient": n_captions}
            for k, n in expected.items():
                r = ranks[k]
                if (
                    r.shape != (n,)
                    or r.dtype.kind not in "iu"
                    or r.min(initial=1) < 1
                    or r.max(initial=1) > (n_images if k != "i2t" else n_captions)
                ):
                    raise ValueError(f"ranks_{k} has shape {r.shape} or values outside 1..N")
            history = list(meta["history"])
            best = int(meta["best_epoch"])
            if not any(h.get("epoch") == best for h in history):
                raise ValueError(f"kept epoch {best} is not in its history")
            members = [str(m) for m in meta.get("members", [])]
            return cls(config, ranks, history, best, float(meta["seconds"]), int(meta.get("seed_offset", 0)), members)
        except (OSError, EOFError, zipfile.BadZipFile, KeyError, ValueError, TypeError, json.JSONDecodeError) as exc:
            raise CheckpointError(
                f"{path}: not a valid run record ({type(exc).__name__}: {exc}); re-run ./run_all.sh to write it again"
            ) from None


def member_id(config: RunConfig) -> str:
    """What an ensemble member is: its setting (the config but its name and seed) and its seed."""
    setting = {k: v for k, v in config.to_dict().items() if k not in ("name", "seed")}
    return f"{cache.cache_key(setting)[:16]}-seed{config.seed}"


def _relative(notebook: str, row_id: str, seed: int) -> Path:
    """``runs/<notebook>/<row>-seed<seed>.npz`` under a results folder (names checked as names)."""
    return Path("runs") / paths.check_run_name(notebook) / paths.check_run_name(f"{row_id}-seed{seed}.npz")


def record_path(notebook: str, row_id: str, seed: int) -> Path:
    """Where this run writes a record: ``<results>/runs/<notebook>/<row>-seed<seed>.npz``
    (``RCP217_RESULTS`` when set)."""
    return paths.results_dir() / _relative(notebook, row_id, seed)


def committed_record_path(notebook: str, row_id: str, seed: int) -> Path:
    """The same record in the project's own ``results/`` (the committed one), wherever this run's
    exports go (``RCP217_RESULTS``)."""
    return paths.project_root() / "results" / _relative(notebook, row_id, seed)
