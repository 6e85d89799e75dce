"""Runs as the study's comparisons see them, and their records: small enough to commit
(``results/runs/<notebook>/<row>-seed<k>.npz``, about 25 KB: the test ranks of every caption and
image, the lenient ranks, the dev ranks of the kept epoch, the dev curve, the kept epoch, the
precision and CPU it was trained on; no weights, no similarity matrix).

One type, :class:`Run`, whether the run was trained in this process (its weights in ``model``),
read back from the run cache, or read from a committed record (``model`` is None until a notebook
needs the weights, and then it is trained: :meth:`flickr_retrieval.experiments.Experiment.weights`).

``./run_all.sh`` trains every run and writes every record. The test command trains a sample
(:class:`Sampling`, ``RCP217_RETRAIN=sample``) and reads the other runs from the committed records,
so that CI re-executes the whole study within its time; every number can still be reproduced from
scratch with ``./run_all.sh``. A committed record is read the same way on any machine: it holds
ranks, not weights, whatever precision or CPU trained it.

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
from .config import RunConfig
from .errors import CheckpointError
from .metrics import dev_selection_score
from .precision import read_cpu
from .results import rounded

RETRAIN_VARIABLE = "RCP217_RETRAIN"
FORMAT = 1
#: How a run came to be in this process.
SOURCES = ("trained", "run cache", "record")


MODES = ("all", "sample", "resume")


def retrain_mode() -> str:
    """``RCP217_RETRAIN``: ``all`` (the default), ``sample`` or ``resume`` (see :class:`Sampling`)."""
    value = os.environ.get(RETRAIN_VARIABLE, "all").strip() or "all"
    if value not in MODES:
        raise ValueError(f"{RETRAIN_VARIABLE} must be one of {', '.join(MODES)}, got {value!r}")
    return value


def retrain_all() -> bool:
    """True when ``RCP217_RETRAIN`` is ``all`` (the default), False for ``sample`` and ``resume``."""
    return retrain_mode() == "all"


@dataclass(frozen=True)
class Sampling:
    """Which runs a notebook trains and which it reads from the committed records.

    ``all``: every run is trained (``./run_all.sh``). ``sample`` (CI): a row's first seed is trained
    when the row says so (``RowSpec.ci_reads``: one row per training path, see docs/reproducibility.md's
    table), every other run of a row is read from its committed record when one of the same setting
    exists (:meth:`RunConfig.setting`), and trained otherwise. ``resume`` (an interrupted
    ``./run_all.sh`` taken up again): every run that has a record of the same setting in the
    project's ``results/runs/`` is read from it, every other run is trained. Lives apart from the
    study's logic: the protocol never asks how a run was obtained."""

    mode: str = "all"

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"sampling mode must be one of {', '.join(MODES)}, got {self.mode!r}")

    @classmethod
    def from_env(cls) -> Sampling:
        return cls(retrain_mode())

    def may_read(self, first_seed_of_row: bool, retrain_in_sample: bool) -> bool:
        """Whether this run may be read from a committed record (when one of its setting exists)."""
        if self.mode == "resume":
            return True
        return self.mode == "sample" and not (first_seed_of_row and retrain_in_sample)

    def describe(self) -> str:
        return {
            "all": "every run trained",
            "sample": "a sample trained (RCP217_RETRAIN=sample: the first seed of each row marked for it), "
            "the other runs read from the committed run records",
            "resume": "every run trained, in two sittings (RCP217_RETRAIN=resume: the runs an interrupted "
            "run had recorded were read from their records, the others trained)",
        }[self.mode]


