"""Rows of an ablation table, each trained with several seeds, and the seed-aware comparisons,
model choice and tables built on them (notebook 07).

A row is data (:class:`RowSpec`): an id, a display label, the row it changes (``parent``), what
changed, and its config. :class:`Experiment` trains a row for any set of seeds (a fine-tuning
row starts from its ``init`` row's run of the same seed), tests every run with the strict protocol
and compares a row with its parent over the seeds both have (:func:`verdicts.seed_paired`).

With a ``notebook`` name, every run is also written as a run record (:mod:`records`); with
``RCP217_RETRAIN=sample`` (CI) only the first seed of each row is trained and the other seeds are read
from the committed records; a row marked ``retrain_in_sample=False`` (a costly run whose code path
other rows train) is read whole from its records. A run read from a record that the notebook then
needs as a model (the dev choice to export, the start of a fine-tuning, an ensemble member whose
committed ensemble is of other runs) is trained at that point.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from . import analysis, metrics, records, results, verdicts
from .checkpoint import TrainedModel
from .config import RunConfig
from .data import Flickr8k
from .evaluation import similarity
from .images import VIEW_SETS
from .inputs import FeatureSpace, SplitFeatures
from .metrics import dev_selection_score, selection_score
from .records import RunRecord
from .runs import train_cached

#: Targets set for the study's reference recipe and its seed ensemble on the standard test split
#: (t2i), as the issue "Verdicts that hold" states them.
TARGETS = {"R@1": 21.5, "R@5": 50.0, "R@10": 63.0, "medr": 6.0}
ENSEMBLE_TARGETS = {"R@1": 24.0, "R@5": 54.0, "R@10": 67.0, "medr": 5.0}

#: The criterion of every verdict and of the model choice: R@1 + R@5 + R@10 (t2i), in points.
CRITERION = (1, 5, 10)

#: A verdict whose interval ends within this many criterion points of 0 is a close call: its row
#: and parent are trained with more seeds (:meth:`Experiment.settle`). R@1+R@5+R@10 moves about
#: 2.5 times as much as R@1, so this is about 1.5 points of R@1.
CLOSE_CALL_MARGIN = 4.0


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
    same seed it starts from), ``retrain_in_sample`` (False: under ``RCP217_RETRAIN=sample`` the first
    seed too is read from its committed record, when one of the same setting exists)."""

    id: str
    label: str
    parent: str | None
    change: str
    config: RunConfig | None = None
    init: str | None = None
    retrain_in_sample: bool = True

    @property
    def name(self) -> str:
        return f"{self.id} {self.label}"


@dataclass
class Row:
    """A row and its runs: ``runs[seed]`` the trained model of that seed, ``results[seed]`` its test
    protocol (:func:`analysis.protocol`, with the ``similarity`` matrix). An ensemble row has one
    result (key 0) and its ``members``."""

    spec: RowSpec
    runs: dict[int, TrainedModel | RunRecord] = field(default_factory=dict)
    results: dict[int, dict] = field(default_factory=dict)
    members: tuple[TrainedModel | RunRecord, ...] = ()
    ensemble_dev_rsum: float | None = None
    note: str = ""

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def is_ensemble(self) -> bool:
        return bool(self.members)

    @property
    def seeds(self) -> list[int]:
        return sorted(self.results)

    @property
    def trained(self) -> TrainedModel | RunRecord:
        """The run of the row's first seed (an ensemble's first member): trained in this process,
        or its record for a row marked ``retrain_in_sample=False`` under ``RCP217_RETRAIN=sample``."""
        return self.members[0] if self.is_ensemble else self.runs[self.seeds[0]]

    @property
    def result(self) -> dict:
        return self.results[self.seeds[0]]

    @property
    def t2i(self) -> dict:
        return self.result["strict"]["t2i"]

    def dev_rsum(self, seed: int) -> float:
        return self.ensemble_dev_rsum if self.is_ensemble else dev_rsum(self.runs[seed])

    def mean_dev_rsum(self) -> float:
        return float(np.mean([self.dev_rsum(s) for s in self.seeds]))

    def __repr__(self) -> str:
        t = self.t2i
        recalls = f"R@1 {t['R@1']:.1f}, R@5 {t['R@5']:.1f}, R@10 {t['R@10']:.1f}, medr {t['medr']:.0f}"
        return f"Row({self.name!r}: seeds {self.seeds}, t2i {recalls})"


