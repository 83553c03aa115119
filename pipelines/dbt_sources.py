"""What the dbt project derives from the registry and the rule seeds, written before it parses.

- `dbt_project/models/staging/__sources.yml`: the dbt sources, from the feed registry, so a
  feed declared in `pipelines/feeds.py` is `source('src', '<table>')` with no yml edited.
- `dbt_project/macros/latest_version.sql`: each versioned source's latest-version rule (its
  key and semantics), from the feed registry.
- `dbt_project/macros/alert_rule_models.sql`: the rule models the alerts mart and the policy
  facts union, from `seeds/alert_rules.csv`, so a new rule is its model and its seed rows.
  (dbt resolves refs when it parses, before any seed is loaded or the graph exists, so the
  list cannot be discovered inside dbt.)

`plumbline prepare` writes each when it differs; the tests check the committed copies.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from pipelines.feeds import FEEDS, Feed
from pipelines.stores import REPO_ROOT
from pipelines.warehouse import src_tables

SOURCES_YML = REPO_ROOT / "dbt_project" / "models" / "staging" / "__sources.yml"
RULE_MODELS_SQL = REPO_ROOT / "dbt_project" / "macros" / "alert_rule_models.sql"
LATEST_VERSION_SQL = REPO_ROOT / "dbt_project" / "macros" / "latest_version.sql"
RULE_MODELS_DIR = REPO_ROOT / "dbt_project" / "models" / "intermediate" / "alerts"
ALERT_RULES = REPO_ROOT / "seeds" / "alert_rules.csv"

HEADER = """\
# Written by `plumbline prepare` from the feed registry (pipelines/feeds.py: src_table and
# src_description); edit the registry, not this file.
version: 2

sources:
  - name: src
    description: >
      Pseudonymous tables loaded by the warehouse_sources asset from the vault. No names,
      street lines, full birth dates or partner record ids: persons by person_id, records
      and dwellings by keyed pseudonyms. Every version a partner sent is kept.
    schema: src
    tables:
"""


def sources_yaml(feeds: tuple[Feed, ...] = FEEDS) -> str:
    """Each source with its description and its Dagster asset."""
    lines = [HEADER.rstrip("\n")]
    for table, description in src_tables(feeds).items():
        lines += [f"      - name: {table}",
                  f"        description: {json.dumps(description, ensure_ascii=False)}",
                  f'        meta: {{dagster: {{asset_key: ["src", "{table}"]}}}}']
    return "\n".join(lines) + "\n"


def latest_version_macro(feeds: tuple[Feed, ...] = FEEDS) -> str:
    """The `latest_version(source_table)` macro: each versioned source's rule (its key and its
    semantics, from the registry): a record's latest version, kept from a call block's rows."""
    rules = {}
    for f in feeds:
        if f.warehouse_table and not f.answers_lists and f.semantics in (
                "latest_reported", "latest_extract", "incremental"):
            partition, order = f.warehouse_versions()
            rules[f.warehouse_table] = (", ".join(partition), ", ".join(order))
    listed = "".join(f"        '{t}': {{'partition_by': '{p}', 'order_by': '{o}'}},\n"
                     for t, (p, o) in rules.items())
    return (
        "{#- Written by `plumbline prepare` from the feed registry (pipelines/feeds.py: each\n"
        "    feed's src_key and semantics): each record's latest version of a warehouse source,\n"
        "    kept from the rows of the call block. One rule for every model that reads versions;\n"
        "    portable SQL (no `qualify`), so DuckDB and Spark run the same. -#}\n"
        "{% macro latest_version(source_table) -%}\n"
        "    {%- set rules = {\n" + listed + "    } -%}\n"
        "    {%- set rule = rules[source_table] -%}\n"
        "    {{ first_of(caller(), rule.partition_by, rule.order_by) }}\n"
        "{%- endmacro %}\n")


def rule_models(seed: Path = ALERT_RULES, models: Path = RULE_MODELS_DIR) -> list[str]:
    """int_alerts__<rule_code in lower case> for every rule of the seed, in its order. A rule
    without its model, or a rule model without its seed row, is an error that says which."""
    with open(seed, newline="") as fh:
        codes = [r["rule_code"] for r in csv.DictReader(fh)]
    names = [f"int_alerts__{code.lower()}" for code in codes]
    present = {p.stem for p in models.glob("int_alerts__*.sql")}
    missing = [n for n in names if n not in present]
    unlisted = sorted(present - set(names))
    if missing or unlisted:
        raise ValueError(
            "each alert rule is one model in dbt_project/models/intermediate/alerts/ and one "
            "row of seeds/alert_rules.csv: "
            + "; ".join([*(f"no model {n}.sql for its seed row" for n in missing),
                         *(f"no seed row for {n}.sql" for n in unlisted)]))
    return names


def rule_models_macro(names: list[str]) -> str:
    listed = "".join(f"        '{n}',\n" for n in names)
    return (
        "{#- Written by `plumbline prepare` from seeds/alert_rules.csv: every rule's model\n"
        "    (int_alerts__<rule_code in lower case>), the one list the alerts mart and the\n"
        "    policy facts union. Add a rule's model and its seed rows, not a line here. -#}\n"
        "{% macro alert_rule_models() -%}\n"
        f"    {{{{ return([\n{listed}    ]) }}}}\n"
        "{%- endmacro %}\n")


def write_derived() -> list[Path]:
    """Everything the dbt project derives, written where it changed; the paths written (a file
    left as it was keeps its time, so dbt does not parse again for nothing)."""
    written = []
    for path, text in ((SOURCES_YML, sources_yaml()),
                       (RULE_MODELS_SQL, rule_models_macro(rule_models())),
                       (LATEST_VERSION_SQL, latest_version_macro())):
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
            written.append(path)
    return written
