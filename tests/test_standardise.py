import pytest

from linkage.standardise import address_key, first_name_aliases, std_last_name, std_sex, std_zip


@pytest.mark.parametrize("typed", [
    "123 North Oak Street, Apt. 3", "123 N OAK ST #3", "123 n oak st apt 3", "123 N Oak St. Unit 3",
    "123 North Oak St # 3",
])
def test_one_dwelling_however_it_is_typed(typed: str) -> None:
    assert address_key(typed) == "123 N OAK ST #3"


def test_unit_from_its_own_field_matches_unit_in_the_street_line() -> None:
    assert address_key("123 N Oak St", "Apt 3") == address_key("123 North Oak Street #3")


def test_another_unit_in_the_same_building_is_another_dwelling() -> None:
    assert address_key("12 Oak St", "1") != address_key("12 Oak St Apt 3")


def test_street_named_after_a_direction_is_kept() -> None:
    assert address_key("45 West Street") == "45 WEST ST"


def test_nicknames_relate_directly_but_do_not_chain() -> None:
    assert "WILLIAM" in first_name_aliases("Bill")
    assert "ROBERT" not in first_name_aliases("William")


def test_hyphenated_and_accented_surnames_fold() -> None:
    assert std_last_name("Garcia-Lopez") == std_last_name("GARCIA LOPEZ") == "GARCIALOPEZ"
    assert std_last_name("Peña") == "PENA"


def test_sex_vocabularies_and_zip_plus_four() -> None:
    assert [std_sex(v) for v in ("M", "Male", "boy", "girl", "U", "Nonbinary", "")] == [
        "M", "M", "M", "F", None, None, None]
    assert std_zip("21201-1234") == "21201"


def test_constrained_clustering_never_joins_a_cannot_link_pair() -> None:
    from linkage.constraints import constrained_clusters

    # a-b-c chain; a and c must stay apart: the weaker edge (b-c) is the one dropped
    groups = constrained_clusters(["a", "b", "c", "d"],
                                  [("a", "b", 0.99), ("b", "c", 0.97), ("c", "d", 0.98)],
                                  {frozenset(("a", "c"))})
    assert groups["a"] == groups["b"] and groups["c"] == groups["d"]
    assert groups["a"] != groups["c"]


def test_a_guardian_reads_the_same_from_health_and_the_school() -> None:
    from linkage.standardise import std_guardian

    assert std_guardian("GARCIA, MARIA") == std_guardian("Maria Garcia") == ("MARIA", "GARCIA")
    assert std_guardian("Maria L. Garcia-Lopez") == ("MARIA", "GARCIALOPEZ")
    assert std_guardian("  ") == (None, None) and std_guardian("Smith") == (None, "SMITH")


def test_a_trained_level_no_match_reached_still_loads() -> None:
    """EM can leave a level's m at exactly 0; the saved model must load again next week."""
    import pandas as pd
    import pytest
    from splink import DuckDBAPI, Linker

    from linkage.model import LINK_COLUMNS, floored, settings

    records = pd.DataFrame([dict.fromkeys(LINK_COLUMNS, None) | {"unique_id": "a",
                                                                  "first_aliases": []}])
    model = Linker(DuckDBAPI().register(records, table_name="r"), settings(),
                   log_level=None).misc.save_model_to_json()
    level = next(lv for c in model["comparisons"] for lv in c["comparison_levels"]
                 if not lv.get("is_null_level") and not lv.get("fix_m_probability"))
    level["m_probability"], level["u_probability"] = 0.0, 0.5
    with pytest.raises(ValueError, match="m_probability"):
        Linker(DuckDBAPI().register(records, table_name="r"), model, log_level=None)
    Linker(DuckDBAPI().register(records, table_name="r"), floored(model), log_level=None)
    assert level["m_probability"] == 1e-300
