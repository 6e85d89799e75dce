"""flickr_retrieval: text-to-image retrieval on Flickr8k with frozen CNN and BERT-style features.

The package behind the rcp217 notebooks. Modules, one job each:

- :mod:`~flickr_retrieval.data` Flickr8k loading, validation, splits
- :mod:`~flickr_retrieval.text` the report's two caption pipelines
- :mod:`~flickr_retrieval.images`, :mod:`~flickr_retrieval.backbones` image preprocessing and CNNs
- :mod:`~flickr_retrieval.text_encoders` BERT-style sentence encoders
- :mod:`~flickr_retrieval.features`, :mod:`~flickr_retrieval.cache` cached feature extraction (whole images and augmented views)
- :mod:`~flickr_retrieval.head_features` the cached inputs of each backbone's last layer, for training that layer
- :mod:`~flickr_retrieval.metrics` retrieval metrics over a similarity matrix
- :mod:`~flickr_retrieval.inputs` feature containers and normalisers of a run
- :mod:`~flickr_retrieval.models` models built from a :class:`~flickr_retrieval.models.ModelSpec`, one interface
- :mod:`~flickr_retrieval.losses`, :mod:`~flickr_retrieval.objective` losses; model + loss + temperature
- :mod:`~flickr_retrieval.sampling` batches and negatives
- :mod:`~flickr_retrieval.evaluation` similarity matrices and dev scores of a model
- :mod:`~flickr_retrieval.checkpoint` trained runs saved and loaded as data
- :mod:`~flickr_retrieval.fit`, :mod:`~flickr_retrieval.train` the one training loop, and training a config
- :mod:`~flickr_retrieval.experiments`, :mod:`~flickr_retrieval.analysis`, :mod:`~flickr_retrieval.results` tables, summaries, exports
- :mod:`~flickr_retrieval.plots`, :mod:`~flickr_retrieval.search`, :mod:`~flickr_retrieval.bench`
"""

import warnings

__version__ = "0.1.0"

# transformers imports tqdm.auto, which warns in a notebook without ipywidgets; our bars are plain text.
warnings.filterwarnings("ignore", message="IProgress not found")
