"""The blocking half of the LDAP directory: ldap3 calls, run on the directory's pool threads only.

:class:`LDAPQuery` opens one short connection per operation (so nothing is
shared between threads), encrypts it (ldaps:// or StartTLS) and checks the
server's certificate against the CA file and its host name — by ldap3 and
again by service-identity — *before* any password is sent, then binds and
searches.  It returns plain, frozen :class:`~ctid.directory.Identity`
values and raises only :class:`~ctid.directory.AuthenticationError` or
:class:`LDAPUnavailable`; it never logs (it is not on the reactor thread).

Mapping (docs/directory.md): the entry's ``id_attribute`` is the agent id,
``name_attribute`` the name, ``city_attribute`` the city, each
``skill_attribute`` value ``GROUP`` or ``GROUP:LEVEL`` a skill (level 1..9,
default 1; other values are skipped and reported); membership (the group's
``member_attribute`` holds the person's DN) of a role group gives the role,
of a group directly under ``manages_base`` gives ``manages`` the group's
name (its first RDN value: a skill group or a city).
"""

from __future__ import annotations

import ipaddress
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import urlsplit

from cryptography import x509
from ldap3 import BASE, NONE, SUBTREE, SYNC, Connection, Server, Tls
from ldap3.core.exceptions import LDAPException
from ldap3.utils.conv import escape_filter_chars
from ldap3.utils.dn import escape_rdn, parse_dn
from service_identity import VerificationError
from service_identity.cryptography import verify_certificate_hostname, verify_certificate_ip_address

from ctid.adapters.ldapdirectoryconfig import DirectorySettings
from ctid.directory import AuthenticationError, Identity

MAX_PASSWORD_BYTES = 1024
MAX_ID = 64
#: invalidCredentials, invalidDNSyntax: a person's wrong password or impossible id.
REFUSED_BIND = (49, 34)


class LDAPUnavailable(Exception):
    """The LDAP server could not be reached, refused TLS, failed the certificate check, or answered an error."""


@dataclass(frozen=True)
class Found:
    """An entry turned into an Identity, with what could not be mapped (``skipped``: for a warning)."""

    identity: Identity
    skipped: tuple[str, ...] = ()


def _key(dn: str) -> tuple[tuple[str, str], ...]:
    """A DN compared case-insensitively, spaces around separators ignored."""
    return tuple((attr.strip().lower(), value.strip().lower()) for attr, value, _ in parse_dn(dn))


def _first(entry, attribute: str) -> str | None:
    values = entry.entry_attributes_as_dict.get(attribute) if entry is not None else None
    return str(values[0]) if values else None


def _skills(values) -> tuple[dict[str, int], list[str]]:
    skills, skipped = {}, []
    for value in values or ():
        group, sep, level = str(value).partition(":")
        if group.strip() and (not sep or (level.strip().isdigit() and 1 <= int(level) <= 9)):
            skills[group.strip()] = int(level) if sep else 1
        else:
            skipped.append(f"skill {str(value)[:40]!r}")
    return skills, skipped


