"""The nbval sanitizer masks incidental details of checked notebook outputs and nothing they check."""

import configparser
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _sanitize(text: str) -> str:
    config = configparser.ConfigParser()
    config.read(ROOT / "nbval_sanitize.cfg")
    for section in config.sections():
        text = re.sub(config[section]["regex"], config[section]["replace"], text)
    return text


def test_timings_paths_and_addresses_are_masked():
    assert _sanitize("indexed 12 image(s) in 3.4 s -> /tmp/rcp217-photos-ab12/x.json") == (
        "indexed 12 image(s) in <TIME> -> <TMP>"
    )
    assert _sanitize("query 57 ms, <Figure at 0x7f3a2b1c9d10>") == "query <TIME>, <Figure at <ADDRESS>>"


def test_what_a_checked_cell_states_is_left_alone():
    kept = "24 rows measured: ['1', '2a', '5b']; R@1 19.3, median rank 5; 8091 images, seeds (0, 1, 2)"
    assert _sanitize(kept) == kept
