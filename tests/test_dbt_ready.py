"""dbt started ahead of the dbt step (pipelines/dbt_ready.py): the launcher dagster-dbt runs as
"dbt" hands its command to the waiting process, or runs the installed dbt itself."""

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipelines.dbt_manifest import DBT_DIR, dbt_executable
from pipelines.dbt_ready import ReadyDbt, launcher


@pytest.fixture()
def ready() -> Iterator[ReadyDbt]:
    keep = dict(os.environ)
    r = ReadyDbt()
    r.prepare(dbt_executable())
    try:
        yield r
    finally:
        r.close()
        os.environ.clear()
        os.environ.update(keep)


def dbt(*args: str) -> subprocess.CompletedProcess:
    """What dagster-dbt does: the executable it was given, output piped, in the project."""
    exe = launcher()
    assert exe is not None
    return subprocess.run([exe, *args], capture_output=True, text=True, cwd=DBT_DIR,
                          env=dict(os.environ), timeout=120, check=False)


def served(r: ReadyDbt) -> int | None:
    """The waiting process's exit code once it has ended (it serves one command), else None."""
    assert r._process is not None
    try:
        return r._process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        return None


def test_the_waiting_process_runs_the_command_and_ends(ready: ReadyDbt) -> None:
    ready.start()
    done = dbt("--help")
    assert done.returncode == 0, done.stderr
    assert "Usage: dbt [OPTIONS]" in done.stdout
    assert served(ready) == 0  # it ran there: the waiting process took it and ended


def test_dbt_s_exit_code_and_error_come_through_the_launcher(ready: ReadyDbt) -> None:
    ready.start()
    done = dbt("build", "--no-such-option")
    assert done.returncode == 2
    assert "No such option" in done.stdout + done.stderr
    assert served(ready) == 0


def test_without_a_waiting_process_the_launcher_runs_the_installed_dbt(ready: ReadyDbt) -> None:
    # prepared, never started (a run from the UI has neither): the installed dbt runs
    done = dbt("--help")
    assert done.returncode == 0 and "Usage: dbt" in done.stdout


def test_a_waiting_process_that_died_leaves_the_command_to_the_installed_dbt(
        ready: ReadyDbt) -> None:
    ready.start()
    assert ready._process is not None
    ready._process.kill()
    ready._process.wait()
    done = dbt("build", "--no-such-option")
    assert done.returncode == 2 and "No such option" in done.stdout + done.stderr


def test_a_second_command_in_one_run_runs_the_installed_dbt(ready: ReadyDbt) -> None:
    ready.start()
    assert dbt("--help").returncode == 0
    assert served(ready) == 0
    second = dbt("--help")
    assert second.returncode == 0 and "Usage: dbt" in second.stdout


def test_the_waiting_process_ends_with_the_run_that_never_needed_it(ready: ReadyDbt) -> None:
    ready.start()
    process = ready._process
    assert process is not None
    time.sleep(0.5)
    ready.close()
    assert process.poll() is not None
    assert launcher() is None and "PLUMBLINE_DBT_READY" not in os.environ


def test_an_interrupt_sent_to_the_launcher_stops_dbt(ready: ReadyDbt, tmp_path) -> None:
    """Dagster cancels a dbt step by sending SIGINT to the process it started."""
    import signal

    ready.start()
    time.sleep(2)  # dbt loaded
    started = subprocess.Popen(
        [launcher(), "parse", "--no-partial-parse"], cwd=DBT_DIR, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=dict(os.environ, PLUMBLINE_DATA_DIR=str(tmp_path), DBT_TARGET_PATH=str(tmp_path)))
    assert started.stdout is not None
    first = started.stdout.readline()  # dbt has started ("Running with dbt=...")
    started.send_signal(signal.SIGINT)
    out, _ = started.communicate(timeout=60)
    assert b"dbt" in first
    assert started.returncode != 0 and b"KeyboardInterrupt" in out
    assert served(ready) == 0  # dbt ran in the waiting process, and it is gone


