"""The LDAP directory against a real OpenLDAP slapd: both bind modes, groups -> roles and manages, refusals,
LDAP down or silent, the identity cache's age, LDAPS and StartTLS with certificate and host-name checks."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import pytest_twisted
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from twisted.internet import reactor
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import LogLevel, globalLogPublisher
from zope.interface.verify import verifyObject

from ctid import config
from ctid.adapters.ldapdirectory import LDAPDirectory
from ctid.adapters.ldapdirectoryconfig import DirectorySettings, directory_settings
from ctid.adapters.ldapdirectoryquery import LDAPQuery, LDAPUnavailable
from ctid.directory import AuthenticationError, DirectoryError, Identity
from ctid.interfaces import IDirectory
from ctid.service import makeService
from tests.ldapserver import (
    BASE,
    GROUPS,
    MANAGES,
    PASSWORD,
    ROLE_GROUPS,
    SERVICE_DN,
    SERVICE_PASSWORD,
    SlapdServer,
    free_port,
    make_certificates,
    require_slapd,
)

ROOT = Path(__file__).resolve().parent.parent
GROUP_KEYS = {"group_base": GROUPS, "manages_base": MANAGES,
              **{f"{role}_group": dn for role, dn in ROLE_GROUPS.items()}}


@pytest.fixture(scope="module")
def slapd(tmp_path_factory):
    """One slapd for the module (plain and ldaps:// listeners), stopped after."""
    require_slapd()
    folder = tmp_path_factory.mktemp("slapd")
    server = SlapdServer(folder, make_certificates(folder / "tls"))
    server.start()
    yield server
    server.stop()


def settings(url: str, **keys) -> DirectorySettings:
    """[directory] for ``url``: search-then-bind with the service account and the test bank's groups."""
    values = {"backend": "ldap", "url": url, "allow_plaintext": True, "search_base": f"ou=people,{BASE}",
              "service_dn": SERVICE_DN, "service_password": SERVICE_PASSWORD, "request_timeout": 2,
              "operation_timeout": 10.0, **GROUP_KEYS, **keys}
    return directory_settings(values)


@pytest_twisted.async_yield_fixture
async def started():
    """Start LDAPDirectory services for a test (``started(directory)``) and stop them after."""
    running = []

    def start(directory: LDAPDirectory) -> LDAPDirectory:
        directory.startService()
        running.append(directory)
        return directory

    yield start
    for directory in running:
        await directory.stopService()


@pytest.fixture
def log_events():
    """Every log event emitted during the test."""
    events = []
    globalLogPublisher.addObserver(events.append)
    yield events
    globalLogPublisher.removeObserver(events.append)


async def refused(deferred) -> Exception:
    with pytest.raises((AuthenticationError, DirectoryError)) as info:
        await deferred
    return info.value


# --- bind modes, groups -> roles and manages -------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_search_then_bind_maps_groups_to_roles_and_manages(slapd, started):
    """The service account finds 1900; binding as it gives its name, city, skills, roles and managed group/city."""
    directory = started(LDAPDirectory(settings(slapd.url), reactor))
    assert verifyObject(IDirectory, directory)
    supervisor = await directory.authenticate("1900", PASSWORD)
    assert supervisor == Identity("1900", "Zhang Min", roles={"agent", "supervisor"}, skills={"accounts": 9},
                                  city="Shanghai", manages={"accounts", "Shanghai"})
    agent = await directory.authenticate("1001", PASSWORD)
    assert (agent.roles, dict(agent.skills), agent.manages) == ({"agent"}, {"accounts": 5, "consultation": 1}, set())
    assert (await directory.authenticate("1999", PASSWORD)).roles == {"admin"}
    assert (await directory.authenticate("2000", PASSWORD)).roles == {"leader"}


@pytest_twisted.ensureDeferred
async def test_bind_as_the_user_reads_its_own_entry_and_groups(slapd, started):
    """``bind = user``: no service account; the person's own bind reads its entry and its groups."""
    keys = {"bind": "user", "user_dn": f"uid={{agent}},ou=people,{BASE}", "service_dn": "", "service_password": ""}
    directory = started(LDAPDirectory(settings(slapd.url, **keys), reactor))
    supervisor = await directory.authenticate("1900", PASSWORD)
    assert supervisor.roles == {"agent", "supervisor"} and supervisor.manages == {"accounts", "Shanghai"}
    assert (await refused(directory.authenticate("1900", "wrong"))).code == "bad_credentials"
    assert (await refused(directory.authenticate("a,b=c", PASSWORD))).code == "bad_credentials"


@pytest_twisted.ensureDeferred
async def test_wrong_password_unknown_id_empty_password_and_filter_tricks_are_bad_credentials(slapd, started):
    """Every wrong login looks the same; an empty password is never an anonymous bind; ids are escaped."""
    directory = started(LDAPDirectory(settings(slapd.url), reactor))
    for agent, password in (("1001", "wrong"), ("nobody", PASSWORD), ("1001", ""), ("*", PASSWORD),
                            ("1001)(uid=*", PASSWORD), ("x" * 500, PASSWORD), ("1001", "p" * 5000)):
        error = await refused(directory.authenticate(agent, password))
        assert isinstance(error, AuthenticationError) and error.code == "bad_credentials", (agent, password[:8])


@pytest_twisted.ensureDeferred
async def test_a_person_in_no_role_group_is_disabled(slapd, started):
    """Right password but no role group: ``disabled``; lookup shows the person as not enabled."""
    directory = started(LDAPDirectory(settings(slapd.url), reactor))
    assert (await refused(directory.authenticate("3000", PASSWORD))).code == "disabled"
    person = await directory.lookup("3000")
    assert person.enabled is False and person.roles == frozenset() and person.city == "Beijing"


@pytest_twisted.ensureDeferred
async def test_lookup_through_the_service_account(slapd, started):
    """lookup finds people (the same Identity as a login) and answers None for unknown ids."""
    directory = started(LDAPDirectory(settings(slapd.url, cache_age=0), reactor))
    assert await directory.lookup("1900") == await directory.authenticate("1900", PASSWORD)
    assert await directory.lookup("nobody") is None and await directory.lookup("") is None


@pytest_twisted.ensureDeferred
async def test_unmappable_skills_are_skipped_with_a_warning(slapd, started, log_events):
    """A skill level outside 1..9 is left out and named in a warning; the login still works."""
    directory = started(LDAPDirectory(settings(slapd.url), reactor))
    assert dict((await directory.authenticate("1002", PASSWORD)).skills) == {"accounts": 3}
    warnings = [e for e in log_events if e.get("log_level") == LogLevel.warn and "skipped" in e.get("log_format", "")]
    assert warnings and warnings[0]["skipped"] == "skill 'bogus:12'"


@pytest_twisted.ensureDeferred
async def test_no_password_ever_reaches_the_log(slapd, started, log_events):
    """Logins, refusals and a wrong service password log no password (and the settings' repr hides the secret)."""
    directory = started(LDAPDirectory(settings(slapd.url), reactor))
    await directory.authenticate("1001", PASSWORD)
    await refused(directory.authenticate("1001", "Wr0ng-Secret"))
    broken = started(LDAPDirectory(settings(slapd.url, service_password="Bad-Service-Pw"), reactor))
    error = await refused(broken.authenticate("1001", PASSWORD))
    assert isinstance(error, DirectoryError) and "service account bind refused" in str(error)
    text = repr(log_events) + repr(directory.settings)
    for secret in (PASSWORD, "Wr0ng-Secret", SERVICE_PASSWORD, "Bad-Service-Pw"):
        assert secret not in text


# --- LDAP down, silent, overloaded ---------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_ldap_down_is_a_directory_error(started, log_events):
    """Nothing listening: DirectoryError (the CTI Login answers directory_unavailable), with the reason logged."""
    directory = started(LDAPDirectory(settings(f"ldap://127.0.0.1:{free_port()}", connect_timeout=2.0), reactor))
    error = await refused(directory.authenticate("1001", PASSWORD))
    assert isinstance(error, DirectoryError) and "unavailable" in str(error)
    assert isinstance(await refused(directory.lookup("1001")), DirectoryError)
    assert any("unavailable" in e.get("log_format", "") for e in log_events)


@pytest_twisted.ensureDeferred
async def test_a_server_that_never_answers_times_out(started):
    """A server that accepts but never answers: the login fails within ``operation_timeout``, not never."""
    port = reactor.listenTCP(0, Factory.forProtocol(Protocol), interface="127.0.0.1")
    try:
        url = f"ldap://127.0.0.1:{port.getHost().port}"
        directory = started(LDAPDirectory(settings(url, request_timeout=1, operation_timeout=0.3), reactor))
        error = await refused(directory.authenticate("1001", PASSWORD))
        assert isinstance(error, DirectoryError) and "no answer within 0.3 s" in str(error)
    finally:
        await port.stopListening()


def test_a_stopped_directory_or_a_full_queue_refuse_at_once():
    """Not running, or too many operations already waiting: DirectoryError at once, nothing queued."""
    directory = LDAPDirectory(settings("ldap://127.0.0.1:1", threads=1), Clock(), reactor=MemoryReactorClock())
    failures = []
    directory.authenticate("1001", PASSWORD).addErrback(failures.append)
    directory.running, directory.threadpool, directory.pending = True, object(), 16
    directory.lookup("1001").addErrback(failures.append)
    assert [f.value.args[0] for f in failures] == ["the LDAP directory is not running",
                                                   "the LDAP directory is overloaded"]


# --- the cache -----------------------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_cached_identities_serve_lookups_until_cache_age_and_never_after(slapd, started, tmp_path):
    """A login caches the identity; lookups use it while younger than cache_age, even with LDAP down — not after."""
    clock = Clock()
    directory = started(LDAPDirectory(settings(slapd.url, cache_age=60.0), clock, reactor=reactor))
    identity = await directory.authenticate("1001", PASSWORD)
    directory.query = LDAPQuery(settings(f"ldap://127.0.0.1:{free_port()}"))  # LDAP is now down
    clock.advance(59)
    assert await directory.lookup("1001") == identity and directory.cached("1001") == identity
    clock.advance(1)
    assert directory.cached("1001") is None
    assert isinstance(await refused(directory.lookup("1001")), DirectoryError)


@pytest_twisted.ensureDeferred
async def test_cache_age_zero_keeps_nothing(slapd, started):
    """``cache_age = 0``: every lookup asks the server."""
    directory = started(LDAPDirectory(settings(slapd.url, cache_age=0), reactor))
    await directory.authenticate("1001", PASSWORD)
    assert directory.cached("1001") is None


# --- TLS ------------------------------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_ldaps_and_starttls_verify_the_certificate_against_the_ca_file(slapd, started):
    """ldaps:// and StartTLS with the test CA both log in; the certificate names 127.0.0.1."""
    ca = str(slapd.certificates.ca)
    for keys in ({"url": slapd.ldaps_url}, {"url": slapd.url, "starttls": True}):
        directory = started(LDAPDirectory(settings(allow_plaintext=False, ca_file=ca, **keys), reactor))
        assert directory.settings.tls and (await directory.authenticate("1900", PASSWORD)).roles == {
            "agent", "supervisor"}


@pytest_twisted.ensureDeferred
async def test_a_certificate_from_another_ca_is_refused_before_any_password_is_sent(slapd, started, tmp_path):
    """A server whose certificate does not chain to ca_file: DirectoryError, for the service account and user alike."""
    other = make_certificates(tmp_path / "other")
    for keys in ({"url": slapd.ldaps_url}, {"url": slapd.url, "starttls": True}):
        directory = started(LDAPDirectory(settings(allow_plaintext=False, ca_file=str(other.ca), **keys), reactor))
        assert isinstance(await refused(directory.authenticate("1900", PASSWORD)), DirectoryError)


@pytest_twisted.ensureDeferred
async def test_a_certificate_for_another_host_name_is_refused(started, tmp_path):
    """A valid certificate (right CA) naming another host than the URL's: refused (ldaps:// and StartTLS)."""
    require_slapd()
    server = SlapdServer(tmp_path, make_certificates(tmp_path / "tls", names=("ldap.elsewhere.example",)))
    server.start()
    try:
        for keys in ({"url": server.ldaps_url}, {"url": server.url, "starttls": True}):
            directory = started(LDAPDirectory(settings(allow_plaintext=False, ca_file=str(server.certificates.ca),
                                                       **keys), reactor))
            error = await refused(directory.authenticate("1900", PASSWORD))
            assert isinstance(error, DirectoryError), keys
    finally:
        server.stop()


class _Peer:
    """The TLS socket side of a connection: just the peer certificate (DER)."""

    def __init__(self, der: bytes):
        self.socket = self
        self._der = der

    def getpeercert(self, binary_form: bool = False) -> bytes:
        return self._der


@pytest.mark.parametrize("host, names, ok", [
    ("127.0.0.1", ("localhost", "127.0.0.1"), True),
    ("ldap.bank.example", ("ldap.bank.example",), True),
    ("ldap.bank.example", ("other.bank.example", "127.0.0.1"), False),
    ("127.0.0.1", ("127.0.0.2",), False),
    ("127.0.0.1", ("localhost",), False),
])
def test_service_identity_checks_the_host_name_or_address(tmp_path, host, names, ok):
    """The second check (service-identity, RFC 6125): DNS names for host names, IP addresses for addresses."""
    files = make_certificates(tmp_path, names=names)
    der = x509.load_pem_x509_certificate(files.cert.read_bytes()).public_bytes(serialization.Encoding.DER)
    query = LDAPQuery(settings(f"ldaps://{host}", allow_plaintext=False))
    if ok:
        query._verify_host(_Peer(der))
    else:
        with pytest.raises(LDAPUnavailable, match=f"not valid for {host}"):
            query._verify_host(_Peer(der))
    with pytest.raises(LDAPUnavailable, match="no certificate"):
        query._verify_host(_Peer(b""))


# --- configuration and wiring --------------------------------------------------------------------------------


BASE_CONFIG = "[ami]\nsecret = x\n[directory]\nbackend = ldap\n"


@pytest.mark.parametrize("lines, expected", [
    ("", "[directory] url: required when backend = ldap"),
    ("url = ldap://ldap.bank.example\n", "[directory] url: passwords would cross the network in clear"),
    ("url = http://x\n", "[directory] url: expected ldap://HOST[:PORT] or ldaps://HOST[:PORT]"),
    ("url = ldaps://x\nstarttls = yes\n", "[directory] starttls: ldaps:// is already encrypted"),
    ("url = ldaps://x\nbind = user\n", "[directory] user_dn: required with bind = user"),
    ("url = ldaps://x\n", "[directory] search_base: required with bind = search"),
    ("url = ldaps://x\nsearch_base = ou=people\nsearch_filter = uid=x\n", "[directory] search_filter: an LDAP filter"),
    ("url = ldaps://x\nsearch_base = ou=people\nservice_dn = cn=ctid\n",
     "[directory] service_password: service_dn and service_password go together"),
    ("url = ldaps://x\nsearch_base = ou=people\nagent_group = cn=a\n", "[directory] group_base: required"),
    ("url = ldaps://x\nsearch_base = not a dn\n", "[directory] search_base: not a distinguished name"),
    ("url = ldaps://x\nca_file = /nonexistent.pem\n", "[directory] ca_file: no such file"),
    ("url = ldaps://x\nrequest_timeout = 0.5\n", "[directory] request_timeout: invalid literal"),
    ("lockout_base = 10\nlockout_max = 5\n", "[directory] lockout_max: must be at least lockout_base"),
    ("colour = blue\n", "[directory] colour: unknown setting"),
])
def test_bad_directory_settings_name_the_key(lines, expected):
    """Each bad or inconsistent [directory] setting stops start-up with a line naming it."""
    with pytest.raises(config.ConfigError, match=expected.replace("[", r"\[").replace("]", r"\]")):
        config.parse(BASE_CONFIG + lines)


def test_service_password_is_not_in_the_settings_repr():
    """The service account's password is kept out of repr (and so out of logged settings)."""
    parsed = config.parse(BASE_CONFIG + "url = ldaps://x\nsearch_base = ou=p\nservice_dn = cn=s\n"
                          "service_password = Hidden-Pw\n")
    assert parsed.directory.service_password == "Hidden-Pw" and "Hidden-Pw" not in repr(parsed)


def test_make_service_picks_the_ldap_directory(tmp_path):
    """backend = ldap: the desk authenticates through an LDAPDirectory, a named child service ``ldap``."""
    text = (ROOT / "conf" / "ctid.ini").read_text().replace(
        "backend = sql", f"backend = ldap\nurl = ldaps://ldap.bank.example\nsearch_base = ou=people,{BASE}")
    path = tmp_path / "ctid.ini"
    path.write_text(text)
    (tmp_path / "ivr").symlink_to(ROOT / "conf" / "ivr")
    (tmp_path / "prompts").symlink_to(ROOT / "conf" / "prompts")
    (tmp_path / "routes.toml").symlink_to(ROOT / "conf" / "routes.toml")
    root = makeService(config.load(str(path)), MemoryReactorClock())
    desk = root.getServiceNamed("cti").cti.handler
    assert isinstance(desk.directory, LDAPDirectory) and root.getServiceNamed("ldap") is desk.directory
    sql = makeService(dataclasses.replace(config.load(str(path)), directory=DirectorySettings()), MemoryReactorClock())
    assert "ldap" not in sql.namedServices
