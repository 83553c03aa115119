"""The rules are data, time travel works, and the dbt project documents itself."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import duckdb
import pandas as pd

from pipelines.stores import REPO_ROOT
from tests.conftest import AS_OF, Run, plumbline_env, run_cli

DBT = Path(sys.executable).parent / "dbt"


def copy_project(tmp: Path, run: Run) -> tuple[Path, Path]:
    """A copy of the dbt project and seeds, and of the run's warehouse, to change freely."""
    shutil.copytree(REPO_ROOT / "dbt_project", tmp / "dbt_project",
                    ignore=shutil.ignore_patterns("target", "logs"))
    shutil.copytree(REPO_ROOT / "seeds", tmp / "seeds")
    data = tmp / "data"
    data.mkdir()
    shutil.copyfile(run.data_dir / "warehouse.duckdb", data / "warehouse.duckdb")
    return tmp / "dbt_project", data


def dbt(project: Path, data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PLUMBLINE_DATA_DIR=str(data), DBT_PROFILES_DIR=str(project),
               DBT_TARGET_PATH=str(project / "target"))
    return subprocess.run([str(DBT), *args], cwd=project, env=env, capture_output=True,
                          text=True, check=False, timeout=600)


def open_alerts(data: Path) -> pd.DataFrame:
    with duckdb.connect(str(data / "warehouse.duckdb"), read_only=True) as con:
        return con.execute("select * from marts.lead_alerts where status = 'OPEN'").df()


def health_person_id(run: Run, case: str) -> str:
    planted = run.city.planted()
    true_id = planted[planted.case == case].true_person_id.iloc[0]
    truth = run.city.records()
    keys = truth[(truth.true_person_id == true_id) & (truth.source == "health")].record_key
    with duckdb.connect(str(run.data_dir / "vault.duckdb"), read_only=True) as con:
        cw = con.execute("select * from linkage.person_crosswalk where source = 'health'").df()
    (pid,) = set(cw[cw.record_key.isin(keys)].person_id)
    return pid


def test_changing_a_window_in_the_seed_changes_the_alerts(pipeline_run: Run, tmp_path: Path
                                                          ) -> None:
    project, data = copy_project(tmp_path, pipeline_run)
    vars_ = f'{{as_of: "{AS_OF}"}}'
    assert dbt(project, data, "build", "--vars", vars_).returncode == 0
    capillary_only = health_person_id(pipeline_run, "CAPILLARY_ONLY")
    before = open_alerts(data)
    assert capillary_only in set(before.person_id)  # band A, 120 days without a venous test

    windows = pd.read_csv(tmp_path / "seeds" / "rule_windows.csv")
    windows.loc[(windows.rule_code == "CONFIRMATORY_TEST_OVERDUE") & (windows.band == "A"),
                "window_days"] = 180
    windows.to_csv(tmp_path / "seeds" / "rule_windows.csv", index=False)
    result = dbt(project, data, "build", "--vars", vars_)
    assert result.returncode == 0, result.stdout[-2000:]
    after = open_alerts(data)
    assert capillary_only not in set(after.person_id)
    assert set(after.alert_id) < set(before.alert_id)


def test_a_new_rule_version_applies_from_its_effective_date(pipeline_run: Run,
                                                            tmp_path: Path) -> None:
    project, data = copy_project(tmp_path, pipeline_run)
    windows = pd.read_csv(tmp_path / "seeds" / "rule_windows.csv")
    newer = windows[windows.rule_code == "CONFIRMATORY_TEST_OVERDUE"].assign(
        window_days=180, rule_version="2026.2", effective_from=str(AS_OF + timedelta(days=1)))
    pd.concat([windows, newer]).to_csv(tmp_path / "seeds" / "rule_windows.csv", index=False)
    capillary_only = health_person_id(pipeline_run, "CAPILLARY_ONLY")
    assert dbt(project, data, "build", "--vars", f'{{as_of: "{AS_OF}"}}').returncode == 0
    assert capillary_only in set(open_alerts(data).person_id)  # the old version still rules
    later = AS_OF + timedelta(days=1)
    assert dbt(project, data, "build", "--vars", f'{{as_of: "{later}"}}').returncode == 0
    assert capillary_only not in set(open_alerts(data).person_id)