def test_where_the_launcher_could_not_run_dbt_runs_as_it_always_did(monkeypatch) -> None:
    """A temporary folder mounted noexec (hardened servers): no launcher, no waiting process."""
    import pipelines.dbt_ready as ready_module

    class NoExec:
        f_flag = getattr(os, "ST_NOEXEC", 8)

    monkeypatch.setattr(ready_module.os, "statvfs", lambda path: NoExec())
    r = ReadyDbt()
    assert r.prepare(dbt_executable()) is False
    assert launcher() is None and r._folder is None
    r.start()
    assert r._process is None
    r.close()


def test_the_waiting_process_parses_ahead_from_the_saved_state(ready: ReadyDbt, tmp_path) -> None:
    data = tmp_path / "data"
    os.environ["PLUMBLINE_DATA_DIR"] = str(data)
    # the parse state a build keeps in the data dir (pipelines/defs/warehouse/assets.py)
    subprocess.run([dbt_executable(), "parse", "--target-path", str(data / "dbt_runs")],
                   cwd=DBT_DIR, env=dict(os.environ), capture_output=True, check=True,
                   timeout=300)
    ready.start()
    assert ready._folder is not None
    warm = ready._folder / "warm"
    deadline = time.monotonic() + 120
    while not (warm / "manifest.json").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert (warm / "manifest.json").exists()  # parsed ahead, into the run's private folder
    done = dbt("ls", "--resource-type", "seed", "--target-path", str(tmp_path / "target"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "plumbline.lead_bands" in done.stdout
    assert served(ready) == 0  # the command ran in the process that parsed ahead
    assert sorted(p.name for p in data.iterdir()) == ["dbt_runs"]  # no database opened
    ready.close()
    assert not warm.exists()


KILLED_RUN = r"""
import sys, time
from pipelines.dbt_manifest import dbt_executable
from pipelines.dbt_ready import ReadyDbt

r = ReadyDbt()
r.prepare(dbt_executable())
r.start()
print(r._folder, r._process.pid, flush=True)
time.sleep(600)  # killed before it gets to close()
"""


def test_a_killed_run_leaves_no_folder_behind(tmp_path) -> None:
    """`plumbline run` killed (SIGKILL, or a SIGTERM it does not catch) never reaches close():
    the waiting process sees the run gone, removes the run's folder and ends."""
    import signal

    run = subprocess.Popen([sys.executable, "-c", KILLED_RUN], stdout=subprocess.PIPE,
                           text=True, env=dict(os.environ, PLUMBLINE_DATA_DIR=str(tmp_path)))
    assert run.stdout is not None
    folder, pid = run.stdout.readline().split()
    assert Path(folder).is_dir() and (Path(folder) / "dbt").exists()
    run.send_signal(signal.SIGKILL)
    run.wait()
    deadline = time.monotonic() + 90  # the waiting process first finishes importing dbt
    while time.monotonic() < deadline and Path(folder).exists():
        time.sleep(0.2)
    assert not Path(folder).exists()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not _ended(int(pid)):
        time.sleep(0.2)
    assert _ended(int(pid))


def _ended(pid: int) -> bool:
    """The process is gone, or a zombie waiting to be reaped."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_a_killed_process_group_s_folder_is_swept_by_the_next_run(ready: ReadyDbt) -> None:
    """A kill of the whole process group (a service manager's stop) takes the waiting process
    too: the next run's prepare() removes that folder, and leaves a live run's alone."""
    import signal

    from pipelines.dbt_ready import sweep_stale_folders

    run = subprocess.Popen([sys.executable, "-c", KILLED_RUN], stdout=subprocess.PIPE,
                           text=True, start_new_session=True)
    assert run.stdout is not None
    folder = Path(run.stdout.readline().split()[0])
    os.killpg(run.pid, signal.SIGKILL)
    run.wait()
    time.sleep(0.5)
    assert folder.is_dir()  # nobody was left to remove it
    live = ready._folder
    assert live is not None and live.is_dir()
    assert sweep_stale_folders() >= 1
    assert not folder.exists() and live.is_dir()
