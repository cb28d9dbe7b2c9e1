"""The LDAP directory: :class:`~ctid.interfaces.IDirectory` over ldap3, off the reactor, with a bounded cache.

:class:`LDAPDirectory` is a service owning a bounded
:class:`~twisted.python.threadpool.ThreadPool` (started and stopped with the
service); every call runs :class:`~ctid.adapters.ldapdirectoryquery.LDAPQuery`
on it through ``deferToThreadPool`` and is given up after
``operation_timeout`` seconds.  Unreachable servers, TLS or certificate
failures, timeouts and a full queue all fail with
:class:`~ctid.directory.DirectoryError` (the CTI Login answers
``directory_unavailable``); the reason is logged, never a password.

Identities are cached for ``cache_age`` seconds (0: not at all):
:meth:`LDAPDirectory.lookup` answers from a fresh entry, every successful
:meth:`~LDAPDirectory.authenticate` refreshes it, and an entry older than
``cache_age`` is never used — not even while the server is down.  Passwords
are always checked by the server.

:func:`make_directory` picks the directory ``[directory] backend`` names.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

from twisted.application.service import IServiceCollection, Service
from twisted.internet.defer import CancelledError, Deferred, TimeoutError, fail, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool
from zope.interface import implementer

from ctid.adapters.directory import SQLDirectory
from ctid.adapters.ldapdirectoryconfig import DirectorySettings
from ctid.adapters.ldapdirectoryquery import MAX_PASSWORD_BYTES, Found, LDAPQuery, LDAPUnavailable
from ctid.adapters.store.pool import DatabasePool
from ctid.directory import AuthenticationError, DirectoryError, Identity
from ctid.interfaces import IDirectory

__all__ = ["LDAPDirectory", "make_directory"]

log = Logger()

#: Queued operations allowed per thread before new ones are refused at once (the server is too slow).
QUEUE_PER_THREAD = 16
MAX_CACHED = 50_000


@implementer(IDirectory)
class LDAPDirectory(Service):
    """People, roles and skills from an LDAP server (see the module docstring); a named service, ``ldap``."""

    def __init__(self, settings: DirectorySettings, clock: IReactorTime, reactor: Any = None, name: str = "ldap"):
        self.settings = settings
        self.query = LDAPQuery(settings)
        self.clock = clock
        self._reactor = reactor
        self.setName(name)
        self.threadpool: ThreadPool | None = None
        self.pending = 0
        self._cache: OrderedDict[str, tuple[float, Identity]] = OrderedDict()

    def startService(self) -> None:
        """Start the threads."""
        if self._reactor is None:
            from twisted.internet import reactor

            self._reactor = reactor
        self.threadpool = ThreadPool(1, self.settings.threads, name=f"ctid-{self.name}")
        self.threadpool.start()
        super().startService()
        log.info("LDAP directory {url} ({bind} bind, {tls}): {threads} threads", url=self.settings.url,
                 bind=self.settings.bind, tls="TLS" if self.settings.tls else "no TLS", threads=self.settings.threads)

    def stopService(self) -> Deferred[None]:
        """Stop taking work; fires once the threads have finished (joined off the reactor)."""
        super().stopService()
        threadpool, self.threadpool = self.threadpool, None
        if threadpool is None:
            return succeed(None)
        done: Deferred[None] = Deferred()

        def stop() -> None:
            threadpool.stop()
            self._reactor.callFromThread(done.callback, None)

        threading.Thread(target=stop, name=f"ctid-{self.name}-stop").start()
        return done

    def authenticate(self, agent_id: str, password: str) -> Deferred[Identity]:
        """See :meth:`IDirectory.authenticate`; DirectoryError when LDAP cannot answer in time."""
        if not isinstance(password, str) or len(password.encode("utf-8")) > MAX_PASSWORD_BYTES:
            password = ""
        d = self._run(self.query.authenticate, str(agent_id), password)
        d.addCallback(self._found, str(agent_id))
        return d

    def lookup(self, agent_id: str) -> Deferred[Identity | None]:
        """See :meth:`IDirectory.lookup`; answered from the cache while its entry is younger than ``cache_age``."""
        agent_id = str(agent_id)
        cached = self.cached(agent_id)
        if cached is not None:
            return succeed(cached)
        d = self._run(self.query.lookup, agent_id)
        d.addCallback(lambda found: None if found is None else self._found(found, agent_id))
        return d

    def cached(self, agent_id: str) -> Identity | None:
        """The cached Identity of ``agent_id`` if younger than ``cache_age`` (stale entries are dropped)."""
        entry = self._cache.get(agent_id.lower())
        if entry is None:
            return None
        if self.clock.seconds() - entry[0] >= self.settings.cache_age:
            del self._cache[agent_id.lower()]
            return None
        return entry[1]

    def _found(self, found: Found, asked: str) -> Identity:
        """Remember (and return) a person just read from the server; warn about what could not be mapped."""
        identity = found.identity
        if found.skipped:
            log.warn("LDAP entry {agent}: skipped {skipped}", agent=identity.agent_id, skipped=", ".join(found.skipped))
        if self.settings.cache_age > 0:
            for key in {asked.lower(), identity.agent_id.lower()}:
                self._cache[key] = (self.clock.seconds(), identity)
                self._cache.move_to_end(key)
            while len(self._cache) > MAX_CACHED:
                self._cache.popitem(last=False)
        return identity

    def _run(self, fn: Any, *args: Any) -> Deferred:
        """``fn(*args)`` on a pool thread, within ``operation_timeout``; LDAP failures become DirectoryError."""
        if not self.running or self.threadpool is None:
            return fail(DirectoryError("the LDAP directory is not running"))
        if self.pending >= self.settings.threads * QUEUE_PER_THREAD:
            log.warn("LDAP directory: {pending} operations waiting; refusing more", pending=self.pending)
            return fail(DirectoryError("the LDAP directory is overloaded"))
        self.pending += 1
        d = deferToThreadPool(self._reactor, self.threadpool, self._counted, fn, *args)
        d.addTimeout(self.settings.operation_timeout, self.clock)
        d.addErrback(self._unavailable)
        return d

    def _counted(self, fn: Any, *args: Any) -> Any:
        """In a pool thread: ``fn(*args)``; pending until the thread is free again, even after a timeout."""
        try:
            return fn(*args)
        finally:
            self._reactor.callFromThread(self._finished)

    def _finished(self) -> None:
        self.pending -= 1

    def _unavailable(self, failure: Failure) -> Failure:
        """LDAP failures and timeouts become DirectoryError (logged); AuthenticationError passes on."""
        if failure.check(AuthenticationError):
            return failure
        if failure.check(LDAPUnavailable):
            reason = str(failure.value)
        elif failure.check(TimeoutError, CancelledError):
            reason = f"no answer within {self.settings.operation_timeout:g} s"
        else:
            log.failure("LDAP directory {url}: unexpected failure", failure, url=self.settings.url)
            reason = type(failure.value).__name__
        log.warn("LDAP directory {url} unavailable: {reason}", url=self.settings.url, reason=reason)
        raise DirectoryError(f"LDAP directory unavailable ({reason})")


def make_directory(settings: DirectorySettings, pool: DatabasePool, clock: IReactorTime,
                   parent: IServiceCollection) -> Any:
    """The IDirectory ``settings.backend`` names: SQL on ``pool``, or LDAP (then a child service of ``parent``)."""
    if settings.backend == "sql":
        return SQLDirectory(pool)
    directory = LDAPDirectory(settings, clock)
    directory.setServiceParent(parent)
    return directory
