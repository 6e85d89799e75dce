"""Train-and-test many configs on shared features, and the table that compares them (notebook 07)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from . import analysis
from .checkpoint import TrainedModel
from .config import RunConfig
from .data import Flickr8k
from .inputs import FeatureSpace, SplitFeatures
from .metrics import selection_score
from .train import train

#: Targets set for the study's best configuration on the standard test split (t2i).
TARGETS = {"R@1": 24.0, "R@5": 53.0, "R@10": 66.0, "medr": 5.0}


@dataclass
class Row:
    name: str
    trained: TrainedModel
    result: dict
    changed_from: str = "-"
    note: str = ""

    @property
    def t2i(self) -> dict:
        return self.result["strict"]["t2i"]

    def __repr__(self) -> str:
        t = self.t2i
        return f"Row({self.name!r}: t2i R@1 {t['R@1']:.1f}, R@5 {t['R@5']:.1f}, R@10 {t['R@10']:.1f}, medr {t['medr']:.0f})"


@dataclass
class Experiment:
    """Rows of an ablation table: each trained (or loaded), then tested with the strict protocol and
    the lenient criterion. Features are loaded and normalised once per setting and shared."""

    data: Flickr8k
    threshold: float = 0.7
    n_boot: int = 1000
    rows: dict[str, Row] = field(default_factory=dict)
    _spaces: dict = field(default_factory=dict, repr=False)

    def features(self, config: RunConfig) -> tuple[FeatureSpace, dict[str, SplitFeatures]]:
        key = (config.image_backbone, config.text_encoder, config.text_pooling, config.feature_norm, config.pretrained_images)
        if key not in self._spaces:
            space = FeatureSpace(config, self.data)
            self._spaces[key] = (space, {name: space.split(name) for name in ("train", "dev", "test")})
        return self._spaces[key]

    def test(self, trained: TrainedModel) -> dict:
        _, feats = self.features(trained.config)
        return analysis.strict_and_lenient(trained, feats["test"], self.threshold, self.n_boot, trained.config.seed)

    def add(self, name: str, trained: TrainedModel, changed_from: str = "-", note: str = "") -> Row:
        """Test an already trained model and record it as a row."""
        row = Row(name, trained, self.test(trained), changed_from, note)
        self.rows[name] = row
        t = row.t2i
        print(f"{name}: R@1 {t['R@1']:.1f}  R@5 {t['R@5']:.1f}  R@10 {t['R@10']:.1f}  medr {t['medr']:.0f}  "
              f"(best epoch {trained.best_epoch} of {len(trained.history)}, {trained.seconds / 60:.1f} min)")
        return row

    def run(self, name: str, config: RunConfig, changed_from: str = "-", note: str = "", init: TrainedModel | None = None) -> Row:
        """Train ``config`` (fine-tune the text encoder from ``init`` when ``config.finetune_text``), test, record."""
        space, feats = self.features(config)
        trained = train(config, feats, init=init, text_norm=space.text_norm, image_norms=space.image_norms)
        return self.add(name, trained, changed_from, note)

    def best_frozen_row(self) -> Row:
        """The frozen-feature dual encoder with the best dev score (t2i R@1+R@5+R@10) at its kept epoch."""
        frozen = [r for r in self.rows.values() if r.trained.config.model == "dual_encoder" and not r.trained.config.finetune_text]
        return max(frozen, key=lambda r: _dev_rsum(r.trained))

    def table(self) -> pd.DataFrame:
        return analysis.table({name: {"changed from": r.changed_from, **analysis.recall_row(r.result), "what changed": r.note} for name, r in self.rows.items()})

    def verdicts(self) -> list[str]:
        """One line per row that changes another: the R@1 difference and whether the 95% intervals overlap."""
        by_number = {name.split()[0]: r for name, r in self.rows.items()}
        lines = []
        for name, r in self.rows.items():
            ref = by_number.get(r.changed_from)
            if ref is None:
                continue
            diff = r.t2i["R@1"] - ref.t2i["R@1"]
            a, b = r.t2i["ci95"]["R@1"], ref.t2i["ci95"]["R@1"]
            verdict = "within the noise (95% intervals overlap)" if a[0] <= b[1] and b[0] <= a[1] else ("helps" if diff > 0 else "hurts")
            lines.append(f"{name} vs {ref.name}: R@1 {diff:+.1f} points, {verdict}")
        return lines

    def best_by_dev(self) -> Row:
        """The embedding-model row with the best dev score (t2i R@1+R@5+R@10) at its kept epoch:
        the model selection that does not look at the test split."""
        candidates = [r for r in self.rows.values() if r.trained.config.model == "dual_encoder"]
        return max(candidates, key=lambda r: _dev_rsum(r.trained))

    def best_row(self) -> Row:
        return max(self.rows.values(), key=lambda r: r.t2i["R@1"])


def _dev_rsum(trained: TrainedModel) -> float:
    kept = trained.kept()
    return selection_score({k: kept[f"dev_{k}"] for k in ("R@1", "R@5", "R@10")})


def target_check(t2i: dict) -> dict[str, bool]:
    """Whether each of :data:`TARGETS` is met (median rank: at most; recalls: at least)."""
    return {k: (t2i[k] <= v if k == "medr" else t2i[k] >= v) for k, v in TARGETS.items()}
