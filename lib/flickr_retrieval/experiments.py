"""Rows of an ablation table, each trained with several seeds (notebooks 05, 07, 10, 11, 13, 14, 15).

A row is data (:class:`RowSpec`): an id, a display label, the row it changes (``parent``), what
changed, and its config. :class:`Experiment` obtains each row's runs (:class:`records.Run`) for any
set of seeds: trained in this process, read back from the run cache, or read from a committed
record, as :class:`records.Sampling` says (CI trains a sample). A fine-tuning row starts from its
``init`` row's run of the same seed.

Every decision reads dev only, through :mod:`flickr_retrieval.protocol`: which rows get more seeds
(:meth:`Experiment.settle`, close calls judged on the dev ranks), the dev choice
(:meth:`Experiment.selection`), ensemble members and sizes (the chosen row's seeds). Test ranks are
read to report: a row against its parent, the notebook's declared **family** of comparisons with
its Holm-adjusted verdicts, the A/A check of the verdict rule, the heterogeneity of two seed sets,
and every ensemble against the mean of its own members.

With a ``notebook`` name every run is also written as a run record (:mod:`records`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from . import analysis, hubness, metrics, protocol, records, results, verdicts
from .checkpoint import TrainedModel
from .config import RunConfig, seed_offset
from .data import Flickr8k
from .evaluation import similarity
from .images import VIEW_SETS
from .inputs import FeatureSpace, SplitFeatures
from .models import ModelSpec, build_model
from .protocol import CLOSE_CALL_MARGIN, CRITERION
from .records import Run, Sampling
from .runs import train_cached

#: Targets set for the study's reference recipe and its seed ensemble (07), and for the field rows
#: and their ensembles (10, 11), on the standard test split (t2i).
TARGETS = {"R@1": 21.5, "R@5": 50.0, "R@10": 63.0, "medr": 6.0}
ENSEMBLE_TARGETS = {"R@1": 24.0, "R@5": 54.0, "R@10": 67.0, "medr": 5.0}
FIELD_TARGETS = {"R@1": 24.0, "R@5": 54.0, "R@10": 67.0, "medr": 5.0}
FIELD_ENSEMBLE_TARGETS = {"R@1": 28.0, "R@5": 58.0, "R@10": 71.0, "medr": 4.0}
#: Past the trained-encoder tier (MFM's R@1 and 2-Way Net's), a single model chosen on dev.
PAST_FIELD_TARGETS = {"R@1": 28.5, "R@5": 61.0, "R@10": 74.0, "medr": 4.0}
#: ... and an ensemble of such models, members chosen on dev.
PAST_FIELD_ENSEMBLE_TARGETS = {"R@1": 31.0}

__all__ = ["CLOSE_CALL_MARGIN", "CRITERION", "Experiment", "Row", "RowSpec", "Run"]


def complexity(config: RunConfig) -> tuple:
    """What makes a configuration less simple, in order: a trained text encoder, trained image
    layers, more backbones, more sentence encoders, a feature normalisation, more augmented views,
    scoring the mean view. Among runs that tie on dev, the least complex wins."""
    return (
        config.finetune_text,
        config.tune_image_heads,
        len(config.backbones),
        len(config.text_encoders),
        config.feature_norm != "none",
        len(VIEW_SETS[config.image_views]),
        config.test_view != "full",
    )


@dataclass(frozen=True)
class RowSpec:
    """One row of the table, as data: ``id`` ("5b"), display ``label``, ``parent`` (the id of the
    row it changes, or None), ``change`` (the one factor, in words), ``config`` (its nominal seed is
    replaced by each seed trained), ``init`` (for a fine-tuning: the id of the row whose run of the
    same seed it starts from), ``ci_reads`` (non-empty: under ``RCP217_RETRAIN=sample`` every seed of
    the row, the first too, is read from its committed record; the text says why: which row trains
    its training path in CI)."""

    id: str
    label: str
    parent: str | None
    change: str
    config: RunConfig | None = None
    init: str | None = None
    ci_reads: str = ""

    @property
    def name(self) -> str:
        return f"{self.id} {self.label}"


@dataclass
class Row:
    """A row and its runs (``runs[seed]``). An ensemble row has one run (key 0) and its ``members``."""

    spec: RowSpec
    runs: dict[int, Run] = field(default_factory=dict)
    members: tuple[Run, ...] = ()
    note: str = ""
    rescored: str = ""  # the test-time hubness reduction applied to the parent's runs (:meth:`Experiment.rescore`)
    params: dict = field(default_factory=dict)  # ... and its parameters, chosen on dev

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def is_ensemble(self) -> bool:
        return bool(self.members)

    @property
    def seeds(self) -> list[int]:
        return sorted(self.runs)

    @property
    def rescores_ensemble(self) -> bool:
        """Its run is an ensemble's, re-scored (:meth:`Experiment.rescore`): nothing trained of its own."""
        return not self.is_ensemble and bool(self.runs) and bool(self.first.members)

    @property
    def first(self) -> Run:
        """The run of the row's first seed (an ensemble's own run)."""
        return self.runs[self.seeds[0]]

    @property
    def results(self) -> dict[int, dict]:
        """The test protocol of each seed's run (:func:`analysis.protocol_from_ranks`)."""
        return {s: self.runs[s].result for s in self.seeds}

    @property
    def result(self) -> dict:
        return self.first.result

    @property
    def t2i(self) -> dict:
        return self.result["strict"]["t2i"]

    def dev_rsum(self, seed: int) -> float:
        return self.runs[seed].dev_score()

    def dev_scores(self) -> list[float]:
        """The dev criterion of each seed's run, in seed order."""
        return [self.dev_rsum(s) for s in self.seeds]

    def mean_dev_rsum(self) -> float:
        return float(np.mean(self.dev_scores()))

    def mean_t2i(self) -> dict[str, float]:
        """Test t2i R@1, R@5, R@10 and median rank, each the mean over the row's seeds."""
        tests = [self.results[s]["strict"]["t2i"] for s in self.seeds]
        return {k: float(np.mean([t[k] for t in tests])) for k in ("R@1", "R@5", "R@10", "medr")}

    def mean_dev(self) -> dict[str, float]:
        """Dev t2i R@1, R@5, R@10 and median rank (of the kept epochs), each the mean over the row's seeds."""
        devs = [metrics.summarize_ranks(_dev_ranks(self.runs[s])) for s in self.seeds]
        return {k: float(np.mean([d[k] for d in devs])) for k in ("R@1", "R@5", "R@10", "medr")}

    def seed_mean(self, get) -> float:
        """The mean over the row's seeds of ``get(result)``."""
        return float(np.mean([get(self.results[s]) for s in self.seeds]))

    def __repr__(self) -> str:
        t = self.t2i
        recalls = f"R@1 {t['R@1']:.1f}, R@5 {t['R@5']:.1f}, R@10 {t['R@10']:.1f}, medr {t['medr']:.0f}"
        return f"Row({self.name!r}: seeds {self.seeds}, t2i {recalls})"


