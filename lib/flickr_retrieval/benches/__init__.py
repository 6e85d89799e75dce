"""Benches: what the package costs on this machine. ``throughput`` (``flickr-retrieval-bench``:
feature extraction and the training step), ``training`` (the training step against the machine's
limits), ``index`` (``flickr-retrieval-bench-index``: search at scale) and ``photos``
(``flickr-retrieval-bench-photos``: a phone-photo library indexed and searched)."""
