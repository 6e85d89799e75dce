"""Where the study stands: the README's tables, made from the committed results, never typed.

Two tables, each a function of what is committed (as CLIP_benchmark builds its tables from stored
results), and :func:`render` / :func:`check` to write them into the README between markers or to
compare them with it (``tests/test_standing.py``; ``python scripts/readme_tables.py`` rewrites them):

* :func:`test_table`: the headline pipelines on the standard test split (trained on 6000 images), in
  blocks that say what each number carries: a plain single model, + views scored at test time, + a
  bank of training captions, an ensemble. Beside each: its cost (CNN passes per indexed image, text
  branches per query, a caption bank, training seconds) and which notebook measured it.
* :func:`holdout_table`: the declared confirmatory run (notebook 17, trained on 5000 images): each
  pipeline on test and on the sealed hold-out (from the read log only), and its test-minus-hold-out
  gap relative to TB's; :func:`holdout_family_table`, the declared family's verdicts on the hold-out.

:func:`family_table` (a declaration's family on any split's ranks) and :func:`reads_table` (the log's
first reads) are the tables notebook 17 shows.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from . import holdout, metrics, paths, protocol, records
from .config import RunConfig
from .images import VIEW_SETS

#: (block, label, notebook, row): the headline rows of the test table, in order.
TEST_ROWS = (
    ("plain", "the report's final model, re-run", "07_improvements", "1"),
    ("plain", "InfoNCE instead of the report's loss, report's recipe", "07_improvements", "1b"),
    ("plain", "R: InfoNCE, reference recipe, EfficientNet-Lite0 + MiniLM", "07_improvements", "3"),
    ("plain", "5b: + MobileNetV2 (07's dev choice, `best`)", "07_improvements", "5b"),
    ("plain", "B3: four backbones (+ Lite2, Lite1)", "10_beyond_frozen_features", "B3"),
    ("plain", "TB: four backbones + all-mpnet-base-v2 (10's dev choice, `field_best`, the search default)",
     "10_beyond_frozen_features", "TB"),
    ("plain", "TBF: TB trained on mirrored views (11's dev choice)", "11_feature_augmentation", "TBF"),
    ("plain", "TBC: TB trained on six views, the whole image scored", "15_hard_negatives_and_views", "TBC"),
    ("views", "TBCm: TBC scoring the mean of six views (15's dev choice)", "15_hard_negatives_and_views", "TBCm"),
    ("bank", "IS: TB's models + inverted softmax over 30000 training captions (12's dev choice)", "12_hubness", "IS"),
    ("views + bank", "XIS: TBCm's models + inverted softmax", "15_hard_negatives_and_views", "XIS"),
    ("ensemble", "E1: the six seeds of TB", "10_beyond_frozen_features", "E1"),
    ("ensemble", "P: members chosen on dev from 36 runs", "16_one_pool_ensemble", "P"),
    ("ensemble + bank", "PIS: P + inverted softmax (16's dev choice, the study's ensemble)", "16_one_pool_ensemble", "PIS"),
)  # fmt: skip
BLOCKS = {
    "plain": "plain single model",
    "views": "+ views at test time",
    "bank": "+ caption bank",
    "views + bank": "+ views + bank",
    "ensemble": "ensemble",
    "ensemble + bank": "ensemble + bank",
}
#: A row whose runs re-score another's with a bank of training captions.
BANKED = {"bank", "views + bank", "ensemble + bank"}
#: The declared pipelines of the confirmatory run: what each number carries, and a short name.
PIPELINES = {
    "R": ("plain", "R: EfficientNet-Lite0 + MiniLM, the reference recipe"),
    "5b": ("plain", "5b: + MobileNetV2"),
    "TB": ("plain", "TB: four backbones + mpnet (the search default)"),
    "C0": ("plain", "C0: TB's image side, a bag of words learned from the training captions (uncontaminated control)"),
    "TBC": ("plain", "TBC: TB trained on six views"),
    "TBCm": ("views", "TBCm: TBC scoring the mean of six views"),
    "TBIS": ("bank", "TBIS: TB + inverted softmax over the 25000 training captions"),
    "XIS": ("views + bank", "XIS: TBCm + inverted softmax"),
    "ENS": ("ensemble", "ENS: 16's recipe, members chosen on dev (+ bank if dev prefers it)"),
    "S": ("plain", "S: TB's shape distilled from 17's ensemble or TBCm (19, chosen on dev)"),
    "SIS": ("bank", "SIS: S + inverted softmax"),
}
#: The declared confirmatory runs, in order: the hold-out table shows each declared pipeline once.
DECLARATIONS = ("confirmatory-1", "confirmatory-2")


@dataclass(frozen=True)
class Measured:
    """A row read back from its committed run records: mean t2i numbers over its runs, and cost."""

    runs: int
    t2i: dict[str, float]
    cnn_passes: int
    text_branches: int
    train_seconds: float  # per run (an ensemble: all its members)


def _runs_dir() -> Path:
    return paths.project_root() / "results" / "runs"


def _load(path: Path) -> records.Run:
    return records.Run.load(path, 5000, 1000)


def row_records(notebook: str, row: str) -> list[records.Run]:
    """The committed run records of one row of one notebook, in seed order."""
    paths_ = sorted((_runs_dir() / notebook).glob(f"{row}-seed*.npz"), key=lambda p: int(p.stem.rsplit("seed", 1)[1]))
    if not paths_:
        raise FileNotFoundError(f"no committed run record of row {row!r} in results/runs/{notebook}/")
    return [_load(p) for p in paths_]


def _member_configs() -> dict[str, RunConfig]:
    """Every committed run's config by its member id (what an ensemble record lists)."""
    out = {}
    for path in sorted(_runs_dir().glob("*/*.npz")):
        run = _load(path)
        if not run.members:
            out.setdefault(records.member_id(run.config), run.config)
    return out


