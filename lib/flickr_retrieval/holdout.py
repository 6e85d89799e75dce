"""The sealed hold-out: 1000 of Flickr8k's training images that no decision of the study has seen.

Every number before this module was read on the standard test split, which the study read about 66
times before its best single model. The hold-out answers what those readings cost:

* **The rule** (:func:`holdout_images`), written down before anything was scored: the 1000 training
  images with the smallest SHA-256 of :data:`SALT` followed by the file name. Its output is committed
  (``results/holdout/images.txt``) and checked against the rule.
* **The confirmatory data** (:func:`confirmatory_data`): Flickr8k with those images taken out of the
  training split (5000 images). Dev and test are the standard ones; the hold-out is not a split of it,
  so no code that trains, decides or reports through :class:`~flickr_retrieval.data.Flickr8k` can
  reach it.
* **A declaration** (``results/holdout/declarations/<name>.json``), committed before the first read:
  the pipelines, the family of comparisons with their expected direction, the seeds.
* **One reader** (:func:`read`), the only code that builds hold-out features: it scores a declared
  pipeline's models on the hold-out, appends the read to a committed log (pipeline, seeds, commit,
  date, CPU) with its ranks, and refuses a pipeline that the log already holds, unless told to read it
  again (``again=``, a reason the log keeps). A re-execution that reproduces a logged read (the same
  ranks) is checked against the log and not logged again; one that does not says by how much it
  differs, and the logged read stands.

The log's reads are the only hold-out numbers the study reports (:func:`logged_reads`,
:func:`logged_ranks`); the tests check that nothing else in the package names the hold-out's list.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import io
import json
import platform
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import hubness, metrics, paths
from .data import Flickr8k
from .errors import DatasetError
from .evaluation import similarity
from .helpers import atomic_write, sha256_file
from .inputs import FeatureSpace

#: The rule's salt, fixed when the rule was written (2026-12-07), before any hold-out number existed.
SALT = "rcp217 sealed hold-out 2026-12-07"
SIZE = 1000
#: The hold-out's own split name: known to this module only.
_SPLIT = "holdout"
#: Where the committed pieces live, under the project's ``results/``.
FOLDER = "holdout"
LIST_FILE = "images.txt"
LOG_FILE = "reads.jsonl"
DECLARATIONS = "declarations"
RANKS = "ranks"


class HoldoutError(RuntimeError):
    """A read the hold-out's rules refuse (undeclared, already read, declaration not committed)."""


# ---------------------------------------------------------------------------------------------- the rule


def rule_key(image_id: str) -> str:
    """The sort key of the rule: SHA-256 of :data:`SALT` followed by the image's file name."""
    return hashlib.sha256((SALT + image_id).encode("utf-8")).hexdigest()


def holdout_images(data: Flickr8k, size: int = SIZE, train: list[str] | None = None) -> list[str]:
    """The ``size`` training images (of ``data``, or ``train``) with the smallest :func:`rule_key`,
    in that order."""
    train = data.split_images["train"] if train is None else train
    if size >= len(train):
        raise ValueError(f"a hold-out of {size} images leaves nothing of {len(train)} training images")
    return sorted(train, key=rule_key)[:size]


def committed_folder() -> Path:
    """``results/holdout/`` of the project itself (the committed one, whatever ``RCP217_RESULTS`` says)."""
    return paths.project_root() / "results" / FOLDER


def output_folder() -> Path:
    """Where this execution logs its reads: ``results/holdout/`` of ``RCP217_RESULTS`` (a test run's
    temporary folder) or of the project (``./run_all.sh``)."""
    return paths.results_dir() / FOLDER


def committed_list(data: Flickr8k) -> list[str]:
    """The committed hold-out list, checked against the rule (a list that drifted is an error).
    ``data`` may be Flickr8k itself or its :func:`confirmatory_data` (whose training split is the
    other 5000 images: the rule then runs over both together)."""
    path = committed_folder() / LIST_FILE
    listed = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    train = data.split_images["train"]
    pool = train if set(listed) <= set(train) else [*train, *listed]
    if len(pool) != len(set(pool)) or holdout_images(data, len(listed), pool) != listed:
        raise DatasetError(f"{path} does not follow the hold-out rule (SHA-256 of {SALT!r} + file name)")
    return listed


