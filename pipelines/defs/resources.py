"""Configuration reaches assets through resources; paths and secrets never live in asset code."""

from __future__ import annotations

import os

import dagster as dg

from pipelines.runs import PID, process_tags
from pipelines.stores import SPARK_CONF_DIR, Settings, load_settings


class PlumblineSettings(dg.ConfigurableResource):
    """Where the stores live and the as-of date: from PLUMBLINE_* environment variables.

    Left blank, each field falls back to its environment variable (read at run time, so a
    schedule or sensor run picks up the deployment's settings).
    """

    data_dir: str = ""
    landing: str = ""
    as_of: str = ""

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        """Tag the run with the process and host that execute it, so a run killed with
        SIGKILL can be told from one still working (pipelines/runs.py)."""
        run = context.run
        if context.instance is not None and run is not None and PID not in run.tags:
            context.instance.add_run_tags(run.run_id, process_tags())

    def settings(self) -> Settings:
        if self.data_dir:
            os.environ["PLUMBLINE_DATA_DIR"] = self.data_dir
        if self.landing:
            os.environ["PLUMBLINE_LANDING"] = self.landing
        if self.as_of:
            os.environ["PLUMBLINE_AS_OF"] = self.as_of
        s = load_settings()
        # dbt's profiles.yml reads the same variable: make it absolute for the dbt subprocess
        os.environ["PLUMBLINE_DATA_DIR"] = str(s.data_dir)
        # and the as-of date its models are built for (dbt_project/macros/as_of.sql)
        os.environ["PLUMBLINE_DBT_AS_OF"] = s.as_of.isoformat()
        # each dbt invocation's artifacts go to the data dir, not into the repository
        os.environ["DBT_TARGET_PATH"] = str(s.data_dir / "dbt_runs")
        # dbt picks its profile target from the engine (profiles.yml); on Spark, its session
        # logs through the project's log4j settings
        os.environ["PLUMBLINE_ENGINE"] = s.engine
        os.environ["PLUMBLINE_SPARK_CONF"] = str(SPARK_CONF_DIR)
        return s
