"""flickr_retrieval: text-to-image retrieval on Flickr8k with frozen CNN and BERT-style features.

The package behind the rcp217 notebooks: small modules with one job each, in layers that import
downwards only (foundations; data and features; the training core; the study; search and the photo
index; benches). docs/package.md lists every module, its job and its imports; it is generated from
the code by scripts/package_map.py and a unit test keeps it true. Importing the package changes no
global state.
"""

__version__ = "0.1.0"
