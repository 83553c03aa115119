"""Runs you can tell apart, and runs that died: tags, and clearing what a kill left behind.

Every run carries tags for its as-of date, data dir and trigger, and the process and host that
execute it. A run killed with SIGKILL never reports its end, so Dagster keeps it STARTED; with
one run at a time, the next one would wait behind it for good. At each CLI start and each
landing-sensor tick, a STARTED run whose process is gone from this host is marked failed.
"""

from __future__ import annotations

import os
import socket

PID, HOST = "plumbline/pid", "plumbline/host"


def process_tags() -> dict[str, str]:
    return {PID: str(os.getpid()), HOST: socket.gethostname()}


def run_tags(as_of: str, data_dir: str, trigger: str) -> dict[str, str]:
    return {"plumbline/as_of": as_of, "plumbline/data_dir": data_dir,
            "plumbline/trigger": trigger}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def fail_dead_runs(instance) -> int:
    """Mark failed every STARTED run whose process on this host is gone; returns how many."""
    from dagster import DagsterRunStatus, RunsFilter

    host, failed = socket.gethostname(), 0
    for run in instance.get_runs(RunsFilter(statuses=[DagsterRunStatus.STARTED])):
        pid = run.tags.get(PID)
        if pid and run.tags.get(HOST) == host and pid.isdigit() and not _alive(int(pid)):
            instance.report_run_failed(
                run, message=f"The process that ran it ({pid}) is gone, killed or crashed; "
                             "marked failed so the next run can start. Its work is redone by "
                             "the next run.")
            failed += 1
    return failed
