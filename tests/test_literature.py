from flickr_retrieval import literature


def test_the_literature_table_has_the_published_rows_then_ours():
    t = literature.table({"ours": {"R@1": 25.0, "R@5": 55.0, "R@10": 68.0, "medr": 4, "encoders": "frozen"}})
    assert list(t.columns[:4]) == ["R@1", "R@5", "R@10", "medr"]
    assert t.index[-1] == "ours" and t.loc["ours", "source"].startswith("this study")
    assert len(t) == len(literature.FLICKR8K_T2I) + 1
    for row in literature.FLICKR8K_T2I:  # recalls are percentages, increasing with K
        assert 0 < row["R@1"] < row["R@5"] < row["R@10"] < 100


def test_every_published_row_says_whether_it_was_read_from_the_paper():
    t = literature.table({"ours": {"R@1": 25.0}})
    assert all(str(row.get("checked", "")).strip() for row in literature.FLICKR8K_T2I)
    assert t.loc["ours", "checked"] == "measured here" and list(t.columns) == literature.COLUMNS