class LDAPQuery:
    """Authenticate and look up people in LDAP with ldap3 (blocking: call on a pool thread)."""

    def __init__(self, settings: DirectorySettings):
        self.settings = settings
        url = urlsplit(settings.url)
        self.host = url.hostname or ""
        self.ldaps = url.scheme == "ldaps"
        self.port = url.port or (636 if self.ldaps else 389)
        self.tls = Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=settings.ca_file or None,
                       sni=None if self._is_ip(self.host) else self.host) if settings.tls else None
        self.role_groups = {_key(dn): role for role, dn in settings.role_groups.items()}
        self.manages_base = _key(settings.manages_base) if settings.manages_base else None

    @staticmethod
    def _is_ip(host: str) -> bool:
        try:
            ipaddress.ip_address(host)
        except ValueError:
            return False
        return True

    def authenticate(self, agent_id: str, password: str) -> Found:
        """The person ``agent_id`` if ``password`` binds as them (AuthenticationError otherwise)."""
        if not password or len(password.encode("utf-8")) > MAX_PASSWORD_BYTES or not 0 < len(agent_id) <= MAX_ID:
            raise AuthenticationError("bad_credentials")  # an empty password would be an anonymous bind
        try:
            if self.settings.bind == "user":
                dn = self.settings.user_dn.replace("{agent}", escape_rdn(agent_id))
                with self._bound(dn, password) as connection:
                    found = self._read(connection, dn)
            else:
                with self._bound(self.settings.service_dn, self.settings.service_password, True) as service:
                    dn = self._find(service, agent_id)
                    with self._bound(dn, password):
                        pass
                    found = self._read(service, dn)
        except LDAPException as e:
            raise LDAPUnavailable(f"{type(e).__name__}: {e}") from None
        if found is None:
            raise AuthenticationError("bad_credentials")
        if not found.identity.enabled:
            raise AuthenticationError("disabled")
        return found

    def lookup(self, agent_id: str) -> Found | None:
        """The person ``agent_id`` (through the service account, or anonymously), or None when unknown."""
        if not 0 < len(agent_id) <= MAX_ID:
            return None
        try:
            with self._bound(self.settings.service_dn, self.settings.service_password, True) as connection:
                if self.settings.bind == "user":
                    return self._read(connection, self.settings.user_dn.replace("{agent}", escape_rdn(agent_id)))
                try:
                    dn = self._find(connection, agent_id)
                except AuthenticationError:
                    return None
                return self._read(connection, dn)
        except LDAPException as e:
            raise LDAPUnavailable(f"{type(e).__name__}: {e}") from None

    @contextmanager
    def _bound(self, dn: str, password: str, service: bool = False) -> Iterator[Connection]:
        """An open, encrypted (when configured), verified connection bound as ``dn`` (anonymous when empty).

        A refused person's bind is AuthenticationError; a refused service
        account (``service``) means the directory is misconfigured: LDAPUnavailable.
        """
        server = Server(self.host, port=self.port, use_ssl=self.ldaps, tls=self.tls, get_info=NONE,
                        connect_timeout=self.settings.connect_timeout)
        connection = Connection(server, user=dn or None, password=password or None, client_strategy=SYNC,
                                read_only=True, receive_timeout=self.settings.request_timeout,
                                raise_exceptions=False, auto_referrals=False)
        try:
            connection.open()
            if self.settings.starttls and not connection.start_tls():
                raise LDAPUnavailable("StartTLS refused")
            if self.tls is not None:
                self._verify_host(connection)
            if not connection.bind():
                result = connection.result or {}
                if result.get("result") in REFUSED_BIND and not service:
                    raise AuthenticationError("bad_credentials")
                who = "service account" if service else "user"
                raise LDAPUnavailable(f"{who} bind refused: {result.get('description')}")
            yield connection
        finally:
            connection.unbind()

    def _verify_host(self, connection: Connection) -> None:
        """Check the server certificate names the host we dialled (service-identity, RFC 6125)."""
        der = connection.socket.getpeercert(binary_form=True)
        if not der:
            raise LDAPUnavailable("the server sent no certificate")
        certificate = x509.load_der_x509_certificate(der)
        try:
            if self._is_ip(self.host):
                verify_certificate_ip_address(certificate, self.host)
            else:
                verify_certificate_hostname(certificate, self.host)
        except VerificationError:
            raise LDAPUnavailable(f"the server certificate is not valid for {self.host}") from None

    def _search(self, connection: Connection, base: str, flt: str, scope, attributes) -> list:
        if not connection.search(base, flt, search_scope=scope, attributes=attributes,
                                 time_limit=max(1, int(self.settings.request_timeout))):
            result = connection.result or {}
            if result.get("description") in ("noSuchObject", "success"):
                return []
            raise LDAPUnavailable(f"search refused: {result.get('description')}")
        return list(connection.entries)

    def _find(self, connection: Connection, agent_id: str) -> str:
        """The DN of the one entry matching the search filter for ``agent_id`` (AuthenticationError otherwise)."""
        flt = self.settings.search_filter.replace("{agent}", escape_filter_chars(agent_id))
        entries = self._search(connection, self.settings.search_base, flt, SUBTREE, [])
        if len(entries) != 1:
            raise AuthenticationError("bad_credentials")
        return entries[0].entry_dn

    def _read(self, connection: Connection, dn: str) -> Found | None:
        """The Identity of the entry at ``dn`` with its groups, or None when there is no such entry."""
        s = self.settings
        attributes = [s.id_attribute, s.name_attribute, s.city_attribute, s.skill_attribute]
        entries = self._search(connection, dn, "(objectClass=*)", BASE, attributes)
        if not entries:
            return None
        entry = entries[0]
        roles, manages = self._groups(connection, entry.entry_dn)
        skills, skipped = _skills(entry.entry_attributes_as_dict.get(s.skill_attribute))
        agent_id = _first(entry, s.id_attribute) or ""
        if not 0 < len(agent_id) <= MAX_ID:
            return None
        identity = Identity(agent_id=agent_id, name=_first(entry, s.name_attribute) or agent_id, roles=roles,
                            skills=skills, city=_first(entry, s.city_attribute), manages=manages, enabled=bool(roles))
        return Found(identity, tuple(skipped))

    def _groups(self, connection: Connection, dn: str) -> tuple[frozenset[str], frozenset[str]]:
        """The roles and the managed groups/cities of the person at ``dn``, from the groups listing them."""
        if not self.settings.group_base:
            return frozenset(), frozenset()
        flt = f"({self.settings.member_attribute}={escape_filter_chars(dn)})"
        roles, manages = set(), set()
        for group in self._search(connection, self.settings.group_base, flt, SUBTREE, []):
            key = _key(group.entry_dn)
            if key in self.role_groups:
                roles.add(self.role_groups[key])
            if self.manages_base is not None and key[1:] == self.manages_base:
                manages.add(parse_dn(group.entry_dn)[0][1])
        return frozenset(roles), frozenset(manages)
