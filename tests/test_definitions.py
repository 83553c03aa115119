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