def views_scored(config: RunConfig) -> int:
    """How many views of an image a config scores (and so indexes): its views when it scores their mean."""
    return len(VIEW_SETS[config.image_views]) if config.test_view == "mean" else 1


def cnn_passes(configs: list[RunConfig]) -> int:
    """CNN passes per indexed image for models sharing their features: each (backbone, view) once."""
    return len({(b, v) for c in configs for b in c.backbones for v in range(views_scored(c))})


def measure(notebook: str, row: str, members: dict[str, RunConfig] | None = None) -> Measured:
    """A row's mean test numbers over its committed runs and its cost."""
    runs = row_records(notebook, row)
    t2i = [metrics.summarize_ranks(r.ranks["t2i"]) for r in runs]
    mean = {k: float(np.mean([t[k] for t in t2i])) for k in ("R@1", "R@5", "R@10", "medr")}
    if runs[0].members:
        members = members if members is not None else _member_configs()
        configs = [members[m] for m in runs[0].members]
        return Measured(len(configs), mean, cnn_passes(configs), len(configs), float(runs[0].seconds))
    return Measured(len(runs), mean, cnn_passes([runs[0].config]), 1, float(np.mean([r.seconds for r in runs])))


def _numbers(t2i: dict[str, float]) -> str:
    return f"{t2i['R@1']:.1f} | {t2i['R@5']:.1f} | {t2i['R@10']:.1f} | {t2i['medr']:.1f}"


def test_table() -> str:
    """The headline rows on test (trained on 6000 images), one block per kind, with their cost."""
    members = _member_configs()
    lines = [
        "| what the number carries | model | notebook, row | runs | R@1 | R@5 | R@10 | median rank "
        "| CNN passes per indexed image | text branches per query | caption bank | training s |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |",
    ]
    for block, label, notebook, row in TEST_ROWS:
        m = measure(notebook, row, members)
        runs = f"{m.runs} models" if block.startswith("ensemble") else str(m.runs)
        seconds = f"{m.train_seconds:.0f}" + (" (all members)" if block.startswith("ensemble") else "")
        lines.append(
            f"| {BLOCKS[block]} | {label} | {notebook[:2]}, {row} | {runs} | {_numbers(m.t2i)} | {m.cnn_passes} "
            f"| {m.text_branches} | {'30000 captions' if block in BANKED else '-'} | {seconds} |"
        )
    return "\n".join(lines)


