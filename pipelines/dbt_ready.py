"""dbt, loaded before the run needs it.

dagster-dbt runs `dbt build` as a process of its own when the dbt step starts. On a 2-core
machine that process spends about 1.7 s importing dbt-core and its DuckDB adapter before it
does anything, and about 0.5 s unloading them after its last line: some 2 s of every run,
whatever the city's size, while the first core waits.

`plumbline run` therefore starts one dbt process early (`python -m pipelines.dbt_ready`): it
imports dbt while the run ingests and links, then waits. dagster-dbt still starts "dbt" for the
step, with its arguments, environment and working directory, and reads its output as ever; the
executable it starts is a small launcher (written to a private folder each run), which hands
those to the waiting process along with its own stdin, stdout and stderr, and exits with dbt's
exit code. The waiting process runs dbt's own command line (`dbt.cli.main.cli`) once, exactly as
the `dbt` script would, runs the script's exit handlers (dbt-duckdb closes its database there),
and ends without unloading anything.

Nothing else changes: the same dbt, the same files, the same output stream. Whenever the
waiting process is not there (runs from the UI or the daemon, a second dbt command in one run,
a process that died), the launcher runs the installed `dbt` itself. An interrupt sent to the
launcher (Dagster's cancel) is passed on to dbt.

The launcher reaches the waiting process through a socket in a folder only this user can read,
and the waiting process serves only a process of the same user.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import traceback
from pathlib import Path

# the launcher dagster-dbt starts as "dbt": the standard library only, so it starts in
# milliseconds (run with -IS: no site packages, no user environment)
LAUNCHER = r'''
import json, os, signal, socket, struct, sys

args = sys.argv[1:]
real = os.environ["PLUMBLINE_DBT_REAL"]


def run_it_here():
    if pending:  # cancelled before dbt started
        sys.exit(130)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.execvp(real, [real, *args])


pid = 0
pending = []


def forward(signum, frame):
    """An interrupt (Dagster's cancel) goes to dbt, or waits until dbt's process is known."""
    if not pid:
        pending.append(signum)
        return
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


for sig in (signal.SIGINT, signal.SIGTERM):
    signal.signal(sig, forward)
path = os.environ.get("PLUMBLINE_DBT_READY", "")
if not path or not os.path.exists(path):
    run_it_here()
conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
try:
    conn.connect(path)
    request = json.dumps({"argv": args, "cwd": os.getcwd(), "env": dict(os.environ)}).encode()
    socket.send_fds(conn, [struct.pack("!I", len(request))], [0, 1, 2])
    conn.sendall(request)
    taken = b""
    while len(taken) < 8:
        chunk = conn.recv(8 - len(taken))
        if not chunk:
            break
        taken += chunk
except OSError:
    taken = b""
if len(taken) < 8:  # gone before it took the command: nothing ran, so run it here
    conn.close()
    run_it_here()
pid = int.from_bytes(taken, "big")
for signum in pending:
    forward(signum, None)
code = b""
while len(code) < 4:
    try:
        chunk = conn.recv(4 - len(code))
    except InterruptedError:
        continue
    if not chunk:
        break
    code += chunk
if len(code) < 4:
    sys.stderr.write("dbt ended without an exit code: its process died (pid %d)\n" % pid)
    sys.exit(1)
sys.exit(int.from_bytes(code, "big", signed=True))
'''

# imported while waiting: the command line, the DuckDB adapter, and what a build loads
PRELOAD = ("dbt.cli.main", "dbt.adapters.duckdb", "dbt.adapters.duckdb.impl",
           "dbt.task.build", "dbt.parser.manifest", "dbt.contracts.graph.manifest")


def _receive_exact(conn: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            raise EOFError("the launcher went away")
        data += chunk
    return data


def _preload() -> None:
    """Import dbt with only the CPU time nobody else wants (Linux's SCHED_IDLE, for this thread
    alone): on a 2-core machine the run's linkage and src tables use both cores, and this
    import is worth only what it saves. dbt itself runs later in the main thread, and the
    threads it starts, at the normal priority. If dbt is needed before the import is done, the
    run waits for it with the CPU to itself."""
    from importlib import import_module

    with contextlib.suppress(AttributeError, OSError):  # not Linux: an ordinary import
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    for name in PRELOAD:
        import_module(name)
    warm = os.environ.get("PLUMBLINE_DBT_WARM")
    if warm:
        _warm_up(Path(warm))


def _warm_up(folder: Path) -> None:
    """Run `dbt parse` once on the project, into a scratch folder, with the parse state the last
    build kept: it reads the project, the profile and that state exactly as the coming build
    will, and so compiles, once per process, what dbt compiles on first use (its schema
    validators, its (de)serialisers, the manifest's writers), about 1-2 s of a build's start.
    It opens no database and writes only into `folder`; whatever goes wrong here, the build
    runs as it would have."""
    from pipelines.dbt_manifest import DBT_DIR, project_changed_since

    state = Path(os.environ.get("PLUMBLINE_DATA_DIR", "")) / "dbt_runs" / "partial_parse.msgpack"
    # none kept yet (the first run), or the project changed since: dbt would parse it all here,
    # for as long as the build will again, and the build could be kept waiting for it
    if not state.is_file() or project_changed_since(state.stat().st_mtime):
        return
    with contextlib.suppress(Exception):
        from dbt.cli.main import dbtRunner

        folder.mkdir(mode=0o700, exist_ok=True)
        shutil.copyfile(state, folder / "partial_parse.msgpack")
        dbtRunner().invoke(["--log-level", "none", "--log-level-file", "none", "parse",
                            "--project-dir", str(DBT_DIR), "--profiles-dir", str(DBT_DIR),
                            "--target-path", str(folder), "--log-path", str(folder)])


def serve(listener: socket.socket, lifeline: socket.socket, folder: Path | None = None) -> None:
    """Import dbt, wait for one command (or for the run's end), run it, and end. `folder` is
    the run's private folder, removed here if the run's process is gone by then."""
    loading = threading.Thread(target=_preload, name="plumbline-dbt-preload")
    loading.start()
    loading.join()
    from dbt.cli.main import cli

    while True:
        ready, _, _ = select.select([listener, lifeline], [], [])
        if lifeline in ready:  # the run ended (or died) without needing dbt
            _leave(lifeline, folder)
        conn, _ = listener.accept()
        creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        if struct.unpack("3i", creds)[1] != os.getuid():
            conn.close()
            continue
        try:
            header, fds, _, _ = socket.recv_fds(conn, 4, 3)
            request = json.loads(_receive_exact(conn, struct.unpack("!I", header)[0]))
        except (OSError, EOFError, ValueError, struct.error):
            conn.close()
            continue
        if len(fds) == 3:
            break
        for fd in fds:
            os.close(fd)
        conn.close()
    listener.close()
    # dbt cancels on KeyboardInterrupt: set before the launcher learns whom to interrupt
    signal.signal(signal.SIGINT, signal.default_int_handler)
    conn.sendall(os.getpid().to_bytes(8, "big"))  # taken: from here on, dbt runs here
    sys.stdout.flush()
    sys.stderr.flush()
    for target, fd in zip((0, 1, 2), fds, strict=True):
        os.dup2(fd, target)
        os.close(fd)
    os.environ.clear()
    os.environ.update(request["env"])
    os.chdir(request["cwd"])
    sys.argv = ["dbt", *request["argv"]]
    code = 1
    try:
        cli.main(args=request["argv"], prog_name="dbt")  # the `dbt` script's own entry point
    except SystemExit as done:
        code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
    except BaseException:  # noqa: BLE001 (dbt's own crash, told as the dbt script would)
        traceback.print_exc()
    # what the dbt script's exit would run: dbt-duckdb closes its database there, which
    # writes DuckDB's log into the file (otherwise every later reader replays it)
    atexit._run_exitfuncs()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        conn.sendall(code.to_bytes(4, "big", signed=True))
    finally:
        _leave(lifeline, folder)


def _leave(lifeline: socket.socket, folder: Path | None) -> None:
    """End this process without unloading dbt (whoever waits for the step waits for this too).
    If the run's process is gone (its end of the lifeline closed: it ended, or it was killed and
    never reached `ReadyDbt.close()`), remove the run's folder, the launcher and socket in it."""
    with contextlib.suppress(Exception):
        gone, _, _ = select.select([lifeline], [], [], 0)
        if gone and folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
    os._exit(0)


FOLDER_PREFIX = "plumbline-dbt-"


def sweep_stale_folders() -> int:
    """Remove the private folders of runs that are gone, returns how many. A run removes its
    own (`close()`), and its waiting process does if the run was killed; a kill of the whole
    process group (a service manager's stop) takes both, and the next run sweeps. A folder is
    stale when it is this user's and its run's process (`run.pid`, written at `prepare()`) no
    longer exists; one without that file is left alone."""
    swept = 0
    for folder in Path(tempfile.gettempdir()).glob(FOLDER_PREFIX + "*"):
        with contextlib.suppress(OSError, ValueError):
            if folder.stat().st_uid != os.getuid():
                continue
            pid = int((folder / "run.pid").read_text())
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                shutil.rmtree(folder, ignore_errors=True)
                swept += 1
    return swept


class ReadyDbt:
    """One waiting dbt process for one run: `prepare()` before the definitions load (they
    read `launcher()`), `start()` when the run is about to begin, `close()` when it ended."""

    def __init__(self) -> None:
        self._folder: Path | None = None
        self._listener: socket.socket | None = None
        self._lifeline: socket.socket | None = None
        self._process: subprocess.Popen | None = None

    def prepare(self, real_dbt: str) -> bool:
        """Write the launcher and open the socket; False (and dbt runs as it always did) where
        that cannot be done: a temporary folder mounted noexec, a socket path too long, an
        interpreter path a script's first line cannot name."""
        sweep_stale_folders()
        try:
            self._folder = Path(tempfile.mkdtemp(prefix=FOLDER_PREFIX))  # 0700: this user's
            if (os.statvfs(self._folder).f_flag & getattr(os, "ST_NOEXEC", 0)
                    or any(c.isspace() for c in sys.executable)):
                raise OSError("the launcher could not be run from here")
            (self._folder / "run.pid").write_text(str(os.getpid()))
            launcher = self._folder / "dbt"
            launcher.write_text(f"#!{sys.executable} -IS\n{LAUNCHER}")
            launcher.chmod(0o700)
            self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self._listener.bind(str(self._folder / "ready.sock"))
            self._listener.listen(1)
        except OSError:
            self.close()
            return False
        os.environ["PLUMBLINE_DBT_REAL"] = real_dbt
        os.environ["PLUMBLINE_DBT_LAUNCHER"] = str(launcher)
        return True

    def start(self) -> None:
        """Start the waiting process; it also runs dbt's parse once ahead (`_warm_up`), with
        this process's environment (PLUMBLINE_DATA_DIR, the engine)."""
        if self._listener is None:
            return
        mine, theirs = socket.socketpair()
        self._lifeline = mine
        try:
            with theirs:
                self._process = subprocess.Popen(
                    [sys.executable, "-m", "pipelines.dbt_ready", str(self._listener.fileno()),
                     str(theirs.fileno()), str(self._folder)],
                    pass_fds=(self._listener.fileno(), theirs.fileno()),
                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                    env={**os.environ, "PLUMBLINE_DBT_WARM": str(self._folder / "warm")})
        except OSError:  # no second process: the launcher runs the installed dbt
            return
        # the waiting process holds the only listening end: if it dies, the launcher's connect
        # is refused at once (and dbt runs there), instead of waiting on a queue nobody serves
        self._listener.close()
        self._listener = None
        os.environ["PLUMBLINE_DBT_READY"] = str(self._folder / "ready.sock")

    def close(self) -> None:
        for name in ("PLUMBLINE_DBT_READY", "PLUMBLINE_DBT_LAUNCHER", "PLUMBLINE_DBT_REAL"):
            os.environ.pop(name, None)
        if self._lifeline is not None:
            self._lifeline.close()
        if self._listener is not None:
            self._listener.close()
        if self._process is not None:
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
        self._folder = self._listener = self._lifeline = self._process = None


def launcher() -> str | None:
    """The launcher to give dagster-dbt as its dbt executable, when this run has one."""
    return os.environ.get("PLUMBLINE_DBT_LAUNCHER") or None


if __name__ == "__main__":
    # a Ctrl-C at the terminal reaches the whole process group: while waiting, this process
    # leaves it to the run (dbt itself gets it once it runs, from the launcher as well)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    serve(socket.socket(fileno=int(sys.argv[1])), socket.socket(fileno=int(sys.argv[2])),
          Path(sys.argv[3]) if len(sys.argv) > 3 else None)
