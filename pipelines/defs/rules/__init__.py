"""The rule tables only the Python stages read, drawn upstream of what they drive.

Each is a CSV in seeds/ that a city edits (settings, cadences, list columns, data-lab
outcomes). dbt does not load them (no model reads them); here each is an asset of the `rules`
group, beside the dbt seeds, so the UI draws the line from the file to the ingest, linkage,
list and data-lab assets that read it. Their descriptions are the same as in seeds/_seeds.yml.
"""

from __future__ import annotations

import dagster as dg
import yaml

from pipelines.stores import SEEDS_DIR

RULE_FILES = ("ingest_settings", "feed_cadence", "linkage_settings", "list_columns",
              "agency_lists", "datalab_settings", "datalab_strata", "datalab_outcomes")


def _descriptions() -> dict[str, str]:
    with open(SEEDS_DIR / "_seeds.yml", encoding="utf-8") as fh:
        doc = yaml.safe_load(fh) or {}
    return {s["name"]: " ".join(str(s.get("description", "")).split())
            for s in doc.get("seeds", [])}


def rule_file_specs() -> list[dg.AssetSpec]:
    described = _descriptions()
    return [dg.AssetSpec(
        key=name, group_name="rules", owners=["team:data-engineering"], kinds={"csv"},
        description=(f"seeds/{name}.csv: {described.get(name, '')} Read by the Python stages; "
                     "edit the file, the next run uses it."),
        metadata={"path": dg.MetadataValue.path(str(SEEDS_DIR / f"{name}.csv"))})
        for name in RULE_FILES]


rule_files = rule_file_specs()
