"""A trained run and its checkpoint file.

A checkpoint is data, never code: it is written with ``torch.save`` as plain containers (strings,
numbers, lists, dicts, tensors) and read back with ``weights_only=True``, then checked: its format,
its keys, a SHA-256 of **everything it holds** (config, model spec, weights, normalisers' statistics,
history: a flipped byte anywhere is an error, not other weights or other statistics), finite weights
and statistics, and every tensor's name and shape against the model the spec describes, built on
torch's ``meta`` device first (no memory): a small file cannot ask for gigabytes.
Every way a file can be damaged is a :class:`CheckpointError` naming the file.
It carries what search needs (the normalisers' training statistics), so that search loads the model
and the image features without the caption features.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import torch

from .config import RunConfig
from .errors import CheckpointError
from .helpers import atomic_write
from .models import DualEncoder, ModelSpec, RetrievalModel, build_model
from .objective import Objective
from .split_features import Normaliser

FORMAT = 4
_KEYS = (
    "format",
    "config",
    "spec",
    "state_dict",
    "sha256",
    "history",
    "best_epoch",
    "seconds",
    "text_norm",
    "image_norms",
)


def state_digest(state_dict: dict) -> str:
    """SHA-256 over every tensor of a state dict: names, dtypes, shapes and bytes, in name order."""
    digest = hashlib.sha256()
    for key in sorted(state_dict):
        tensor = state_dict[key].detach().cpu().contiguous()
        digest.update(key.encode("utf-8") + b"\0" + str(tensor.dtype).encode() + str(tuple(tensor.shape)).encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def checkpoint_digest(state: dict) -> str:
    """SHA-256 over everything a checkpoint holds but the digest itself: every key in order, plain
    values through their canonical JSON, tensors (anywhere: weights, normalisers' statistics) through
    their names, dtypes, shapes and bytes."""
    digest = hashlib.sha256()

    def feed(value, where: str) -> None:
        if isinstance(value, torch.Tensor):
            tensor = value.detach().cpu().contiguous()
            digest.update(f"{where}:{tensor.dtype}:{tuple(tensor.shape)}:".encode())
            digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
        elif isinstance(value, dict):
            for key in sorted(value, key=str):
                feed(value[key], f"{where}/{key}")
        elif isinstance(value, (list, tuple)):
            for i, item in enumerate(value):
                feed(item, f"{where}[{i}]")
        else:
            digest.update(f"{where}={json.dumps(value, sort_keys=True)};".encode())

    feed({k: v for k, v in state.items() if k != "sha256"}, "")
    return digest.hexdigest()


def _tensors_in(value) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, dict):
        return [t for v in value.values() for t in _tensors_in(v)]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _tensors_in(v)]
    return []


#: The most values (containers and scalars, tensors counted once each) a checkpoint's plain parts may
#: hold: a real one holds a few thousand; a pickle's shared references can make a 15 KB file describe
#: a tree of 10^9 leaves, which any walk over it would take hours to visit.
MAX_VALUES = 200_000


def _check_bounded(state: dict) -> None:
    """Every value reached at most :data:`MAX_VALUES` times in all, and every tensor dense: its
    storage holds each of its elements once (a stride-0 view of one number can claim 4 billion, and
    16 GB once made contiguous). Runs before anything walks or copies the file's contents."""
    budget = MAX_VALUES
    stack = [state]
    while stack:
        value = stack.pop()
        budget -= 1
        if budget < 0:
            raise ValueError(f"it holds more than {MAX_VALUES} values (a checkpoint holds a few thousand)")
        if isinstance(value, torch.Tensor):
            dense = value.is_contiguous() and value.untyped_storage().nbytes() >= value.numel() * value.element_size()
            if not dense:
                raise ValueError("it holds a tensor that is not dense (a view that repeats its elements)")
        elif isinstance(value, dict):
            stack.extend(value.keys())
            stack.extend(value.values())
        elif isinstance(value, (list, tuple)):
            stack.extend(value)


def _check_state(state: dict) -> None:
    """The checks that need no model: tensors only, the digest of the whole file, finite values."""
    tensors = state["state_dict"]
    if (
        not isinstance(tensors, dict)
        or not tensors
        or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in tensors.items())
    ):
        raise ValueError("its state_dict is not a dict of named tensors")
    if state["sha256"] != checkpoint_digest(state):
        raise ValueError("its contents do not match their SHA-256 (the file was changed or damaged)")
    for key, value in tensors.items():
        if value.is_floating_point() and not torch.isfinite(value).all():
            raise ValueError(f"tensor {key!r} holds non-finite values (NaN or infinity)")
    for value in _tensors_in([state["text_norm"], state["image_norms"]]):
        if value.is_floating_point() and not torch.isfinite(value).all():
            raise ValueError("a normaliser's statistics hold non-finite values (NaN or infinity)")
    if not isinstance(state["spec"], dict):
        raise ValueError("its spec is not a dict")


def _check_shapes(spec: ModelSpec, config: RunConfig, tensors: dict[str, torch.Tensor]) -> None:
    """Every tensor the spec's model has, by name and shape, against the file's, before anything is
    allocated: the model is built on torch's ``meta`` device (a text-tuned model: its branches; its
    sentence encoder has the fixed size of the encoder it names)."""
    if spec.kind == "text_tuned":
        with torch.device("meta"):
            head = DualEncoder(dataclasses.replace(spec, kind="dual_encoder", text_encoder=""))
        expected = {f"model.head.{k}": v.shape for k, v in head.state_dict().items()}
        found = {k: v.shape for k, v in tensors.items() if k.startswith("model.head.")}
    else:
        with torch.device("meta"):
            expected = {k: v.shape for k, v in Objective(build_model(spec), config).state_dict().items()}
        found = {k: v.shape for k, v in tensors.items()}
    if set(found) != set(expected):
        raise ValueError(
            f"its tensors {sorted(set(found) ^ set(expected))[:4]} do not match the model its spec describes"
        )
    wrong = [k for k in expected if tuple(found[k]) != tuple(expected[k])]
    if wrong:
        k = wrong[0]
        raise ValueError(f"tensor {k!r} has shape {tuple(found[k])}, its spec's model {tuple(expected[k])}")