def write_list(data: Flickr8k, folder: Path | None = None) -> Path:
    """Write the rule's list (once, when the rule is written down)."""
    path = (folder or committed_folder()) / LIST_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(f"{image}\n" for image in holdout_images(data))
    atomic_write(path, lambda handle: handle.write(text.encode("utf-8")))
    return path


def confirmatory_data(data: Flickr8k) -> Flickr8k:
    """Flickr8k for the confirmatory runs: the hold-out taken out of the training split (5000 images
    left); dev and test unchanged; the hold-out itself is in no split."""
    sealed = set(committed_list(data))
    train = [image for image in data.split_images["train"] if image not in sealed]
    return dataclasses.replace(data, split_images={**data.split_images, "train": train})


# ---------------------------------------------------------------------------------------------- declarations


@dataclass(frozen=True)
class Declaration:
    """A confirmatory run declared before its first read (the committed JSON file, parsed)."""

    name: str
    path: Path
    pipelines: dict[str, dict]
    family: list[dict]
    seeds: tuple[int, ...]
    alpha: float
    text: str
    notebook: str = (
        "17_confirmatory"  # the notebook whose run records hold its models (confirmatory-1 predates the field)
    )

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()

    @property
    def read_elsewhere(self) -> dict[str, str]:
        """Pipeline -> the earlier declaration it was read under (``"read_in"``): compared here, never read again."""
        return {p: what["read_in"] for p, what in self.pipelines.items() if what.get("read_in")}


def load_declaration(name: str) -> Declaration:
    """``results/holdout/declarations/<name>.json``, validated: every family member compares two
    declared pipelines (or one with its members, ``"b": "members"``), with an expected direction."""
    path = committed_folder() / DECLARATIONS / f"{paths.check_run_name(name)}.json"
    text = path.read_text(encoding="utf-8")
    values = json.loads(text)
    pipelines = values["pipelines"]
    for item in values["family"]:
        for side in ("a", "b"):
            if item[side] not in pipelines and not (side == "b" and item[side] == "members"):
                raise ValueError(f"{path}: family member {item['id']!r} names an undeclared pipeline {item[side]!r}")
        if item.get("expected") not in ("helps", "hurts", "no measurable difference"):
            raise ValueError(f"{path}: family member {item['id']!r} has no expected direction")
    for pipeline, what in pipelines.items():
        earlier = what.get("read_in")
        if earlier and (earlier == values["name"] or pipeline not in load_declaration(earlier).pipelines):
            raise ValueError(f"{path}: {pipeline!r} is read in {earlier!r}, which does not declare it")
    return Declaration(
        values["name"],
        path,
        pipelines,
        values["family"],
        tuple(values["seeds"]),
        float(values["alpha"]),
        text,
        values.get("notebook", "17_confirmatory"),
    )


def _git(*args: str) -> str:
    out = subprocess.run(["git", *args], cwd=paths.project_root(), capture_output=True, text=True, check=False)
    return out.stdout.strip() if out.returncode == 0 else ""


def declaration_commit(declaration: Declaration) -> str:
    """The commit that added the declaration's file as it is now, or "" when the file is not
    committed or differs from its committed version."""
    relative = declaration.path.relative_to(paths.project_root()).as_posix()
    commit = _git("log", "-1", "--format=%H", "--", relative)
    if not commit or _git("status", "--porcelain", "--", relative):
        return ""
    return commit


# ---------------------------------------------------------------------------------------------- the log


def _log_lines(folder: Path) -> list[dict]:
    path = folder / LOG_FILE
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def logged_reads(declaration: str | None = None) -> list[dict]:
    """Every read in the committed log (and, when this execution logs elsewhere, in its own log), in
    order; of one declaration when named."""
    reads = _log_lines(committed_folder())
    if output_folder().resolve() != committed_folder().resolve():
        reads += _log_lines(output_folder())
    return [r for r in reads if declaration is None or r["declaration"] == declaration]


def _ranks_path(folder: Path, entry: dict) -> Path:
    return folder / entry["ranks_file"]


