"""Free-text image search with a trained run.

    from flickr_retrieval.search import Searcher
    searcher = Searcher("best", split="all")       # loads results/best/model.pt and embeds the images once
    searcher.search("two dogs play in the snow", k=5)

Command line (writes the top-k grid to a PNG)::

    flickr-retrieval-search "two dogs play in the snow" --run best --k 8 --split test --out dogs.png
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import numpy as np
import torch

from . import results
from .data import SPLITS, Flickr8k, load_flickr8k
from .models import pairwise_similarity
from .text import clean_caption
from .text_encoders import encode_texts, load_text_encoder
from .train import FeatureSpace, TrainedModel


@dataclass
class Hit:
    rank: int
    image_id: str
    score: float


class Searcher:
    """Rank the images of a split (or all 8091) for any English sentence.

    The image embeddings are computed once here; each :meth:`search` embeds one sentence and takes one
    matrix-vector product.
    """

    def __init__(self, run: str | TrainedModel, split: str = "all", data: Flickr8k | None = None):
        if split not in (*SPLITS, "all"):
            raise ValueError(f"split must be one of {[*SPLITS, 'all']}, got {split!r}")
        self.data = data or load_flickr8k()
        if isinstance(run, str):
            path = results.checkpoint_path(run)
            if not path.is_file():
                trained_runs = sorted(p.parent.name for p in path.parent.parent.glob("*/model.pt"))
                raise ValueError(f"unknown run {run!r}: no {path}. Trained runs here: {trained_runs or 'none (run the notebooks first)'}")
            run = TrainedModel.load(path)
        self.trained = run
        self.model = run.model.eval()
        self.split = split
        self.image_ids = self.data.split(split).image_ids
        self.space = FeatureSpace(run.config, self.data)
        if hasattr(self.model, "embed_sentences"):  # a model that encodes raw sentences itself (fine-tuned text encoder)
            self._encode = self.model.embed_sentences
        else:
            self.encoder = load_text_encoder(run.config.text_encoder)
            self._encode = self._embed_frozen
        images, _ = self.space.images(self.image_ids)
        with torch.no_grad():
            self.image_embeddings = self.model.embed_images(torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32)))

    def _embed_frozen(self, sentences: list[str]) -> torch.Tensor:
        vectors = encode_texts(self.encoder, sentences)[self.trained.config.text_pooling]
        return self.model.embed_texts(torch.from_numpy(self.space.text_norm(vectors).astype(np.float32)))

    def search(self, query: str, k: int = 5) -> list[Hit]:
        """The ``k`` best images for ``query``, best first, with their scores."""
        if not isinstance(query, str) or not clean_caption(query):
            raise ValueError("the query is empty: give an English sentence, e.g. 'a dog runs on the beach'")
        if not isinstance(k, int) or not 1 <= k <= len(self.image_ids):
            raise ValueError(f"k must be an integer from 1 to {len(self.image_ids)} (images in split {self.split!r}), got {k!r}")
        with torch.no_grad():
            scores = pairwise_similarity(self._encode([clean_caption(query)]), self.image_embeddings, self.model.similarity)[0].numpy()
        best = np.argsort(-scores, kind="stable")[:k]
        return [Hit(rank + 1, self.image_ids[i], float(scores[i])) for rank, i in enumerate(best)]

    def figure(self, query: str, k: int = 5, ncols: int = 5):
        """A grid of the top-k images with their scores."""
        from . import plots

        hits = self.search(query, k)
        fig = plots.image_grid([self.data.image_path(h.image_id) for h in hits], [f"#{h.rank}  {h.score:.3f}\n{h.image_id}" for h in hits], ncols=min(ncols, k), width=3 * min(ncols, k))
        fig.suptitle(f'"{query}"  ({self.trained.config.name}, {len(self.image_ids)} images of split {self.split!r})', y=1.02)
        return fig


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Search Flickr8k images with an English sentence.")
    parser.add_argument("query", help="an English sentence, in quotes")
    parser.add_argument("--run", default="best", help="a trained run under results/ (default: best)")
    parser.add_argument("--k", type=int, default=5, help="how many images to return")
    parser.add_argument("--split", default="all", choices=[*SPLITS, "all"], help="which images to search")
    parser.add_argument("--out", default="search.png", help="PNG file for the grid of results")
    args = parser.parse_args(argv)
    try:
        searcher = Searcher(args.run, args.split)
        start = time.perf_counter()
        hits = searcher.search(args.query, args.k)
        elapsed = time.perf_counter() - start
    except ValueError as exc:
        parser.error(str(exc))
    for h in hits:
        print(f"{h.rank:3d}  {h.score:7.3f}  {searcher.data.image_path(h.image_id)}")
    print(f"search time: {1000 * elapsed:.1f} ms over {len(searcher.image_ids)} images")
    searcher.figure(args.query, args.k).savefig(args.out, dpi=100, bbox_inches="tight")
    print(f"grid written to {args.out}")


if __name__ == "__main__":
    main()
