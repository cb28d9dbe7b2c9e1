"""A database pool whose work runs in a child process: the record writer's SQL never competes with the reactor.

Inserting thousands of records a second is mostly Python work (converting
values, SQLAlchemy, PyMySQL's escaping).  On a thread it holds the GIL the
reactor needs, in slices of up to the interpreter's switch interval (5 ms),
and the routing latency of the daemon shows it.  :class:`ProcessDatabasePool`
has :class:`~ctid.adapters.store.pool.DatabasePool`'s API — ``run(fn, *args)``
fires with ``fn(connection, *args)`` run in one transaction — but ``fn`` runs
in a child process (``python -m ctid.adapters.store.recordprocess``, started
on first use and again after it died; it talks over a socket pair), with its
own engine.  ``fn`` must be a module-level function and its
arguments and result picklable.

The parent's side is one thread: it pickles the call (long lists in slices
of :data:`SLICE` items, so no single pickling holds the GIL for long;
:class:`~ctid.adapters.store.spool.Record` lists as plain tuples, three times
faster to pickle than named tuples, made Records again on the other side),
sends it over a pipe and waits for the answer, at most ``timeout`` seconds
(then the child is killed).  Errors come back as :class:`RemoteBadData` (a
``ValueError``: the rows are wrong, see
:func:`~ctid.adapters.store.inserts.is_bad_data`) or
:class:`RemoteDatabaseError` (the database or the child is unavailable).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from ctid.adapters.store.engine import make_engine
from ctid.adapters.store.inserts import is_bad_data
from ctid.adapters.store.pool import DatabasePoolStopped, _in_transaction
from ctid.adapters.store.spool import Record

log = Logger()

#: Items of a long list argument pickled and sent at a time.
SLICE = 64
#: The child's scheduling niceness: background work, it yields the CPU to the reactor when both want it.
NICENESS = 10


class RemoteDatabaseError(Exception):
    """The database, or the child process running the work, could not do it (an outage: retry later)."""


class RemoteBadData(ValueError):
    """The database refused the rows themselves (retrying the same rows cannot help)."""


def _serve(connection: Connection) -> None:
    """The child: take the engine's settings, then run calls in transactions until told to stop (None) or EOF."""
    url, engine_options = connection.recv()
    engine = make_engine(url, **engine_options)
    try:
        while (message := _receive_call(connection)) is not None:
            fn, args = message
            try:
                connection.send(("ok", _in_transaction(engine, fn, args, {})))
            except Exception as e:
                detail = f"{type(e).__name__}: {getattr(e, 'orig', None) or e}"[:1000]
                connection.send(("bad" if is_bad_data(e) else "error", detail))
    except (EOFError, OSError, KeyboardInterrupt):
        pass
    finally:
        engine.dispose()


def _receive_call(connection: Connection) -> tuple[Callable[..., Any], tuple] | None:
    """One call: ``(fn, args, sliced)``, then the slices of the arguments ``sliced`` names (index → count, kind)."""
    message = connection.recv()
    if message is None:
        return None
    fn, args, sliced = message
    args = list(args)
    for index, (count, kind) in sliced.items():
        items: list[Any] = []
        for _ in range(count):
            items.extend(connection.recv())
        if kind == "records":
            items = [Record._make(item) for item in items]
        args[index] = tuple(items) if kind == "tuple" else items
    return fn, tuple(args)


