"""The Dagster Definitions load, and the whole graph materializes in-process."""

from __future__ import annotations

import dagster as dg

from pipelines.synth.generator import generate_city
from tests.conftest import AS_OF, plumbline_env


def test_definitions_hold_every_stage() -> None:
    from pipelines.definitions import defs

    keys = {k.to_user_string() for k in defs.resolve_all_asset_keys()}
    assert {"raw_health__blood_lead", "raw_housing__inspections", "raw_housing__residents",
            "raw_schools__enrollment", "raw_providers__services", "raw_providers__contracts",
            "person_crosswalk", "src/health_tests", "rules/lead_bands", "rules/rule_windows",
            "intermediate/int_lead_confirmations", "marts/lead_alerts", "alert_lists"} <= keys
    job = defs.resolve_implicit_global_asset_job_def()
    assert job.executor_def.name == "in_process"


def test_whole_graph_materializes_in_process(tmp_path, monkeypatch) -> None:
    generate_city(tmp_path / "city", people=300, seed=5, as_of=AS_OF)
    for k, v in plumbline_env(tmp_path / "data", tmp_path / "city" / "landing").items():
        if k.startswith(("PLUMBLINE_", "DAGSTER_HOME")):
            monkeypatch.setenv(k, v)
    from pipelines.definitions import defs

    with dg.DagsterInstance.ephemeral() as instance:
        result = defs.resolve_implicit_global_asset_job_def().execute_in_process(instance=instance)
    assert result.success
    materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()
                    if e.asset_key}
    assert {"raw_health__blood_lead", "person_crosswalk", "marts/lead_alerts",
            "alert_lists"} <= materialized
    checks = [e.event_specific_data for e in result.all_events
              if e.event_type_value == "ASSET_CHECK_EVALUATION"]
    assert checks and all(c.passed for c in checks)
    assert (tmp_path / "data" / "outbox" / "health" / f"alerts_{AS_OF:%Y%m%d}.csv").exists()
    # what the resource did, not what the test set: dbt's artifacts went into the data dir
    assert list((tmp_path / "data" / "dbt_runs").glob("*/run_results.json"))


def test_run_history_storage_keeps_every_event(tmp_path) -> None:
    """A `plumbline run` home stores events through PlumblineEventLogStorage (one engine, no
    disk flush per commit): every event is written and read back, by this process and by a
    fresh instance (as the webserver reads them), and its connections run synchronous=NORMAL."""
    from pipelines.cli import prepare_dagster_home
    from pipelines.dagster_storage import PlumblineEventLogStorage

    home = tmp_path / "dagster_home"
    prepare_dagster_home(home)
    keys = [dg.AssetKey(["marts", f"table_{i}"]) for i in range(5)]
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert isinstance(instance.event_log_storage, PlumblineEventLogStorage)
        for i in range(60):
            instance.report_runless_asset_event(
                dg.AssetMaterialization(asset_key=keys[i % 5], metadata={"rows": i}))
        with instance.event_log_storage.index_connection() as conn:
            assert conn.exec_driver_sql("pragma synchronous").scalar() == 1  # NORMAL
            assert conn.exec_driver_sql("pragma journal_mode").scalar() == "wal"
    with dg.DagsterInstance.from_config(str(home)) as again:
        for j, key in enumerate(keys):
            records = again.fetch_materializations(key, limit=100).records
            rows = sorted(r.asset_materialization.metadata["rows"].value for r in records)
            assert rows == list(range(j, 60, 5))


def test_an_older_plumbline_home_gets_the_faster_storage(tmp_path) -> None:
    """A home written by an earlier Plumbline (Dagster's consolidated storage) is moved to the
    same tables through PlumblineEventLogStorage; a home an operator configured otherwise, or
    made their own, is left as it is."""
    from pipelines.cli import EVENT_STORAGE, OLD_EVENT_STORAGE, prepare_dagster_home

    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    prepare_dagster_home(ours)
    current = (ours / "dagster.yaml").read_text()
    older = current.replace(EVENT_STORAGE, OLD_EVENT_STORAGE)
    assert older != current
    (ours / "dagster.yaml").write_text(older)
    prepare_dagster_home(ours)
    assert (ours / "dagster.yaml").read_text() == current

    theirs.mkdir()
    own = "# my instance\nevent_log_storage:\n" + OLD_EVENT_STORAGE + "  config:\n    base_dir: x\n"
    (theirs / "dagster.yaml").write_text(own)
    prepare_dagster_home(theirs)
    assert (theirs / "dagster.yaml").read_text() == own


SPECS = r"""
import json, sys
if sys.argv[1] == "dbt-core first":
    import dagster_dbt  # dagster-dbt as it loads on its own: with dbt-core
from pipelines.definitions import defs

graph = defs.resolve_asset_graph()
out = {"dbt modules": sorted(m for m in sys.modules if m == "dbt" or m.startswith("dbt."))[:3]}
for key in graph.get_all_asset_keys():
    node = graph.get(key)
    out[key.to_user_string()] = [sorted(k.to_user_string() for k in node.parent_keys),
                                 node.description, node.group_name, sorted(node.owners),
                                 sorted(node.kinds), node.code_version,
                                 sorted(k for k in node.metadata if "translator" not in k)]
for check in graph.asset_check_keys:
    spec = graph.get_check_spec(check)
    out[f"{check.asset_key.to_user_string()}:{check.name}"] = [
        spec.description, spec.blocking,
        sorted(d.asset_key.to_user_string() for d in spec.additional_deps)]
print(json.dumps(out, sort_keys=True))
"""


def test_definitions_load_dagster_dbt_without_dbt_core() -> None:
    """The definitions load dagster-dbt without importing dbt-core (dbt runs in a process of its
    own), and every asset and check comes out as dagster-dbt builds them with dbt-core."""
    import json
    import subprocess
    import sys

    def specs(mode: str) -> dict:
        done = subprocess.run([sys.executable, "-c", SPECS, mode], capture_output=True,
                              text=True, check=True)
        return json.loads(done.stdout)

    light, full = specs("light"), specs("dbt-core first")
    assert light.pop("dbt modules") == []
    assert full.pop("dbt modules")  # the comparison did load dbt-core
    assert len([k for k in light if k.startswith("marts/")]) >= 5
    assert light == full
