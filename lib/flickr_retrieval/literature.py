"""Published text-to-image results on this study's protocol, as data.

Flickr8k's standard split (Hodosh et al. 2013): 1000 test images, their 5000 captions as queries,
text-to-image R@1 / R@5 / R@10 and median rank. ``None`` marks what is not given. ``encoders`` says
whether a system trains its image or text encoder (the "trained-encoder tier") or scores frozen
features (the "frozen-feature tier"). ``checked`` says whether the number was read from the
paper's own table for this project: none could be, the papers are not reachable from the machines
that ran it, so every row says where its numbers were taken from and that they are unchecked; a
reader with the papers should check them (split, single model or ensemble, features).
"""

from __future__ import annotations

import pandas as pd

#: One dict per system: ``system``, ``source``, ``encoders``, ``image features``, ``notes``,
#: ``R@1``, ``R@5``, ``R@10``, ``medr``.
FLICKR8K_T2I: tuple[dict, ...] = (
    {
        "system": "visual-semantic embedding, LSTM + CNN (Kiros et al. 2014)",
        "source": "Kiros, Salakhutdinov & Zemel 2014",
        "encoders": "frozen CNN, trained LSTM",
        "image features": "VGG19",
        "notes": "single model",
        "checked": "no: as cited in the study's earlier notebooks, the paper's table not read here",
        "R@1": 12.5,
        "R@5": 37.0,
        "R@10": 51.5,
        "medr": 10,
    },
    {
        "system": "mean word2vec + CCA (Klein et al. 2015)",
        "source": "Klein, Lev, Sadeh & Wolf 2015",
        "encoders": "frozen",
        "image features": "VGG",
        "notes": "single model",
        "checked": "no: as cited in the study's earlier notebooks, the paper's table not read here",
        "R@1": 19.1,
        "R@5": 45.3,
        "R@10": 60.4,
        "medr": 7,
    },
    {
        "system": "Fisher vectors + CCA (Klein et al. 2015)",
        "source": "Klein, Lev, Sadeh & Wolf 2015",
        "encoders": "frozen",
        "image features": "VGG",
        "notes": "two Fisher-vector sentence codes combined; numbers rounded as cited",
        "checked": "no: rounded as cited, the paper's table not read here",
        "R@1": 21.0,
        "R@5": 50.0,
        "R@10": 65.0,
        "medr": None,
    },
    {
        "system": "MFM",
        "source": "as cited in the study's plan of 2026-11 (paper not identified here)",
        "encoders": "trained",
        "image features": "-",
        "notes": "single model or ensemble: unknown here",
        "checked": "no: cited, the paper's table not read here",
        "R@1": 28.4,
        "R@5": 58.5,
        "R@10": 72.3,
        "medr": None,
    },
    {
        "system": "NAA",
        "source": "as cited in the study's plan of 2026-11 (paper not identified here)",
        "encoders": "trained",
        "image features": "-",
        "notes": "single model or ensemble: unknown here",
        "checked": "no: cited, the paper's table not read here",
        "R@1": 27.7,
        "R@5": 59.6,
        "R@10": 71.8,
        "medr": None,
    },
)


#: The columns of :func:`table`, in order.
COLUMNS = [
    "R@1",
    "R@5",
    "R@10",
    "medr",
    "encoders",
    "image features",
    "notes",
    "checked",
    "caption contamination",
    "source",
]


def table(ours: dict[str, dict] | None = None) -> pd.DataFrame:
    """The published rows, then ``ours`` (label -> dict with R@1, R@5, R@10, medr and any other
    column), one line each, indexed by system."""
    rows = [dict(r) for r in FLICKR8K_T2I]
    for label, values in (ours or {}).items():
        rows.append({"system": label, "source": "this study (test, measured)", "checked": "measured here", **values})
    frame = pd.DataFrame(rows).set_index("system")
    for column in COLUMNS:
        if column not in frame:
            frame[column] = "-"
    return frame[COLUMNS].fillna("-")