@dataclass
class TrainedModel:
    """A trained objective (model + temperature) with its config, normalisers and per-epoch history."""

    config: RunConfig
    objective: Objective
    history: list[dict]
    best_epoch: int  # the kept epoch: the dev-best one with early stopping, the last without, 0 for a kept start
    seconds: float
    text_norm: Normaliser | None = None  # None: fitted again from the training features when needed
    image_norms: list[Normaliser] | None = None
    from_cache: bool = False  # read back from the run cache (flickr_retrieval.runs), not trained now
    run_key: str | None = None  # its run-cache key, when it went through the run cache
    precision: str = ""  # the arithmetic it was trained in ("float32" or "bfloat16"; "" when unknown)
    seed_offset: int = 0  # added to the config's seed for every draw of its training (RCP217_SEED_OFFSET)

    @property
    def model(self) -> RetrievalModel:
        return self.objective.model

    @property
    def spec(self) -> ModelSpec:
        return self.model.spec

    @property
    def temperature(self) -> float | None:
        return self.objective.temperature

    def kept(self) -> dict:
        """The history row of the epoch whose weights were kept."""
        return next(h for h in self.history if h["epoch"] == self.best_epoch)

    def save(self, path: str | Path) -> None:
        """Write the checkpoint atomically (temporary file, then rename)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tensors = self.objective.state_dict()
        state = {
            "format": FORMAT,
            "config": self.config.to_dict(),
            "spec": self.spec.to_dict(),
            "state_dict": tensors,
            "sha256": "",
            "history": [{k: float(v) if isinstance(v, float) else v for k, v in row.items()} for row in self.history],
            "best_epoch": int(self.best_epoch),
            "seconds": float(self.seconds),
            "text_norm": None if self.text_norm is None else self.text_norm.to_state(),
            "image_norms": None if self.image_norms is None else [n.to_state() for n in self.image_norms],
            "precision": self.precision,
            "seed_offset": int(self.seed_offset),
        }
        state["sha256"] = checkpoint_digest(state)
        atomic_write(path, lambda handle: torch.save(state, handle))

    @classmethod
    def load(cls, path: str | Path) -> TrainedModel:
        """Read a checkpoint written by :meth:`save`; raise :class:`CheckpointError` naming the file
        when it is missing, damaged, from another version, or does not fit the model it describes."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(
                f"no checkpoint at {path}: run the notebook that trains it first (see docs/method.md)"
            )
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except (
            Exception
        ) as exc:  # a damaged file raises anything from EOFError to struct.error: all the same to the caller
            first_line = str(exc).splitlines()[0] if str(exc) else "truncated or damaged"
            raise CheckpointError(
                f"{path} is not a readable checkpoint ({type(exc).__name__}: {first_line}). "
                "Checkpoints are loaded as data only; re-run the notebook that trains this run to write it again."
            ) from None
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            found = state.get("format", "none") if isinstance(state, dict) else type(state).__name__
            raise CheckpointError(
                f"{path}: checkpoint format {found!r}, expected {FORMAT}: re-run the notebook that trains this run"
            )
        missing = [k for k in _KEYS if k not in state]
        if missing:
            raise CheckpointError(f"{path}: checkpoint lacks {missing}: re-run the notebook that trains this run")
        try:
            _check_bounded(state)
            _check_state(state)
            config = RunConfig.from_dict(state["config"])
            spec = ModelSpec.from_dict(state["spec"])
            _check_shapes(spec, config, state["state_dict"])
            objective = Objective(build_model(spec), config)
            objective.load_state_dict(state["state_dict"], strict=True)
            text_norm = (
                None
                if state["text_norm"] is None
                else Normaliser.from_state(state["text_norm"], spec.text_dim if spec.kind != "text_tuned" else None)
            )
            image_norms = (
                None if state["image_norms"] is None else [Normaliser.from_state(s) for s in state["image_norms"]]
            )
            history, best_epoch, seconds = list(state["history"]), int(state["best_epoch"]), float(state["seconds"])
            if not any(isinstance(h, dict) and h.get("epoch") == best_epoch for h in history):
                raise ValueError(f"its kept epoch {best_epoch} is not in its history")
        except CheckpointError:
            raise
        except Exception as exc:
            raise CheckpointError(
                f"{path}: the checkpoint does not describe a valid model ({type(exc).__name__}: {exc})"
            ) from None
        objective.eval()
        precision = state.get("precision") or (config.precision if config.precision != "auto" else "")
        if precision not in ("", "float32", "bfloat16"):
            raise CheckpointError(f"{path}: unknown training precision {precision!r}")
        seed_offset = state.get("seed_offset", 0)
        if not isinstance(seed_offset, int) or seed_offset < 0:
            raise CheckpointError(f"{path}: its seed offset {seed_offset!r} is not a whole number from 0")
        return cls(
            config,
            objective,
            history,
            best_epoch,
            seconds,
            text_norm,
            image_norms,
            precision=precision,
            seed_offset=seed_offset,
        )
