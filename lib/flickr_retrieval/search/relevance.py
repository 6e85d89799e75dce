"""The relevance line for short queries: where "nothing matches well" is drawn for a query of a few
words, calibrated on Flickr8k's dev split (pure functions over a similarity matrix).

A sentence is judged against the score that half of dev's captions reach with their own image
(:func:`flickr_retrieval.metrics.calibrated_threshold`). A query of one to three words ("dog", "snow in
Paris" once the place is read as a filter) scores lower with every image than a caption does, so that
line answered "nothing matches well" to most of them. Its own line: the one-word queries dev can check
(:func:`frequent_words`: a word that three of an image's five captions say names that image), each
scored against every dev image, and the score that a share ``recall`` of them reach with their best
relevant image (:func:`short_query_threshold`).
"""

from __future__ import annotations

import re

import numpy as np

#: Words a short query is not made of.
STOP_WORDS = frozenset(
    "the and with are his her their its while for from into over near through some other one two three four "
    "has have being who that this there out off down very looking another each".split()
)
#: Plurals read as their singular ("dogs" is "dog").
SINGULARS = frozenset(
    "dog girl boy man child woman bike ball car tree rock wave building person player street hill bird horse".split()
)


def frequent_words(captions: list[list[str]], min_images: int = 5, mentions: int = 3) -> dict[str, np.ndarray]:
    """The one-word queries a split can check: each word (three letters or more, not a stop word; a
    plural of :data:`SINGULARS` read as its singular) that at least ``mentions`` of an image's captions
    say, for at least ``min_images`` images; word -> the indices of those images (``captions``: each
    image's captions, in order)."""
    said: dict[str, list[int]] = {}
    for n, image_captions in enumerate(captions):
        counts: dict[str, int] = {}
        for caption in image_captions:
            words = {w[:-1] if w[:-1] in SINGULARS else w for w in re.findall(r"[a-z]{3,}", caption.lower())}
            for word in words:
                counts[word] = counts.get(word, 0) + 1
        for word, count in counts.items():
            if count >= mentions and word not in STOP_WORDS:
                said.setdefault(word, []).append(n)
    return {w: np.array(ids) for w, ids in sorted(said.items()) if len(ids) >= min_images}


def short_query_threshold(scores: np.ndarray, relevant: list[np.ndarray], recall: float = 0.9) -> float:
    """The line for short queries: the score that a share ``recall`` of one-word queries (``scores``:
    words x images) reach with their best relevant image (``relevant[w]``: word ``w``'s images)."""
    if len(relevant) == 0 or len(relevant) != len(scores):
        raise ValueError(f"{len(scores)} rows of scores for {len(relevant)} words")
    best = np.array([scores[w, idx].max() for w, idx in enumerate(relevant)])
    return float(np.quantile(best, 1.0 - recall))
