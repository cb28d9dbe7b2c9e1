"""The database-backed directory: agents, their roles and skills, and scrypt password hashes.

:class:`SQLDirectory` implements :class:`~ctid.directory.IDirectory` (and
:class:`~ctid.directory.IDirectoryAdmin`) on a
:class:`~ctid.adapters.store.pool.DatabasePool`.  Queries *and* password
hashing run on the pool's threads, never on the reactor.

Passwords are stored as ``scrypt$n$r$p$salt_b64$hash_b64`` (standard-library
:func:`hashlib.scrypt`, 16-byte random salt, 32-byte key) and compared with
:func:`hmac.compare_digest`.  An unknown agent costs one scrypt too (against
a dummy hash), so unknown ids and wrong passwords look alike.  Passwords
never reach a log, an event, an exception or a column in clear.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from collections.abc import Iterable, Mapping

from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from ctid.adapters.store.pool import DatabasePool
from ctid.adapters.store.schema import agent_skills, agents, skill_groups
from ctid.directory import (
    ROLES,
    AuthenticationError,
    DirectoryError,
    Identity,
    join_list,
    split_list,
)
from ctid.interfaces import IDirectory, IDirectoryAdmin

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
_SALT_BYTES, _KEY_BYTES = 16, 32
_MAX_N = 2**20  # refuse stored parameters that would eat memory
_MAX_PASSWORD_BYTES = 1024
_MAX_ID = 32

log = Logger()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=_KEY_BYTES,
                          maxmem=256 * n * r + 1024 * 1024)


def hash_password(password: str, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> str:
    """The self-describing salted hash ``scrypt$n$r$p$salt_b64$hash_b64`` of ``password`` (slow: a thread)."""
    if not password:
        raise ValueError("empty password")
    salt = os.urandom(_SALT_BYTES)
    return f"scrypt${n}${r}${p}${_b64(salt)}${_b64(_scrypt(password, salt, n, r, p))}"


def verify_password(password: str, stored: str) -> bool:
    """True when ``password`` matches ``stored`` (from :func:`hash_password`); False for any malformed hash."""
    try:
        scheme, n_text, r_text, p_text, salt_text, expected_text = stored.split("$")
        n, r, p = int(n_text), int(r_text), int(p_text)
        if scheme != "scrypt" or not (2 <= n <= _MAX_N and 1 <= r <= 32 and 1 <= p <= 16):
            return False
        salt, expected = base64.b64decode(salt_text, validate=True), base64.b64decode(expected_text, validate=True)
        return hmac.compare_digest(_scrypt(password, salt, n, r, p), expected)
    except ValueError:  # malformed hash, bad base64, n not a power of 2
        return False


#: Verified against when the agent is unknown or has no password, so that costs one scrypt too.  Its
#: password was random and thrown away; the result is ignored anyway.  Same parameters as new hashes.
DUMMY_HASH = "scrypt$16384$8$1$sO/b5KCW8gll4yTCemkMzg==$+8myyAOPAUJ1gHrpFxCOhccBbBkdH0dJ2RMemr/Oc3s="


def _identity(connection: Connection, row) -> Identity:
    """The Identity of an ``agents`` row, with its skills."""
    skills = connection.execute(select(agent_skills.c.skill_group, agent_skills.c.level)
                                .where(agent_skills.c.agent_id == row.agent_id)).all()
    return Identity(agent_id=row.agent_id, name=row.name, roles=split_list(row.roles) & ROLES,
                    skills={group: level for group, level in skills}, city=row.city,
                    manages=split_list(row.manages), enabled=bool(row.enabled))


def _get(connection: Connection, agent_id: str):
    return connection.execute(select(agents).where(agents.c.agent_id == agent_id)).first()


def _authenticate(connection: Connection, agent_id: str, password: str) -> Identity:
    """In a pool thread: the Identity, or AuthenticationError — after exactly one scrypt either way."""
    row = _get(connection, agent_id) if 0 < len(agent_id) <= _MAX_ID else None
    stored = row.password_hash if row is not None and row.password_hash else None
    ok = verify_password(password, stored or DUMMY_HASH)
    if row is None or stored is None or not ok:
        raise AuthenticationError("bad_credentials")
    if not row.enabled:
        raise AuthenticationError("disabled")
    return _identity(connection, row)


def _lookup(connection: Connection, agent_id: str) -> Identity | None:
    row = _get(connection, agent_id)
    return None if row is None else _identity(connection, row)


def _add_skill_group(connection: Connection, name: str, description: str) -> None:
    if connection.execute(select(skill_groups.c.name).where(skill_groups.c.name == name)).first():
        connection.execute(update(skill_groups).where(skill_groups.c.name == name).values(description=description))
    else:
        connection.execute(insert(skill_groups).values(name=name, description=description))


def _add_agent(connection: Connection, values: dict, skills: Mapping[str, int], replace: bool) -> None:
    """In a pool thread: insert (or replace) the agent row and its skills, after checking the groups exist."""
    known = set(connection.execute(select(skill_groups.c.name).where(skill_groups.c.name.in_(list(skills)))).scalars())
    if set(skills) - known:
        raise ValueError(f"unknown skill groups {sorted(set(skills) - known)}")
    agent_id = values["agent_id"]
    if _get(connection, agent_id) is not None:
        if not replace:
            raise ValueError(f"agent {agent_id!r} already exists")
        connection.execute(update(agents).where(agents.c.agent_id == agent_id).values(**values))
        connection.execute(delete(agent_skills).where(agent_skills.c.agent_id == agent_id))
    else:
        connection.execute(insert(agents).values(**values))
    if skills:
        connection.execute(insert(agent_skills), [{"agent_id": agent_id, "skill_group": group, "level": level}
                                                  for group, level in skills.items()])


def _update_agent(connection: Connection, agent_id: str, **values) -> None:
    if connection.execute(update(agents).where(agents.c.agent_id == agent_id).values(**values)).rowcount != 1:
        raise LookupError(f"unknown agent {agent_id!r}")


def _check_password(password: str) -> None:
    if not isinstance(password, str) or not password or len(password.encode("utf-8")) > _MAX_PASSWORD_BYTES:
        raise ValueError(f"a password is 1..{_MAX_PASSWORD_BYTES} bytes of text")


def _set_password(connection: Connection, agent_id: str, password: str) -> None:
    """In a pool thread: check, hash and store a new password."""
    _check_password(password)
    _update_agent(connection, agent_id, password_hash=hash_password(password))


def _add_agent_checked(connection: Connection, agent_id: str, name: str, password: str | None, roles: frozenset,
                       skills: dict, city: str | None, manages: frozenset, enabled: bool, replace: bool) -> None:
    """In a pool thread: validate, hash the password (if any), then :func:`_add_agent`."""
    Identity(agent_id=agent_id, name=name, roles=roles, skills=skills)  # checks the roles
    if not 0 < len(agent_id) <= _MAX_ID or any(not 1 <= level <= 9 for level in skills.values()):
        raise ValueError("agent ids are 1..32 characters and skill levels 1..9")
    if password is not None:
        _check_password(password)
    values = dict(agent_id=agent_id, name=name, roles=join_list(roles), manages=join_list(manages), city=city,
                  enabled=enabled, password_hash=None if password is None else hash_password(password))
    _add_agent(connection, values, skills, replace)


def _unavailable(failure: Failure) -> Failure:
    """Turn database errors into DirectoryError (the domain never sees SQLAlchemy); pass others on.

    Only the driver's own message is logged: SQLAlchemy's text would add the
    statement's parameters.
    """
    if failure.check(SQLAlchemyError):
        error = failure.value
        detail = repr(error.orig) if isinstance(error, DBAPIError) else type(error).__name__
        log.warn("directory database error: {detail}", detail=detail)
        raise DirectoryError(f"directory database unavailable ({type(error).__name__})") from None
    return failure


@implementer(IDirectory, IDirectoryAdmin)
class SQLDirectory:
    """The agent directory in ctid's own database (tables ``agents``, ``skill_groups``, ``agent_skills``)."""

    def __init__(self, pool: DatabasePool):
        self.pool = pool

    def _run(self, fn, *args, **kwargs) -> Deferred:
        return self.pool.run(fn, *args, **kwargs).addErrback(_unavailable)

    def authenticate(self, agent_id: str, password: str) -> Deferred[Identity]:
        """See :meth:`IDirectory.authenticate`; too-long input is refused like a wrong password."""
        if not isinstance(password, str) or len(password.encode("utf-8")) > _MAX_PASSWORD_BYTES:
            password = ""
        return self._run(_authenticate, str(agent_id), password)

    def lookup(self, agent_id: str) -> Deferred[Identity | None]:
        """See :meth:`IDirectory.lookup`."""
        return self._run(_lookup, str(agent_id))

    def add_skill_group(self, name: str, description: str = "") -> Deferred[None]:
        """See :meth:`IDirectoryAdmin.add_skill_group`."""
        return self._run(_add_skill_group, name, description)

    def add_agent(self, agent_id: str, name: str, password: str | None = None, roles: Iterable[str] = ("agent",),
                  skills: Mapping[str, int] | None = None, city: str | None = None, manages: Iterable[str] = (),
                  enabled: bool = True, replace: bool = False) -> Deferred[None]:
        """See :meth:`IDirectoryAdmin.add_agent`; the password is checked and hashed on a pool thread.

        ``roles`` and ``manages`` are iterables or comma lists.  ``replace``
        rewrites every column, the password hash included, and the skills.
        """
        roles = split_list(roles) if isinstance(roles, str) else frozenset(roles)
        manages = split_list(manages) if isinstance(manages, str) else frozenset(manages)
        return self._run(_add_agent_checked, agent_id, name, password, roles, dict(skills or {}), city, manages,
                         bool(enabled), replace)

    def set_password(self, agent_id: str, password: str) -> Deferred[None]:
        """See :meth:`IDirectoryAdmin.set_password`."""
        return self._run(_set_password, agent_id, password)

    def set_enabled(self, agent_id: str, enabled: bool) -> Deferred[None]:
        """See :meth:`IDirectoryAdmin.set_enabled`."""
        return self._run(_update_agent, agent_id, enabled=bool(enabled))

