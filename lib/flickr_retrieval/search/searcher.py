"""Free-text image search with a trained run.

    from flickr_retrieval.search import Searcher
    searcher = Searcher("best", collection="all")  # loads results/best/model.pt and embeds the images once
    searcher.search("two dogs play in the snow", k=5)

Command line (prints the top k, writes their grid to a PNG)::

    flickr-retrieval-search "two dogs play in the snow" --run best --k 8 --collection test --out dogs.png

A collection is a Flickr8k split (``train``, ``dev``, ``test``, ``all``) or a folder of your own
images indexed by name (:class:`flickr_retrieval.search.Collection`). Only the checkpoint and the cached image
features are needed: the checkpoint carries the normalisers' training statistics, so the 40455
caption vectors are not loaded. In a browser: :mod:`flickr_retrieval.search.serve`; in Jupyter:
:mod:`flickr_retrieval.search.widget`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import sys
import textwrap
import threading
import time
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .. import evaluation, metrics
from ..checkpoint import TrainedModel
from ..data import Flickr8k, load_flickr8k
from ..errors import QueryError, cli_errors
from ..inputs import FeatureSpace, Normaliser, as_tensor
from ..models import Queries, RetrievalModel
from ..results import DEFAULT_RUNS, default_run, load_run, trained_runs  # noqa: F401  (the search tools' names)
from ..text import clean_caption
from ..text_encoders import TextEncoder, encode_texts, load_text_encoder, pool
from . import query_language, relevance
from .collection import FLICKR8K_COLLECTIONS, Collection, indexed_collections
from .vector_index import APPROXIMATE_FROM, ApproximateIndex, ExactIndex, build_index, top_k

#: Longer queries are refused before tokenising (a sentence is far shorter; the encoder reads 64 tokens).
MAX_QUERY_CHARS = 1000
#: Dev captions on which an approximate index's recall@10 is measured against the exact scan.
CALIBRATION_QUERIES = 500
#: The share of Flickr8k dev captions whose own image reaches the line of good matches.
THRESHOLD_RECALL = 0.5
#: A query of at most this many words (besides stop words) is judged by the one-word line (:meth:`Searcher.short_line`).
SHORT_WORDS = 1


@dataclass
class Hit:
    rank: int
    image_id: str
    score: float
    copies: int = 0  # near-duplicates of this photo in the collection, not shown (duplicates.py)


@dataclass
class Answer:
    """What :meth:`Searcher.ask` found: the hits, best first; the query as it was understood
    (``said``, with how plain words were read in ``notes``); ``threshold``: the score above which a
    hit is a good match (calibrated on Flickr8k dev captions; None for a query whose scores are not
    a caption's: several terms, an image term); ``good``: how many hits reach it; ``candidates``:
    the images that passed the filters; ``listed``: filters alone, the hits unscored (newest first)."""

    hits: list[Hit]
    said: str
    notes: list[str]
    threshold: float | None
    good: int | None
    candidates: int
    listed: bool = False
    calibrated_on: str = ""  # what the line was calibrated on (dev captions, or one-word dev queries)

    @property
    def nothing_matches(self) -> bool:
        return self.good == 0

    def as_json(self) -> dict:
        return {
            "said": self.said,
            "notes": self.notes,
            "threshold": None if self.threshold is None else round(self.threshold, 5),
            "good": self.good,
            "candidates": self.candidates,
            "listed": self.listed,
            "calibrated_on": self.calibrated_on,
            "hits": [
                {
                    "rank": h.rank,
                    "id": h.image_id,
                    "score": None if self.listed else round(h.score, 5),  # None: listed by filters alone, not scored
                    "copies": h.copies,
                }
                for h in self.hits
            ],
        }


def check_k(k, available: int | None = None) -> int:
    """The one rule for k, wherever it comes from: a whole number from 1 (to ``available`` when
    given); a string is read as one (the page's parameter). QueryError saying what is wrong."""
    if isinstance(k, str):
        try:
            k = int(k.strip())
        except ValueError:
            raise QueryError(f"k must be a whole number from 1, got {k!r}") from None
    upper = "" if available is None else f" to {available}"
    if (
        isinstance(k, bool)
        or not isinstance(k, (int, np.integer))
        or k < 1
        or (available is not None and k > available)
    ):
        raise QueryError(f"k must be a whole number from 1{upper}, got {k!r}")
    return int(k)


def check_searchable(config, own_photos: bool) -> None:
    """Whether a run can search: QueryError saying why not. Every run searches Flickr8k; a folder of
    your own photos stores whole-image pooled features of pretrained backbones, so a run trained on
    random-weight features, on tuned last layers or on the mean of several views cannot search it;
    a run of several sentence encoders is measured, never searched."""
    if len(config.text_encoders) > 1:
        raise QueryError(
            f"run {config.name!r} concatenates the features of {config.text_encoder!r}: such runs are measured "
            "(notebook 11), not searchable; search with a run of one sentence encoder"
        )
    if not own_photos:
        return
    if not config.pretrained_images:
        raise QueryError(
            f"run {config.name!r} was trained on random-weight image features; it cannot search your own images"
        )
    if config.tune_image_heads:
        raise QueryError(
            f"run {config.name!r} trained the last layer of its image backbones; a collection stores "
            "their pooled features only: search it with a run whose backbones were frozen"
        )
    if config.test_view != "full":
        raise QueryError(
            f"run {config.name!r} scores the mean of {config.image_views!r} views of each image; a collection "
            "stores whole-image features: search it with a run whose test_view is 'full'"
        )


def collections() -> list[str]:
    """What can be searched: the Flickr8k splits, then the indexed collections."""
    return [*FLICKR8K_COLLECTIONS, *indexed_collections()]


def _open_collection(collection: str | Collection, config, data: Flickr8k | None) -> tuple[Collection, Flickr8k | None]:
    """The collection to search, by name or as given, once the run is known to be able to search it,
    and Flickr8k (loaded here for a split when not given; a folder needs it only to calibrate)."""
    if isinstance(collection, Collection):
        check_searchable(config, own_photos=not collection.is_flickr8k)
        return collection, data or (load_flickr8k() if collection.is_flickr8k else None)
    if not isinstance(collection, str):
        raise QueryError(f"collection must be a name, got {collection!r}")
    check_searchable(config, own_photos=collection not in FLICKR8K_COLLECTIONS)
    if collection in FLICKR8K_COLLECTIONS:
        data = data or load_flickr8k()
        return Collection.flickr8k(data, collection), data
    return Collection.open(collection), data


def _feature_space(trained: TrainedModel, data: Flickr8k | None) -> FeatureSpace:
    """The run's normalised feature space, from the statistics its checkpoint carries (a stateless
    normalisation needs none: the caption features are never loaded to "fit" it)."""
    config = trained.config
    text_norm, image_norms = trained.text_norm, trained.image_norms
    if config.feature_norm != "standardize":
        text_norm = text_norm or Normaliser(config.feature_norm)
        image_norms = image_norms or [Normaliser(config.feature_norm) for _ in config.backbones]
    return FeatureSpace(config, data, text_norm, image_norms)


class Searcher:
    """Rank the images of a collection (a Flickr8k split, all 8091 images, or your own indexed
    folder) for any English sentence.

    The image embeddings are computed once here; each :meth:`search` embeds one sentence and takes one
    matrix-vector product. Searches may run in several threads at once: only the tokenizer (a Rust
    object that is not safe to share between threads) is used under ``tokenizer_lock``. A server
    that holds several searchers passes them one loaded ``encoder`` (and its lock) instead of one
    copy each.
    """

    def __init__(
        self,
        run: str | TrainedModel,
        collection: str | Collection = "all",
        data: Flickr8k | None = None,
        *,
        encoder: TextEncoder | None = None,
        tokenizer_lock: threading.Lock | None = None,
        approximate_from: int = APPROXIMATE_FROM,
    ):
        """``run``: a trained run's name (``results/<run>/model.pt``) or a loaded one; ``collection``:
        a collection's name (a Flickr8k split or an indexed folder) or an opened :class:`Collection`;
        ``data``: Flickr8k when already loaded (a split needs it; a folder only to calibrate a large
        index)."""
        self.trained = load_run(run) if isinstance(run, str) else run
        self.model = self.trained.model.eval()
        self.collection, self.data = _open_collection(collection, self.trained.config, data)
        self.image_ids = self.collection.ids
        self._position = {image_id: n for n, image_id in enumerate(self.image_ids)}
        self.space = _feature_space(self.trained, self.data)
        if encoder is not None and encoder.name != self.trained.config.text_encoder:
            raise ValueError(
                f"run {self.trained.config.name!r} reads {self.trained.config.text_encoder!r} features, not {encoder.name!r}'s"
            )
        self.encoder = encoder or load_text_encoder(
            self.trained.config.text_encoder
        )  # its tokenizer checks query lengths
        self._tokenizer_lock = tokenizer_lock or threading.Lock()
        self._caption_embeddings = None  # (embeddings, sentences) of the collection's captions, for describe()
        self._training_captions = None  # (embeddings, sentences) of Flickr8k's training captions, for captions_for()
        self._threshold: float | None = None
        self._short_line: tuple[float | None, float] | None = None  # (line, equal error) for one-word queries
        with torch.no_grad():
            self.image_embeddings = self.model.embed_images(as_tensor(self._image_inputs()))
        self.index = self._build_index(approximate_from)

    def _image_inputs(self) -> np.ndarray:
        """The image branch's inputs for every image of the collection: Flickr8k's from the feature
        cache, a folder's from its feature store (files the index did not embed with the run's
        backbones are embedded now, once)."""
        if self.collection.is_flickr8k:
            return self.space.images(self.image_ids)[0]
        backbones = self.trained.config.backbones
        for b in backbones:
            self.collection.embed_missing(b)
        return self.space.image_inputs([self.collection.features(b) for b in backbones])

    def _build_index(self, approximate_from: int) -> ExactIndex | ApproximateIndex | None:
        """The exact scan, or above ``approximate_from`` images FAISS's approximate index calibrated on
        embedded Flickr8k dev captions (None for a model that scores pairs with a network, not by a
        similarity of embeddings: the pair classifier is always scanned exactly)."""
        if type(self.model).scores is not RetrievalModel.scores:
            return None
        vectors = self.image_embeddings.float().numpy()
        if len(vectors) < approximate_from:
            return ExactIndex(vectors, self.model.similarity)
        data = self.data or load_flickr8k()
        sentences = [clean_caption(c) for c in data.split("dev").captions[:CALIBRATION_QUERIES]]
        with torch.no_grad():
            queries = self.model.embed_queries(Queries(sentences=sentences, encode=self._encode_frozen)).float().numpy()
        index = build_index(vectors, self.model.similarity, queries, approximate_from=approximate_from)
        print(f"{self.collection.name!r}, {len(vectors)} images: {index.describe()}", file=sys.stderr)
        return index

    def image_path(self, image_id: str) -> Path:
        """The file of an image of this collection."""
        return self.collection.files[self.position(image_id)]

    def about(self, image_id: str) -> str:
        """When, where and with what a photo was taken, in words, from its index entry ("" for a
        Flickr8k image): "2023-07-14 10:00, Paris, France, Google Pixel 7"; a date read from the
        file's time, not its EXIF, says so."""
        return describe_meta(self.collection.meta.get(image_id))

    def image_id_of(self, name: str) -> str:
        """The image a ``like:`` term names: its id in the collection, or the path of one of its files
        (absolute, or from the home folder: what ``--paths`` prints); QueryError otherwise."""
        if name in self._position:
            return name
        root = self.collection.root
        if root is not None and (name.startswith("/") or name.startswith("~")):
            path = Path(os.path.abspath(Path(name).expanduser()))
            try:
                relative = path.relative_to(Path(root)).as_posix()
            except ValueError:
                relative = None
            if relative in self._position:
                return relative
        raise QueryError(f"like:{name}: no such image in collection {self.collection.name!r}")

    def position(self, image_id: str) -> int:
        """Where ``image_id`` is in :attr:`image_ids` (KeyError for an image not in the collection)."""
        return self._position[image_id]

    def captions(self, image_id: str) -> list[str]:
        """The reference captions of a Flickr8k image (none for your own photos)."""
        return list(self.collection.captions.get(image_id, []))

    def _encode_frozen(self, sentences: list[str]) -> torch.Tensor:
        if len(sentences) != 1:
            with self._tokenizer_lock:
                vectors = encode_texts(self.encoder, sentences)[self.trained.config.text_pooling]
            return as_tensor(self.space.text_norm(vectors))
        with (
            self._tokenizer_lock
        ):  # a query: tokenised under the lock, encoded outside it (the forward pass is thread-safe)
            tokens = self.encoder.tokenize(sentences)
        with torch.inference_mode():
            pooled = pool(self.encoder.model(**tokens).last_hidden_state, tokens["attention_mask"])[
                self.trained.config.text_pooling
            ]
        return as_tensor(self.space.text_norm(pooled.float().numpy()))

    def check_query(self, query: str) -> str:
        """The query after the final text pipeline (Unicode compatibility forms folded first: a
        full-width "ｄｏｇ" is "dog"), or :class:`QueryError` saying what is wrong."""
        if isinstance(query, str):
            query = unicodedata.normalize("NFKC", query)
        if not isinstance(query, str) or not clean_caption(query):
            raise QueryError("the query is empty: give an English sentence, e.g. 'a dog runs on the beach'")
        if len(query) > MAX_QUERY_CHARS:
            raise QueryError(
                f"the query is too long: {len(query)} characters (at most {MAX_QUERY_CHARS}); shorten it to one sentence"
            )
        cleaned = clean_caption(query)
        tokenizer = self.encoder.tokenizer
        with self._tokenizer_lock:
            ids = tokenizer(cleaned)["input_ids"]
        meaningless = set(tokenizer.all_special_ids)  # [CLS], [SEP], [PAD], [UNK]: none of them is a word it read
        if not any(ch.isalnum() for ch in cleaned) or all(i in meaningless for i in ids):
            raise QueryError(
                "the query has no word the text encoder can read (only punctuation, invisible characters, or words it "
                "does not know): give an English sentence, e.g. 'a dog runs on the beach'"
            )
        n_tokens = len(ids)
        limit = self.encoder.spec.max_length
        if n_tokens > limit:
            raise QueryError(
                f"the query is too long: {n_tokens} tokens, and the text encoder reads at most {limit} "
                "(everything after would be ignored); shorten it to one sentence"
            )
        return cleaned

    def search(self, query: str, k: int = 5) -> list[Hit]:
        """The ``k`` best images for ``query``, best first, with their scores."""
        check_k(k, len(self.image_ids))
        cleaned = self.check_query(query)
        with torch.no_grad():
            query_emb = self.model.embed_queries(Queries(sentences=[cleaned], encode=self._encode_frozen))
            if self.index is None:
                scores = self.model.scores(query_emb, self.image_embeddings)[0].numpy()
                return [Hit(rank + 1, self.image_ids[i], float(scores[i])) for rank, i in enumerate(_best(scores, k))]
        scores, rows = self.index.search(query_emb.float().numpy(), k)
        return [Hit(rank + 1, self.image_ids[i], float(s)) for rank, (i, s) in enumerate(zip(rows[0], scores[0]))]

    def _flickr8k_space(self) -> tuple[Flickr8k, FeatureSpace]:
        """Flickr8k and the run's feature space over it (for collections of your own photos too:
        the threshold and the training captions are Flickr8k's)."""
        data = self.data or load_flickr8k()
        return data, FeatureSpace(self.trained.config, data, self.space.text_norm, self.space.image_norms)

    def _check_scores_by_embeddings(self, what: str) -> None:
        if type(self.model).scores is not RetrievalModel.scores:
            raise QueryError(
                f"run {self.trained.config.name!r} scores pairs with a network: {what} needs an embedding run"
            )
        if self.trained.config.finetune_text:
            raise QueryError(
                f"run {self.trained.config.name!r} trains its text encoder: {what} would encode every caption again"
            )

    def split_similarity(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """The run's (captions x images) similarity over a Flickr8k split, and each caption's image."""
        _, space = self._flickr8k_space()
        features = space.split(split)
        with torch.no_grad():
            return evaluation.similarity(self.model, features), np.asarray(features.caption_image)

    def threshold(self) -> float:
        """The score above which a hit is a good match: the score that half of Flickr8k's dev
        captions reach with their own image (:func:`metrics.calibrated_threshold`,
        :data:`THRESHOLD_RECALL`; computed once per searcher, about a second)."""
        if self._threshold is None:
            self._check_scores_by_embeddings("a calibrated threshold")
            self._threshold = metrics.calibrated_threshold(*self.split_similarity("dev"), THRESHOLD_RECALL)
        return self._threshold

    def short_line(self) -> tuple[float | None, float]:
        """The line for a one-word query (:data:`SHORT_WORDS` word besides stop words) and its equal
        error on Flickr8k dev (:func:`relevance.short_line`: None where dev shows that no line separates
        relevant photos from others; computed once per searcher, about a second). ``(None, nan)`` where
        dev holds no word to check (a data set of a few images): the captions' line stands."""
        if self._short_line is None:
            self._check_scores_by_embeddings("a calibrated threshold")
            data, space = self._flickr8k_space()
            features = space.split("dev")
            captions = [data.captions[i] for i in features.image_ids]
            words = relevance.frequent_words(captions)
            if not words:
                self._short_line = (None, float("nan"))
            else:
                queries = Queries(sentences=list(words), encode=self._encode_frozen)
                with torch.no_grad():
                    scores = self.model.score_matrix(queries, features.image).float().numpy()
                negatives = relevance.unmentioned(captions, list(words))
                self._short_line = relevance.short_line(scores, list(words.values()), negatives)
        return self._short_line

    def line_for(self, text: str) -> tuple[float | None, str]:
        """The relevance line for a searched text (None: no line), and what it was calibrated on or why
        there is none."""
        content = [w for w in re.findall(r"[a-z]+", text.lower()) if w not in relevance.STOP_WORDS and len(w) > 2]
        if len(content) <= SHORT_WORDS:
            line, error = self.short_line()
            if line is not None:
                return line, "one-word Flickr8k dev queries"
            if not np.isnan(error):
                return None, (
                    f"no line for a one-word query: on Flickr8k dev, one-word queries' scores do not separate "
                    f"the photos they name from others ({100 * error:.0f}% equal error)"
                )
        return self.threshold(), "Flickr8k dev captions"

    def _term_vector(self, query: query_language.Query) -> torch.Tensor:
        """One query vector: the weighted sum of the unit embeddings of its terms and images (a
        term to avoid has a negative weight). Needs a run that scores by cosine."""
        if type(self.model).scores is not RetrievalModel.scores or self.model.similarity != "cosine":
            raise QueryError(
                f"run {self.trained.config.name!r} does not score by cosine: it searches one sentence at a time "
                "(no weights, terms to avoid or image terms)"
            )
        parts = []
        with torch.no_grad():
            for t in query.terms:
                emb = self.model.embed_queries(
                    Queries(sentences=[self.check_query(t.text)], encode=self._encode_frozen)
                )
                parts.append(t.weight * torch.nn.functional.normalize(emb.float(), dim=1))
            for t in query.like:
                emb = self.image_embeddings[self.position(self.image_id_of(t.text))][None].float()
                parts.append(t.weight * torch.nn.functional.normalize(emb, dim=1))
        return torch.stack(parts).sum(0)

    def ask(self, text: str, k: int = 5) -> Answer:
        """Search with the query language (:mod:`query_language`: terms to avoid, weights, image
        terms, date, place, folder and camera filters, "in July 2023" and "in Paris" read as filters)
        and say how the query was understood and which hits are good matches."""
        if (
            not isinstance(text, str)
            or not clean_caption(unicodedata.normalize("NFKC", text))
            or len(text) > MAX_QUERY_CHARS
        ):
            self.check_query(text)  # says what is wrong: empty, or too long
        text = unicodedata.normalize("NFKC", text)
        query = query_language.parse(text, self.collection.place_names())
        check_k(k)
        try:
            mask = self.collection.matching(query) if query.filtered else None
        except QueryError as refused:
            if not query.spoken_date:
                raise
            # a sentence that merely mentions a year ("... from 1915 to 1923"): its words are searched
            words = query_language.parse(text, self.collection.place_names(), spoken_dates=False)
            note = f'searched "{query.spoken_date}" as words, not as a date filter: {refused}'
            query = dataclasses.replace(words, notes=(*words.notes, note))
            mask = self.collection.matching(query) if query.filtered else None
        candidates = len(self.image_ids) if mask is None else int(mask.sum())
        k = min(k, candidates)  # at most what passed the filters (the answer says how many did)
        passed = None if mask is None else {i for i, ok in zip(self.image_ids, mask) if ok}
        groups = self.collection.representatives(passed)  # under a filter, a group counts its photos that pass
        wanted = min(k + sum(copies for i, (first, copies) in groups.items() if i == first), candidates)
        if query.browse:  # filters alone: the photos that pass, newest first (undated last), not scored
            passed = [i for i, ok in zip(self.image_ids, mask) if ok]
            taken = {i: (self.collection.meta.get(i) or {}).get("taken") or "" for i in passed}
            order = sorted(passed)  # equal dates: by name
            order.sort(key=lambda i: taken[i], reverse=True)  # newest first (a stable sort); undated ("") last
            hits = [Hit(rank + 1, i, float("nan")) for rank, i in enumerate(order[:wanted])]
        elif query.plain:
            hits = self.search(query.terms[0].text, wanted)
        else:
            with torch.no_grad():
                scores = self.model.scores(self._term_vector(query), self.image_embeddings)[0].float().numpy()
            if mask is not None:
                scores = np.where(mask, scores, -np.inf)
            hits = [Hit(rank + 1, self.image_ids[i], float(scores[i])) for rank, i in enumerate(_best(scores, wanted))]
        hits = _one_per_group(hits, groups)[:k]
        threshold, calibrated_on = None, ""
        finite = all(np.isfinite(h.score) for h in hits)  # a damaged run's NaN scores are reported by the caller
        if (
            finite
            and not query.browse
            and query.single
            and type(self.model).scores is RetrievalModel.scores
            and not self.trained.config.finetune_text
        ):
            threshold, calibrated_on = self.line_for(query.terms[0].text)
        notes = list(query.notes) + ([calibrated_on] if threshold is None and calibrated_on else [])
        good = None if threshold is None else sum(h.score >= threshold for h in hits)
        return Answer(
            hits,
            query.describe(),
            notes,
            threshold,
            good,
            candidates,
            query.browse,
            calibrated_on if threshold is not None else "",
        )

    def captions_for(self, image_id: str, k: int = 5) -> list[tuple[str, float]]:
        """Why this photo: the ``k`` Flickr8k training captions the run scores highest for the image
        (any image of the collection, your own photos included: a description by retrieval)."""
        if image_id not in self._position:
            raise QueryError(f"no image {image_id!r} in collection {self.collection.name!r}")
        if self._training_captions is None:
            self._check_scores_by_embeddings("describing an image by training captions")
            data, space = self._flickr8k_space()
            part = data.split("train")
            with torch.no_grad():
                emb = self.model.embed_queries(Queries(as_tensor(space.text(part.caption_ids))))
            self._training_captions = (emb, list(part.captions))
        emb, sentences = self._training_captions
        check_k(k, len(sentences))
        with torch.no_grad():
            scores = self.model.scores(emb, self.image_embeddings[self.position(image_id)][None])[:, 0].float().numpy()
        return [(sentences[i], float(scores[i])) for i in _best(scores, k)]

    def similar(self, image_id: str, k: int = 5) -> list[Hit]:
        """ "More like this": the ``k`` images of the collection whose embeddings (the image branch's
        output) are closest to ``image_id``'s by cosine, best first, the image itself left out: at
        most the collection's other images (none in a collection of one)."""
        if image_id not in self._position:
            raise QueryError(f"no image {image_id!r} in collection {self.collection.name!r}")
        k = min(check_k(k), len(self.image_ids) - 1)
        with torch.no_grad():
            emb = torch.nn.functional.normalize(self.image_embeddings.float(), dim=1)
            scores = (emb @ emb[self.position(image_id)]).numpy()
        if k == 0:
            return []
        scores[self.position(image_id)] = -np.inf  # the image itself is not "like" itself
        return [Hit(rank + 1, self.image_ids[i], float(scores[i])) for rank, i in enumerate(_best(scores, k))]

    def describe(self, image_id: str, k: int = 5) -> list[tuple[str, float]]:
        """Image-to-text: the ``k`` captions of the collection that the run scores highest for
        ``image_id`` (Flickr8k collections, whose images have captions; the caption embeddings are
        computed on first use, from the cached caption features)."""
        if image_id not in self._position:
            raise QueryError(f"no image {image_id!r} in collection {self.collection.name!r}")
        if not self.collection.is_flickr8k:
            raise QueryError(
                f"collection {self.collection.name!r} has no captions to rank (your own photos): image-to-text needs Flickr8k's"
            )
        if self._caption_embeddings is None:
            if self.trained.config.finetune_text:
                raise QueryError(
                    f"run {self.trained.config.name!r} trains its text encoder: ranking every caption would encode "
                    "them all again; use a frozen-text run for image-to-text"
                )
            caption_ids = [f"{i}#{n}" for i in self.image_ids for n in range(len(self.collection.captions.get(i, [])))]
            sentences = {
                f"{i}#{n}": c for i in self.image_ids for n, c in enumerate(self.collection.captions.get(i, []))
            }
            with torch.no_grad():
                emb = self.model.embed_queries(Queries(as_tensor(self.space.text(caption_ids))))
            self._caption_embeddings = (emb, [sentences[c] for c in caption_ids])
        emb, sentences = self._caption_embeddings
        check_k(k, len(sentences))
        with torch.no_grad():
            scores = self.model.scores(emb, self.image_embeddings[self.position(image_id)][None])[:, 0].numpy()
        return [(sentences[i], float(scores[i])) for i in _best(scores, k)]

    def figure(self, query: str, k: int = 5, ncols: int = 5):
        """A grid of the top-k images with their scores (the title wrapped, however long the query)."""
        from .. import plots

        answer = self.ask(query, k)
        hits = answer.hits
        ncols = min(ncols, len(hits))
        fig = plots.image_grid(
            [self.image_path(h.image_id) for h in hits],
            [f"#{h.rank}  {h.score:.3f}\n{printable(h.image_id)}" for h in hits],
            ncols=ncols,
            width=3 * ncols,
        )
        shown = textwrap.shorten(query, 300, placeholder=" ...")
        title = "\n".join(
            textwrap.wrap(
                f'"{shown}"  ({answer.said}; {self.trained.config.name}, {len(self.image_ids)} images of {self.collection.name!r})',
                30 * ncols,
            )
        )
        fig.suptitle(title, y=1.02)
        return fig


def describe_meta(meta: dict | None) -> str:
    """A photo's index entry (:func:`photo_meta.read_meta` and its place) in words."""
    if not meta:
        return ""
    parts = []
    if meta.get("taken"):
        when = meta["taken"].replace("T", " ")[:16]
        parts.append(when + (" (date from file time)" if meta.get("taken_from") == "file" else ""))
    place = meta.get("place") or {}
    parts += [p for p in (place.get("city"), place.get("country")) if p]
    if meta.get("camera"):
        parts.append(meta["camera"])
    return ", ".join(parts)


def _best(scores: np.ndarray, k: int) -> list[int]:
    """The positions of the ``k`` best scores, best first, ties to the first (:func:`vector_index.top_k`)."""
    return top_k(np.asarray(scores)[None], k)[1][0].tolist()


def printable(name: str | Path) -> str:
    """A file name as text to show: a name that is not valid UTF-8 (its bytes kept by Python as lone
    surrogates) shows U+FFFD where its bad bytes were, instead of crashing a terminal or a figure."""
    return os.fsencode(str(name)).decode("utf-8", "replace")


def _one_per_group(hits: list[Hit], groups: dict[str, tuple[str, int]]) -> list[Hit]:
    """The best hit of each near-duplicate group, with the number of the group's other photos; ranks
    renumbered."""
    if not groups:
        return hits
    seen, out = set(), []
    for h in hits:
        first, copies = groups.get(h.image_id, (h.image_id, 0))
        if first in seen:
            continue
        seen.add(first)
        out.append(Hit(len(out) + 1, h.image_id, h.score, copies))
    return out


def png_path(out: str) -> Path:
    """Where the grid goes: ``out`` itself when it ends in ``.png``, ``out/search.png`` for an
    existing folder; otherwise an error (the folder must exist and be writable)."""
    path = Path(out)
    if path.is_dir():
        path = path / "search.png"
    elif path.suffix.lower() != ".png":
        raise QueryError(f"--out {out!r}: give a file name ending in .png, or an existing folder")
    if not path.parent.is_dir():
        raise QueryError(f"--out {out!r}: folder {path.parent} does not exist")
    if not os.access(path.parent, os.W_OK):
        raise QueryError(f"--out {out!r}: folder {path.parent} is not writable")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Search Flickr8k images, or a folder of photos indexed with flickr-retrieval-index, with an English sentence.",
        epilog="Exit status: 0 when a hit scores like a true match (or the query carries no calibrated line), "
        "1 when nothing matches well (the closest hits are still printed), 2 on an error.",
    )
    parser.add_argument("query", help="an English sentence, in quotes")
    parser.add_argument(
        "--run",
        default=None,
        help="a trained run under results/ (default: distilled if notebook 19 made it, field_best if 10 did, else best from 07, "
        "else quickstart: 07's recipe, trained by the first flickr-retrieval-index)",
    )
    parser.add_argument("--k", type=int, default=5, help="how many images to return")
    parser.add_argument(
        "--collection",
        "--split",
        default="all",
        help="which images: a Flickr8k split (train, dev, test), all (default), or a folder indexed with flickr-retrieval-index",
    )
    parser.add_argument(
        "--out",
        default=None,
        help="also draw the grid of results into this PNG file (or existing folder); none by default",
    )
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--paths", action="store_true", help="print one path per line and nothing else (for scripts)")
    output.add_argument(
        "-0",
        "--print0",
        action="store_true",
        help="print the paths separated by NUL characters and nothing else (for xargs -0: any file name)",
    )
    output.add_argument(
        "--json", action="store_true", help="print the answer as JSON (the page's API) and nothing else"
    )
    args = parser.parse_args(argv)
    with cli_errors("flickr-retrieval-search"):
        quiet = args.paths or args.print0 or args.json
        out = png_path(args.out) if args.out else None  # checked before any work
        searcher = Searcher(args.run or default_run(), args.collection)
        start = time.perf_counter()
        answer = searcher.ask(args.query, args.k)
        elapsed = time.perf_counter() - start
        if args.paths or args.print0:  # the files' own bytes, for xargs and scripts, whatever their encoding
            end = b"\0" if args.print0 else b"\n"
            sys.stdout.flush()
            sys.stdout.buffer.write(b"".join(os.fsencode(searcher.image_path(h.image_id)) + end for h in answer.hits))
            sys.stdout.buffer.flush()
        elif args.json:
            body = answer.as_json() | {"run": searcher.trained.config.name, "collection": searcher.collection.name}
            for hit in body["hits"]:
                hit["path"] = str(searcher.image_path(hit["id"]))
                hit["about"] = searcher.about(hit["id"])
            print(json.dumps(body, indent=1))
        else:
            print(answer.said + "".join(f"\n  ({note})" for note in answer.notes))
            for line in answer_lines(answer, searcher.image_path, searcher.about):
                print(line)
            print(f"search time: {1000 * elapsed:.1f} ms over {answer.candidates} of {len(searcher.image_ids)} images")
        if out is not None:
            searcher.figure(args.query, args.k).savefig(out, dpi=100, bbox_inches="tight")
            if not quiet:
                print(f"grid written to {out}")
    return 1 if answer.threshold is not None and answer.good == 0 else 0


def answer_lines(answer: Answer, path_of, about=None) -> list[str]:
    """The hits one per line (with ``about(id)``: when, where, which camera), and the line between
    good matches and the rest where it falls."""
    lines = []
    if answer.threshold is not None and answer.good == 0:
        lines.append(
            f"nothing matches well (no score reaches {answer.threshold:.3f}, calibrated on {answer.calibrated_on}); the closest:"
        )
    for h in answer.hits:
        score = f"{h.score:7.3f}" if np.isfinite(h.score) else "      -"  # listed by a filter alone: no score
        lines.append(
            f"{h.rank:3d}  {score}  {printable(path_of(h.image_id))}"
            + (f"  (+{h.copies} near-duplicates)" if h.copies else "")
            + (f"  [{about(h.image_id)}]" if about is not None and about(h.image_id) else "")
        )
        if answer.good and h.rank == answer.good and answer.good < len(answer.hits):
            lines.append(f"---- weaker matches below (score under {answer.threshold:.3f}) ----")
    return lines


if __name__ == "__main__":
    sys.exit(main())
