"""The database thread pool: SQL runs on a few dedicated threads, never on the reactor.

:class:`DatabasePool` is a service owning a bounded
:class:`~twisted.python.threadpool.ThreadPool` (started and stopped with the
service) and the :class:`~sqlalchemy.engine.Engine` it uses.  ``run(fn, *args)``
calls ``fn(connection, *args)`` in one of those threads inside a transaction
(committed when ``fn`` returns, rolled back when it raises) and fires the
Deferred on the reactor thread with what ``fn`` returned.  ``fn`` returns plain
data (tuples, dicts, frozen dataclasses) — never a ``Result`` or anything
still bound to the connection.

:class:`ThreadlessDatabasePool` has the same API and runs ``fn`` at once in
the calling thread: for unit tests on a fake clock, and for scripts.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from sqlalchemy.engine import Engine, Result
from twisted.application.service import Service
from twisted.internet.defer import Deferred, fail, maybeDeferred, succeed
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

log = Logger()


class DatabasePoolStopped(RuntimeError):
    """Work was submitted to a database pool that is not running."""


def _in_transaction(engine: Engine, fn: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
    """Run ``fn(connection, *args, **kwargs)`` in one transaction; refuse results bound to the connection."""
    with engine.begin() as connection:
        result = fn(connection, *args, **kwargs)
        if isinstance(result, Result):
            raise TypeError(f"{getattr(fn, '__name__', fn)!r} returned a Result: return plain data instead")
        return result


class DatabasePool(Service):
    """A named service running SQL on its own bounded thread pool (``min_threads``..``max_threads``).

    The pool owns ``engine`` and disposes of it when it stops.  Stopping
    waits (off the reactor) for work already submitted to finish; work
    submitted while the service is not running fails with
    :class:`DatabasePoolStopped`.
    """

    def __init__(self, engine: Engine, reactor=None, name: str = "db", min_threads: int = 1, max_threads: int = 4):
        if not 0 <= min_threads <= max_threads or max_threads < 1:
            raise ValueError(f"bad thread bounds {min_threads}..{max_threads}")
        self.engine = engine
        self.setName(name)
        self.min_threads = min_threads
        self.max_threads = max_threads
        self._reactor = reactor
        self.threadpool: ThreadPool | None = None

    def startService(self) -> None:
        """Start the threads (connections are opened lazily, by the first queries)."""
        if self._reactor is None:
            from twisted.internet import reactor

            self._reactor = reactor
        self.threadpool = ThreadPool(self.min_threads, self.max_threads, name=f"ctid-{self.name}")
        self.threadpool.start()
        super().startService()
        log.info("database pool {name}: {min}..{max} threads on {url}", name=self.name, min=self.min_threads,
                 max=self.max_threads, url=self.engine.url.render_as_string(hide_password=True))

    def stopService(self) -> Deferred[None]:
        """Stop taking work; fires once submitted work is done, the threads joined and the engine disposed."""
        super().stopService()
        threadpool, self.threadpool = self.threadpool, None
        reactor = self._reactor
        if threadpool is None or reactor is None:
            return succeed(None)
        done: Deferred[None] = Deferred()

        def stop() -> None:
            try:
                threadpool.stop()
                self.engine.dispose()
            except BaseException:
                reactor.callFromThread(done.errback, Failure())
            else:
                reactor.callFromThread(done.callback, None)

        # ThreadPool.stop() joins its threads: do it on a helper thread, not on the reactor.
        threading.Thread(target=stop, name=f"ctid-{self.name}-stop").start()
        return done

    def run(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Deferred[Any]:
        """Fire with ``fn(connection, *args, **kwargs)`` run in a transaction on a pool thread."""
        if not self.running or self.threadpool is None:
            return fail(DatabasePoolStopped(f"database pool {self.name!r} is not running"))
        return deferToThreadPool(self._reactor, self.threadpool, _in_transaction, self.engine, fn, args, kwargs)


class ThreadlessDatabasePool(DatabasePool):
    """A :class:`DatabasePool` that runs work at once in the calling thread (tests and scripts).

    ``run`` returns an already-fired Deferred, so code under test runs to
    completion synchronously; no reactor is needed.  It refuses work unless
    running, like the real pool.
    """

    def __init__(self, engine: Engine, name: str = "db"):
        super().__init__(engine, reactor=None, name=name)

    def startService(self) -> None:
        """Mark the service running; there are no threads to start."""
        Service.startService(self)

    def stopService(self) -> Deferred[None]:
        """Stop taking work and dispose of the engine; fires at once."""
        Service.stopService(self)
        self.engine.dispose()
        return succeed(None)

    def run(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Deferred[Any]:
        """Fire (already) with ``fn(connection, *args, **kwargs)`` run in a transaction in this thread."""
        if not self.running:
            return fail(DatabasePoolStopped(f"database pool {self.name!r} is not running"))
        return maybeDeferred(_in_transaction, self.engine, fn, args, kwargs)
