"""Benches: what the package costs on this machine. ``throughput`` (``flickr-retrieval-bench``:
feature extraction and the training step), ``training`` (the training step against the machine's
limits), ``index`` (``flickr-retrieval-bench-index``: search at scale), ``photos``
(``flickr-retrieval-bench-photos``: a phone-photo library indexed and searched), ``library``
(``flickr-retrieval-bench-library``: a library with ground truth, what a new user meets) and ``hostile``
(``flickr-retrieval-bench-hostile``: peak memory and time of the worst image and checkpoint inputs)."""
