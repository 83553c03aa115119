"""The pseudonymous warehouse: src tables from the vault, then the dbt project over them."""


import hashlib
import importlib.metadata
import json
import shutil
from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
from dagster_dbt import DagsterDbtTranslator, DbtCliResource, DbtProject, dbt_assets
from packaging import version

from pipelines.dbt_manifest import DBT_DIR, current_manifest, dbt_executable
from pipelines.dbt_ready import launcher as ready_dbt_launcher
from pipelines.defs.resources import PlumblineSettings
from pipelines.publish import draw_early
from pipelines.stores import checkpointing, connect, engine_from_env, has_table, warehouse_lock
from pipelines.warehouse import SRC_TABLES, build_sources, refresh_sources

ENGINE = engine_from_env()  # where the warehouse is built: DuckDB files, or Spark

dbt_project = DbtProject(project_dir=DBT_DIR, profiles_dir=DBT_DIR)  # artifacts: target/


class PlumblineDbtCli(DbtCliResource):
    """dagster-dbt's resource without two costs it adds before each dbt invocation, 5-6 s a
    run on a 2-core machine whatever the city's size:
    - a `dbt --version` process to learn dbt's version: dbt-core is installed beside Dagster
      (`dbt_executable` runs the one in this environment), so its package version is read;
    - a dbt adapter opened in this process (project and profile loaded again), which dagster-dbt
      uses only for its optional row-count and column metadata; `table_metadata` below reads
      those from the warehouse itself, and with no adapter dagster-dbt skips them."""

    @cached_property
    def _cli_version(self) -> version.Version:
        return version.parse(importlib.metadata.version("dbt-core"))

    def _initialize_dbt_core_adapter(self, args: list[str]) -> None:
        return None


def dbt_resource() -> DbtCliResource:
    """dbt for the definitions; under `plumbline run`, the launcher of a dbt process started
    ahead of the step (pipelines/dbt_ready.py), which runs the installed dbt when it must."""
    return PlumblineDbtCli(project_dir=dbt_project,
                           dbt_executable=ready_dbt_launcher() or dbt_executable())


@dg.multi_asset(
    group_name="warehouse",
    specs=[dg.AssetSpec(["src", name], group_name="warehouse", owners=["team:data-engineering"],
                        deps=["person_crosswalk", "raw_housing__inspections",
                              "raw_providers__contracts", "raw_feedback__alert_feedback"],
                        kinds={"parquet", "spark"} if ENGINE == "spark" else {"duckdb"},
                        description=f"Warehouse table src.{name}: pseudonymous, every version.")
           for name in SRC_TABLES],
)
def warehouse_sources(context: dg.AssetExecutionContext, plumbline: PlumblineSettings):
    """Copy what dbt may see from the vault to the warehouse, pseudonymised on the way."""
    settings = plumbline.settings()
    # the warehouse's lock before the vault, as every step that holds both takes them
    with warehouse_lock(settings.data_dir), connect(settings.vault_path) as vault:
        if settings.engine == "spark":
            from pipelines.spark import write_spark_sources

            tables = build_sources(vault, settings.pseudonym_key)
            write_spark_sources(tables, settings.spark_dir / "src")
            counts = {name: {"rows": frame.num_rows, "written": frame.num_rows}
                      for name, frame in tables.items()}
        else:  # what the week changed, each table written as the next is built
            with connect(settings.warehouse_path) as wh:
                counts = refresh_sources(vault, wh, settings.pseudonym_key)
    for name, n in counts.items():
        yield dg.MaterializeResult(asset_key=["src", name], metadata={
            "rows": dg.MetadataValue.int(n["rows"]),
            "rows_written": dg.MetadataValue.int(n["written"])})


