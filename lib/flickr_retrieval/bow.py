"""A caption representation that saw no text outside Flickr8k's training split: a bag of words.

The sentence encoders of the study (all-MiniLM-L6-v2, all-mpnet-base-v2) were trained on caption
pairs of Flickr30k, whose captions include Flickr8k's (test captions among them). A text branch on
:func:`bow_table` learns every word from the training captions of the data it is given and from
nothing else: its distance to the encoders' rows bounds what their exposure can be worth.

The vocabulary is the words of at least ``min_count`` training captions (lower-cased, the caption's
own tokens, punctuation dropped); each caption is its TF-IDF vector over that vocabulary (IDF from
the training captions, rows L2-normalised). A word of a dev or test caption outside it is ignored.
Nothing is cached: fitting and transforming 40455 captions takes seconds.
"""

from __future__ import annotations

import time

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer

from .data import Flickr8k
from .features import FeatureTable

#: The text encoder name a :class:`~flickr_retrieval.config.RunConfig` uses for it.
NAME = "bow"
MIN_COUNT = 2


def bow_table(data: Flickr8k, min_count: int = MIN_COUNT) -> FeatureTable:
    """TF-IDF vectors of every caption of ``data`` over the vocabulary of its training split.

    Returns
    -------
    FeatureTable
        ids: every caption id (``data.split("all")``), vectors: float32 of shape (40455, V).
    """
    started = time.perf_counter()
    train, every = data.split("train"), data.split("all")
    vectorizer = TfidfVectorizer(lowercase=True, token_pattern=r"(?u)\b[a-z]+\b", min_df=min_count, dtype=np.float32)
    vectorizer.fit(train.captions)
    vectors = vectorizer.transform(every.captions).toarray().astype(np.float32)
    source = {
        "kind": "text",
        "encoder": NAME,
        "vocabulary": len(vectorizer.vocabulary_),
        "fitted on": f"{len(train.caption_ids)} captions of the training split ({len(train.image_ids)} images)",
        "min_count": min_count,
    }
    return FeatureTable(list(every.caption_ids), vectors, source, None, False, time.perf_counter() - started)
