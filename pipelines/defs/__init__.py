"""Plumbline's Dagster definitions, by stage.

dagster-dbt is loaded here, before any stage imports it, without dbt-core: the definitions
need only the manifest (`pipelines/dbt_manifest.py`), and dbt itself runs as a process of its
own (`pipelines/dbt_ready.py`). dagster-dbt imports dbt-core when it can, some 240 modules
(2.5-3 s of every run's start and every code-server load on a 2-core machine), to select
nodes with dbt's graph and to open a dbt adapter in this process; where dbt-core cannot be
imported it reads the same manifest with its own types (the path it takes for dbt Fusion). The
project selects every node (`fqn:*`, which that path reads straight from the manifest), and
`PlumblineDbtCli` already reads dbt's version from its package and opens no adapter. The asset
and check specs come out the same either way (tests/test_definitions.py).
"""

import importlib.metadata
import sys


def _load_dagster_dbt_without_dbt_core() -> None:
    if "dagster_dbt" in sys.modules:  # loaded before the definitions: as it is
        return
    hidden = sys.modules.get("dbt.version")
    sys.modules["dbt.version"] = None  # type: ignore[assignment]  # import raises ImportError
    try:
        import dagster_dbt  # noqa: F401
        from dagster_shared.libraries import DagsterLibraryRegistry
    finally:
        if hidden is None:
            del sys.modules["dbt.version"]
        else:  # dbt was loaded already (a test's in-process dbt): it stays loaded
            sys.modules["dbt.version"] = hidden
    # dagster-dbt then registers "dbt-fusion" as the engine the UI lists: name the real one
    DagsterLibraryRegistry._libraries.pop("dbt-fusion", None)
    DagsterLibraryRegistry.register("dbt-core", importlib.metadata.version("dbt-core"),
                                    is_dagster_package=False)


_load_dagster_dbt_without_dbt_core()
