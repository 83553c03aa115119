"""A second Python process for the run's work that needs neither Dagster nor a store: the feeds'
Great Expectations suites, and the published charts.

Importing Great Expectations costs about 4.5 s (with scipy, altair and some 500 modules of its
own); loading Dagster, dagster-dbt and dbt for the definitions costs about as much again, and
both are pure Python, one core each. `plumbline run` starts this process before it loads the
definitions, so on a 2-core machine the two imports run side by side instead of one after the
other, and every run starts about 4 s sooner. While the suite judges a delivery here, ingest
converts the same cells in its own process (`expectations.suites.derive`), so a large delivery
is read on both cores too.

One worker per process, started on first use wherever it was not started early (the UI's runs,
tests). It reads requests from a socket and exits when the socket closes: when the run ends,
and when the run's process dies without a goodbye. Nothing it does touches a store; what it is sent
(a delivery's cells) stays in memory and is never logged.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import socket
import subprocess
import sys
import threading
import traceback
from collections.abc import Callable
from importlib import import_module
from multiprocessing.connection import Connection
from typing import Any

# what the worker does as it starts, before its first request: Great Expectations imported
# and its context open; and later, once it has been idle a second (ingest done, linkage or dbt
# under way), matplotlib for the charts
PRELOAD = ("expectations.suites:warm",)
WHEN_IDLE = ("pipelines.charts:warm",)
IDLE_SECONDS = 1.0
# what a worker may keep beyond its libraries after a request before it starts itself afresh
# (when idle): a judged delivery of 250,000 rows leaves some 150-300 MB in Python's small-object
# arenas that no trim returns, and the run's linkage needs the memory more
KEEP_MB = 100


class WorkerFailed(RuntimeError):
    """A request failed in the worker (its traceback is in the message), or the worker died."""


def _task(name: str) -> Callable[..., Any]:
    module, _, attr = name.partition(":")
    return getattr(import_module(module), attr)


def _release_memory() -> None:
    """Hand the freed heap back to the OS between requests, so an idle worker holds only its
    libraries while the rest of the run (linkage, dbt) needs the memory."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: the allocator keeps its own counsel
        pass


def _rss_mb() -> float:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return 0.0


def _serve(conn: Connection, again: bool = False) -> None:
    """Answer requests until the pipe closes. `again`: this process replaced a worker that had
    grown (the caller already had its "ready")."""
    for name in PRELOAD:
        _task(name)()
    if not again:
        conn.send(("ready", os.getpid()))
    later, grown, baseline = list(WHEN_IDLE), False, _rss_mb()
    while True:
        try:
            while (later or grown) and not conn.poll(IDLE_SECONDS):
                if grown:  # the same socket, a fresh heap: this program again, in this process
                    sys.stderr.flush()
                    os.execv(sys.executable, [sys.executable, "-m", "pipelines.worker",
                                              str(conn.fileno()), "again"])
                with contextlib.suppress(Exception):  # the request itself will say what fails
                    _task(later.pop(0))()
                baseline = _rss_mb()
            name, args = conn.recv()
        except (EOFError, OSError):
            # the run's process is done or gone: end at once, without unloading GX's modules
            # (a second or two), since whoever waits for the run's output waits for this too
            sys.stderr.flush()
            os._exit(0)
        try:
            reply: tuple[bool, Any] = (True, _task(name)(*args))
        except BaseException as exc:  # noqa: BLE001 (sent back to the caller, who raises)
            told = "".join(traceback.format_exception(exc))
            reply = (False, f"{name} failed in Plumbline's worker process:\n{told}")
        del args
        conn.send(reply)
        del reply
        _release_memory()
        grown = _rss_mb() > baseline + KEEP_MB


class Pending:
    """A request sent; `result()` waits for the worker's answer (one request at a time)."""

    def __init__(self, worker: Worker, name: str) -> None:
        self._worker, self._name, self._done = worker, name, False

    def result(self) -> Any:
        if self._done:
            raise RuntimeError("result() already taken")
        self._done = True
        try:
            ok, value = self._worker._receive(self._name)
        finally:
            self._worker._lock.release()
        if not ok:
            raise WorkerFailed(value)
        return value


class Worker:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._process: subprocess.Popen | None = None
        self._conn: Connection | None = None
        self._pid = 0  # the process that started the worker (a fork must start its own)
        self._ready = False

    def start(self) -> None:
        """Start the worker now, so its imports overlap whatever this process does next."""
        with self._lock:
            self._ensure()

    def _ensure(self) -> None:
        if (self._process is not None and self._pid == os.getpid()
                and self._process.poll() is None):
            return
        if self._conn is not None and self._pid == os.getpid():
            self._conn.close()  # a worker that died: its end of the socket goes with it
        # `python -m pipelines.worker`, not multiprocessing's spawn: spawn would re-run the
        # caller's main script in the child, and a script calling plumbline need not guard it
        mine, theirs = socket.socketpair()
        with theirs:
            process = subprocess.Popen(
                [sys.executable, "-m", "pipelines.worker", str(theirs.fileno())],
                pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL)
        self._process, self._conn, self._pid, self._ready = (
            process, Connection(mine.detach()), os.getpid(), False)

    def submit(self, name: str, *args: Any) -> Pending:
        """Send `module:function(*args)` to the worker; the answer comes with `.result()`.
        Until then, other requests wait."""
        self._lock.acquire()
        try:
            self._ensure()
            assert self._conn is not None
            self._conn.send((name, args))
        except BaseException:
            self._lock.release()
            raise
        return Pending(self, name)

    def call(self, name: str, *args: Any) -> Any:
        return self.submit(name, *args).result()

    def _receive(self, name: str) -> tuple[bool, Any]:
        assert self._conn is not None
        try:
            if not self._ready:
                self._conn.recv()  # ("ready", pid): the imports are done
                self._ready = True
            return self._conn.recv()
        except (EOFError, OSError):
            code = self._process.wait() if self._process else None
            self._process = None
            raise WorkerFailed(f"{name}: Plumbline's worker process ended without answering "
                               f"(exit code {code}); its error, if any, is on stderr") from None

    def stop(self) -> None:
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
                if self._process is not None:
                    try:
                        self._process.wait(timeout=5)
                    except subprocess.TimeoutExpired:
                        self._process.kill()
                        self._process.wait()
            self._process = self._conn = None


WORKER = Worker()


if __name__ == "__main__":
    _serve(Connection(int(sys.argv[1])), again=sys.argv[2:] == ["again"])