@dataclass
class Experiment:
    """Rows of an ablation table: each trained (or loaded) for one or more seeds, then tested with the
    strict protocol and the lenient criterion. Features are loaded and normalised once per setting."""

    data: Flickr8k
    threshold: float = 0.7
    n_boot: int = 1000
    notebook: str | None = None  # records its runs under results/runs/<notebook>/ when set
    rows: dict[str, Row] = field(default_factory=dict)
    _spaces: dict = field(default_factory=dict, repr=False)

    # ------------------------------------------------------------------ training and testing

    def features(self, config: RunConfig) -> tuple[FeatureSpace, dict[str, SplitFeatures]]:
        key = (
            config.image_backbone,
            config.text_encoder,
            config.text_pooling,
            config.feature_norm,
            config.pretrained_images,
            config.image_views,
            config.test_view,
            config.tune_image_heads,
        )
        if key not in self._spaces:
            space = FeatureSpace(config, self.data)
            self._spaces[key] = (space, {name: space.split(name) for name in ("train", "dev", "test")})
        return self._spaces[key]

    def test(self, trained: TrainedModel) -> dict:
        """The test protocol's results for ``trained``, with its similarity matrix and ranks."""
        _, feats = self.features(trained.config)
        return analysis.strict_and_lenient(trained, feats["test"], self.threshold, self.n_boot, seed=0)

    def _test_record(self, record: RunRecord) -> dict:
        _, feats = self.features(record.config)
        return analysis.protocol_from_ranks(record.ranks, feats["test"], self.threshold, self.n_boot, seed=0)

    def _record(self, row_id: str, seed: int, trained: TrainedModel, result: dict) -> None:
        if self.notebook is not None:
            RunRecord.of(trained, result["ranks"]).save(records.record_path(self.notebook, row_id, seed))

    def _committed(self, row_id: str, seed: int) -> RunRecord | None:
        """The committed record of a row's seed, when runs are sampled and it exists."""
        if self.notebook is None or records.retrain_all():
            return None
        path = records.committed_record_path(self.notebook, row_id, seed)
        if not path.is_file():
            return None
        spec = self.rows[row_id].spec
        test = self.features(spec.config)[1]["test"]
        record = RunRecord.load(path, len(test.caption_ids), len(test.image_ids))
        # the committed row may be of another setting (a row built from a dev choice that moved): then train
        return record if same_setting(record.config, spec.config) else None

    def add(self, spec: RowSpec, trained: TrainedModel) -> Row:
        """Record an already trained model as the run of ``spec`` for its config's seed."""
        row = self.rows.setdefault(spec.id, Row(spec))
        seed = trained.config.seed
        row.runs[seed], row.results[seed] = trained, self.test(trained)
        self._record(spec.id, seed, trained, row.results[seed])
        return row

    def run(self, spec: RowSpec, seeds: tuple[int, ...] = (0,), quiet: bool = False) -> Row:
        """Train ``spec`` for each of ``seeds`` not yet trained (read back from the run cache when it
        holds them; with ``RCP217_RETRAIN=sample``, every seed but the row's first is read from its
        committed record when there is one), test each run, and record the row; print one line."""
        if spec.config is None:
            raise ValueError(f"row {spec.id!r} has no config to train: add its runs with Experiment.add")
        row = self.rows.setdefault(spec.id, Row(spec))
        for seed in seeds:
            if seed in row.runs:
                continue
            # the row's first seed is trained, unless the row says CI may read it
            record = self._committed(spec.id, seed) if row.runs or not spec.retrain_in_sample else None
            if record is not None:
                row.runs[seed], row.results[seed] = record, self._test_record(record)
                continue
            init = None
            if spec.init is not None:
                self.ensure_seeds(spec.init, (seed,))
                init = self.rows[spec.init].runs[seed]
                if not isinstance(init, TrainedModel):  # its start was read from a record: train the start too
                    init = self._retrain(init)
            trained = self._train_now(spec, seed, init)
            row.runs[seed], row.results[seed] = trained, self.test(trained)
            self._record(spec.id, seed, trained, row.results[seed])
        if not quiet:
            print(self.describe(spec.id))
        return row

    def _train_now(self, spec: RowSpec, seed: int, init: TrainedModel | None = None) -> TrainedModel:
        config = spec.config.replace(
            name=f"{spec.config.name}-seed{seed}" if seed != spec.config.seed else spec.config.name, seed=seed
        )
        space, feats = self.features(config)
        return train_cached(config, feats, init=init, text_norm=space.text_norm, image_norms=space.image_norms)

    def ensure_seeds(self, row_id: str, seeds: tuple[int, ...]) -> Row:
        """Train the seeds of ``row_id`` it does not have yet (its spec must carry a config)."""
        row = self.rows[row_id]
        missing = tuple(s for s in seeds if s not in row.runs)
        return self.run(row.spec, missing, quiet=True) if missing else row

    def describe(self, row_id: str) -> str:
        """One line: the row's mean test numbers over its seeds, kept epochs, training time."""
        row = self.rows[row_id]
        t = {
            k: np.mean([row.results[s]["strict"]["t2i"][k] for s in row.seeds]) for k in ("R@1", "R@5", "R@10", "medr")
        }
        if row.is_ensemble:
            how = f"mean of {len(row.members)} models' scores; dev R@1+R@5+R@10 {row.ensemble_dev_rsum:.1f}"
        else:
            runs = [row.runs[s] for s in row.seeds]
            caps = sum(at_cap(r) for r in runs)
            cached = sum(getattr(r, "from_cache", False) for r in runs)
            recorded = sum(isinstance(r, RunRecord) for r in runs)
            how = (
                f"kept epochs {[r.best_epoch for r in runs]} of {runs[0].config.max_epochs}"
                + (f", {caps} within patience of the cap" if caps else "")
                + f"; {sum(r.seconds for r in runs) / 60:.1f} min of training"
                + (f", {cached} read from the run cache" if cached else "")
                + (f", {recorded} read from committed run records" if recorded else "")
            )
        seeds = f"seed {row.seeds[0]}" if len(row.seeds) == 1 else f"mean of seeds {', '.join(map(str, row.seeds))}"
        return f"{row.name} ({seeds}): R@1 {t['R@1']:.1f}  R@5 {t['R@5']:.1f}  R@10 {t['R@10']:.1f}  medr {t['medr']:.1f}  ({how})"

    def ensemble(self, spec: RowSpec, members: list[TrainedModel | RunRecord]) -> Row:
        """A row whose scores are the mean of the members' similarity matrices (test, and dev for its
        dev score). Members must share the captions (same split order). When a member was read from
        a run record (no weights here), the ensemble is read from its own committed record."""
        _, feats = self.features(members[0].config)
        if not all(isinstance(m, TrainedModel) for m in members) and not self._ensemble_record_fits(spec.id, members):
            members = [
                m if isinstance(m, TrainedModel) else self._retrain(m) for m in members
            ]  # the committed ensemble is of other runs
        if all(isinstance(m, TrainedModel) for m in members):
            dev_sims = [similarity(m.model, self.features(m.config)[1]["dev"]) for m in members]
            test_sims = [similarity(m.model, self.features(m.config)[1]["test"]) for m in members]
            dev = metrics.summarize_ranks(metrics.t2i_ranks(np.mean(dev_sims, axis=0), feats["dev"].caption_image))
            sim = np.mean(test_sims, axis=0).astype(np.float32)
            result = {**analysis.protocol(sim, feats["test"], self.threshold, self.n_boot, seed=0), "similarity": sim}
            dev_score = selection_score(dev)
            if self.notebook is not None:
                history = [{"epoch": 0, **{f"dev_{k}": v for k, v in dev.items()}}]
                RunRecord(
                    members[0].config,
                    result["ranks"],
                    history,
                    0,
                    0.0,
                    members=[records.member_id(m.config) for m in members],
                ).save(records.record_path(self.notebook, spec.id, 0))
        else:
            path = records.committed_record_path(self.notebook or "-", spec.id, 0)
            record = RunRecord.load(path, len(feats["test"].caption_ids), len(feats["test"].image_ids))
            result = self._test_record(record)
            dev_score = dev_selection_score(record.kept())
        row = Row(spec, results={0: result}, members=tuple(members), ensemble_dev_rsum=dev_score)
        self.rows[spec.id] = row
        print(self.describe(spec.id))
        return row

    def _ensemble_record_fits(self, row_id: str, members: list) -> bool:
        path = records.committed_record_path(self.notebook or "-", row_id, 0)
        if self.notebook is None or not path.is_file():
            return False
        test = self.features(members[0].config)[1]["test"]
        record = RunRecord.load(path, len(test.caption_ids), len(test.image_ids))
        return record.members == [
            records.member_id(m.config) for m in members
        ]  # the same models, not only the same kind

    def _retrain(self, record: RunRecord) -> TrainedModel:
        """Train now the run a record stands for (the row whose runs hold it, same seed)."""
        for row in self.rows.values():
            for seed, run in row.runs.items():
                if run is record:
                    init = None
                    if row.spec.init is not None:
                        init = self.rows[row.spec.init].runs[seed]
                        init = init if isinstance(init, TrainedModel) else self._retrain(init)
                    trained = self._train_now(row.spec, seed, init)
                    row.runs[seed], row.results[seed] = trained, self.test(trained)
                    return trained
        raise ValueError("this run record belongs to no row of the experiment")

    # ------------------------------------------------------------------ comparisons

    def ranks(self, row_id: str, seeds: list[int]) -> list[np.ndarray]:
        """The test t2i ranks of a row's runs of ``seeds``."""
        row = self.rows[row_id]
        return [np.asarray(row.results[s]["ranks"]["t2i"]) for s in seeds]

    def criterion_values(self, row_id: str, ks: tuple[int, ...] = CRITERION) -> list[float]:
        """The criterion's test value of each seed of a row."""
        return [float(verdicts.hits(r, ks).mean()) for r in self.ranks(row_id, self.rows[row_id].seeds)]

    def pooled_seed_sd(self, ks: tuple[int, ...] = CRITERION) -> float:
        """The seed-to-seed standard deviation of the criterion, pooled over every trained row with
        two or more seeds."""
        groups = [self.criterion_values(i, ks) for i, r in self.rows.items() if not r.is_ensemble and len(r.seeds) >= 2]
        return verdicts.pooled_sd(groups)[0]

    def compare(self, row_id: str, seeds: tuple[int, ...] | None = None, ks: tuple[int, ...] = CRITERION) -> dict:
        """Row ``row_id`` minus its parent on the criterion, over the seeds both have (or ``seeds``),
        paired by seed (:func:`verdicts.seed_paired`); with one common seed, the training noise is
        the pooled seed spread (that of a difference: sqrt(2) times a row's)."""
        row = self.rows[row_id]
        parent = self.rows[row.spec.parent]
        common = [s for s in (seeds if seeds is not None else row.seeds) if s in parent.results and s in row.results]
        caption_image = self.features(row.trained.config)[1]["test"].caption_image
        if row.is_ensemble or parent.is_ensemble:  # an ensemble is compared as one draw
            common = [row.seeds[0]]
            ranks_a, ranks_b = self.ranks(row_id, row.seeds[:1]), self.ranks(parent.spec.id, parent.seeds[:1])
        else:
            if not common:
                raise ValueError(f"rows {row_id!r} and {row.spec.parent!r} share no seed")
            ranks_a, ranks_b = self.ranks(row_id, common), self.ranks(parent.spec.id, common)
        seed_sd = None if len(common) >= 2 else np.sqrt(2.0) * self.pooled_seed_sd(ks)
        return {
            "row": row_id,
            "vs": parent.spec.id,
            "seed_list": list(common),
            **verdicts.seed_paired(ranks_a, ranks_b, caption_image, ks, seed_sd=seed_sd),
        }

    def comparisons(self, ks: tuple[int, ...] = CRITERION) -> dict[str, dict]:
        """:meth:`compare` for every row that has a parent in the table."""
        return {i: self.compare(i, ks=ks) for i, r in self.rows.items() if r.spec.parent in self.rows}

    def settle(
        self,
        seed_ladder: tuple[tuple[int, ...], ...],
        margin: float = CLOSE_CALL_MARGIN,
        rows: list[str] | None = None,
    ) -> list[str]:
        """Train close calls with more seeds: for each compared row (of ``rows``, default all) whose
        interval ends within ``margin`` of 0, the row and its parent climb ``seed_ladder`` (e.g.
        ``((0, 1, 2), (0, 1, 2, 3, 4))``) until the verdict is clear or the ladder ends. Returns the
        lines that say what was added."""
        said = []
        compared = [i for i, r in self.rows.items() if r.spec.parent in self.rows and not r.is_ensemble]
        for row_id in [i for i in compared if rows is None or i in rows]:
            row = self.rows[row_id]
            for seeds in seed_ladder:
                c = self.compare(row_id)
                if not verdicts.needs_more_seeds(c, margin) or set(seeds) <= set(c["seed_list"]):
                    continue
                self.ensure_seeds(row.spec.parent, seeds)
                self.ensure_seeds(row_id, seeds)
                after = self.compare(row_id)
                said.append(
                    f"{row.name}: close call on seeds {c['seed_list']} ({verdicts.describe(c)}); "
                    f"seeds {after['seed_list']}: {verdicts.describe(after)}"
                )
        return said

    def stability(
        self, first: tuple[int, ...], second: tuple[int, ...], ks: tuple[int, ...] = CRITERION
    ) -> pd.DataFrame:
        """Each compared row's verdict from two disjoint seed sets (the seeds of each set that the row
        and its parent both have), and whether they agree; a row not trained on the second set says
        so (its verdict was clear on the first)."""
        out = {}
        for row_id, row in self.rows.items():
            if row.spec.parent not in self.rows or row.is_ensemble or self.rows[row.spec.parent].is_ensemble:
                continue
            parent = self.rows[row.spec.parent]
            a = self.compare(row_id, first, ks)
            has_second = [s for s in second if s in row.results and s in parent.results]
            b = self.compare(row_id, tuple(has_second), ks) if has_second else None
            out[row.name] = {
                "vs": row.spec.parent,
                f"first set ({', '.join(map(str, first))})": f"seeds {', '.join(map(str, a['seed_list']))}: {verdicts.describe(a)}",
                f"second set ({', '.join(map(str, second))})": f"seeds {', '.join(map(str, b['seed_list']))}: {verdicts.describe(b)}"
                if b
                else "not trained",
                "verdicts": verdicts.stability(a, b)
                if b
                else "clear on the first set"
                if not verdicts.needs_more_seeds(a, CLOSE_CALL_MARGIN)
                else "not checked",
            }
        return pd.DataFrame.from_dict(out, orient="index")

    # ------------------------------------------------------------------ choice and tables

    def selection(self, tolerance: float | None = None) -> dict:
        """The model choice, on dev only: among single-model dual-encoder rows, the best mean dev
        R@1+R@5+R@10 over the row's seeds; rows within ``tolerance`` of it tie (default: two
        standard errors of a difference of two seed means, from the pooled seed spread of the dev
        criterion), and the least complex of them (:func:`complexity`, then table order) is chosen."""
        candidates = [r for r in self.rows.values() if r.trained.config.model == "dual_encoder" and not r.is_ensemble]
        if not candidates:
            raise ValueError("no dual-encoder row to choose from")
        scores = {r.spec.id: r.mean_dev_rsum() for r in candidates}
        if tolerance is None:
            groups = [[r.dev_rsum(s) for s in r.seeds] for r in candidates if len(r.seeds) >= 2]
            sd = verdicts.pooled_sd(groups)[0] if groups else 0.0
            n = min(len(r.seeds) for r in candidates)
            tolerance = float(2.0 * sd * np.sqrt(2.0 / n))
        top = max(scores.values())
        tied = [r for r in candidates if scores[r.spec.id] >= top - tolerance]
        chosen = min(tied, key=lambda r: complexity(r.trained.config))  # min keeps the first of equals
        return {
            "chosen": chosen.spec.id,
            "chosen_name": chosen.name,
            "within_tolerance": [r.spec.id for r in tied],
            "tolerance": round(tolerance, 3),
            "dev_rsum_mean": {i: round(v, 2) for i, v in scores.items()},
            "seeds": {r.spec.id: r.seeds for r in candidates},
        }

    def export_choice(self, selection: dict, extra: dict | None = None, run: str = "best") -> Path:
        """Export the first-seed run of the row ``selection`` chose as ``run`` (checkpoint, test
        similarity, metrics with ``extra``): whatever row it is (a fine-tuned one included)."""
        chosen = self.rows[selection["chosen"]]
        if chosen.is_ensemble:
            raise ValueError(f"row {chosen.name!r} is an ensemble: the export is one trained model")
        if not isinstance(chosen.trained, TrainedModel):  # read from its record: the export needs its weights
            self._retrain(chosen.trained)
        best = dataclasses.replace(chosen.trained, config=chosen.trained.config.replace(name=run))
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

    def best_frozen_row(self) -> Row:
        """The frozen-feature dual encoder with the best mean dev score over its seeds."""
        frozen = [
            r
            for r in self.rows.values()
            if r.trained.config.model == "dual_encoder" and not r.trained.config.finetune_text and not r.is_ensemble
        ]
        return max(frozen, key=lambda r: r.mean_dev_rsum())

    def table(self) -> pd.DataFrame:
        """One line per row: means over its seeds of every column of :func:`analysis.recall_row`
        (intervals: the first seed's, resampling images with their captions), the seeds, the kept
        epochs, the verdict against the parent and what changed."""
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
                line["epochs kept"] = f"{len(r.members)} models"
            else:
                runs = [r.runs[s] for s in r.seeds]
                line["epochs kept"] = (
                    ", ".join(str(t.best_epoch) for t in runs)
                    + f" of {runs[0].config.max_epochs}"
                    + (" (cap)" if any(at_cap(t) for t in runs) else "")
                )
            c = comps.get(row_id)
            line[f"vs parent, {verdicts.criterion_name(CRITERION)}"] = verdicts.describe(c) if c else "-"
            line["what changed"] = r.note or r.spec.change
            out[r.name] = line
        return analysis.table(out)

    def verdicts(self) -> list[str]:
        """One line per compared row: the difference on the criterion, its interval and verdict."""
        return [
            f"{self.rows[i].name} vs {c['vs']} (seeds {', '.join(map(str, c['seed_list']))}): "
            f"{verdicts.criterion_name(CRITERION)} {verdicts.describe(c)}"
            for i, c in self.comparisons().items()
        ]

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


def same_setting(a: RunConfig, b: RunConfig) -> bool:
    """Two configs that train the same thing: equal but for their name and seed."""
    strip = lambda c: {k: v for k, v in c.to_dict().items() if k not in ("name", "seed")}  # noqa: E731
    return strip(a) == strip(b)


def at_cap(trained: TrainedModel) -> bool:
    """Early stopping was on, and the kept epoch is within ``patience`` of the cap: the run may
    still have been improving when it was stopped (a fixed schedule that keeps its last epochs is
    not flagged: it ran the length it was given)."""
    c = trained.config
    return c.early_stopping and c.patience < c.max_epochs and trained.best_epoch > c.max_epochs - c.patience


def dev_rsum(trained: TrainedModel) -> float:
    """Dev t2i R@1+R@5+R@10 at the kept epoch."""
    kept = trained.kept()
    return dev_selection_score(kept)


def target_check(t2i: dict, targets: dict[str, float] = TARGETS) -> dict[str, bool]:
    """Whether each target is met (median rank: at most; recalls: at least)."""
    return {k: (t2i[k] <= v if k == "medr" else t2i[k] >= v) for k, v in targets.items()}
