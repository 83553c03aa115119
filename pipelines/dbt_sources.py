"""The dbt sources, derived from the feed registry: `dbt_project/models/staging/__sources.yml`.

`plumbline prepare` writes the file when the registry changed, before dbt parses, so a feed
declared in `pipelines/feeds.py` is a dbt source (`source('src', '<table>')`) with no yml
edited by hand; the committed copy is checked against the registry by the tests.
"""

from __future__ import annotations

import json
from pathlib import Path

from pipelines.feeds import FEEDS, Feed
from pipelines.stores import REPO_ROOT
from pipelines.warehouse import src_tables

SOURCES_YML = REPO_ROOT / "dbt_project" / "models" / "staging" / "__sources.yml"

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
    lines = [HEADER.rstrip("\n")]
    for table, description in src_tables(feeds).items():
        lines += [f"      - name: {table}",
                  f"        description: {json.dumps(description, ensure_ascii=False)}",
                  f'        meta: {{dagster: {{asset_key: ["src", "{table}"]}}}}']
    return "\n".join(lines) + "\n"


def write_sources_yaml(path: Path = SOURCES_YML, feeds: tuple[Feed, ...] = FEEDS) -> bool:
    """Write the sources when they differ from the registry's; True when written."""
    text = sources_yaml(feeds)
    if path.exists() and path.read_text() == text:
        return False
    path.write_text(text)
    return True
