"""The relevance line for one-word queries: whether a line between "a good match" and "nothing
matches well" can be drawn for them at all, decided on Flickr8k's dev split (pure functions over a
similarity matrix).

A sentence is judged against the score that half of dev's captions reach with their own image
(:func:`flickr_retrieval.metrics.calibrated_threshold`). A query of one word ("dog"; "snow in Paris"
once the place is read as a filter) scores lower with every image than a caption does, so that line
answered "nothing matches well" to most of them. dev can check one-word queries: a word that three of
an image's five captions say names that image (:func:`frequent_words`); the images whose captions
never say it do not (:func:`unmentioned`). :func:`short_line` puts the line where the two errors are
equal (a word with a relevant image answered "nothing"; a word whose best image among those that do
not show it passes), and draws none when that error is too large for a line to mean anything.
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


def unmentioned(captions: list[list[str]], words: list[str]) -> np.ndarray:
    """(words x images) booleans: the images none of whose captions says the word (or its plural)."""
    said = [set(re.findall(r"[a-z]{3,}", " ".join(c).lower())) for c in captions]
    return np.array([[w not in s and w + "s" not in s for s in said] for w in words], dtype=bool)


#: The largest equal error at which a line is drawn: above it, the scores do not separate enough.
MAX_EQUAL_ERROR = 0.2


def short_line(
    scores: np.ndarray, relevant: list[np.ndarray], negatives: np.ndarray, max_error: float = MAX_EQUAL_ERROR
) -> tuple[float | None, float]:
    """The line for one-word queries (``scores``: words x images; ``relevant[w]``: word ``w``'s images;
    ``negatives``: words x images, the images that do not show it) and its equal error: the score
    where the share of words whose best relevant image falls under it equals the share whose best
    image among the negatives reaches it. The line is None when that error exceeds ``max_error``."""
    if len(relevant) == 0 or len(relevant) != len(scores) or negatives.shape != scores.shape:
        raise ValueError(f"{len(scores)} rows of scores for {len(relevant)} words and {negatives.shape} negatives")
    best = np.array([scores[w, idx].max() for w, idx in enumerate(relevant)])
    other = np.where(negatives, scores, -np.inf).max(axis=1)
    candidates = np.unique(np.concatenate([best, other]))
    errors = np.array([max(np.mean(best < t), np.mean(other >= t)) for t in candidates])
    n = int(np.argmin(errors))
    error = float(errors[n])
    return (float(candidates[n]) if error <= max_error else None), error
