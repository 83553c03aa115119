"""The worker process that judges deliveries with Great Expectations (pipelines/worker.py)."""

import os
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from expectations.suites import validate
from pipelines.feeds import HEALTH
from pipelines.worker import Worker, WorkerFailed
from tests.test_ingest import GOOD


def cells(rows: list[dict[str, str]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=HEALTH.columns, dtype="object").map(
        lambda v: (v or "").strip() or None)


def test_the_worker_judges_as_the_suite_does_in_process() -> None:
    text = cells([GOOD, dict(GOOD, SAMPLE_DATE="02/30/2026"), dict(GOOD, RESULT="high")])
    worker = Worker()
    try:
        judged = worker.call("expectations.suites:judge", HEALTH, text, date(2026, 6, 30))
    finally:
        worker.stop()
    assert judged == validate(HEALTH, text, date(2026, 6, 30))[0]
    assert sorted(judged) == [1, 2]


def test_an_error_in_the_worker_is_raised_with_its_traceback_and_the_worker_serves_on() -> None:
    worker = Worker()
    try:
        with pytest.raises(WorkerFailed, match="(?s)int failed in Plumbline's worker.*ValueError"):
            worker.call("builtins:int", "not a number")
        assert worker.call("builtins:len", [1, 2, 3]) == 3
    finally:
        worker.stop()


def test_a_dead_worker_is_reported_and_the_next_request_starts_another() -> None:
    worker = Worker()
    try:
        first = worker.call("os:getpid")
        with pytest.raises(WorkerFailed, match="ended without answering"):
            worker.call("os:_exit", 3)
        second = worker.call("os:getpid")
        assert second != first
    finally:
        worker.stop()


def test_the_worker_ends_with_the_process_that_started_it(tmp_path) -> None:
    """A run killed without a goodbye leaves no worker behind."""
    script = ("import os, sys\nfrom pipelines.worker import WORKER\n"
              "print(WORKER.call('os:getpid'), flush=True)\nos._exit(0)\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True, timeout=120)
    pid = int(out.stdout.strip())
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        # a zombie has exited; its parent (gone) is no longer there to reap it
        status = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
        if status == "Z":
            return
        time.sleep(0.2)
    pytest.fail(f"the worker {pid} outlived the process that started it")


HELD: list[str] = []


def grow(n: int) -> int:
    """(Run in the worker) keep n small strings, as a judged delivery's cells leave behind."""
    HELD.extend(f"cell {i}" for i in range(n))
    return len(HELD)


def held() -> int:
    return len(HELD)


def test_a_worker_that_grew_starts_afresh_when_idle() -> None:
    """After a large delivery the worker's heap is given back: it replaces itself (same pipe,
    same process id) once no request has come for a second, and answers as before."""
    worker = Worker()
    try:
        pid = worker.call("os:getpid")
        assert worker.call("tests.test_worker:grow", 3_000_000) == 3_000_000
        time.sleep(6)  # idle: the worker runs itself again, Great Expectations loaded anew
        assert worker.call("tests.test_worker:held") == 0
        assert worker.call("os:getpid") == pid
        text = cells([GOOD, dict(GOOD, RESULT="high")])
        assert worker.call("expectations.suites:judge", HEALTH, text, date(2026, 6, 30)) == {
            1: [("RESULT", validate(HEALTH, text, date(2026, 6, 30))[0][1][0][1])]}
    finally:
        worker.stop()
