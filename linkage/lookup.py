"""Finding people who are already linked, without linking anyone new.

The data lab (and anything else that must look people up) scores outside records against the
person-records in the vault with the city's trained model, and reads each match's person_id from
the crosswalk. Nothing is written: `linkage.person_crosswalk` and every person_id stay exactly as
they were. A record that matches nobody above the threshold is unlinked; one that matches records
of two different persons is ambiguous. Neither is guessed.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import duckdb
import pandas as pd

from linkage import standardise as S
from linkage.model import LINK_COLUMNS  # it silences Splink's logger before Splink loads

PERSON_RECORDS_SQL = """
select r.unique_id, r.first_name, r.middle_name, r.last_name, r.dob, r.sex, r.address_key,
       r.street_key, r.zip, r.medicaid_id, r.patient_id, r.guardian_first, r.guardian_last,
       c.person_id
from linkage.person_records as r
join linkage.person_crosswalk as c using (source, record_key)
"""


@lru_cache(maxsize=200_000)
def _aliases(first_name: str | None) -> tuple[str, ...]:
    return S.first_name_aliases(first_name)


def find_persons(vault: duckdb.DuckDBPyConnection, records: pd.DataFrame, model_path: Path,
                 threshold: float) -> pd.DataFrame:
    """For each standardised record (`unique_id` + the link columns): its person, if one.

    Returns unique_id, person_id (None unless exactly one person matched), match_probability
    (the best), and status: LINKED, UNLINKED or AMBIGUOUS.
    """
    from splink import DuckDBAPI, Linker  # after linkage.model has silenced Splink's logger

    if not model_path.exists():
        raise RuntimeError("there is no trained linkage model yet: run the linkage stage first")
    existing = vault.execute(PERSON_RECORDS_SQL).df()
    existing["first_aliases"] = [list(_aliases(n)) for n in existing["first_name"]]
    person_of = dict(zip(existing["unique_id"], existing["person_id"], strict=True))
    con = duckdb.connect(":memory:")
    try:
        con.execute("SET enable_progress_bar = false")
        db_api = DuckDBAPI(connection=con)
        known = db_api.register(existing[LINK_COLUMNS], table_name="known_records")
        incoming = db_api.register(records[LINK_COLUMNS], table_name="incoming_records")
        model = json.loads(model_path.read_text())
        linker = Linker(known, model, log_level=None)
        # term frequencies come from the city's records, as when the model was applied to them
        for column in ("first_name", "last_name"):
            linker.table_management.compute_tf_table(column)
        pairs = linker.inference.predict_between(
            known, incoming, threshold_match_probability=threshold).as_pandas_dataframe()
    finally:
        con.close()
    incoming_ids = set(records["unique_id"])
    matches: dict[str, dict[str, float]] = {}
    for a, b, p in zip(pairs["unique_id_l"], pairs["unique_id_r"], pairs["match_probability"],
                       strict=True):
        new, old = (a, b) if a in incoming_ids else (b, a)
        if old not in person_of:
            continue
        best = matches.setdefault(new, {})
        pid = person_of[old]
        best[pid] = max(best.get(pid, 0.0), float(p))
    rows = []
    for uid in records["unique_id"]:
        found = matches.get(uid, {})
        if not found:
            rows.append((uid, None, None, "UNLINKED"))
        elif len(found) > 1:
            rows.append((uid, None, max(found.values()), "AMBIGUOUS"))
        else:
            ((pid, p),) = found.items()
            rows.append((uid, pid, p, "LINKED"))
    return pd.DataFrame(rows, columns=["unique_id", "person_id", "match_probability", "status"])
