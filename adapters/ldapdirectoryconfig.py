"""The ``[directory]`` settings: which directory signs people in (SQL or LDAP), how to reach LDAP, login limits.

:data:`DIRECTORY_SCHEMA` is the section's whitelist of keys and their
parsers (used by :mod:`ctid.config`); :func:`directory_settings` builds the
frozen :class:`DirectorySettings` and checks the keys that depend on each
other, raising :class:`DirectorySettingError` naming the key.
docs/directory.md explains the LDAP mapping; docs/configuration.md every key.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from ldap3.core.exceptions import LDAPInvalidDnError
from ldap3.utils.dn import parse_dn

__all__ = ["DIRECTORY_SCHEMA", "DirectorySettingError", "DirectorySettings", "directory_settings"]


class DirectorySettingError(ValueError):
    """A bad ``[directory]`` setting; ``key`` names it."""

    def __init__(self, key: str, message: str):
        super().__init__(message)
        self.key = key


@dataclass(frozen=True)
class DirectorySettings:
    """[directory]: the SQL or LDAP directory, and the failed-login limits."""

    backend: str = "sql"
    url: str = ""
    starttls: bool = False
    allow_plaintext: bool = False
    ca_file: str = ""
    bind: str = "search"
    user_dn: str = ""
    search_base: str = ""
    search_filter: str = "(uid={agent})"
    service_dn: str = ""
    service_password: str = dataclasses.field(default="", repr=False)
    id_attribute: str = "uid"
    name_attribute: str = "cn"
    city_attribute: str = "l"
    skill_attribute: str = "businessCategory"
    group_base: str = ""
    member_attribute: str = "member"
    agent_group: str = ""
    supervisor_group: str = ""
    admin_group: str = ""
    leader_group: str = ""
    manages_base: str = ""
    connect_timeout: float = 5.0
    request_timeout: int = 5
    operation_timeout: float = 15.0
    cache_age: float = 300.0
    threads: int = 4
    user_failures: int = 5
    address_failures: int = 20
    lockout_base: float = 1.0
    lockout_max: float = 300.0
    lockout_forget: float = 900.0

    @property
    def role_groups(self) -> dict[str, str]:
        """role -> group DN, for the roles that have a group."""
        groups = {"agent": self.agent_group, "supervisor": self.supervisor_group, "admin": self.admin_group,
                  "leader": self.leader_group}
        return {role: dn for role, dn in groups.items() if dn}

    @property
    def tls(self) -> bool:
        """True when the connection is encrypted (ldaps:// or StartTLS)."""
        return self.url.lower().startswith("ldaps://") or self.starttls


def _choice(*choices: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text.strip() not in choices:
            raise ValueError(f"expected {' or '.join(choices)}, got {text!r}")
        return text.strip()

    return parse


def _bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("yes", "true", "on", "1"):
        return True
    if lowered in ("no", "false", "off", "0"):
        return False
    raise ValueError(f"expected yes or no, got {text!r}")


def _number(kind: Callable[[str], Any], low: float) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        value = kind(text)
        if not value >= low:
            raise ValueError(f"must be at least {low:g}, got {text!r}")
        return value

    return parse


def _positive(kind: Callable[[str], Any]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        value = kind(text)
        if not value > 0:
            raise ValueError(f"must be greater than 0, got {text!r}")
        return value

    return parse


def _url(text: str) -> str:
    """``ldap://host[:port]`` or ``ldaps://host[:port]``, nothing after the address."""
    url = text.strip()
    if not url:
        return url
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 -- raises ValueError for a bad port
    except ValueError as e:
        raise ValueError(f"not an LDAP URL: {e}") from None
    if parts.scheme not in ("ldap", "ldaps") or not parts.hostname or parts.path not in ("", "/") or parts.query:
        raise ValueError(f"expected ldap://HOST[:PORT] or ldaps://HOST[:PORT], got {url!r}")
    return url


def _dn(text: str) -> str:
    """A distinguished name (checked by parsing), or empty."""
    dn = text.strip()
    if dn:
        try:
            parse_dn(dn)
        except LDAPInvalidDnError:
            raise ValueError(f"not a distinguished name: {dn!r}") from None
    return dn


def _attribute(text: str) -> str:
    name = text.strip()
    if not name or not name.replace("-", "").isalnum() or not name[0].isalpha():
        raise ValueError(f"not an attribute name: {text!r}")
    return name


def _file(text: str) -> str:
    path = text.strip()
    if path and not os.path.isfile(path):
        raise ValueError(f"no such file: {path!r}")
    return path


DIRECTORY_SCHEMA: dict[str, Callable[[str], Any]] = {
    "backend": _choice("sql", "ldap"),
    "url": _url,
    "starttls": _bool,
    "allow_plaintext": _bool,
    "ca_file": _file,
    "bind": _choice("search", "user"),
    "user_dn": str.strip,
    "search_base": _dn,
    "search_filter": str.strip,
    "service_dn": _dn,
    "service_password": str.strip,
    "id_attribute": _attribute,
    "name_attribute": _attribute,
    "city_attribute": _attribute,
    "skill_attribute": _attribute,
    "group_base": _dn,
    "member_attribute": _attribute,
    "agent_group": _dn,
    "supervisor_group": _dn,
    "admin_group": _dn,
    "leader_group": _dn,
    "manages_base": _dn,
    "connect_timeout": _positive(float),
    "request_timeout": _positive(int),
    "operation_timeout": _positive(float),
    "cache_age": _number(float, 0),
    "threads": _positive(int),
    "user_failures": _number(int, 0),
    "address_failures": _number(int, 0),
    "lockout_base": _positive(float),
    "lockout_max": _positive(float),
    "lockout_forget": _positive(float),
}


def _check_ldap(settings: DirectorySettings) -> None:
    """The keys backend = ldap needs, each refused by name."""
    if not settings.url:
        raise DirectorySettingError("url", "required when backend = ldap")
    if settings.starttls and settings.url.lower().startswith("ldaps://"):
        raise DirectorySettingError("starttls", "ldaps:// is already encrypted; use starttls with ldap:// only")
    if not settings.tls and not settings.allow_plaintext:
        raise DirectorySettingError("url", "passwords would cross the network in clear: use ldaps://, or "
                                           "starttls = yes, or allow_plaintext = yes (tests only)")
    if settings.bind == "user":
        if "{agent}" not in settings.user_dn:
            raise DirectorySettingError("user_dn", "required with bind = user, with {agent} where the id goes")
        try:
            parse_dn(settings.user_dn.replace("{agent}", "x"))
        except LDAPInvalidDnError:
            raise DirectorySettingError("user_dn", f"not a DN template: {settings.user_dn!r}") from None
    else:
        if not settings.search_base:
            raise DirectorySettingError("search_base", "required with bind = search")
        if "{agent}" not in settings.search_filter or not settings.search_filter.startswith("("):
            raise DirectorySettingError("search_filter", "an LDAP filter with {agent}, e.g. (uid={agent})")
        if bool(settings.service_dn) != bool(settings.service_password):
            raise DirectorySettingError("service_password", "service_dn and service_password go together")
    if (settings.role_groups or settings.manages_base) and not settings.group_base:
        raise DirectorySettingError("group_base", "required to find the role and manages groups")


def directory_settings(values: dict[str, Any]) -> DirectorySettings:
    """The [directory] settings from parsed ``values``; DirectorySettingError for keys that do not fit together."""
    settings = DirectorySettings(**values)
    if settings.lockout_max < settings.lockout_base:
        raise DirectorySettingError("lockout_max", "must be at least lockout_base")
    if settings.backend == "ldap":
        _check_ldap(settings)
    return settings
