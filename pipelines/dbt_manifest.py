"""The dbt manifest the asset graph is read from: parsed before Dagster loads, never on import.

Every way in parses first when the project changed: `plumbline run` and `demo`, `make ui`
(`plumbline prepare`), the tests (conftest) and the benchmarks. Loading the definitions only
checks the manifest is current and says how to make it so, as dagster-dbt's
`prepare-and-package` step does for a deployment.
"""

from __future__ import annotations

import fcntl
import shutil
import subprocess
import sys
from pathlib import Path

from pipelines.stores import REPO_ROOT

DBT_DIR = REPO_ROOT / "dbt_project"
TARGET = DBT_DIR / "target"
MANIFEST = TARGET / "manifest.json"


def dbt_executable() -> str:
    """dbt from this interpreter's environment, so an un-activated .venv still finds it."""
    beside = Path(sys.executable).parent / "dbt"
    return str(beside) if beside.exists() else (shutil.which("dbt") or "dbt")


def manifest_is_stale() -> bool:
    """The manifest is missing, or older than a file of the dbt project or its seeds."""
    if not MANIFEST.exists():
        return True
    return project_changed_since(MANIFEST.stat().st_mtime)


def project_changed_since(when: float) -> bool:
    """A file of the dbt project or its seeds was modified after `when` (a modification time)."""
    sources = [*(DBT_DIR / d for d in ("models", "macros", "tests")), REPO_ROOT / "seeds"]
    files = [DBT_DIR / "dbt_project.yml", DBT_DIR / "profiles.yml",
             *(f for d in sources for f in d.rglob("*"))]
    return any(f.is_file() and f.stat().st_mtime > when for f in files)


def prepare() -> Path:
    """Write what the dbt project derives from the registry and the rule seeds (its sources,
    its list of rule models), then parse the dbt project when its
    manifest is stale; one process at a time."""
    from pipelines.dbt_sources import write_derived

    TARGET.mkdir(exist_ok=True)
    with open(TARGET / ".parse.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        write_derived()
        if manifest_is_stale():
            done = subprocess.run(
                [dbt_executable(), "parse", "--quiet", "--project-dir", str(DBT_DIR),
                 "--profiles-dir", str(DBT_DIR), "--target-path", str(TARGET)],
                capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise RuntimeError(f"dbt parse failed:\n{done.stdout}{done.stderr}")
    return MANIFEST


def current_manifest() -> Path:
    """The manifest, if it is current; else an error that says what to run."""
    if manifest_is_stale():
        raise RuntimeError(
            f"The dbt manifest ({MANIFEST}) is missing or older than the dbt project. Run "
            "`plumbline prepare` (`make ui`, `plumbline run` and the tests do it for you).")
    return MANIFEST