@dataclass
class Run:
    """One run as the comparisons see it.

    ``ranks``: the test ranks, ``t2i`` (one per caption), ``i2t`` (one per image), ``lenient`` (one
    per caption); ``dev_ranks``: the dev t2i ranks of the kept epoch (None in records written before
    they were kept); ``history``: the dev values per epoch; ``best_epoch``: the kept epoch;
    ``members``: an ensemble's (one id per member, :func:`member_id`); ``model``: the weights, when
    trained or read from the run cache in this process; ``source``: one of :data:`SOURCES`;
    ``result``: the test protocol computed from the ranks (and the similarity matrix, when trained)."""

    config: RunConfig
    ranks: dict[str, np.ndarray]
    history: list[dict]
    best_epoch: int
    seconds: float
    seed_offset: int = 0
    members: list[str] = field(default_factory=list)
    precision: str = ""  # the arithmetic it was trained in; "" in records written before it was kept
    cpu: str = ""  # the CPU that trained it (model name and bfloat16 support), likewise
    dev_ranks: np.ndarray | None = None
    model: TrainedModel | None = field(default=None, repr=False, compare=False)
    source: str = "trained"
    result: dict | None = field(default=None, repr=False, compare=False)

    @property
    def seed(self) -> int:
        return self.config.seed

    @property
    def from_record(self) -> bool:
        return self.source == "record"

    def kept(self) -> dict:
        """The history row of the kept epoch."""
        return next(h for h in self.history if h["epoch"] == self.best_epoch)

    def dev_score(self) -> float:
        """The dev criterion (t2i R@1+R@5+R@10) at the kept epoch."""
        return dev_selection_score(self.kept())

    @classmethod
    def of(cls, trained: TrainedModel, ranks: dict[str, np.ndarray], dev_ranks: np.ndarray | None) -> Run:
        """The run of a model trained (or read from the run cache) in this process."""
        history = [{k: v for k, v in h.items() if k != "seconds"} for h in trained.history]
        return cls(
            trained.config,
            {k: np.asarray(v) for k, v in ranks.items()},
            history,
            trained.best_epoch,
            trained.seconds,
            trained.seed_offset,
            precision=trained.precision,
            cpu=read_cpu().describe(),
            dev_ranks=None if dev_ranks is None else np.asarray(dev_ranks),
            model=trained,
            source="run cache" if trained.from_cache else "trained",
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
            **({"precision": self.precision, "cpu": self.cpu} if self.precision else {}),
        }
        arrays = {f"ranks_{k}": _small_ints(v) for k, v in self.ranks.items()}
        if self.dev_ranks is not None:
            arrays["dev_ranks_t2i"] = _small_ints(self.dev_ranks)
        cache.save_arrays(path, {"meta": np.array(json.dumps(meta, sort_keys=True)), **arrays})

    @classmethod
    def load(cls, path: Path, n_captions: int, n_images: int, n_dev: tuple[int, int] | None = None) -> Run:
        """Read a record; :class:`CheckpointError` naming the file when it is damaged or does not
        fit a test split of ``n_captions`` captions and ``n_images`` images (and, when given, a dev
        split of ``n_dev`` = (captions, images))."""
        try:
            with np.load(path, allow_pickle=False) as npz:
                meta = json.loads(str(npz["meta"]))
                ranks = {k: npz[f"ranks_{k}"] for k in ("t2i", "i2t", "lenient")}
                dev_ranks = npz["dev_ranks_t2i"] if "dev_ranks_t2i" in npz.files else None
            if meta.get("format") != FORMAT:
                raise ValueError(f"format {meta.get('format')!r}, expected {FORMAT}")
            config = RunConfig.from_dict(meta["config"])
            expected = {"t2i": n_captions, "i2t": n_images, "lenient": n_captions}
            for k, n in expected.items():
                _check_ranks(f"ranks_{k}", ranks[k], n, n_images if k != "i2t" else n_captions)
            if dev_ranks is not None and n_dev is not None:
                _check_ranks("dev_ranks_t2i", dev_ranks, n_dev[0], n_dev[1])
            history = list(meta["history"])
            best = int(meta["best_epoch"])
            if not any(h.get("epoch") == best for h in history):
                raise ValueError(f"kept epoch {best} is not in its history")
            members = [str(m) for m in meta.get("members", [])]
            precision = str(meta.get("precision") or (config.precision if config.precision != "auto" else ""))
            if precision not in ("", "float32", "bfloat16"):
                raise ValueError(f"unknown training precision {precision!r}")
            return cls(
                config,
                ranks,
                history,
                best,
                float(meta["seconds"]),
                int(meta.get("seed_offset", 0)),
                members,
                precision,
                str(meta.get("cpu", "")),
                dev_ranks,
                source="record",
            )
        except (OSError, EOFError, zipfile.BadZipFile, KeyError, ValueError, TypeError, json.JSONDecodeError) as exc:
            raise CheckpointError(
                f"{path}: not a valid run record ({type(exc).__name__}: {exc}); re-run ./run_all.sh to write it again"
            ) from None


def _small_ints(values) -> np.ndarray:
    values = np.asarray(values)
    return values.astype(np.int16 if values.max(initial=0) < 2**15 else np.int32)


def _check_ranks(name: str, r: np.ndarray, n: int, top: int) -> None:
    if r.shape != (n,) or r.dtype.kind not in "iu" or r.min(initial=1) < 1 or r.max(initial=1) > top:
        raise ValueError(f"{name} has shape {r.shape} or values outside 1..N")


def member_id(config: RunConfig) -> str:
    """What an ensemble member is: its setting (:meth:`RunConfig.setting`) and its seed."""
    return f"{cache.cache_key(config.setting())[:16]}-seed{config.seed}"


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


def committed_row_ids(notebook: str) -> list[str]:
    """The ids of the rows of a notebook that have committed records, sorted."""
    folder = paths.project_root() / "results" / "runs" / paths.check_run_name(notebook)
    return sorted({p.name.rsplit("-seed", 1)[0] for p in folder.glob("*-seed*.npz")})


def committed_seeds(notebook: str, row_id: str) -> list[int]:
    """The seeds of a row that have a committed record, in order."""
    folder = committed_record_path(notebook, row_id, 0).parent
    prefix = f"{paths.check_run_name(row_id)}-seed"
    found = (p.name.removeprefix(prefix).removesuffix(".npz") for p in folder.glob(f"{prefix}*.npz"))
    return sorted(int(s) for s in found if s.isdigit())
