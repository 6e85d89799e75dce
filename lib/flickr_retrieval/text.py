"""The report's two caption pipelines (section IV-B).

* :func:`clean_caption`, the final one: full sentences, only the start/end markers of a captioning
  pipeline removed (a BERT-style encoder was trained on whole sentences).
* :class:`HeavyPipeline`, the abandoned first one: lower case, no punctuation, no stop words,
  lemmatised, and reduced to a TF-IDF vocabulary of the most weighted words, fitted on training
  captions only.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass, field

import numpy as np
import simplemma
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, TfidfVectorizer

#: Sequence markers that captioning code adds around captions (Keras-style and <start>/<end> style).
MARKERS = ("startseq", "endseq", "<start>", "<end>", "<s>", "</s>")
_MARKER_RE = re.compile(r"(?:^|\s)(?:" + "|".join(re.escape(m) for m in MARKERS) + r")(?=\s|$)", re.IGNORECASE)
_PUNCT = str.maketrans({c: " " for c in string.punctuation})


def clean_caption(text: str) -> str:
    """The final pipeline: strip start/end markers and extra white space, keep the sentence."""
    return " ".join(_MARKER_RE.sub(" ", text).split())


def heavy_tokens(text: str) -> list[str]:
    """The first pipeline before TF-IDF: markers, punctuation and stop words out, lemmas in."""
    words = clean_caption(text).lower().translate(_PUNCT).split()
    return [simplemma.lemmatize(w, lang="en") for w in words if w not in ENGLISH_STOP_WORDS and w.isalpha()]


@dataclass
class HeavyPipeline:
    """The abandoned pipeline, with its TF-IDF vocabulary.

    ``fit`` keeps the ``vocab_size`` words with the largest summed TF-IDF weight over the training
    captions; ``transform`` returns each caption as the space-joined lemmas that are in that
    vocabulary (the unreadable text the report then fed to BERT); ``tfidf`` returns TF-IDF vectors.
    """

    vocab_size: int = 1000
    vectorizer: TfidfVectorizer | None = field(default=None, repr=False)
    vocabulary: list[str] = field(default_factory=list, repr=False)

    def fit(self, train_captions: list[str]) -> HeavyPipeline:
        docs = [" ".join(heavy_tokens(c)) for c in train_captions]
        full = TfidfVectorizer(token_pattern=r"\S+").fit(docs)
        weight = np.asarray(full.transform(docs).sum(axis=0)).ravel()
        terms = full.get_feature_names_out()
        keep = np.argsort(-weight, kind="stable")[: self.vocab_size]
        self.vocabulary = sorted(terms[keep].tolist())
        self.vectorizer = TfidfVectorizer(token_pattern=r"\S+", vocabulary=self.vocabulary).fit(docs)
        return self

    def transform(self, captions: list[str]) -> list[str]:
        if self.vectorizer is None:
            raise RuntimeError("call fit() on training captions first")
        vocab = set(self.vocabulary)
        return [" ".join(t for t in heavy_tokens(c) if t in vocab) for c in captions]

    def tfidf(self, captions: list[str]) -> np.ndarray:
        """Dense float32 TF-IDF vectors, shape (len(captions), vocab_size)."""
        if self.vectorizer is None:
            raise RuntimeError("call fit() on training captions first")
        return self.vectorizer.transform(self.transform(captions)).toarray().astype(np.float32)
