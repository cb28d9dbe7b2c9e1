"""Login protection: failed logins back off per user and per address, and every login is audited.

:class:`Backoff` is the pure policy for one kind of key (an agent id, or a
peer's address): ``free`` failures are allowed; the ``free``-th and each
further failure lock the key for ``base * 2**k`` seconds (k = 0, 1, 2 …,
capped at ``cap``; with ``free`` 0 the first failure locks).  A key with no failure for ``forget`` seconds starts
clean again, and a success clears it.  At most ``max_keys`` keys are kept
(the stalest are dropped first), so a flood of made-up ids cannot grow
memory.

:class:`LoginGuard` wraps :meth:`IDirectory.authenticate` with one
:class:`Backoff` per user and one per address: a locked attempt fails with
:class:`TooManyAttempts` (carrying ``retry_after``) without asking the
directory, and every outcome — ``ok``, ``bad_credentials``, ``disabled``,
``directory_unavailable``, ``too_many_attempts`` — goes to the audit log
with the peer's address.  A success clears the user's failures but not the
address's: one good account must not reset an attacker's address.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from twisted.internet.interfaces import IReactorTime

from ctid.directory import AuthenticationError, DirectoryError, Identity

#: ``audit(actor, role, address, action, target, outcome, detail)`` — :meth:`ctid.records.Records.audit`.
Audit = Callable[..., Any]


class TooManyAttempts(Exception):
    """Too many failed logins for this user or address: try again after ``retry_after`` seconds."""

    def __init__(self, retry_after: float, scope: str):
        super().__init__(f"too many failed logins for this {scope}; retry after {math.ceil(retry_after)} s")
        self.retry_after = retry_after
        self.scope = scope


@dataclass
class _Entry:
    failures: int = 0
    locked_until: float = 0.0
    last_failure: float = 0.0


class Backoff:
    """Exponential back-off of failures per key (see the module docstring); time comes from ``clock``."""

    def __init__(self, clock: IReactorTime, free: int = 5, base: float = 1.0, cap: float = 300.0,
                 forget: float = 900.0, max_keys: int = 100_000):
        if free < 0 or base <= 0 or cap < base or forget <= 0 or max_keys < 1:
            raise ValueError("need free >= 0, 0 < base <= cap, forget > 0, max_keys >= 1")
        self.clock, self.free, self.base, self.cap = clock, free, base, cap
        self.forget, self.max_keys = forget, max_keys
        self._entries: OrderedDict[str, _Entry] = OrderedDict()  # least recently failed first

    def __len__(self) -> int:
        return len(self._entries)

    def retry_after(self, key: str) -> float:
        """Seconds until ``key`` may try again (0.0: it may try now)."""
        entry = self._current(key)
        return 0.0 if entry is None else max(0.0, entry.locked_until - self.clock.seconds())

    def failed(self, key: str) -> float:
        """Count a failure of ``key``; returns the lock it now has, in seconds (0.0 while still free)."""
        now = self.clock.seconds()
        entry = self._current(key) or _Entry()
        entry.failures += 1
        entry.last_failure = now
        over = entry.failures - max(self.free, 1)
        lock = 0.0 if over < 0 else min(self.cap, self.base * 2.0 ** min(over, 62))
        entry.locked_until = now + lock
        self._entries[key] = entry
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_keys:
            self._entries.popitem(last=False)
        return lock

    def succeeded(self, key: str) -> None:
        """Forget ``key``'s failures."""
        self._entries.pop(key, None)

    def _current(self, key: str) -> _Entry | None:
        entry = self._entries.get(key)
        if entry is not None and self.clock.seconds() - entry.last_failure > max(self.forget, entry.locked_until
                                                                                  - entry.last_failure):
            del self._entries[key]
            return None
        return entry


def peer_address(peer: str | None) -> str:
    """The host part of a ``host:port`` peer (IPv6 too); the text itself when it has no port."""
    host, sep, port = (peer or "").rpartition(":")
    return host.strip("[]") if sep and port.isdigit() else (peer or "")


class LoginGuard:
    """Rate-limits failed logins per user and per address and audits every login (see the module docstring)."""

    def __init__(self, clock: IReactorTime, *, user_failures: int = 5, address_failures: int = 20,
                 base: float = 1.0, cap: float = 300.0, forget: float = 900.0, audit: Audit | None = None):
        self.users = Backoff(clock, free=user_failures, base=base, cap=cap, forget=forget)
        self.addresses = Backoff(clock, free=address_failures, base=base, cap=cap, forget=forget)
        self.audit = audit

    @classmethod
    def from_settings(cls, settings: Any, clock: IReactorTime) -> LoginGuard:
        """The guard [directory] describes (``user_failures``, ``address_failures``, ``lockout_*``)."""
        return cls(clock, user_failures=settings.user_failures, address_failures=settings.address_failures,
                   base=settings.lockout_base, cap=settings.lockout_max, forget=settings.lockout_forget)

    async def authenticate(self, directory: Any, agent_id: str, password: str, peer: str | None) -> Identity:
        """``directory.authenticate(agent_id, password)`` unless locked out; fails like it, or TooManyAttempts."""
        address = peer_address(peer)
        wait, scope = max((self.users.retry_after(agent_id), "user"), (self.addresses.retry_after(address), "address"))
        if wait > 0:
            self._audit(agent_id, None, peer, "login", "too_many_attempts", f"{scope} locked for {math.ceil(wait)} s")
            raise TooManyAttempts(wait, scope)
        try:
            identity = await directory.authenticate(agent_id, password)
        except AuthenticationError as e:
            self.users.failed(agent_id)
            self.addresses.failed(address)
            self._audit(agent_id, None, peer, "login", e.code)
            raise
        except DirectoryError:
            self._audit(agent_id, None, peer, "login", "directory_unavailable")
            raise
        self.users.succeeded(agent_id)
        self._audit(agent_id, main_role(identity.roles), peer, "login", "ok")
        return identity

    def logged_out(self, agent_id: str, roles: Any, peer: str | None, detail: str = "") -> None:
        """Audit a sign-out of ``agent_id`` (its session's ``roles``) from ``peer``."""
        self._audit(agent_id, main_role(roles), peer, "logout", "ok", detail)

    def _audit(self, actor: str, role: str | None, peer: str | None, action: str, outcome: str,
               detail: str = "") -> None:
        if self.audit is not None:
            self.audit(actor[:64], role, (peer or "")[:64] or None, action, None, outcome, detail)


#: Highest first: the role an audit row names when a person holds several.
ROLE_RANK = ("admin", "supervisor", "leader", "agent")


def main_role(roles: Any) -> str | None:
    """The highest of ``roles`` (the audit log has one role column), or None."""
    return next((role for role in ROLE_RANK if role in set(roles or ())), None)