@dataclass
class Experiment:
    """Rows of an ablation table: each trained (or read) for one or more seeds, then tested with the
    strict protocol and the lenient criterion. Features are loaded and normalised once per setting.

    ``family``: the ids of the rows (and ensembles) whose comparisons form the notebook's family of
    verdicts, declared before anything is trained; their verdicts are adjusted together (Holm).
    ``sampling``: which runs are trained and which are read (default from ``RCP217_RETRAIN``);
    ``offset``: the shift of every training seed (default from ``RCP217_SEED_OFFSET``)."""

    data: Flickr8k
    threshold: float = 0.7
    n_boot: int = 1000
    notebook: str | None = None  # records its runs under results/runs/<notebook>/ when set
    family: tuple[str, ...] = ()
    sampling: Sampling = field(default_factory=Sampling.from_env)
    offset: int = field(default_factory=seed_offset)
    rows: dict[str, Row] = field(default_factory=dict)
    #: distillation teachers by name (``RunConfig.distill_teacher``): ``{"text", "image"}`` arrays of
    #: the training split (:func:`flickr_retrieval.teacher.embeddings`), registered before a student trains
    teachers: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    _spaces: dict = field(default_factory=dict, repr=False)

    # ------------------------------------------------------------------ features and scoring

    def features(self, config: RunConfig) -> tuple[FeatureSpace, dict[str, SplitFeatures]]:
        key = config.feature_setting()
        if key not in self._spaces:
            space = FeatureSpace(config, self.data)
            self._spaces[key] = (space, {name: space.split(name) for name in ("train", "dev", "test")})
        return self._spaces[key]

    def parameters(self, config: RunConfig) -> int:
        """How many weights the config's model has (its branches on these features), counted on a
        model built on torch's ``meta`` device: nothing is trained or allocated. For a model on frozen
        features (no trained text encoder or image layers)."""
        if config.finetune_text or config.tune_image_heads:
            raise ValueError("count the weights of a model on frozen features (no finetune_text, no tune_image_heads)")
        train = self.features(config)[1]["train"]
        spec = ModelSpec.from_config(config, train.text.shape[1], train.image.shape[1])
        with torch.device("meta"):
            return sum(p.numel() for p in build_model(spec).parameters())

    def caption_image(self, split: str = "test") -> np.ndarray:
        """The image of each caption of ``split``, in the order of every rank array."""
        return np.asarray(self.data.split(split).caption_image)

    def _scored(self, trained: TrainedModel) -> Run:
        """The run of a model trained (or read from the run cache) here: its test protocol (with the
        similarity matrix) and its dev ranks."""
        _, feats = self.features(trained.config)
        result = analysis.strict_and_lenient(trained, feats["test"], self.threshold, self.n_boot, seed=0)
        dev_ranks = metrics.t2i_ranks(similarity(trained.model, feats["dev"]), feats["dev"].caption_image)
        run = Run.of(trained, result["ranks"], dev_ranks)
        run.result = result
        return run

    def _score_record(self, run: Run) -> Run:
        _, feats = self.features(run.config)
        run.result = analysis.protocol_from_ranks(run.ranks, feats["test"], self.threshold, self.n_boot, seed=0)
        return run

    def _save(self, row_id: str, run: Run, key: int | None = None) -> None:
        """Write the run's record under its row and ``key`` (default its seed; an ensemble's own run,
        and that run re-scored, are key 0 of their row, whatever their first member's seed)."""
        if self.notebook is not None:
            run.save(records.record_path(self.notebook, row_id, run.seed if key is None else key))

    def _committed(self, spec: RowSpec, seed: int) -> Run | None:
        """The committed record of a row's seed, when one of the same setting exists."""
        if self.notebook is None:
            return None
        path = records.committed_record_path(self.notebook, spec.id, seed)
        if not path.is_file():
            return None
        run = self._load(path)
        # the committed row may be of another setting (a row built from a dev choice that moved): then train
        return run if run.config.setting() == spec.config.setting() else None

    def _load(self, path: Path) -> Run:
        test, dev = self.data.split("test"), self.data.split("dev")
        return Run.load(path, len(test.caption_ids), len(test.image_ids), (len(dev.caption_ids), len(dev.image_ids)))

    # ------------------------------------------------------------------ obtaining runs

    def add(self, spec: RowSpec, trained: TrainedModel) -> Row:
        """Record an already trained model as the run of ``spec`` for its config's seed."""
        row = self.rows.setdefault(spec.id, Row(spec))
        run = self._scored(trained)
        row.runs[run.seed] = run
        self._save(spec.id, run)
        return row

    def run(self, spec: RowSpec, seeds: tuple[int, ...] = (0,), quiet: bool = False) -> Row:
        """Obtain ``spec``'s run of each of ``seeds`` not yet here (trained, from the run cache, or
        read from its committed record as :attr:`sampling` allows), test each, record the row;
        print one line."""
        if spec.config is None:
            raise ValueError(f"row {spec.id!r} has no config to train: add its runs with Experiment.add")
        row = self.rows.setdefault(spec.id, Row(spec))
        for seed in seeds:
            if seed in row.runs:
                continue
            first = not row.runs
            run = (
                self._committed(spec, seed)
                if self.sampling.may_read(first, retrain_in_sample=not spec.ci_reads)
                else None
            )
            if run is not None:
                row.runs[seed] = self._score_record(run)
                continue
            row.runs[seed] = self._train_now(spec, seed)
            self._save(spec.id, row.runs[seed])
        if not quiet:
            print(self.describe(spec.id))
        return row

    def _train_now(self, spec: RowSpec, seed: int) -> Run:
        init = None
        if spec.init is not None:
            self.ensure_seeds(spec.init, (seed,))
            init = self.weights(self.rows[spec.init].runs[seed])
        config = spec.config.replace(
            name=f"{spec.config.name}-seed{seed}" if seed != spec.config.seed else spec.config.name, seed=seed
        )
        space, feats = self.features(config)
        if config.distill_weight > 0:
            feats = {**feats, "train": self._taught(feats["train"], config.distill_teacher)}
        trained = train_cached(
            config,
            feats,
            init=init,
            text_norm=space.text_norm,
            image_norms=space.image_norms,
            seed_offset=self.offset,
        )
        return self._scored(trained)

    def adopt(self, notebook: str, row_id: str, seeds: Sequence[int] | None = None, spec: RowSpec | None = None) -> Row:
        """Another notebook's committed row, its runs read from their records (nothing trained, nothing
        recorded here): to compare with, to ensemble or to learn from; ``seeds`` default: every seed
        recorded. Their weights, when asked for (:meth:`weights`), come from the run cache or are
        trained again, as for any run read from a record."""
        seeds = list(records.committed_seeds(notebook, row_id) if seeds is None else seeds)
        if not seeds:
            raise FileNotFoundError(f"{notebook} has no committed record of row {row_id!r}")
        runs = {}
        for seed in seeds:
            path = records.committed_record_path(notebook, row_id, seed)
            if not path.is_file():
                raise FileNotFoundError(f"{notebook} has no committed record of row {row_id!r}, seed {seed}")
            runs[seed] = self._score_record(self._load(path))
        config = runs[seeds[0]].config
        spec = spec or RowSpec(row_id, f"{row_id} (read from {notebook})", None, "-", config)
        self.rows[spec.id] = Row(spec, runs=runs)
        return self.rows[spec.id]

    def adopt_ensemble(self, notebook: str, row_id: str, spec: RowSpec | None = None) -> Row:
        """Another notebook's committed ensemble, read from its record, its members found by their ids
        among the runs of the rows already here (adopt them first)."""
        path = records.committed_record_path(notebook, row_id, 0)
        if not path.is_file():
            raise FileNotFoundError(f"{notebook} has no committed record of ensemble {row_id!r}")
        run = self._load(path)
        here = {
            records.member_id(r.config): r
            for row in self.rows.values()
            if not row.is_ensemble
            for r in row.runs.values()
        }
        missing = [m for m in run.members if m not in here]
        if not run.members or missing:
            raise ValueError(f"{notebook}'s {row_id!r} is not an ensemble of runs here (missing {missing})")
        spec = spec or RowSpec(row_id, f"{row_id} (read from {notebook})", None, "-")
        self.rows[spec.id] = Row(spec, runs={0: self._score_record(run)}, members=tuple(here[m] for m in run.members))
        return self.rows[spec.id]

    def _taught(self, train: SplitFeatures, name: str) -> SplitFeatures:
        """The training split with the embeddings of the teacher registered as ``name``."""
        if name not in self.teachers:
            raise KeyError(f"no teacher {name!r} registered (Experiment.teachers has {sorted(self.teachers)})")
        taught = self.teachers[name]
        if taught["text"].shape[0] != len(train.caption_ids) or taught["image"].shape[0] != len(train.image_ids):
            raise ValueError(f"teacher {name!r} does not embed this experiment's training split")
        return dataclasses.replace(
            train, teacher_text=torch.from_numpy(taught["text"]), teacher_image=torch.from_numpy(taught["image"])
        )

    def committed_rows(self, notebook: str) -> dict[str, RunConfig]:
        """The single-model rows of another notebook's committed run records (row id -> the config
        of its seed-0 record; ensembles left out), to build rows of the same settings here. A
        re-scored row (12's) records its parent's config: read a notebook that trains its rows."""
        folder = records.committed_record_path(notebook, "row", 0).parent
        out = {}
        for path in sorted(folder.glob("*-seed0.npz")):
            run = self._load(path)
            if not run.members:
                out[path.name.removesuffix("-seed0.npz")] = run.config
        if not out:
            raise FileNotFoundError(f"no committed run record of notebook {notebook!r} in {folder}: run it first")
        return out

    def committed_members(self, notebook: str, row_id: str) -> list[str]:
        """The members (:func:`records.member_id`, in the order chosen) of another notebook's committed
        ensemble ``row_id``: which of its candidates a dev selection kept."""
        path = records.committed_record_path(notebook, row_id, 0)
        if not path.is_file():
            raise FileNotFoundError(f"no committed record of row {row_id!r} of notebook {notebook!r}: run it first")
        members = self._load(path).members
        if not members:
            raise ValueError(f"row {row_id!r} of notebook {notebook!r} is not an ensemble")
        return list(members)

    def ensure_seeds(self, row_id: str, seeds: tuple[int, ...]) -> Row:
        """Obtain the seeds of ``row_id`` it does not have yet (its spec must carry a config)."""
        row = self.rows[row_id]
        missing = tuple(s for s in seeds if s not in row.runs)
        return self.run(row.spec, missing, quiet=True) if missing else row

    def weights(self, run: Run) -> TrainedModel:
        """The trained model of ``run``: its own, or (a run read from a record) trained now. The
        run then stands for the run trained here (its ranks, curves and source are replaced in
        place, so that every row and ensemble holding it sees the same run)."""
        if run.model is not None:
            return run.model
        for row in self.rows.values():
            if not row.is_ensemble and any(candidate is run for candidate in row.runs.values()):
                fresh = self._train_now(row.spec, run.seed)
                for f in dataclasses.fields(Run):
                    setattr(run, f.name, getattr(fresh, f.name))
                self._save(row.spec.id, run)
                return run.model
        raise ValueError("this run belongs to no row of the experiment")

    def describe(self, row_id: str) -> str:
        """One line: the row's mean test numbers over its seeds, kept epochs, training time."""
        row = self.rows[row_id]
        t = row.mean_t2i()
        if row.is_ensemble:
            how = f"mean of {len(row.members)} models' scores; dev R@1+R@5+R@10 {row.first.dev_score():.1f}"
        elif row.rescores_ensemble:
            how = f"ensemble {row.spec.parent} re-scored; dev R@1+R@5+R@10 {row.first.dev_score():.1f}"
        else:
            runs = [row.runs[s] for s in row.seeds]
            caps = sum(at_cap(r) for r in runs)
            cached = sum(r.source == "run cache" for r in runs)
            recorded = sum(r.source == "record" for r in runs)
            how = (
                f"kept epochs {[r.best_epoch for r in runs]} of {runs[0].config.max_epochs}"
                + (f", {caps} within patience of the cap" if caps else "")
                + f"; {sum(r.seconds for r in runs) / 60:.1f} min of training"
                + (f", {cached} read from the run cache" if cached else "")
                + (f", {recorded} read from committed run records" if recorded else "")
            )
        seeds = f"seed {row.seeds[0]}" if len(row.seeds) == 1 else f"mean of seeds {', '.join(map(str, row.seeds))}"
        return f"{row.name} ({seeds}): R@1 {t['R@1']:.1f}  R@5 {t['R@5']:.1f}  R@10 {t['R@10']:.1f}  medr {t['medr']:.1f}  ({how})"

    # ------------------------------------------------------------------ ensembles

    def ensemble(self, spec: RowSpec, members: Sequence[Run]) -> Row:
        """A row whose scores are the mean of the members' similarity matrices (test, and dev for its
        dev score and dev ranks). Members must share the captions (same split order). When a member
        was read from a record (no weights here), the ensemble is read from its own committed record
        if that record is of the same members; else the members are trained."""
        members = list(members)
        ids = [records.member_id(m.config) for m in members]
        if not all(m.model is not None for m in members):
            committed = self._committed_ensemble(spec.id, ids)
            if committed is not None:
                run = self._score_record(committed)
                row = Row(spec, runs={0: run}, members=tuple(members))
                self.rows[spec.id] = row
                print(self.describe(spec.id))
                return row
            for m in members:  # the committed ensemble is of other runs: its members are trained
                self.weights(m)
        _, feats = self.features(members[0].config)
        dev_sim = np.mean([similarity(m.model.model, self.features(m.config)[1]["dev"]) for m in members], axis=0)
        test_sim = np.mean([similarity(m.model.model, self.features(m.config)[1]["test"]) for m in members], axis=0)
        dev_ranks = metrics.t2i_ranks(dev_sim, feats["dev"].caption_image)
        dev = metrics.summarize_ranks(dev_ranks)
        sim = test_sim.astype(np.float32)
        result = {**analysis.protocol(sim, feats["test"], self.threshold, self.n_boot, seed=0), "similarity": sim}
        history = [{"epoch": 0, **{f"dev_{k}": v for k, v in dev.items()}}]
        run = Run(
            members[0].config,
            result["ranks"],
            history,
            0,
            float(sum(m.seconds for m in members)),
            self.offset,
            members=ids,
            precision=members[0].precision,
            cpu=members[0].cpu,
            dev_ranks=dev_ranks,
            result=result,
        )
        self._save(spec.id, run, key=0)
        row = Row(spec, runs={0: run}, members=tuple(members))
        self.rows[spec.id] = row
        print(self.describe(spec.id))
        return row

    def dev_similarity(self, run: Run) -> np.ndarray:
        """The run's (captions x images) dev similarity (its weights: trained now when it was read
        from a record)."""
        return similarity(self.weights(run).model, self.features(run.config)[1]["dev"])

    def select_ensemble(self, spec: RowSpec, candidates: dict[str, Run], max_members: int | None = None) -> Row:
        """An ensemble whose members are chosen on **dev** from ``candidates`` (label -> run) by greedy
        forward selection (:func:`protocol.select_members`), then scored like :meth:`ensemble`. The
        row's note says the members in the order added and the dev criterion after each."""
        picked = protocol.select_members(
            {label: self.dev_similarity(run) for label, run in candidates.items()},
            self.caption_image("dev"),
            CRITERION,
            max_members,
        )
        row = self.ensemble(spec, [candidates[label] for label in picked["members"]])
        row.note = "chosen on dev from {} candidates, added in order: {}".format(
            len(candidates),
            ", ".join(f"{label} ({score:.1f})" for label, score in zip(picked["members"], picked["dev_criterion"])),
        )
        return row

    def bank_matrices(self, run: Run, split: str) -> tuple[np.ndarray, np.ndarray]:
        """The run's (captions x images) similarity of ``split`` and its query bank's: every
        training caption, through the run's own text branch, against the same images."""
        model = self.weights(run).model
        _, feats = self.features(run.config)
        bank = model.score_matrix(feats["train"].queries, feats[split].image).float().numpy()
        return similarity(model, feats[split]), bank

    def _row_bank_matrices(self, row: Row, seed: int, split: str) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`bank_matrices` of a row's run; of an ensemble, the mean of its members' (its scores
        are their mean, and each member scores the bank through its own text branch)."""
        if not row.is_ensemble:
            return self.bank_matrices(row.runs[seed], split)
        total_sim, total_bank = 0.0, 0.0
        for member in row.members:
            sim, bank = self.bank_matrices(member, split)
            total_sim, total_bank = total_sim + sim, total_bank + bank
        return total_sim / len(row.members), total_bank / len(row.members)

    def rescore(self, spec: RowSpec, method: str, grid: list[dict] | None = None) -> Row:
        """A row whose runs are its parent's, scored at test time by a hubness reduction
        (:mod:`hubness`) against the query bank of :meth:`bank_matrices`. The method's parameters
        are chosen on dev (the best mean dev criterion over the parent's seeds); test is scored
        once with them. The row's note says what was chosen and what each candidate scored. An
        ensemble is re-scored as one model (:meth:`_row_bank_matrices`) and compared with itself
        unscored (:meth:`compare`)."""
        parent = self.rows[spec.parent]
        dev = {s: self._row_bank_matrices(parent, s, "dev") for s in parent.seeds}
        params, tried = hubness.tune(
            method,
            [dev[s][0] for s in parent.seeds],
            [dev[s][1] for s in parent.seeds],
            self.caption_image("dev"),
            grid,
        )
        row = Row(
            spec,
            rescored=method,
            params=dict(params),
            note=f"{method} {params}, chosen on dev over {', '.join(f'{p} {v:.1f}' for p, v in tried.items())}",
        )
        for s in parent.seeds:
            base = parent.runs[s]
            _, feats = self.features(base.config)
            dev_ranks = metrics.t2i_ranks(hubness.rescore(method, *dev[s], **params), feats["dev"].caption_image)
            sim = hubness.rescore(method, *self._row_bank_matrices(parent, s, "test"), **params)
            result = {**analysis.protocol(sim, feats["test"], self.threshold, self.n_boot, seed=0), "similarity": sim}
            history = [
                {"epoch": base.best_epoch, **{f"dev_{k}": v for k, v in metrics.summarize_ranks(dev_ranks).items()}}
            ]
            row.runs[s] = dataclasses.replace(
                base, ranks=result["ranks"], history=history, dev_ranks=dev_ranks, result=result
            )
            self._save(spec.id, row.runs[s], key=s)
        self.rows[spec.id] = row
        print(self.describe(spec.id), "|", row.note)
        return row

    def _committed_ensemble(self, row_id: str, ids: list[str]) -> Run | None:
        if self.notebook is None:
            return None
        path = records.committed_record_path(self.notebook, row_id, 0)
        if not path.is_file():
            return None
        run = self._load(path)
        return run if run.members == ids else None  # the same models, not only the same kind

    # ------------------------------------------------------------------ comparisons (report)

    def compare(self, row_id: str, seeds: Sequence[int] | None = None, split: str = "test") -> dict:
        """Row ``row_id`` minus its parent on the criterion, over the seeds both have (or ``seeds``),
        paired by seed (:func:`protocol.compare`), on the ``split``'s ranks (``dev`` for decisions).
        With one common seed, the training noise is the pooled seed spread of that split's criterion.
        An ensemble row is compared with the mean of its own members (:func:`protocol.ensemble_gain`),
        or, when its parent is an ensemble (another pool, say), with that ensemble; a re-scored
        ensemble with the ensemble itself. Between two ensembles the models are fixed: the interval
        covers the choice of test images, not that of the training seeds."""
        row = self.rows[row_id]
        parent = self.rows.get(row.spec.parent)
        if row.is_ensemble and not (parent is not None and parent.is_ensemble):
            return self.ensemble_gain(row_id, split)
        if parent is None:
            raise KeyError(f"row {row_id!r}: its parent {row.spec.parent!r} is not in the table")
        if parent.is_ensemble:
            if not (row.rescored or row.is_ensemble):
                raise ValueError(f"row {row_id!r} has an ensemble for parent: compare ensembles with their members")
            return self.versus(row_id, parent.spec.id, split)
        common = [s for s in (seeds if seeds is not None else row.seeds) if s in parent.runs and s in row.runs]
        if not common:
            raise ValueError(f"rows {row_id!r} and {row.spec.parent!r} share no seed")
        a, b = _ranks(row, common, split), _ranks(parent, common, split)
        seed_sd = None if len(common) >= 2 else np.sqrt(2.0) * self.pooled_seed_sd(split)
        out = protocol.compare(a, b, self.caption_image(split), CRITERION, seed_sd=seed_sd)
        return {"row": row_id, "vs": parent.spec.id, "seed_list": list(common), "split": split, **out}

    def compare_rows(self, row_id: str, other_id: str, split: str = "dev") -> dict:
        """Two single-model rows that are not parent and child, seed-paired over the seeds both have
        (:func:`protocol.compare`), on ``split`` (dev by default: a decision)."""
        row, other = self.rows[row_id], self.rows[other_id]
        common = [s for s in row.seeds if s in other.runs]
        if not common or row.is_ensemble or other.is_ensemble:
            raise ValueError(f"rows {row_id!r} and {other_id!r} share no seed, or one is an ensemble")
        seed_sd = None if len(common) >= 2 else np.sqrt(2.0) * self.pooled_seed_sd(split)  # as compare()
        out = protocol.compare(
            _ranks(row, common, split),
            _ranks(other, common, split),
            self.caption_image(split),
            CRITERION,
            seed_sd=seed_sd,
        )
        return {"row": row_id, "vs": other_id, "seed_list": common, "split": split, **out}

    def versus(self, row_id: str, other_id: str, split: str = "test") -> dict:
        """Row ``row_id`` minus row ``other_id``, each read as one model (its first run: an
        ensemble's own run, say), on the criterion over the ``split``'s images, the models fixed
        (:func:`protocol.ensemble_gain` with one member): the interval covers the choice of images,
        not that of the training seeds."""
        own, other = (_ranks(self.rows[i], self.rows[i].seeds, split)[0] for i in (row_id, other_id))
        out = protocol.ensemble_gain(own, [other], self.caption_image(split), CRITERION)
        return {"row": row_id, "vs": other_id, "seed_list": list(self.rows[row_id].seeds), "split": split, **out}

    def ensemble_gain(self, row_id: str, split: str = "test") -> dict:
        """An ensemble against the mean of its own members (:func:`protocol.ensemble_gain`)."""
        row = self.rows[row_id]
        members = row.members
        member_ranks = [m.ranks["t2i"] if split == "test" else _dev_ranks(m) for m in members]
        own = row.first.ranks["t2i"] if split == "test" else _dev_ranks(row.first)
        out = protocol.ensemble_gain(own, member_ranks, self.caption_image(split), CRITERION)
        return {"row": row_id, "vs": "its members' mean", "seed_list": [m.seed for m in members], "split": split, **out}

    def pooled_seed_sd(self, split: str = "test") -> float:
        """The seed-to-seed standard deviation of the criterion on ``split``, pooled over every
        trained row with two or more seeds."""
        groups = [
            [float(verdicts.hits(r, CRITERION).mean()) for r in _ranks(row, row.seeds, split)]
            for row in self.rows.values()
            if not row.is_ensemble and len(row.seeds) >= 2
        ]
        return verdicts.pooled_sd(groups)[0]

    def compared(self) -> list[str]:
        """The rows that have a comparison: a parent in the table, or members (an ensemble)."""
        return [
            i
            for i, r in self.rows.items()
            if r.is_ensemble
            or (r.spec.parent in self.rows and (r.rescored or not self.rows[r.spec.parent].is_ensemble))
        ]

    def comparisons(self, split: str = "test") -> dict[str, dict]:
        """:meth:`compare` on ``split`` (test, or dev where the verdicts are the decisions) for every
        compared row; those of the declared family carry their Holm-adjusted p-value and verdict
        (:func:`protocol.adjust`), over the family as declared: a member not measured here counts as p = 1."""
        raw = {i: self.compare(i, split=split) for i in self.compared()}
        family = {i: raw[i] for i in self.family if i in raw}
        return {**raw, **protocol.adjust(family, declared=self.family)} if family else raw

    def family_table(self, split: str = "test") -> pd.DataFrame:
        """The declared family on ``split``, one line per comparison: the raw verdict and the adjusted one."""
        comps = self.comparisons(split)
        out = {}
        for i in self.family:
            if i not in comps:
                out[i] = {"vs": "-", "seeds": "-", "note": "not measured here"}
                continue
            c = comps[i]
            out[self.rows[i].name] = {
                "vs": c["vs"],
                "seeds": f"{len(self.rows[i].members)} members"
                if self.rows[i].is_ensemble
                else ", ".join(map(str, c["seed_list"])),
                f"{c['criterion']} (95% CI)": verdicts.describe(c).rsplit(":", 1)[0],
                "p": round(c["p"], 4),
                "verdict": c["verdict"],
                "Holm p": round(c["p_adjusted"], 4),
                "verdict, family-adjusted": c["verdict_adjusted"],
            }
        return pd.DataFrame.from_dict(out, orient="index")

    def verdicts(self) -> list[str]:
        """One line per compared row: the difference, its interval, and its verdict (in the family:
        raw and Holm-adjusted; the adjusted one is the study's word)."""
        lines = []
        for i, c in self.comparisons().items():
            what = f"{self.rows[i].name} vs {c['vs']} (seeds {', '.join(map(str, c['seed_list']))}): {c['criterion']} "
            lines.append(
                what
                + (
                    protocol.describe_adjusted(c)
                    if "p_adjusted" in c
                    else verdicts.describe(c) + " (outside the family)"
                )
            )
        return lines

    def word(self, row_id: str) -> str:
        """The study's word for a compared row: its family-adjusted verdict (raw outside the family)."""
        c = self.comparisons()[row_id]
        return c.get("verdict_adjusted", c["verdict"])

    def aa_check(self, first: tuple[int, ...], second: tuple[int, ...]) -> dict:
        """:func:`protocol.aa_check` over every single-model row with both seed sets."""
        ranks = {i: {s: r.runs[s].ranks["t2i"] for s in r.seeds} for i, r in self.rows.items() if not r.is_ensemble}
        return protocol.aa_check(ranks, self.caption_image("test"), first, second, CRITERION)

    def heterogeneity(self, first: tuple[int, ...], second: tuple[int, ...]) -> pd.DataFrame:
        """For each compared row measured on both seed sets: the estimate from each set, their
        difference over its standard error (:func:`protocol.heterogeneity`)."""
        out = {}
        for row_id in self.compared():
            row = self.rows[row_id]
            if row.is_ensemble:
                continue
            parent = self.rows[row.spec.parent]
            have = [s for s in second if s in row.runs and s in parent.runs]
            if len(have) < 2 or not all(s in row.runs and s in parent.runs for s in first):
                continue
            a, b = self.compare(row_id, first), self.compare(row_id, have)
            h = protocol.heterogeneity(a, b)
            out[row.name] = {
                "vs": row.spec.parent,
                f"seeds {', '.join(map(str, first))}": round(h["first"], 2),
                f"seeds {', '.join(map(str, have))}": round(h["second"], 2),
                "difference": round(h["delta"], 2),
                "its standard error": round(h["se"], 2),
                "z": round(h["z"], 2),
                "the two sets": "disagree (|z| > 2)" if abs(h["z"]) > 2 else "consistent",
            }
        return pd.DataFrame.from_dict(out, orient="index")

    # ------------------------------------------------------------------ decisions (dev only)

    def settle(
        self,
        seed_ladder: tuple[tuple[int, ...], ...],
        margin: float = CLOSE_CALL_MARGIN,
        rows: list[str] | None = None,
    ) -> list[str]:
        """Train close calls with more seeds, judged on **dev**: for each compared row (of ``rows``,
        default all) whose seed-paired dev comparison with its parent is a close call
        (:func:`protocol.is_close_call`), the row and its parent climb ``seed_ladder`` (e.g.
        ``((0, 1, 2), (0, 1, 2, 3, 4, 5))``) until the dev verdict is clear or the ladder ends. Reads
        no test rank. Returns the lines that say what was added."""
        said = []
        for row_id in [i for i in self.compared() if not self.rows[i].is_ensemble and (rows is None or i in rows)]:
            row = self.rows[row_id]
            for seeds in seed_ladder:
                c = self.compare(row_id, split="dev")
                if not protocol.is_close_call(c, margin) or set(seeds) <= set(c["seed_list"]):
                    continue
                self.ensure_seeds(row.spec.parent, seeds)
                self.ensure_seeds(row_id, seeds)
                after = self.compare(row_id, split="dev")
                said.append(
                    f"{row.name}: close call on dev, seeds {c['seed_list']} ({verdicts.describe(c)}); "
                    f"dev over seeds {after['seed_list']}: {verdicts.describe(after)}"
                )
        return said

    def selection(self, tolerance: float | None = None) -> dict:
        """The model choice, on dev only (:func:`protocol.choose`): among single-model dual-encoder
        rows (a transductive re-scoring left out), the best mean dev criterion over the row's seeds; rows within ``tolerance`` of it tie
        (default: two standard errors of a difference of two seed means, from the pooled seed spread
        of the dev criterion), and the least complex of them (:func:`complexity`) is chosen."""
        candidates = [
            r
            for r in self.rows.values()
            if not r.is_ensemble and r.first.config.model == "dual_encoder" and r.rescored not in hubness.TRANSDUCTIVE
        ]
        if not candidates:
            raise ValueError("no dual-encoder row to choose from")
        out = protocol.choose(
            {r.spec.id: [dev_rsum(r.runs[s]) for s in r.seeds] for r in candidates},
            {r.spec.id: (*complexity(r.first.config), bool(r.rescored)) for r in candidates},  # a bank: less simple
            tolerance,
        )
        chosen = self.rows[out["chosen"]]
        return {**out, "chosen_name": chosen.name, "seeds": {r.spec.id: r.seeds for r in candidates}}

    def best_frozen_row(self) -> Row:
        """The frozen-feature dual encoder with the best mean dev score over its seeds."""
        frozen = [
            r
            for r in self.rows.values()
            if not r.is_ensemble and r.first.config.model == "dual_encoder" and not r.first.config.finetune_text
        ]
        return max(frozen, key=lambda r: r.mean_dev_rsum())

    # ------------------------------------------------------------------ tables and exports

    def export_choice(self, selection: dict, extra: dict | None = None, run: str = "best") -> Path:
        """Export the first-seed run of the row ``selection`` chose as ``run`` (checkpoint, test
        similarity, metrics with ``extra``): whatever row it is (a fine-tuned one included)."""
        chosen = self.rows[selection["chosen"]]
        if chosen.is_ensemble:
            raise ValueError(f"row {chosen.name!r} is an ensemble: the export is one trained model")
        trained = self.weights(chosen.first)
        best = dataclasses.replace(trained, config=trained.config.replace(name=run))
        _, feats = self.features(best.config)
        result = chosen.result
        return results.export_run(
            best,
            result["similarity"],
            feats["test"].caption_ids,
            feats["test"].image_ids,
            {k: v for k, v in result.items() if k not in ("similarity", "seconds")},
            timings={"train": best.seconds, **result.get("seconds", {})},
            extra={
                "row": chosen.spec.id,
                "row_name": chosen.name,
                "seed": chosen.seeds[0],
                "selection": selection,
                **(extra or {}),
            },
        )

    def table(self) -> pd.DataFrame:
        """One line per row: means over its seeds of every column of :func:`analysis.recall_row`
        (intervals: the first seed's, resampling images with their captions), the seeds, the kept
        epochs, the verdict against the parent (family-adjusted when in the family) and what changed."""
        comps = self.comparisons()
        out = {}
        for row_id, r in self.rows.items():
            per_seed = [analysis.recall_row(r.results[s]) for s in r.seeds]
            line = {"id": row_id, "changed from": r.spec.parent or "-", "seeds": len(r.seeds)}
            for key, value in per_seed[0].items():
                line[key] = value if isinstance(value, str) else round(float(np.mean([p[key] for p in per_seed])), 2)
            line["R@1 seed sd"] = (
                round(float(np.std([p["R@1"] for p in per_seed], ddof=1)), 2) if len(per_seed) > 1 else None
            )
            if r.is_ensemble:
                line["changed from"] = "its members"
                line["epochs kept"] = f"{len(r.members)} models"
            else:
                runs = [r.runs[s] for s in r.seeds]
                line["epochs kept"] = (
                    ", ".join(str(t.best_epoch) for t in runs)
                    + f" of {runs[0].config.max_epochs}"
                    + (" (cap)" if any(at_cap(t) for t in runs) else "")
                )
            c = comps.get(row_id)
            line[f"vs parent, {verdicts.criterion_name(CRITERION)}"] = (
                "-" if c is None else verdicts.describe(c) if "p_adjusted" not in c else protocol.describe_adjusted(c)
            )
            line["what changed"] = r.note or r.spec.change
            out[r.name] = line
        return analysis.table(out)

    def seed_spread(self) -> dict[str, float]:
        """The seed-to-seed standard deviation of each test number (t2i R@1/5/10, medr), pooled over
        the rows with two or more seeds: the yardstick of the regression checks (tests_exports)."""
        out = {}
        for key in ("R@1", "R@5", "R@10", "medr"):
            groups = [
                [r.results[s]["strict"]["t2i"][key] for s in r.seeds]
                for r in self.rows.values()
                if not r.is_ensemble and len(r.seeds) >= 2
            ]
            out[key] = round(verdicts.pooled_sd(groups)[0], 3)
        return out

    def training_summary(self) -> str:
        """How this process obtained the runs: how many were trained here (and their training
        seconds), read from the run cache, read from committed records."""
        trained_rows = [row for row in self.rows.values() if not (row.is_ensemble or row.rescores_ensemble)]
        runs = [r for row in trained_rows for r in row.runs.values()]
        trained = [r for r in runs if r.source == "trained"]
        return (
            f"{len(runs)} runs: {len(trained)} trained here ({sum(r.seconds for r in trained):.0f} s of training), "
            f"{sum(r.source == 'run cache' for r in runs)} read from the run cache, "
            f"{sum(r.source == 'record' for r in runs)} from committed run records"
        )

    def ci_sample(self) -> pd.DataFrame:
        """What CI trains and reads, row by row (:class:`records.Sampling`): the table of docs/reproducibility.md."""
        out = {}
        for row in self.rows.values():
            if row.is_ensemble or row.rescores_ensemble:  # nothing trained
                continue
            out[row.name] = {
                "CI": "reads every seed" if row.spec.ci_reads else "trains its first seed, reads the others",
                "why": row.spec.ci_reads or "its training path",
            }
        return pd.DataFrame.from_dict(out, orient="index")


def _dev_ranks(run: Run) -> np.ndarray:
    if run.dev_ranks is None:
        raise ValueError(
            f"the run of {run.config.name!r} (seed {run.seed}) has no dev ranks: its record predates them; "
            "re-run ./run_all.sh to write it again"
        )
    return run.dev_ranks


def _ranks(row: Row, seeds: Sequence[int], split: str) -> list[np.ndarray]:
    if split not in ("test", "dev"):
        raise ValueError(f"split must be 'test' or 'dev', got {split!r}")
    return [row.runs[s].ranks["t2i"] if split == "test" else _dev_ranks(row.runs[s]) for s in seeds]


def at_cap(run: Run | TrainedModel) -> bool:
    """Early stopping was on, and the kept epoch is within ``patience`` of the cap: the run may
    still have been improving when it was stopped (a fixed schedule that keeps its last epochs is
    not flagged: it ran the length it was given)."""
    c = run.config
    return c.early_stopping and c.patience < c.max_epochs and run.best_epoch > c.max_epochs - c.patience


def dev_rsum(run: Run) -> float:
    """Dev t2i R@1+R@5+R@10 at the kept epoch (the selection's reading of a run)."""
    return run.dev_score()


def target_check(t2i: dict, targets: dict[str, float] = TARGETS) -> dict[str, bool]:
    """Whether each target is met (median rank: at most; recalls: at least)."""
    return {k: (t2i[k] <= v if k == "medr" else t2i[k] >= v) for k, v in targets.items()}


def against(values: dict, targets: dict[str, float]) -> str:
    """``"R@1 26.8 (met against 24), ..."``: measured values against their targets, in words."""
    return ", ".join(
        f"{k} {values[k]:.1f} ({'met' if ok else 'missed by ' + format(abs(values[k] - targets[k]), '.1f')} against {targets[k]:g})"
        for k, ok in target_check(values, targets).items()
    )
