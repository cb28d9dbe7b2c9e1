"""Who may log in, and as what: the directory seam (database now, LDAP later).

Pure: no SQL, no LDAP.  :class:`ctid.interfaces.IDirectory` is implemented by
``ctid.adapters.directory.SQLDirectory`` (and later an LDAP directory);
the CTI server authenticates agents through it and gets an
:class:`Identity` — plain, frozen data the domain can keep.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

#: The roles a person can hold (OP-3).
ROLES = frozenset({"agent", "supervisor", "admin", "leader"})


class AuthenticationError(Exception):
    """A login was refused.

    ``code`` is ``"bad_credentials"`` (unknown id or wrong password: the same
    code and message, so a client cannot tell which) or ``"disabled"`` (right
    password, account disabled).
    """

    MESSAGES = {"bad_credentials": "unknown agent or wrong password", "disabled": "account disabled"}

    def __init__(self, code: str):
        if code not in self.MESSAGES:
            raise ValueError(f"unknown authentication error code {code!r}")
        super().__init__(self.MESSAGES[code])
        self.code = code


class DirectoryError(Exception):
    """The directory could not answer (database or LDAP server down, timeout): try again later."""


@dataclass(frozen=True)
class Identity:
    """An authenticated person, as the directory knows them.

    ``roles`` ⊆ :data:`ROLES`; ``skills`` maps skill group to level (1..9,
    read-only); ``manages`` holds the skill groups and cities a supervisor
    manages.  Never carries a password or its hash.
    """

    agent_id: str
    name: str
    roles: frozenset[str] = frozenset({"agent"})
    skills: Mapping[str, int] = field(default_factory=dict, hash=False)
    city: str | None = None
    manages: frozenset[str] = frozenset()
    enabled: bool = True

    def __post_init__(self) -> None:
        unknown = set(self.roles) - ROLES
        if unknown:
            raise ValueError(f"unknown roles {sorted(unknown)}")
        object.__setattr__(self, "roles", frozenset(self.roles))
        object.__setattr__(self, "manages", frozenset(self.manages))
        object.__setattr__(self, "skills", MappingProxyType(dict(self.skills)))

    def has_role(self, role: str) -> bool:
        """True when this person holds ``role``."""
        return role in self.roles


def split_list(text: str | None) -> frozenset[str]:
    """``"a, b,,c"`` -> ``{"a", "b", "c"}`` (the directory's comma lists)."""
    return frozenset(item.strip() for item in (text or "").split(",") if item.strip())


def join_list(items: Iterable[str]) -> str:
    """``{"b", "a"}`` -> ``"a,b"``: sorted, so the stored text is stable."""
    items = sorted({item.strip() for item in items if item.strip()})
    if any("," in item for item in items):
        raise ValueError("list items must not contain commas")
    return ",".join(items)