def holdout_table(declarations: tuple[str, ...] = DECLARATIONS) -> str:
    """The declared confirmatory runs: each pipeline read on the hold-out (from the log), beside its
    test numbers (the committed records of the declaration's notebook: the same models), and the
    test-minus-hold-out R@1 gap relative to TB's. A declared pipeline not read yet says so."""
    decls = [holdout.load_declaration(d) for d in declarations]
    pipelines, reads, notebook_of = {}, {}, {}
    for decl in decls:
        for pipeline, what in decl.pipelines.items():
            if pipeline in decl.read_elsewhere:
                continue  # shown under the declaration that reads it
            pipelines[pipeline], notebook_of[pipeline] = what, decl.notebook
            entry = holdout.first_reads(decl.name).get(pipeline)
            if entry is not None:
                reads[pipeline] = entry
    lines = [
        "| what the number carries | pipeline | seeds | test R@1 / R@5 / R@10 | hold-out R@1 / R@5 / R@10 "
        "| hold-out median rank | test - hold-out R@1, relative to TB | CNN passes per indexed image |",
        "| --- | --- | ---: | --- | --- | ---: | ---: | ---: |",
    ]
    gaps = {}
    for pipeline, entry in reads.items():
        test = measure(notebook_of[pipeline], entry["row"])
        gaps[pipeline] = (test, entry)
    base = gaps.get("TB")
    base_gap = base[0].t2i["R@1"] - base[1]["mean"]["R@1"] if base else None
    order = [p for p in PIPELINES if p in pipelines] + [p for p in pipelines if p not in PIPELINES]
    for pipeline in order:
        block, label = PIPELINES.get(pipeline, ("plain", pipeline))
        if pipeline not in gaps:
            stage = pipelines[pipeline]["stage"]
            lines.append(f"| {BLOCKS[block]} | {label} | - | not read yet (stage {stage}) | - | - | - | - |")
            continue
        test, entry = gaps[pipeline]
        held = entry["mean"]
        gap = test.t2i["R@1"] - held["R@1"] - base_gap if base_gap is not None else None
        lines.append(
            f"| {BLOCKS[block]} | {label} | {len(entry['seeds']) if len(entry['seeds']) > 1 else str(test.runs) + ' models'} "
            f"| {test.t2i['R@1']:.1f} / {test.t2i['R@5']:.1f} / {test.t2i['R@10']:.1f} "
            f"| {held['R@1']:.1f} / {held['R@5']:.1f} / {held['R@10']:.1f} | {held['medr']:.1f} "
            f"| {'-' if gap is None else f'{gap:+.1f}'} | {test.cnn_passes} |"
        )
    return "\n".join(lines)