def describe_test(node: Mapping[str, Any], table: str) -> str:
    """A dbt test in one sentence, from its manifest node (name, column and arguments)."""
    if node.get("description"):
        return node["description"]
    meta = node.get("test_metadata") or {}
    kwargs = meta.get("kwargs") or {}
    column = kwargs.get("column_name") or "the row"
    name = meta.get("name") or node.get("name", "test")
    if name == "not_null":
        return f"Every row of {table} has a {column}."
    if name == "unique":
        return f"No two rows of {table} share a {column}."
    if name == "accepted_values":
        values = ", ".join(str(v) for v in kwargs.get("values") or [])
        return f"{column} in {table} is always one of: {values}."
    if name == "relationships":
        field = kwargs.get("field", "")
        target = str(kwargs.get("to", "")).replace("ref('", "").replace("')", "")
        return f"Every {column} in {table} is found in {target}.{field}."
    if name == "grain":
        cols = ", ".join(kwargs.get("columns") or [])
        if kwargs.get("unique", True):
            return f"One row of {table} per {cols}, none of them missing."
        return f"Every row of {table} has its {cols}."
    if name == "unique_combination_of_columns":
        cols = ", ".join(kwargs.get("combination_of_columns") or [])
        return f"No two rows of {table} share the same {cols} (one row per {cols})."
    if name == "expression_is_true":
        return f"In every row of {table}: {kwargs.get('expression', '')}."
    first = (node.get("raw_code") or "").strip().splitlines()
    comment = first[0].lstrip("-{# ").strip() if first and first[0].lstrip().startswith(
        ("--", "{#")) else ""
    return comment or f"dbt test {name} on {table}" + (f".{column}" if kwargs else "")


class PlumblineDbtTranslator(DagsterDbtTranslator):
    """dbt models keep their table names as asset keys; groups follow the dbt layer and its
    folder, so the UI shows readable groups instead of one tangle; owners come from dbt `meta`
    (`owner`), else the data-engineering team."""

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        if dbt_resource_props["resource_type"] == "seed":
            return "rules"
        fqn = dbt_resource_props.get("fqn", [])
        if "marts" in fqn:
            return "marts"
        if "staging" in fqn:
            return "staging"
        for folder, group in (("alerts", "alert_rules"), ("policy", "policy"),
                              ("datalab", "datalab_events")):
            if folder in fqn:
                return group
        return "intermediate"

    def get_asset_spec(self, manifest, unique_id, project):
        """The engine the warehouse is built on, as its kind (the manifest is parsed once,
        for DuckDB; on Spark, dbt builds the same models through dbt-spark)."""
        spec = super().get_asset_spec(manifest, unique_id, project)
        if ENGINE == "spark":
            spec = spec.replace_attributes(kinds={"dbt", "spark", *(spec.kinds & {"view"})})
        return spec

    def get_asset_check_spec(self, asset_spec, manifest, unique_id, project):
        """dbt's generic tests carry no description; each check says in words what it holds."""
        spec = super().get_asset_check_spec(asset_spec, manifest, unique_id, project)
        if spec is None or spec.description:
            return spec
        node = manifest.get("nodes", {}).get(unique_id, {})
        return spec._replace(description=describe_test(node, asset_spec.key.path[-1]))

    def get_owners(self, dbt_resource_props: Mapping[str, Any]) -> list[str]:
        owner = (dbt_resource_props.get("meta") or {}).get("owner") or (
            dbt_resource_props.get("config", {}).get("meta") or {}).get("owner")
        return [owner or "team:data-engineering"]


