import itertools
import random

import pandas as pd

from pipelines.suppression import TOTAL, disclosed_small_cells, publish

MEASURES = ["tested", "due", "in_time"]
PAIRS = [("due", "in_time")]


def table(rows: list[tuple]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["month", "zip5", *MEASURES])


def test_small_counts_are_suppressed_and_zero_is_published() -> None:
    out = publish(table([("2026-01", "21201", 0, 40, 25), ("2026-01", "21202", 5, 50, 30)]),
                  ["month"], "zip5", MEASURES, PAIRS)
    z1 = out[out.zip5 == "21201"].iloc[0]
    assert z1.tested == 0 and z1.due == 40 and z1.in_time == 25
    z2 = out[out.zip5 == "21202"].iloc[0]
    assert pd.isna(z2.tested)


def test_one_suppressed_cell_is_protected_by_a_second() -> None:
    out = publish(table([("m", "a", 5, 0, 0), ("m", "b", 20, 0, 0), ("m", "c", 30, 0, 0)]),
                  ["month"], "zip5", MEASURES, PAIRS)
    tested = dict(zip(out.zip5, out.tested))
    assert pd.isna(tested["a"]) and pd.isna(tested["b"]) and tested["c"] == 30
    assert tested[TOTAL] == 55


def test_a_small_late_count_hides_in_time() -> None:
    out = publish(table([("m", "a", 0, 40, 35), ("m", "b", 0, 60, 20)]), ["month"], "zip5",
                  MEASURES, PAIRS)
    a = out[out.zip5 == "a"].iloc[0]
    assert a.due == 40 and pd.isna(a.in_time) and pd.isna(a.share_in_time)


def test_random_tables_never_disclose_a_small_cell() -> None:
    rng = random.Random(3)
    for _ in range(200):
        rows = [(m, z, rng.choice([0, 0, 1, 3, 9, 10, 11, 12, 40, 200]),
                 due := rng.choice([0, 2, 11, 15, 30, 80]), rng.randint(0, due))
                for m, z in itertools.product(["m1", "m2"], ["a", "b", "c", "d"])]
        out = publish(table(rows), ["month"], "zip5", MEASURES, PAIRS)
        assert disclosed_small_cells(out, ["month"], "zip5", MEASURES, PAIRS) == []