def family_table(declaration: holdout.Declaration, ranks: dict[str, dict], caption_image: np.ndarray):
    """The declared family on one split's ranks: each member's difference (a minus b, seed-paired
    over the seeds both sides have; an ensemble against its members' mean, the models fixed), its
    interval, p, Holm p over the whole declared family (members without ranks at p = 1), the verdict,
    and whether it is the one expected.

    ``ranks``: pipeline -> {seed: t2i ranks}; an ensemble's as {0: its ranks, "members": [ranks, ...]}."""
    measured = {}
    for item in declaration.family:
        a = ranks.get(item["a"])
        if a is None:
            continue
        if item["b"] == "members":
            if "members" not in a:
                continue
            measured[item["id"]] = protocol.ensemble_gain(a[0], a["members"], caption_image)
            continue
        b = ranks.get(item["b"])
        if b is None:
            continue
        common = [s for s in declaration.seeds if s in a and s in b]
        if not common:
            continue
        measured[item["id"]] = protocol.compare([a[s] for s in common], [b[s] for s in common], caption_image)
    adjusted = protocol.adjust(measured, declaration.alpha, [m["id"] for m in declaration.family])
    rows = {}
    for item in declaration.family:
        c = adjusted.get(item["id"])
        if c is None:
            rows[item["id"]] = {
                "comparison": f"{item['a']} - {item['b']}",
                "expected": item["expected"],
                "verdict": "not read",
            }
            continue
        lo, hi = c["ci95"]
        rows[item["id"]] = {
            "comparison": f"{item['a']} - {item['b']}",
            "difference (95% CI)": f"{c['diff']:+.1f} ({lo:+.1f} to {hi:+.1f})",
            "p": round(c["p"], 4),
            "Holm p": round(c["p_adjusted"], 4),
            "verdict": c["verdict_adjusted"],
            "expected": item["expected"],
            "as expected": c["verdict_adjusted"] == item["expected"],
        }
    return pd.DataFrame.from_dict(rows, orient="index")


def reads_table(declaration: str):
    """The first read of each pipeline, from the log: when, on which commit and CPU, which seeds, and
    the mean hold-out R@1 / R@5 / R@10 / median rank over them."""
    rows = {}
    for pipeline, entry in holdout.first_reads(declaration).items():
        mean = entry["mean"]
        rows[pipeline] = {
            "read": entry["read"],
            "date": entry["date"][:10],
            "commit": entry["commit"][:7],
            "seeds": len(entry["seeds"]),
            **{k: round(mean[k], 1) for k in ("R@1", "R@5", "R@10", "medr")},
        }
    return pd.DataFrame.from_dict(rows, orient="index")


def holdout_family_table(declaration: str = "confirmatory-1") -> str:
    """The declared family on the hold-out, from the log's ranks: each comparison's difference,
    interval, Holm p over the whole declared family (unread members at p = 1), verdict, and the
    direction declared before the read."""
    decl = holdout.load_declaration(declaration)
    ranks = {p: holdout.logged_ranks(e) for p, e in holdout.declared_reads(decl).items()}
    table = family_table(decl, ranks, holdout.holdout_caption_image())
    lines = [
        "| comparison | expected (declared) | hold-out R@1+R@5+R@10 difference (95% CI) | Holm p | verdict |",
        "| --- | --- | --- | ---: | --- |",
    ]
    for _, r in table.iterrows():
        if r["verdict"] == "not read":
            lines.append(f"| {r['comparison']} | {r['expected']} | not read yet | - | - |")
        else:
            lines.append(
                f"| {r['comparison']} | {r['expected']} | {r['difference (95% CI)']} | {r['Holm p']:.4f} | {r['verdict']} |"
            )
    return "\n".join(lines)


TABLES = {"test": test_table, "hold-out": holdout_table, "hold-out-family": holdout_family_table}
_BLOCK = "<!-- table:{name} (generated by scripts/readme_tables.py from the committed results) -->"
_END = "<!-- /table:{name} -->"


def _span(text: str, name: str) -> tuple[int, int]:
    start, end = text.find(_BLOCK.format(name=name)), text.find(_END.format(name=name))
    if start < 0 or end < start:
        raise ValueError(f"the README has no generated table {name!r} (markers {_BLOCK.format(name=name)!r})")
    return start + len(_BLOCK.format(name=name)), end


def render(text: str) -> str:
    """``text`` (the README) with every generated table replaced by what the results say now."""
    for name, make in TABLES.items():
        start, end = _span(text, name)
        text = text[:start] + "\n" + make() + "\n" + text[end:]
    return text


def check(text: str) -> list[str]:
    """The generated tables of ``text`` that differ from what the committed results say."""
    out = []
    for name, make in TABLES.items():
        start, end = _span(text, name)
        if re.sub(r"\s+", " ", text[start:end]).strip() != re.sub(r"\s+", " ", make()).strip():
            out.append(name)
    return out
