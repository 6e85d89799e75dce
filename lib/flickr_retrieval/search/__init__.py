"""Search and the photo index: a trained run ranks the images of a collection for a sentence.

    from flickr_retrieval.search import Collection, Searcher
    searcher = Searcher("best", collection="all")          # a Flickr8k split, or an indexed folder's name
    searcher.ask("two dogs in the snow -beach in 2023", k=8)

What each module holds (imports go down this list, never up): ``vector_index`` (the exact and the
approximate top-k), ``query_language`` (what a query may say), ``photo_meta`` (capture time, camera,
place), ``photo_index`` (decoding, hashing and embedding files; the feature store), ``duplicates``
(near-duplicate groups), ``collection`` (:class:`Collection`: a split or an indexed folder),
``searcher`` (:class:`Searcher` and ``flickr-retrieval-search``), ``serve`` (the search page) and
``widget`` (Jupyter). The package map (docs/package.md) is generated from the imports.
"""

from .collection import Collection
from .searcher import Answer, Hit, Searcher, check_k, check_searchable, collections

__all__ = ["Answer", "Collection", "Hit", "Searcher", "check_k", "check_searchable", "collections"]
