"""DRAFT"""
from __future__ import annotations

import logging
import time

import networkx as nx
import numpy as np
import pandas as pd
import recordlinkage

STRING_THRESHOLD = 0.85


def _alias_match(a_name, a_alias, b_name, b_alias):
    out = np.zeros(len(a_name))
    for i, (an, aa, bn, ba) in enumerate(zip(a_name, a_alias, b_name, b_alias)):
        if an is None or bn is None:
            out[i] = np.nan
        elif an == bn or (ba is not None and an in ba) or (aa is not None and bn in aa):
            out[i] = 1.0
    return out


def _prepare(records):
    df = records.set_index("unique_id", drop=False).copy()
    df.index.name = None
    df = df.astype(object).where(df.notna(), None)
    df["birth_year"] = [d[:4] if isinstance(d, str) and len(d) >= 4 else None for d in df["dob"]]
    if "first_aliases" not in df:
        df["first_aliases"] = [[] for _ in range(len(df))]
    df["first_aliases"] = [set(a) if a is not None else set() for a in df["first_aliases"]]
    return df


def candidate_pairs(df):
    indexer = recordlinkage.Index()
    indexer.block("dob")
    indexer.block(["last_name", "zip"])
    indexer.block(["first_name", "birth_year"])
    indexer.block("address_key")
    indexer.block("medicaid_id")
    indexer.block("patient_id")
    return indexer.index(df)


def features(df, pairs, missing=0.0, thr=STRING_THRESHOLD):
    c = recordlinkage.Compare(n_jobs=1)
    kw = {} if thr is None else {"threshold": thr}
    c.string("first_name", "first_name", method="jarowinkler", missing_value=missing, label="first_name", **kw)
    c.compare_vectorized(_alias_match, ["first_name", "first_aliases"], ["first_name", "first_aliases"], label="first_alias")
    c.string("last_name", "last_name", method="jarowinkler", missing_value=missing, label="last_name", **kw)
    c.exact("dob", "dob", missing_value=missing, label="dob")
    c.exact("sex", "sex", missing_value=missing, label="sex")
    c.string("street_key", "street_key", method="jarowinkler", missing_value=missing, label="street", **kw)
    c.exact("address_key", "address_key", missing_value=missing, label="address")
    c.exact("zip", "zip", missing_value=missing, label="zip")
    c.exact("medicaid_id", "medicaid_id", missing_value=missing, label="medicaid_id")
    c.exact("patient_id", "patient_id", missing_value=missing, label="patient_id")
    return c.compute(pairs, df)


def components(ids, matches):
    g = nx.Graph()
    g.add_nodes_from(ids)
    g.add_edges_from(matches)
    rows = []
    for comp in nx.connected_components(g):
        cid = min(comp)
        rows.extend((u, cid) for u in comp)
    return pd.DataFrame(rows, columns=["unique_id", "cluster_id"])
