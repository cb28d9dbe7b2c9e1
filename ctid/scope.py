"""Who may act on what (SV-4): a supervisor's scope, and the gate every supervisor command goes through.

A supervisor (role ``supervisor``) manages the skill groups and cities listed
in the directory's ``manages``; an entry naming a known city (the ACD's city
table, e.g. ``Shanghai``) is a city, any other a skill group, and ``*`` the
whole centre.  Both kinds narrow: an agent is in scope when one of their
skill groups is managed (or the supervisor names no group) **and** their
city is managed (or the supervisor names no city).  A queue is in scope by
its group; a waiting call by its queue and, when the ACD knows it, the
caller's city.  A supervisor whose ``manages`` is empty reaches nothing.

:class:`SupervisorGate` checks the session (``forbidden`` unless a supervisor
is logged in), looks the supervisor's scope up in the directory on every
command (so a change of rights applies at once) and writes every privileged
command, allowed or refused, to the audit log.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from twisted.logger import Logger

from ctid.directory import DirectoryError, Identity
from ctid.interfaces import IDirectory
from ctid.protocols.ctiapi import CTIError, CTISession, require_login

log = Logger()

SUPERVISOR = "supervisor"
EVERYTHING = "*"

#: A privileged command: ``fn(session, args, scope)``, a dict or an awaitable one.
Privileged = Callable[[CTISession, dict[str, Any], "Scope"], "Awaitable[dict[str, Any]] | dict[str, Any]"]


@dataclass(frozen=True)
class Scope:
    """The groups and cities one supervisor manages (``everything``: the whole centre)."""

    supervisor: str
    groups: frozenset[str] = frozenset()
    cities: frozenset[str] = frozenset()
    everything: bool = False

    @classmethod
    def of(cls, identity: Identity, known_cities: Iterable[str]) -> Scope:
        """The scope of ``identity``: its ``manages`` split into cities (``known_cities``) and groups."""
        cities = frozenset(known_cities)
        manages = identity.manages
        return cls(identity.agent_id, frozenset(m for m in manages if m not in cities and m != EVERYTHING),
                   frozenset(m for m in manages if m in cities), EVERYTHING in manages)

    @property
    def empty(self) -> bool:
        """True when the supervisor manages nothing."""
        return not (self.everything or self.groups or self.cities)

    def covers(self, groups: Iterable[str], city: str | None) -> bool:
        """Whether someone in ``groups`` (skill groups) and ``city`` is in scope."""
        if self.everything:
            return True
        if self.empty:
            return False
        group_ok = not self.groups or any(group in self.groups for group in groups)
        return group_ok and (not self.cities or city in self.cities)

    def covers_agent(self, agent: Any) -> bool:
        """Whether the board's ``agent`` (skills, city) is in scope."""
        return self.covers(agent.skills, agent.city)

    def covers_queue(self, group: str) -> bool:
        """Whether a queue of skill group ``group`` is in scope (cities do not split queues)."""
        if self.everything:
            return True
        return not self.empty and (not self.groups or group in self.groups)

    def covers_waiting(self, group: str, city: str | None) -> bool:
        """Whether a call waiting in a queue of ``group``, from ``city`` (None: unknown), is in scope."""
        if not self.covers_queue(group):
            return False
        return self.everything or city is None or not self.cities or city in self.cities


def target_of(args: dict[str, Any]) -> str | None:
    """What a supervisor command acts on, for the audit log."""
    for key in ("agent", "call", "monitor", "queue"):
        value = args.get(key)
        if isinstance(value, str):
            return value[:128]
    return None


class SupervisorGate:
    """Checks that a session is a supervisor, finds their scope, and audits every privileged command.

    ``audit`` is ``Records.audit`` (or any callable of its signature);
    ``known_cities`` tells cities from skill groups in ``manages``.
    """

    def __init__(self, directory: IDirectory, audit: Callable[..., Any], known_cities: Iterable[str]):
        self.directory = directory
        self.audit = audit
        self.known_cities = frozenset(known_cities)

    async def scope(self, session: CTISession) -> Scope:
        """The logged-in supervisor's scope; CTIError ``forbidden`` or ``directory_unavailable`` otherwise."""
        identity = require_login(session)
        if SUPERVISOR not in identity.get("roles", ()):
            raise CTIError("forbidden", "supervisor commands need the supervisor role")
        try:
            person = await self.directory.lookup(identity["agent"])
        except DirectoryError:
            raise CTIError("directory_unavailable", "the directory cannot be reached; try again") from None
        if person is None or not person.enabled or not person.has_role(SUPERVISOR):
            raise CTIError("forbidden", "supervisor commands need the supervisor role")
        return Scope.of(person, self.known_cities)

    def guard(self, action: str, fn: Privileged) -> Callable[[CTISession, dict[str, Any]], Awaitable[dict[str, Any]]]:
        """A CommandRouter command running ``fn(session, args, scope)`` for supervisors only, audited."""

        async def run(session: CTISession, args: dict[str, Any]) -> dict[str, Any]:
            outcome, detail = "ok", ""
            try:
                scope = await self.scope(session)
                result = fn(session, args, scope)
                if inspect.isawaitable(result):
                    result = await result
                return result
            except CTIError as e:
                outcome, detail = e.code, e.message
                raise
            except Exception:
                outcome = "internal_error"
                raise
            finally:
                self._audit(session, action, target_of(args), outcome, detail)

        return run

    def _audit(self, session: CTISession, action: str, target: str | None, outcome: str, detail: str) -> None:
        identity = session.identity or {}
        role = SUPERVISOR if SUPERVISOR in identity.get("roles", ()) else "agent"
        try:
            self.audit(identity.get("agent", "-"), role, session.peer, action, target, outcome, detail)
        except Exception:
            log.failure("audit of {action} by {actor} failed", action=action, actor=identity.get("agent"))