@dbt_assets(
    manifest=current_manifest(),
    project=dbt_project,
    dagster_dbt_translator=PlumblineDbtTranslator(),
)
def plumbline_dbt(context: dg.AssetExecutionContext, dbt: DbtCliResource,
                  plumbline: PlumblineSettings):
    """`dbt build`: seeds (the rule tables), models and their tests, as of PLUMBLINE_AS_OF."""
    settings = plumbline.settings()
    with warehouse_lock(settings.data_dir):
        # unit tests check the SQL, not the data: CI runs them (tests/test_rules_as_data.py
        # builds the project with them), production builds skip them. The as-of date reaches
        # dbt as PLUMBLINE_DBT_AS_OF (set by the resource), not as a var: dbt re-parses the whole
        # project when a var changes, and only the models that read an env var when it does.
        # the rule tables (seeds) load again only when they changed since this warehouse got
        # them, or when this is not a build of the whole project (a subset picked in the UI)
        whole = set(context.selected_asset_keys) == set(context.assets_def.keys)
        seeds = Seeds(settings.warehouse_path) if settings.engine == "duckdb" and whole else None
        skip = seeds is not None and seeds.loaded()
        excluded = "resource_type:unit_test" + (" resource_type:seed" if skip else "")
        # the vault is not read or written while dbt builds: its checkpoint is written now
        with checkpointing(settings.vault_path):
            invocation = dbt.cli(["build", "--exclude", excluded], context=context)
            events = list(invocation.stream())
        keep_parse_state(invocation.target_path, settings.data_dir / "dbt_runs")
        if seeds is not None and not skip:
            seeds.record(invocation.target_path / "run_results.json")
        if settings.engine == "spark":
            # the Python stages read what dbt built on Spark through views over its Parquet
            from pipelines.spark import mirror_warehouse

            with connect(settings.warehouse_path) as wh:
                mirror_warehouse(wh, settings.spark_dir / "warehouse")
        # dbt is done with the file: each table's row count and every model's columns
        with connect(settings.warehouse_path, read_only=True) as wh:
            described = table_metadata(wh)
            draw_early(wh)  # the publication's charts, drawn while the lists are written
    for event in events:
        if isinstance(event, dg.Output):
            key = context.asset_key_for_output(event.output_name)
            extra = described.get(key.path[-1])
            if extra:
                event = event.with_metadata({**event.metadata, **extra})
        yield event
    prune_dbt_runs(settings.data_dir / "dbt_runs")


class Seeds:
    """Whether the warehouse's rule tables are the project's seeds as they are now.

    `dbt build` drops and loads every seed (and runs its tests) each time: a dozen of a build's
    hundred nodes, the same rows every week. After a build that loaded them all, their
    fingerprint (each seed file's checksum and its config, from the parsed project, and the
    dbt versions) and each table's row count are kept in the warehouse (`meta.seed_build`). A
    later whole build leaves them out when the fingerprint is the same and every table is
    there with its rows; anything else (a changed CSV or column type, a warehouse replaced or
    restored, a table dropped or emptied, a build that failed) loads them all again."""

    def __init__(self, warehouse: Path) -> None:
        self.warehouse = warehouse
        manifest = json.loads(current_manifest().read_text())
        self.nodes = {uid: node for uid, node in manifest["nodes"].items()
                      if node["resource_type"] == "seed"}
        # the seeds' own tests (a rule code listed twice) pass before the seeds count as loaded
        self.tests = {uid for uid, node in manifest["nodes"].items()
                      if node["resource_type"] == "test" and node["depends_on"]["nodes"]
                      and set(node["depends_on"]["nodes"]) <= set(self.nodes)}
        self.fingerprint = self.fingerprint_of(self.nodes)

    @staticmethod
    def fingerprint_of(nodes: Mapping[str, Any]) -> str:
        described = sorted([uid, node["checksum"], node["config"], node["relation_name"]]
                           for uid, node in nodes.items())
        versions = [importlib.metadata.version(p) for p in ("dbt-core", "dbt-duckdb")]
        return hashlib.sha256(
            json.dumps([described, versions], sort_keys=True, default=str).encode()).hexdigest()

    def _tables(self) -> list[tuple[str, str]]:
        return sorted((n["schema"], n["alias"] or n["name"]) for n in self.nodes.values())

    def loaded(self) -> bool:
        if not self.warehouse.exists():
            return False
        with connect(self.warehouse, read_only=True) as wh:
            if not has_table(wh, "meta", "seed_build"):
                return False
            try:
                kept = wh.execute("select fingerprint, seed_schema, seed_table, row_count "
                                  "from meta.seed_build").fetchall()
            except duckdb.Error:  # written by another release: load the seeds again
                return False
            if {k[0] for k in kept} != {self.fingerprint}:
                return False
            if sorted((k[1], k[2]) for k in kept) != self._tables():
                return False
            present = {(s, t) for s, t in wh.execute(
                "select table_schema, table_name from information_schema.tables "
                "where table_type = 'BASE TABLE'").fetchall()}
            return all((schema, table) in present and wh.execute(
                f'select count(*) from "{schema}"."{table}"').fetchone()[0] == rows
                for _, schema, table, rows in kept)

    def record(self, run_results: Path) -> None:
        """After a build that loaded the seeds: keep their fingerprint if every one loaded,
        else forget it (the next whole build loads them again)."""
        try:
            results = json.loads(run_results.read_text())["results"]
        except (OSError, ValueError, KeyError):
            results = []
        ok = {r["unique_id"] for r in results if r.get("status") in ("success", "pass")}
        with connect(self.warehouse) as wh:
            wh.execute("create schema if not exists meta")
            wh.execute("create or replace table meta.seed_build (fingerprint varchar, "
                       "seed_schema varchar, seed_table varchar, row_count bigint)")
            if not (set(self.nodes) | self.tests) <= ok:
                return
            for schema, table in self._tables():
                rows = wh.execute(f'select count(*) from "{schema}"."{table}"').fetchone()[0]
                wh.execute("insert into meta.seed_build values (?, ?, ?, ?)",
                           [self.fingerprint, schema, table, rows])


