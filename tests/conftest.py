"""Shared fixtures: one small generated city, run once through `plumbline run` as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from pipelines.synth.generator import generate_city

AS_OF = date(2026, 6, 30)


def pytest_configure(config: pytest.Config) -> None:
    """The dbt manifest, as `plumbline prepare` writes it, before any test loads the graph."""
    from pipelines.dbt_manifest import prepare

    prepare()
PLUMBLINE = Path(sys.executable).parent / "plumbline"


@dataclass
class City:
    root: Path
    landing: Path
    truth: Path

    def planted(self) -> pd.DataFrame:
        return pd.read_csv(self.truth / "planted_cases.csv", dtype=str).fillna("")

    def records(self) -> pd.DataFrame:
        return pd.read_csv(self.truth / "records.csv", dtype=str)


@dataclass
class Run:
    city: City
    data_dir: Path
    stdout: str
    returncode: int


def plumbline_env(data_dir: Path, landing: Path, as_of: date = AS_OF) -> dict[str, str]:
    env = dict(os.environ)
    env.update(PLUMBLINE_DATA_DIR=str(data_dir), PLUMBLINE_LANDING=str(landing),
               PLUMBLINE_AS_OF=as_of.isoformat(), PLUMBLINE_PSEUDONYM_KEY="test-key-not-secret",
               DAGSTER_HOME=str(data_dir / "dagster_home"))
    return env


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(PLUMBLINE), *args], env=env, capture_output=True, text=True, check=False,
                          timeout=900)


@pytest.fixture(scope="session")
def city(tmp_path_factory: pytest.TempPathFactory) -> City:
    root = tmp_path_factory.mktemp("city")
    generate_city(root, people=800, seed=11, as_of=AS_OF, mess="normal")
    return City(root, root / "landing", root / "ground_truth")


@pytest.fixture(scope="session")
def pipeline_run(city: City, tmp_path_factory: pytest.TempPathFactory) -> Run:
    data_dir = tmp_path_factory.mktemp("data")
    proc = run_cli("run", env=plumbline_env(data_dir, city.landing))
    return Run(city, data_dir, proc.stdout + proc.stderr, proc.returncode)