class ProcessDatabasePool(Service):
    """A named service running database work in a child process on ``url`` (see the module's docstring).

    ``engine_options`` go to :func:`~ctid.adapters.store.engine.make_engine`
    in the child.  Work submitted while the service is not running fails with
    :class:`~ctid.adapters.store.pool.DatabasePoolStopped`.
    """

    def __init__(self, url: str, reactor: Any, name: str = "records-db", engine_options: dict[str, Any] | None = None,
                 timeout: float = 120.0):
        self.setName(name)
        self.url = url
        self.engine_options = dict(engine_options or {})
        self.timeout = timeout
        self._reactor = reactor
        self.threadpool: ThreadPool | None = None
        self._child: Any = None
        self._connection: Connection | None = None

    def startService(self) -> None:
        """Start the pool's thread, and the child process from it (off the reactor), ready for the first call."""
        self.threadpool = ThreadPool(1, 1, name=f"ctid-{self.name}")
        self.threadpool.start()
        self.threadpool.callInThread(self._start_child)
        super().startService()

    def stopService(self) -> Deferred[None]:
        """Stop taking work; fires once the work submitted is done and the child has exited."""
        super().stopService()
        threadpool, self.threadpool = self.threadpool, None
        if threadpool is None:
            return succeed(None)
        done: Deferred[None] = Deferred()

        def stop() -> None:
            try:
                threadpool.stop()
                self._stop_child()
            except BaseException:
                self._reactor.callFromThread(done.errback, Failure())
            else:
                self._reactor.callFromThread(done.callback, None)

        threading.Thread(target=stop, name=f"ctid-{self.name}-stop").start()
        return done

    def run(self, fn: Callable[..., Any], *args: Any) -> Deferred[Any]:
        """Fire with ``fn(connection, *args)`` run in a transaction in the child process."""
        if not self.running or self.threadpool is None:
            return fail(DatabasePoolStopped(f"database pool {self.name!r} is not running"))
        return deferToThreadPool(self._reactor, self.threadpool, self._call, fn, args)

    @property
    def child_pid(self) -> int | None:
        """The child process's id while it runs (None before the first call or after it exited)."""
        child = self._child
        return child.pid if child is not None and child.poll() is None else None

    # -- on the pool's thread -----------------------------------------------------------------------------

    def _call(self, fn: Callable[..., Any], args: tuple) -> Any:
        connection = self._ensure_child()
        try:
            self._send_call(connection, fn, args)
            if not connection.poll(self.timeout):
                raise RemoteDatabaseError(f"no answer from the {self.name} process in {self.timeout:.0f} s")
            status, value = connection.recv()
        except (EOFError, OSError, RemoteDatabaseError) as e:
            self._kill_child()
            if isinstance(e, RemoteDatabaseError):
                raise
            raise RemoteDatabaseError(f"the {self.name} process went away: {e!r}") from None
        if status == "ok":
            return value
        raise (RemoteBadData if status == "bad" else RemoteDatabaseError)(value)

    @staticmethod
    def _send_call(connection: Connection, fn: Callable[..., Any], args: tuple) -> None:
        sliced: dict[int, tuple[int, str]] = {}
        parts: list[Any] = []
        sent = list(args)
        for index, arg in enumerate(args):
            if type(arg) not in (list, tuple) or not arg:
                continue
            records = type(arg[0]) is Record  # sent as plain tuples: a third of the pickling time
            if records or len(arg) > SLICE:
                pieces = [arg[i:i + SLICE] for i in range(0, len(arg), SLICE)]
                if records:
                    pieces = [[tuple(record) for record in piece] for piece in pieces]
                sliced[index] = (len(pieces), "records" if records else type(arg).__name__)
                parts.extend(pieces)
                sent[index] = None
        connection.send((fn, tuple(sent), sliced))
        for part in parts:
            connection.send(part)

    def _start_child(self) -> None:
        try:
            self._ensure_child()
        except OSError:
            log.failure("could not start the database process {name} (the first call tries again)", name=self.name)

    def _ensure_child(self) -> Connection:
        if self._child is not None and self._child.poll() is None and self._connection is not None:
            return self._connection
        self._kill_child()
        ours, theirs = socket.socketpair()
        environment = dict(os.environ, PYTHONPATH=os.pathsep.join(path for path in sys.path if path))
        try:
            child = subprocess.Popen([sys.executable, "-m", __name__, str(theirs.fileno())],
                                     pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL, env=environment)
        finally:
            theirs.close()
        connection = Connection(ours.detach())
        connection.send((self.url, self.engine_options))
        self._child, self._connection = child, connection
        log.info("database process {name} started (pid {pid})", name=self.name, pid=child.pid)
        return connection

    def _stop_child(self) -> None:
        child, connection = self._child, self._connection
        if child is None or connection is None:
            return
        try:
            connection.send(None)
            child.wait(self.timeout)
        except (OSError, subprocess.TimeoutExpired):
            pass
        self._kill_child()

    def _kill_child(self) -> None:
        child, connection, self._child, self._connection = self._child, self._connection, None, None
        if connection is not None:
            connection.close()
        if child is not None and child.poll() is None:
            child.kill()
            child.wait(5)


if __name__ == "__main__":
    os.nice(NICENESS)
    _serve(Connection(int(sys.argv[1])))
