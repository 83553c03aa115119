"""Probabilistic linkage with Splink on DuckDB: the model as data, trained on the records.

One table of person-records from every feed (one row per `source` + `record_key`), deduplicated
as a whole, so a child's health tests, school roster line and provider services fall into one
cluster. The model is unsupervised (no labels exist in production): u from random pairs, m by
expectation maximisation on two independent blockings, lambda from deterministic rules.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import uuid
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

# Splink must never echo records: silence it before import-time handlers are attached.
_splink_log = logging.getLogger("splink")
_splink_log.setLevel(logging.CRITICAL + 1)
_splink_log.addHandler(logging.NullHandler())
_splink_log.propagate = False

import splink.comparison_level_library as cll
import splink.comparison_library as cl
from splink import DuckDBAPI, Linker, SettingsCreator, block_on

from linkage.constraints import constrained_clusters

MODEL_FILE = "splink_model.json"  # in the city's linkage folder, with its .meta.json
LINK_COLUMNS = ["unique_id", "first_name", "first_aliases", "middle_name", "last_name", "dob",
                "sex", "address_key", "street_key", "zip", "medicaid_id", "patient_id",
                "guardian_first", "guardian_last"]


# The few functions the hand-written levels call, per SQL dialect: the model is trained on
# DuckDB, and the same trained model scores on Spark (spark_model) with Splink's UDFs there.
SQL_FUNCTIONS = {
    "duckdb": {"jaro_winkler": "jaro_winkler_similarity", "array_has": "list_contains",
               "starts_with": "starts_with",
               "days_apart": "date_diff('day', cast({a} as date), cast({b} as date))"},
    "spark": {"jaro_winkler": "jaro_winkler", "array_has": "array_contains",
              "starts_with": "startswith",
              "days_apart": "datediff(cast({b} as date), cast({a} as date))"},
}


def _f(dialect: str) -> dict[str, str]:
    if dialect not in SQL_FUNCTIONS:
        raise ValueError(f"no SQL functions for dialect {dialect!r} (one of "
                         f"{', '.join(SQL_FUNCTIONS)})")
    return SQL_FUNCTIONS[dialect]


def _first_name(dialect: str = "duckdb") -> cl.CustomComparison:
    f = _f(dialect)
    return cl.CustomComparison(
        output_column_name="first_name",
        comparison_levels=[
            cll.NullLevel("first_name"),
            cll.ExactMatchLevel("first_name").configure(tf_adjustment_column="first_name"),
            cll.CustomLevel(
                f"{f['array_has']}(first_aliases_l, first_name_r) "
                f"or {f['array_has']}(first_aliases_r, first_name_l)",
                label_for_charts="Nickname of each other"),
            cll.JaroWinklerLevel("first_name", 0.92),
            cll.JaroWinklerLevel("first_name", 0.8),
            cll.ElseLevel(),
        ],
    )


def _last_name() -> cl.CustomComparison:
    return cl.CustomComparison(
        output_column_name="last_name",
        comparison_levels=[
            cll.NullLevel("last_name"),
            cll.ExactMatchLevel("last_name").configure(tf_adjustment_column="last_name"),
            cll.JaroWinklerLevel("last_name", 0.92),
            cll.CustomLevel(
                "(length(last_name_l) >= 3 and length(last_name_r) >= 3) and "
                "(contains(last_name_l, last_name_r) or contains(last_name_r, last_name_l))",
                label_for_charts="One surname part of the other (hyphenated)"),
            cll.JaroWinklerLevel("last_name", 0.8),
            cll.ElseLevel(),
        ],
    )


def _dob() -> cl.CustomComparison:
    return cl.CustomComparison(
        output_column_name="dob",
        comparison_levels=[
            cll.NullLevel("dob"),
            cll.ExactMatchLevel("dob"),
            cll.CustomLevel(
                "substr(dob_l, 1, 4) = substr(dob_r, 1, 4) and "
                "substr(dob_l, 6, 2) = substr(dob_r, 9, 2) and "
                "substr(dob_l, 9, 2) = substr(dob_r, 6, 2)",
                label_for_charts="Day and month transposed"),
            cll.DamerauLevenshteinLevel("dob", 1),
            cll.AbsoluteDateDifferenceLevel("dob", input_is_string=True, threshold=1,
                                            metric="year"),
            cll.ElseLevel(),
        ],
    )


def _address() -> cl.CustomComparison:
    return cl.CustomComparison(
        output_column_name="address",
        comparison_levels=[
            cll.NullLevel("street_key"),
            cll.ExactMatchLevel("address_key"),
            cll.ExactMatchLevel("street_key"),
            cll.JaroWinklerLevel("street_key", 0.9),
            cll.ElseLevel(),
        ],
    )


def _guardian() -> cl.CustomComparison:
    """The guardian both partners name (health's `LAST, FIRST`, the school's free text): the
    evidence that joins a child's tests to the school record when the family moved between
    them. In the same home it says nothing the address and surname have not said, and siblings
    share it: that level weighs nothing (fixed), so it can never outvote a sibling's other name
    or birth date. Only a guardian named at another home counts."""
    surname = ("(guardian_last_l = guardian_last_r or (length(guardian_last_l) >= 3 and "
               "length(guardian_last_r) >= 3 and (contains(guardian_last_l, guardian_last_r) "
               "or contains(guardian_last_r, guardian_last_l))))")
    same = f"{surname} and guardian_first_l = guardian_first_r"
    home = "(address_key_l = address_key_r or street_key_l = street_key_r)"
    return cl.CustomComparison(
        output_column_name="guardian",
        comparison_levels=[
            cll.CustomLevel("guardian_last_l is null or guardian_last_r is null").configure(
                is_null_level=True),
            cll.CustomLevel(f"{same} and {home}", label_for_charts="Same guardian, same home")
            .configure(m_probability=0.5, u_probability=0.5, fix_m_probability=True,
                       fix_u_probability=True),
            cll.CustomLevel(same, label_for_charts="Same guardian, another home"),
            cll.ElseLevel(),
        ],
    )


def _household_guard(dialect: str = "duckdb") -> cl.CustomComparison:
    """Two people of one household, never one person. Its weights are fixed, not trained: EM
    cannot learn these rare patterns, and without them a shared surname, dwelling and ZIP
    outvote everything else, merging siblings, twins, or a parent and a child of the same name.

    - unrelated first names (not a nickname, not the middle name, Jaro-Winkler < 0.8) in one
      household (same surname or same dwelling);
    - birth dates more than a year apart, and not a one-character slip, in one household:
      a parent and child, or siblings, however alike their names (Jr. and Sr.);
    - twins: the same birth date and surname with first names below 0.88 (typos of one name
      stay above it 94% of the time; twins' names rarely reach it).
    """
    f = _f(dialect)
    household = "(last_name_l = last_name_r or address_key_l = address_key_r)"
    unrelated_names = (
        "first_name_l is not null and first_name_r is not null "
        f"and not {f['array_has']}(first_aliases_l, first_name_r) "
        f"and not {f['array_has']}(first_aliases_r, first_name_l) "
        f"and not (middle_name_l is not null and {f['starts_with']}(middle_name_l, first_name_r)) "
        f"and not (middle_name_r is not null and {f['starts_with']}(middle_name_r, first_name_l))"
        # one keystroke apart is a typo of one name ("IAN" / "IEN"), not two names, unless
        # the records say two sexes ("MARIO" / "MARIA")
        "and (damerau_levenshtein(first_name_l, first_name_r) > 1 "
        "or (sex_l is not null and sex_r is not null and sex_l <> sex_r))"
    )
    siblings = (f"{household} and {unrelated_names} "
                f"and {f['jaro_winkler']}(first_name_l, first_name_r) < 0.8")
    generations = (
        f"{household} and dob_l is not null and dob_r is not null "
        f"and abs({f['days_apart'].format(a='dob_l', b='dob_r')}) > 366 "
        "and damerau_levenshtein(dob_l, dob_r) > 1")
    twins = (f"dob_l = dob_r and last_name_l = last_name_r and {unrelated_names} "
             f"and {f['jaro_winkler']}(first_name_l, first_name_r) < 0.88")
    return cl.CustomComparison(
        output_column_name="household_guard",
        comparison_levels=[
            cll.CustomLevel(f"({siblings}) or ({generations}) or ({twins})",
                            label_for_charts="Two people of one household")
            .configure(m_probability=1e-9, u_probability=0.01,
                       fix_m_probability=True, fix_u_probability=True),
            cll.ElseLevel().configure(m_probability=1.0, u_probability=0.99,
                                      fix_m_probability=True, fix_u_probability=True),
        ],
    )


# Which pairs are scored at all. Birth date alone (or first name + birth year) made blocks
# that grow with the city: 40x the time for 10x the records. Every rule here pairs a key with
# another (a birth date with an initial or ZIP, a full name with a birth year, month-day or
# ZIP) or is a dwelling or an identifier, so its blocks are far smaller. They still grow with
# the city where the keys' values are bounded: on the synthetic city (bounded birth dates,
# name pools and ZIPs) the comparisons grew 52x for 10x the records, the stage time 6.3x
# (benchmarks/RESULTS.md). Each rule is there for pairs the others miss:
BLOCKING_RULES = [
    block_on("dob", "substr(first_name, 1, 1)"),   # the same child, surname changed or typed
    block_on("dob", "substr(last_name, 1, 1)"),    # a nickname (Bill / William) or a typo
    block_on("first_name", "last_name", "substr(dob, 1, 4)"),   # birth day or month slipped
    block_on("first_name", "last_name", "substr(dob, 6, 5)"),   # birth year slipped
    block_on("first_name", "last_name", "zip"),    # no birth date on one record
    # a first name typed two ways and a birth date slipped, in one ZIP
    block_on("last_name", "zip", "substr(first_name, 1, 1)", "substr(dob, 1, 4)"),
    block_on("last_name", "zip", "substr(first_name, 1, 1)", "substr(dob, 6, 5)"),
    block_on("first_name", "zip", "substr(dob, 1, 7)"),   # surname changed, birth day slipped
    # no usable name at all (missing, or a partner's junk in both): birth date and ZIP. Its
    # blocks grow with the city's density per ZIP; the benchmark counts them
    block_on("dob", "zip"),
    block_on("address_key"),                       # one dwelling (moved, and a slip or two)
    block_on("medicaid_id"),
    block_on("patient_id"),
]


def settings(dialect: str = "duckdb") -> SettingsCreator:
    """The model's settings, its hand-written levels in `dialect`'s SQL."""
    return SettingsCreator(
        link_type="dedupe_only",
        unique_id_column_name="unique_id",
        probability_two_random_records_match=0.0001,
        comparisons=[
            _first_name(dialect),
            _last_name(),
            _dob(),
            cl.ExactMatch("sex"),
            _address(),
            cl.ExactMatch("zip"),
            cl.ExactMatch("medicaid_id"),
            cl.ExactMatch("patient_id"),
            _guardian(),
            _household_guard(dialect),
        ],
        blocking_rules_to_generate_predictions=BLOCKING_RULES,
        retain_intermediate_calculation_columns=False,
        retain_matching_columns=False,
    )


def train(linker: Linker, seed: int = 42) -> None:
    """Unsupervised training on the records themselves (no labels exist in production)."""
    linker.training.estimate_probability_two_random_records_match(
        [block_on("first_name", "last_name", "dob"), block_on("medicaid_id"),
         block_on("patient_id")], recall=0.7)
    linker.training.estimate_u_using_random_sampling(max_pairs=2e6, seed=seed)
    # Two independent EM passes. Blocking on surname + ZIP would train a "household" model
    # (siblings share both), so names are trained within birth dates, and birth date and
    # address within full names.
    linker.training.estimate_parameters_using_expectation_maximisation(block_on("dob"))
    linker.training.estimate_parameters_using_expectation_maximisation(
        block_on("first_name", "last_name"))


def floored(model: dict, least: float = 1e-300) -> dict:
    """The trained model with no m or u probability below `least`. EM can drive a level no
    match ever reached to exactly 0, which Splink accepts while training but refuses when the
    saved model is loaded again (the next week's run): the floor keeps its weight as good as
    minus infinity and the model loadable."""
    for comparison in model["comparisons"]:
        for level in comparison["comparison_levels"]:
            for key in ("m_probability", "u_probability"):
                value = level.get(key)
                if value is not None and value < least:
                    level[key] = least
    return model


TF_COLUMNS = ("first_name", "last_name")


def _check_size(memory_limit: str) -> None:
    if not re.fullmatch(r"\d+(\.\d+)?\s*[KMGT]i?B", memory_limit.strip(), re.IGNORECASE):
        raise ValueError(f"linkage memory limit {memory_limit!r} is not a size such as 6GB")


def engine(memory_limit: str, spill: Path) -> tuple[duckdb.DuckDBPyConnection, DuckDBAPI]:
    """Splink's own in-memory DuckDB, bounded, spilling into `spill` (in the data dir, never
    the cwd)."""
    _check_size(memory_limit)
    con = duckdb.connect(":memory:")
    con.execute("SET enable_progress_bar = false")
    con.execute(f"SET memory_limit = '{memory_limit.strip()}'")
    spill.mkdir(parents=True, exist_ok=True)
    con.execute(f"SET temp_directory = '{spill.as_posix()}'")
    return con, DuckDBAPI(connection=con)


def engine_beside(store: duckdb.DuckDBPyConnection, memory_limit: str
                  ) -> tuple[duckdb.DuckDBPyConnection, DuckDBAPI, tuple[str, str]]:
    """Splink's tables in an in-memory database attached to `store`'s own DuckDB (a
    connection of its own, that database its default): for a run that scores a few records
    against many, which Splink then reads where they are instead of from a copy. The store's
    DuckDB is bounded by `memory_limit` meanwhile. Give it back with `release(con, restore)`."""
    _check_size(memory_limit)
    con = store.cursor()
    home = con.execute("select current_database()").fetchone()[0]
    # put back as it was: DuckDB shows a bound rounded (18.8 GiB set back reads 18.7 GiB), so
    # a store with DuckDB's own default gets the default again
    before = ("" if _is_default_memory_limit(con)
              else con.execute("select current_setting('memory_limit')").fetchone()[0])
    name = f"linkage_scratch_{uuid.uuid4().hex[:12]}"
    con.execute("SET enable_progress_bar = false")
    con.execute(f"SET memory_limit = '{memory_limit.strip()}'")
    con.execute(f"ATTACH ':memory:' AS {name}")
    con.execute(f"USE {name}")
    return con, DuckDBAPI(connection=con), (home, before)


def _is_default_memory_limit(con: duckdb.DuckDBPyConnection) -> bool:
    now = con.execute("select current_setting('memory_limit')").fetchone()[0]
    probe = duckdb.connect(":memory:")
    try:
        return probe.execute("select current_setting('memory_limit')").fetchone()[0] == now
    finally:
        probe.close()


def release(con: duckdb.DuckDBPyConnection, restore: tuple[str, str] | None = None) -> None:
    """Close Splink's engine. One made by `engine_beside` has its scratch database detached
    (the memory it held freed) and the store's memory bound put back first."""
    if restore is not None:
        home, before = restore
        scratch = con.execute("select current_database()").fetchone()[0]
        con.execute(f'USE "{home}"')
        con.execute(f"DETACH {scratch}")
        con.execute(f"SET memory_limit = '{before}'" if before else "RESET memory_limit")
    con.close()


def term_frequencies(records: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Splink's term-frequency lookups (value, share of the non-missing values), frozen when
    the model is trained: a week's records are scored with the frequencies the model was
    trained with, so scoring them alone gives what scoring every record together would."""
    out = {}
    for column in TF_COLUMNS:
        counts = records[column].dropna().value_counts()
        out[column] = pd.DataFrame({column: counts.index.astype(str),
                                    f"tf_{column}": (counts / counts.sum()).to_numpy()})
    return out


def train_model(db_api: DuckDBAPI, records: pd.DataFrame, model_path: Path, seed: int = 42,
                sample_max: int | None = None) -> None:
    """Train the city's model and save it beside its meta. Above `sample_max` records it is
    trained on a random sample of that many: u (random pairs), m (EM within blocks) and
    lambda (the share of pairs that match) are all ratios over pairs, which a uniform sample
    of records keeps, so training costs the same at any city size."""
    trained_on = records
    if sample_max and len(records) > sample_max:
        trained_on = records.sample(n=sample_max, random_state=seed).sort_values("unique_id")
    sdf = db_api.register(trained_on[LINK_COLUMNS].reset_index(drop=True))
    trainer = Linker(sdf, settings(), log_level=None)
    train(trainer, seed)
    model_path.parent.mkdir(parents=True, exist_ok=True)
    model_path.write_text(json.dumps(floored(trainer.misc.save_model_to_json()), indent=1))
    model_path.with_suffix(".meta.json").write_text(json.dumps(
        {"records": len(records), "sample": len(trained_on),
         "trained_at": datetime.now(UTC).isoformat()}))
    db_api.delete_tables_created_by_splink_from_db()


def model_fingerprint(model_path: Path) -> str:
    """Which trained model scored a set of pairs (pairs scored by another must be rescored)."""
    return hashlib.sha256(model_path.read_bytes()).hexdigest()[:16]


def pair_columns(model: dict) -> list[str]:
    """What a scored pair keeps, on either engine: its ids, its match weight and probability,
    and each comparison's weight (the evidence of why two records are one person)."""
    return ["unique_id_l", "unique_id_r", "match_weight", "match_probability",
            *(f"mw_{c['output_column_name']}" for c in model["comparisons"])]


def score_pairs(con: duckdb.DuckDBPyConnection, db_api: DuckDBAPI, model_path: Path,
                tf: dict[str, pd.DataFrame], new: str, existing: str | None,
                threshold: float) -> str:
    """Score, with the saved model and its frozen term frequencies, every blocked pair among
    the records of table `new` and between them and those of table `existing` (never among
    the existing ones: they were scored before). Returns the name of the table of pairs at
    or above `threshold`: ids, match weight and probability, and each comparison's weight."""
    model = json.loads(model_path.read_text())
    # the comparison levels of each pair are the evidence of why records are one person
    model["retain_intermediate_calculation_columns"] = True
    new_sdf = db_api.register(new)
    linker = Linker(new_sdf, model, log_level=None)
    for column, frame in tf.items():
        linker.table_management.register_term_frequency_lookup(
            db_api.register(frame), column)
    keep = ", ".join(pair_columns(model))
    found = [linker.inference.predict_within(new_sdf, threshold_match_probability=threshold,
                                             warning_mode="never")]
    if existing is not None:
        found.append(linker.inference.predict_between(
            new_sdf, db_api.register(existing), threshold_match_probability=threshold,
            warning_mode="never"))
    con.execute("create or replace table scored_pairs as "
                + " union all ".join(f"select {keep} from {f.physical_name}" for f in found))
    db_api.delete_tables_created_by_splink_from_db()
    return "scored_pairs"


def components(uids: list[str], edges: pd.DataFrame) -> list[str]:
    """Connected components of the links at or above the threshold: each record's cluster,
    named by its smallest unique_id (as Splink names them)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    order = np.argsort(np.asarray(uids, dtype=object), kind="stable")
    ordered = np.asarray(uids, dtype=object)[order]
    index = pd.Index(ordered)
    a = index.get_indexer(edges["unique_id_l"])
    b = index.get_indexer(edges["unique_id_r"])
    inside = (a >= 0) & (b >= 0)
    n = len(index)
    graph = coo_matrix((np.ones(int(inside.sum()), dtype=np.int8), (a[inside], b[inside])),
                       shape=(n, n))
    _, label = connected_components(graph, directed=False)
    # in sorted order a component's first member is its smallest
    _, first_at = np.unique(label, return_index=True)
    smallest = ordered[first_at][np.searchsorted(np.unique(label), label)]
    names = np.empty(n, dtype=object)
    names[order] = smallest
    return names.tolist()


def cluster(con: duckdb.DuckDBPyConnection, uids: list[str], pairs: str, threshold: float,
            cannot: set[frozenset[str]] | None = None, must: set[frozenset[str]] | None = None,
            rosters: dict[str, int] | None = None, overwhelming: float = 1.0
            ) -> tuple[pd.DataFrame, dict]:
    """Cluster the records `uids` on the scored pairs in table `pairs` at `threshold`,
    honouring `cannot` (never one person) and then `must` (one person, unless that would join
    a cannot pair). `rosters`: source -> how many leading parts of the record key (split on
    '-') name a roster; two records of one roster are kept apart unless their own match
    probability is at least `overwhelming`. Only identifiers leave this function."""
    edges = con.execute(f"select unique_id_l, unique_id_r from {pairs} "
                        "where match_probability >= ?", [threshold]).df()
    out = pd.DataFrame({"unique_id": uids, "cluster_id": components(uids, edges)})
    apart = roster_cannot_links(con, out, pairs, rosters or {}, overwhelming, must or set())
    split = _honour_cannot_links(con, out, pairs, threshold, (cannot or set()) | apart)
    joined = _honour_must_links(out, must or set(), cannot or set())
    return out, {"clusters_split_by_cannot_links": split, "roster_pairs_kept_apart": len(apart),
                 "clusters_joined_by_must_links": joined}


def _levels(model: dict) -> dict[str, tuple[np.ndarray, list[str]]]:
    """Each comparison's trained levels: their weights log2(m/u) and their labels."""
    levels: dict[str, tuple[np.ndarray, list[str]]] = {}
    for c in model["comparisons"]:
        name = c["output_column_name"]
        if name == "household_guard":
            continue
        ws, words = [], []
        for lv in c["comparison_levels"]:
            m, u = lv.get("m_probability"), lv.get("u_probability")
            if lv.get("is_null_level") or not m or not u:
                continue
            ws.append(np.log2(m / u))
            words.append(lv["label_for_charts"])
        levels[name] = (np.array(ws), words)
    return levels


def _explain(frame: pd.DataFrame, levels: dict[str, tuple[np.ndarray, list[str]]]) -> list[str]:
    """Each pair's fields in words with their weights ("first_name: exact (+6.1); ...")."""
    columns = []
    for name, (ws, words) in levels.items():
        mw = frame[f"mw_{name}"].to_numpy(dtype="float64")
        nearest = np.abs(mw[:, None] - ws[None, :]).argmin(axis=1) if len(ws) else []
        columns.append([f"{name}: {words[i]} ({w:+.1f})" if w != 0 else ""
                        for i, w in zip(nearest, mw, strict=True)])
    if not columns:
        return [""] * len(frame)
    return ["; ".join(p for p in parts if p) for parts in zip(*columns, strict=True)]


def review_candidates(con: duckdb.DuckDBPyConnection, pairs: str, model: dict,
                      clusters: str, threshold: float, size: int,
                      decided: set[frozenset[str]], flag_size: int | None = None
                      ) -> pd.DataFrame:
    """The `size` undecided pairs a reviewer should see, each with its fields in words,
    the final cluster of each record (the table `clusters`: unique_id, cluster_id), whether
    those put the two records together, and why it is queued.

    First, the weakest links inside each person with more than `flag_size` records (chained
    strangers break there), up to half the queue; then the pairs whose match weight is
    nearest the threshold's."""
    cols = ["unique_id_l", "unique_id_r", "match_weight", "match_probability", "comparison",
            "linked", "reason", "cluster_id_l", "cluster_id_r"]
    if size <= 0:
        return pd.DataFrame(columns=cols)
    levels = _levels(model)
    at = float(np.log2(threshold / (1 - threshold)))
    weights = ", ".join(f"mw_{n}" for n in levels)
    chosen = []
    if flag_size is not None:
        big = con.execute(
            f"select unique_id, cluster_id, n from (select unique_id, cluster_id, count(*) over "
            f"(partition by cluster_id) as n from {clusters}) where n > ?", [flag_size]).df()
        sizes = dict(zip(big["cluster_id"], big["n"], strict=True))
        if len(big):
            con.register("flagged_records", big[["unique_id", "cluster_id"]])
            weakest = con.execute(
                f"select p.unique_id_l, p.unique_id_r, p.match_weight, p.match_probability, "
                f"{', '.join(f'p.mw_{n}' for n in levels)}, a.cluster_id from {pairs} as p "
                "join flagged_records as a on a.unique_id = p.unique_id_l "
                "join flagged_records as b on b.unique_id = p.unique_id_r "
                "where a.cluster_id = b.cluster_id and p.match_probability >= ? "
                "order by p.match_weight, p.unique_id_l, p.unique_id_r limit ?",
                [threshold, size // 2 + len(decided)]).df()
            con.unregister("flagged_records")
            chosen.append(weakest.assign(reason=[
                f"a weak link inside a person with {sizes[c]} records (more than "
                f"{flag_size}: strangers may be chained)" for c in weakest.pop("cluster_id")]))
    near = con.execute(
        f"select unique_id_l, unique_id_r, match_weight, match_probability, {weights} "
        f"from {pairs} order by abs(match_weight - ?), unique_id_l, unique_id_r limit ?",
        [at, size + len(decided)]).df()
    chosen.append(near.assign(reason="near the match threshold"))
    frame = pd.concat(chosen, ignore_index=True)
    keys = [frozenset((a, b)) for a, b in zip(frame["unique_id_l"], frame["unique_id_r"],
                                               strict=True)]
    frame = frame[np.array([k not in decided for k in keys], dtype=bool)]
    frame = frame.drop_duplicates(["unique_id_l", "unique_id_r"])
    flagged = frame[frame["reason"] != "near the match threshold"].head(size // 2)
    frame = pd.concat([flagged, frame[frame["reason"] == "near the match threshold"]]
                      ).head(size).reset_index(drop=True)
    con.register("queued", frame[["unique_id_l", "unique_id_r"]])
    cluster_of = dict(con.execute(
        f"select unique_id, cluster_id from {clusters} where unique_id in "
        "(select unique_id_l from queued union select unique_id_r from queued)").fetchall())
    con.unregister("queued")
    out = frame[["unique_id_l", "unique_id_r", "match_weight", "match_probability"]].copy()
    out["comparison"] = _explain(frame, levels)
    out["linked"] = [cluster_of.get(a) == cluster_of.get(b)
                     for a, b in zip(out["unique_id_l"], out["unique_id_r"], strict=True)]
    out["reason"] = frame["reason"].to_numpy()
    out["cluster_id_l"] = out["unique_id_l"].map(cluster_of)
    out["cluster_id_r"] = out["unique_id_r"].map(cluster_of)
    return out[cols]


def roster_group(uid: str, rosters: dict[str, int]) -> str | None:
    """The roster a record belongs to under the roster rule, or None."""
    source, _, key = uid.partition(":")
    if source not in rosters:
        return None
    parts = rosters[source]
    return f"{source}:{'-'.join(key.split('-')[:parts])}" if parts else source


def roster_cannot_links(con: duckdb.DuckDBPyConnection, clusters: pd.DataFrame, pairs: str,
                        rosters: dict[str, int], overwhelming: float,
                        must: set[frozenset[str]]) -> set[frozenset[str]]:
    """Two records of one roster (one school's students, one household's members) in one
    cluster are two people: a cannot-link for this run, unless their own match probability is
    overwhelming or a reviewer said they are one."""
    if not rosters:
        return set()
    frame = clusters.assign(group=[roster_group(u, rosters) for u in clusters["unique_id"]])
    frame = frame[frame["group"].notna()]
    crowded = frame[frame.duplicated(["cluster_id", "group"], keep=False)]
    candidates = []
    for _, members in crowded.groupby(["cluster_id", "group"]):
        ids = sorted(members["unique_id"])
        candidates += [(a, b) for i, a in enumerate(ids) for b in ids[i + 1:]]
    if not candidates:
        return set()
    con.register("roster_pairs", pd.DataFrame(candidates, columns=["a", "b"]))
    strong = {frozenset(p) for p in con.execute(
        f"select r.a, r.b from roster_pairs as r join {pairs} as p on "
        "least(p.unique_id_l, p.unique_id_r) = least(r.a, r.b) and "
        "greatest(p.unique_id_l, p.unique_id_r) = greatest(r.a, r.b) "
        "where p.match_probability >= ?", [overwhelming]).fetchall()}
    con.unregister("roster_pairs")
    return {frozenset(p) for p in candidates} - strong - must


def _honour_must_links(clusters: pd.DataFrame, must: set[frozenset[str]],
                       cannot: set[frozenset[str]]) -> int:
    """Join, in place, the clusters of each must-link pair (a reviewer said: one person),
    unless the joined cluster would hold a cannot-link pair; returns how many joins."""
    cluster_of = dict(zip(clusters["unique_id"], clusters["cluster_id"], strict=True))
    members: dict[str, set[str]] = {}
    for uid, cid in cluster_of.items():
        members.setdefault(cid, set()).add(uid)
    joined = 0
    for pair in sorted(must, key=sorted):
        a, b = sorted(pair)
        if a not in cluster_of or b not in cluster_of or cluster_of[a] == cluster_of[b]:
            continue
        ca, cb = cluster_of[a], cluster_of[b]
        if any(frozenset((x, y)) in cannot for x in members[ca] for y in members[cb]):
            continue
        for uid in members[cb]:
            cluster_of[uid] = ca
        members[ca] |= members.pop(cb)
        joined += 1
    clusters["cluster_id"] = clusters["unique_id"].map(cluster_of)
    return joined


def link_evidence(con: duckdb.DuckDBPyConnection, pairs: str, model: dict,
                  clusters: pd.DataFrame, threshold: float) -> pd.DataFrame:
    """Each link inside a final cluster: its weight, and each field's comparison in words.

    Splink reports each comparison's match weight (`mw_<field>`); the level it came from is
    the one whose trained weight log2(m/u) it equals. A missing value weighs exactly 0.
    """
    levels = _levels(model)
    frame = con.execute(
        f"select unique_id_l, unique_id_r, match_weight, match_probability, "
        f"{', '.join(f'mw_{n}' for n in levels)} from {pairs} where match_probability >= ?",
        [threshold]).df()
    cluster_of = dict(zip(clusters["unique_id"], clusters["cluster_id"], strict=True))
    same = [cluster_of[a] == cluster_of[b]
            for a, b in zip(frame["unique_id_l"], frame["unique_id_r"], strict=True)]
    frame = frame[np.array(same, dtype=bool)]
    out = frame[["unique_id_l", "unique_id_r", "match_weight", "match_probability"]].copy()
    out["comparison"] = _explain(frame, levels)
    return out.reset_index(drop=True)


def _honour_cannot_links(con: duckdb.DuckDBPyConnection, clusters: pd.DataFrame, pairs: str,
                         threshold: float, cannot: set[frozenset[str]]) -> int:
    """Rebuild, in place, each cluster that holds a cannot-link pair; returns how many."""
    cluster_of = dict(zip(clusters["unique_id"], clusters["cluster_id"], strict=True))
    inside: dict[str, set[frozenset[str]]] = {}
    for pair in cannot:
        a, b = tuple(pair)
        if a in cluster_of and cluster_of.get(b) == cluster_of[a]:
            inside.setdefault(cluster_of[a], set()).add(pair)
    if not inside:
        return 0
    mask = clusters["cluster_id"].isin(inside)
    members = clusters.loc[mask, ["unique_id", "cluster_id"]]
    con.register("broken_members", members)
    # every link inside the broken clusters at once, strongest first (ties by id: the same
    # clusters whichever run builds them)
    edges = con.execute(
        f"select a.cluster_id, p.unique_id_l, p.unique_id_r, p.match_probability from {pairs} "
        "as p join broken_members as a on a.unique_id = p.unique_id_l join broken_members as b "
        "on b.unique_id = p.unique_id_r where a.cluster_id = b.cluster_id and "
        "p.match_probability >= ? order by p.match_probability desc, p.unique_id_l, "
        "p.unique_id_r", [threshold]).fetchall()
    con.unregister("broken_members")
    by_cluster: dict[str, list[tuple[str, str, float]]] = {}
    for cid, a, b, prob in edges:
        by_cluster.setdefault(cid, []).append((a, b, prob))
    names: dict[str, str] = {}
    for cid, group in members.groupby("cluster_id"):
        groups = constrained_clusters(group["unique_id"].tolist(), by_cluster.get(cid, []),
                                      inside[cid])
        names.update({u: f"{cid}~{g}" for u, g in groups.items()})
    clusters.loc[mask, "cluster_id"] = clusters.loc[mask, "unique_id"].map(names).to_numpy()
    return len(inside)


def spark_model(model: dict) -> dict:
    """The trained model (a DuckDB model JSON) for Splink's Spark backend: the same settings
    in Spark's SQL, with every trained parameter (each level's m and u, lambda) copied from
    `model`. A model whose comparisons differ from this code's is refused: retrain it."""
    ported = settings("spark").create_settings_dict("spark")
    trained, fresh = model["comparisons"], ported["comparisons"]
    shape = [(c["output_column_name"], [lv.get("label_for_charts") for lv in
                                        c["comparison_levels"]]) for c in trained]
    if shape != [(c["output_column_name"], [lv.get("label_for_charts") for lv in
                                            c["comparison_levels"]]) for c in fresh]:
        raise ValueError("the saved linkage model's comparisons differ from this code's "
                         "settings: retrain it (person_crosswalk config retrain: true) "
                         "before scoring on Spark")
    for old, new in zip(trained, fresh, strict=True):
        for old_level, new_level in zip(old["comparison_levels"], new["comparison_levels"],
                                        strict=True):
            for key in ("m_probability", "u_probability"):
                if old_level.get(key) is not None:
                    new_level[key] = old_level[key]
    ported["probability_two_random_records_match"] = model[
        "probability_two_random_records_match"]
    ported["linker_uid"] = model.get("linker_uid", ported.get("linker_uid"))
    return ported