def test_time_travel_raises_what_the_data_known_then_would_have(pipeline_run: Run,
                                                                tmp_path: Path) -> None:
    """Three weeks back: Zoë's test was not yet delivered; Freddie was 21 days less overdue."""
    data = tmp_path / "data"
    shutil.copytree(pipeline_run.data_dir, data, ignore=shutil.ignore_patterns("dagster_home"))
    freddie = health_person_id(pipeline_run, "FREDDIE_GRAY")
    zoe = health_person_id(pipeline_run, "ACCENTED")
    now = open_alerts(data)
    assert zoe in set(now.person_id)
    past = AS_OF - timedelta(days=21)
    proc = run_cli("run", env=plumbline_env(data, pipeline_run.city.landing, as_of=past))
    assert proc.returncode == 0, proc.stderr[-2000:]
    then = open_alerts(data)
    assert zoe not in set(then.person_id)  # reported and delivered after that date
    key = ["rule_code", "alert_id"]
    f_now = now[now.person_id == freddie].set_index(key).days_overdue
    f_then = then[then.person_id == freddie].set_index(key).days_overdue
    assert len(f_now) == 2 and (f_now - f_then == 21).all()
    assert (data / "outbox" / "health" / f"alerts_{past:%Y%m%d}.csv").exists()


def test_dbt_docs_generate_works(pipeline_run: Run, tmp_path: Path) -> None:
    project, data = copy_project(tmp_path, pipeline_run)
    result = dbt(project, data, "docs", "generate", "--vars", f'{{as_of: "{AS_OF}"}}')
    assert result.returncode == 0, result.stdout[-2000:]
    assert (project / "target" / "catalog.json").exists()
    assert (project / "target" / "index.html").exists()


def test_every_model_and_seed_is_documented() -> None:
    import json

    from pipelines.defs.warehouse.assets import dbt_project

    manifest = json.loads(dbt_project.manifest_path.read_text())
    undocumented = [n["name"] for n in manifest["nodes"].values()
                    if n["resource_type"] in ("model", "seed") and not n["description"].strip()]
    assert undocumented == []


def test_switching_the_schools_rule_off_removes_it_everywhere(pipeline_run: Run,
                                                              tmp_path: Path) -> None:
    def seen(data: Path) -> tuple[int, bool, bool]:
        with duckdb.connect(str(data / "warehouse.duckdb"), read_only=True) as con:
            alerts = con.execute("select count(*) from marts.lead_alerts where rule_code = "
                                 "'LEARNING_SUPPORT_REVIEW_OVERDUE'").fetchall()[0][0]
            columns = {c for (c,) in con.execute(
                "select column_name from information_schema.columns "
                "where table_name = 'policy_lead_followup_by_band'").fetchall()}
            schools = con.execute("select count(*) from marts.agency_timeliness_monthly "
                                  "where agency = 'schools'").fetchall()[0][0]
        return alerts, "learning_support_review_due" in columns, schools > 0

    assert seen(pipeline_run.data_dir) == (seen(pipeline_run.data_dir)[0], True, True)
    assert seen(pipeline_run.data_dir)[0] > 0
    project, data = copy_project(tmp_path, pipeline_run)
    rules = pd.read_csv(project.parent / "seeds" / "alert_rules.csv", dtype=str)
    rules.loc[rules.rule_code == "LEARNING_SUPPORT_REVIEW_OVERDUE", "enabled"] = "false"
    rules.to_csv(project.parent / "seeds" / "alert_rules.csv", index=False)
    proc = dbt(project, data, "build", "--vars", f'{{as_of: "{AS_OF}"}}',
               "--exclude", "resource_type:unit_test")
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert seen(data) == (0, False, False)