def logged_ranks(entry: dict) -> dict[int, np.ndarray]:
    """The hold-out ranks of a logged read (seed -> t2i rank of each hold-out caption), checked
    against the digest the log holds."""
    for folder in (output_folder(), committed_folder()):
        path = _ranks_path(folder, entry)
        if path.is_file():
            break
    if sha256_file(path) != entry["ranks_sha256"]:
        raise HoldoutError(f"{path} does not match the digest its read logged")
    with np.load(path, allow_pickle=False) as arrays:
        out: dict = {
            int(k.removeprefix("seed")): arrays[k].astype(np.int64) for k in arrays.files if k.startswith("seed")
        }
        members = sorted(
            (k for k in arrays.files if k.startswith("member")), key=lambda k: int(k.removeprefix("member"))
        )
        if members:
            out["members"] = [arrays[k].astype(np.int64) for k in members]
    return out


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# ---------------------------------------------------------------------------------------------- reading


def _holdout_features(experiment, config, images: list[str]):
    """The hold-out's model inputs for ``config``, normalised with the experiment's training
    statistics (its 5000 training images)."""
    space, _ = experiment.features(config)
    sealed = dataclasses.replace(experiment.data, split_images={**experiment.data.split_images, _SPLIT: images})
    return FeatureSpace(config, sealed, text_norm=space.text_norm, image_norms=space.image_norms).split(_SPLIT)