def table_metadata(wh) -> dict[str, dict[str, Any]]:
    """Per relation in the warehouse: its column schema, and its row count when it is a table
    (a view's count would re-run its query)."""
    out: dict[str, dict[str, Any]] = {}
    relations = wh.execute("select table_schema, table_name, table_type "
                           "from information_schema.tables where table_schema <> 'src'").fetchall()
    columns: dict[tuple[str, str], list[dg.TableColumn]] = {}
    for schema, table, column, kind in wh.execute(
            "select table_schema, table_name, column_name, data_type from "
            "information_schema.columns order by table_schema, table_name, ordinal_position"
    ).fetchall():
        columns.setdefault((schema, table), []).append(dg.TableColumn(column, kind))
    for schema, table, kind in relations:
        meta: dict[str, Any] = {
            "dagster/column_schema": dg.TableSchema(columns=columns.get((schema, table), []))}
        if kind == "BASE TABLE":
            meta["dagster/row_count"] = dg.MetadataValue.int(int(wh.execute(
                f'select count(*) from "{schema}"."{table}"').fetchall()[0][0]))
        out[table] = meta
    return out


def keep_parse_state(target: Path, runs: Path) -> None:
    """Keep this invocation's partial_parse.msgpack where dagster-dbt looks for it before the
    next (DBT_TARGET_PATH, the data dir's dbt_runs/), so next week's dbt re-parses only what
    changed (2-5 s saved a run). dbt checks it against the project's files, its profile and
    its version itself, and parses in full when anything differs."""
    state = target / "partial_parse.msgpack"
    if state.is_file():
        shutil.copyfile(state, runs / ".partial_parse.tmp")
        (runs / ".partial_parse.tmp").replace(runs / "partial_parse.msgpack")


def prune_dbt_runs(folder: Path, keep: int = 5) -> None:
    """Each dbt invocation leaves its artifacts in a folder of its own (about 1.6 MB): keep the
    newest few for debugging, not every run's forever."""
    if not folder.is_dir():
        return
    runs = sorted((p for p in folder.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime)
    for old in runs[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