def _run_matrices(experiment, run, images: list[str], bank: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """One trained run's hold-out similarity and, with ``bank``, its query bank's (every training
    caption of the experiment through the run's text branch, against the hold-out images)."""
    model = experiment.weights(run).model
    held = _holdout_features(experiment, run.config, images)
    sim = similarity(model, held)
    if not bank:
        return sim, None
    train = experiment.features(run.config)[1]["train"]
    return sim, model.score_matrix(train.queries, held.image).float().numpy()


def pipeline_similarity(experiment, row_id: str, seed: int, images: list[str]) -> np.ndarray:
    """The hold-out (captions x images) scores of one row of ``experiment`` as it scores test: a
    trained run; an ensemble (the mean of its members'); a row re-scored by a hubness method with the
    parameters its row chose on dev (of a run, or of an ensemble as one model)."""
    row = experiment.rows[row_id]
    if row.rescored:
        parent = experiment.rows[row.spec.parent]
        runs = list(parent.members) if parent.is_ensemble else [parent.runs[seed]]
        pairs = [_run_matrices(experiment, run, images, bank=True) for run in runs]
        sim = np.mean([p[0] for p in pairs], axis=0)
        bank = np.mean([p[1] for p in pairs], axis=0)
        return hubness.rescore(row.rescored, sim, bank, **row.params)
    if row.is_ensemble:
        return np.mean([_run_matrices(experiment, m, images, bank=False)[0] for m in row.members], axis=0)
    return _run_matrices(experiment, row.runs[seed], images, bank=False)[0]


def _summary(ranks: dict[int, np.ndarray]) -> dict:
    per_seed = {str(s): metrics.summarize_ranks(r) for s, r in sorted(ranks.items())}
    mean = {k: float(np.mean([v[k] for v in per_seed.values()])) for k in next(iter(per_seed.values()))}
    return {"t2i": per_seed, "mean": mean}


def _npz_bytes(ranks: dict[int, np.ndarray], members: list[np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    arrays = {f"seed{s}": r.astype(np.int16) for s, r in sorted(ranks.items())}
    arrays.update({f"member{i}": r.astype(np.int16) for i, r in enumerate(members)})
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


def ensemble_members(experiment, row) -> tuple:
    """The member runs of an ensemble row, or of the ensemble a re-scored row re-scores; () else."""
    if row.is_ensemble:
        return tuple(row.members)
    if row.rescored and experiment.rows[row.spec.parent].is_ensemble:
        return tuple(experiment.rows[row.spec.parent].members)
    return ()


def read(
    experiment,
    declaration: Declaration,
    pipeline: str,
    row_id: str | None = None,
    again: str = "",
    score: Callable | None = None,
) -> dict:
    """Read one declared pipeline on the hold-out, once: score each seed of ``experiment``'s row
    (``row_id``, default the pipeline's id; an ensemble: its one model), log the read and its ranks,
    return the log entry (with ``"status"``: ``"logged"``, ``"reproduced"`` or ``"differs"``).

    Refused: a pipeline the declaration does not name; a declaration not committed as it is; a second
    read of a logged pipeline whose ranks differ, unless ``again`` gives the reason (logged too).
    ``score`` replaces :func:`pipeline_similarity` (tests)."""
    if pipeline not in declaration.pipelines:
        raise HoldoutError(f"pipeline {pipeline!r} is not declared in {declaration.path.name}")
    if pipeline in declaration.read_elsewhere:
        raise HoldoutError(
            f"{pipeline!r} was declared and read under {declaration.read_elsewhere[pipeline]!r}: "
            f"{declaration.name} compares its logged read and never reads it again"
        )
    commit = declaration_commit(declaration)
    if not commit:
        raise HoldoutError(f"{declaration.path} is not committed as it is: commit the declaration before reading")
    images = committed_list(experiment.data)
    if set(images) & set(experiment.data.split_images["train"]):
        raise HoldoutError("the experiment trains on hold-out images: build it on holdout.confirmatory_data(data)")
    score = score or pipeline_similarity
    row = experiment.rows[row_id or pipeline]
    seeds = row.seeds
    held_caption_image = np.repeat(np.arange(len(images)), 5)
    ranks = {}
    for seed in seeds:
        sim = score(experiment, row.spec.id, seed, images)
        if sim.shape != (len(held_caption_image), len(images)):
            raise ValueError(f"hold-out scores of shape {sim.shape}, expected {(len(held_caption_image), len(images))}")
        ranks[seed] = metrics.t2i_ranks(sim, held_caption_image)
    # an ensemble's members are read with it: the declared comparison "ensemble against its members"
    members = [
        metrics.t2i_ranks(_run_matrices(experiment, m, images, bank=False)[0], held_caption_image)
        for m in ensemble_members(experiment, row)
    ]
    previous = [r for r in logged_reads(declaration.name) if r["pipeline"] == pipeline]
    if previous and not again:
        last = previous[-1]
        logged = logged_ranks(last)
        same = (
            sorted(k for k in logged if k != "members") == sorted(ranks)
            and all(np.array_equal(logged[s], ranks[s]) for s in ranks)
            and len(logged.get("members", [])) == len(members)
            and all(np.array_equal(a, b) for a, b in zip(logged.get("members", []), members))
        )
        if same:
            return {**last, "status": "reproduced"}
        mine = _summary(ranks)["mean"]
        diff = {k: round(mine[k] - last["mean"][k], 2) for k in ("R@1", "R@5", "R@10")}
        return {**last, "status": "differs", "difference": diff}
    folder = output_folder()
    number = len(logged_reads()) + 1
    ranks_file = f"{RANKS}/{declaration.name}/{pipeline}-read{number}.npz"
    payload = _npz_bytes(ranks, members)
    (folder / ranks_file).parent.mkdir(parents=True, exist_ok=True)
    atomic_write(folder / ranks_file, lambda handle: handle.write(payload))
    head = _git("rev-parse", "HEAD")
    entry = {
        "read": number,
        "declaration": declaration.name,
        "declaration_sha256": declaration.sha256,
        "declaration_commit": commit,
        "pipeline": pipeline,
        "row": row.spec.id,
        "what": row.name,
        "seeds": list(seeds),
        "members": [f"{m.config.name} seed {m.seed}" for m in ensemble_members(experiment, row)],
        "commit": head,
        "tree_clean": not _git("status", "--porcelain", "--untracked-files=no"),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "cpu": _cpu(),
        **_summary(ranks),
        "ranks_file": ranks_file,
        "ranks_sha256": hashlib.sha256(payload).hexdigest(),
        "again": again,
    }
    with open(folder / LOG_FILE, "a", encoding="utf-8") as log:
        log.write(json.dumps(entry, sort_keys=True) + "\n")
    return {**entry, "status": "logged"}


def holdout_caption_image(n_images: int = SIZE) -> np.ndarray:
    """The hold-out image of each hold-out caption, in the order of every hold-out rank array
    (image by image, its five captions)."""
    return np.repeat(np.arange(n_images), 5)


def first_reads(declaration: str) -> dict[str, dict]:
    """Pipeline -> its first logged read under ``declaration`` (the confirmatory one; a read made
    again later is logged, and reported apart)."""
    out: dict[str, dict] = {}
    for entry in logged_reads(declaration):
        out.setdefault(entry["pipeline"], entry)
    return out


def declared_reads(declaration: Declaration) -> dict[str, dict]:
    """Pipeline -> its first logged read: those read under ``declaration``, and those it declares as
    read under an earlier declaration (``"read_in"``), from that one's log."""
    out = first_reads(declaration.name)
    for pipeline, earlier in declaration.read_elsewhere.items():
        entry = first_reads(earlier).get(pipeline)
        if entry is not None:
            out[pipeline] = entry
    return out
