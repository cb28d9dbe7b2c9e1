"""Transport security: CTI over TLS with certificates from scripts/ctid-testcert, no password without TLS
from a remote peer (``tls_required``), and the core-banking host reached over verified TLS only.
"""

from __future__ import annotations

import dataclasses
import pathlib
import subprocess
import sys
from types import SimpleNamespace

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.endpoints import serverFromString
from twisted.internet.testing import StringTransport

from ctid import config
from ctid.adapters.corebank.factory import make_corebank
from ctid.adapters.corebank.hostsim import HostSimProtocol, HostSimulatorFactory
from ctid.banking import HostError
from ctid.client import CTIClient, CTIClientError
from ctid.desk import plaintext_login_refused
from tests.e2e import PASSWORD, Daemon, daemon_config, free_port
from tests.test_corebank_iso8583 import PIN_KEY, Host
from tests.test_corebank_sandbox import PUBLIC_CARD, PUBLIC_PASSWORD

SCRIPT = pathlib.Path(__file__).resolve().parent.parent / "scripts" / "ctid-testcert"


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    """Two test CAs made by scripts/ctid-testcert, each with a server certificate for ``localhost``."""
    out = tmp_path_factory.mktemp("tls")
    for name in ("good", "rogue"):
        subprocess.run([sys.executable, str(SCRIPT), "--out", str(out / name), "--host", "localhost",
                        "--ca-name", f"{name} CA"], check=True, capture_output=True)
    return out


def listen_string(folder: pathlib.Path, port: int | str = 0) -> str:
    return f"ssl:{port}:interface=127.0.0.1:privateKey={folder / 'server.key'}:certKey={folder / 'server.pem'}"


def test_testcert_writes_a_ca_and_a_server_certificate(certs):
    """The script writes the CA alone in its folder, keys readable by their owner only, a cert for the name."""
    from cryptography import x509

    good = certs / "good"
    assert sorted(p.name for p in (good / "ca").iterdir()) == ["ca.pem"]
    assert all((good / name).stat().st_mode & 0o077 == 0 for name in ("ca.key", "server.key"))
    server = x509.load_pem_x509_certificate((good / "server.pem").read_bytes())
    ca = x509.load_pem_x509_certificate((good / "ca" / "ca.pem").read_bytes())
    assert server.issuer == ca.subject
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["localhost"]
    server.verify_directly_issued_by(ca)


@pytest_twisted.async_yield_fixture
async def tls_daemon(tmp_path, certs):
    """The daemon with its CTI server on TLS only and ``allow_plaintext_login = no``, plus a plain TCP listener
    on the same CTI factory (as a second, unencrypted port would be)."""
    settings = daemon_config(tmp_path)
    cti = dataclasses.replace(settings.cti, endpoint=listen_string(certs / "good", free_port()),
                              allow_plaintext_login="no")
    running = Daemon(dataclasses.replace(settings, cti=cti))
    await running.start()
    factory = running.root.getServiceNamed("cti").cti
    plain = await serverFromString(reactor, "tcp:0:interface=127.0.0.1").listen(factory)
    running.plain_port = plain.getHost().port
    running.desk = factory.handler
    yield running
    await plain.stopListening()
    await running.stop()


async def log_in(endpoint: str, agent: str = "1001"):
    client = CTIClient(reactor, name="test-tls/1", retry_policy=lambda attempt: 0.05)
    await client.connect(endpoint)
    try:
        return await client.call("Login", agent=agent, password=PASSWORD, station=agent)
    finally:
        await client.close()


@pytest_twisted.ensureDeferred
async def test_login_over_tls_and_refused_over_plain_tcp(tls_daemon, certs):
    """Over TLS (CA from ctid-testcert) Login works; over plain TCP it is refused with tls_required, password
    unchecked; allowing plaintext from localhost lets the loopback peer in."""
    port = tls_daemon.port("cti")
    result = await log_in(f"tls:localhost:{port}:trustRoots={certs / 'good' / 'ca'}:timeout=2")
    assert result["agent"]["agent"] == "1001"
    with pytest.raises(CTIClientError) as refused:
        await log_in(f"tcp:127.0.0.1:{tls_daemon.plain_port}", agent="1002")
    assert refused.value.code == "tls_required"
    assert tls_daemon.desk.board.get("1002") is None or tls_daemon.desk.board.get("1002").state.value == "logged_out"
    tls_daemon.desk.plaintext_login = "localhost"
    assert (await log_in(f"tcp:127.0.0.1:{tls_daemon.plain_port}", agent="1002"))["agent"]["agent"] == "1002"


@pytest_twisted.ensureDeferred
async def test_client_refuses_a_wrong_host_name_or_an_unknown_ca(tls_daemon, certs):
    """The client's tls: endpoint checks the certificate's name (127.0.0.1 is not in it) and its issuer."""
    port = tls_daemon.port("cti")
    for endpoint in (f"tls:127.0.0.1:{port}:trustRoots={certs / 'good' / 'ca'}:timeout=2",
                     f"tls:localhost:{port}:trustRoots={certs / 'rogue' / 'ca'}:timeout=2"):
        client = CTIClient(reactor, name="test-tls/1", retry_policy=lambda attempt: 0.05)
        with pytest.raises(Exception) as failed:
            await client.connect(endpoint)
        assert not isinstance(failed.value, AssertionError)
        assert not client.connected


def _session(peer: str, tls: bool = False):
    transport = StringTransport()
    if tls:
        from twisted.internet.interfaces import ISSLTransport
        from zope.interface import directlyProvides

        directlyProvides(transport, ISSLTransport)
    return SimpleNamespace(peer=peer, link=SimpleNamespace(transport=transport))


@pytest.mark.parametrize(("peer", "tls", "policy", "refused"), [
    ("127.0.0.1:5000", False, "localhost", False),
    ("::1:5000", False, "localhost", False),
    ("UNIXAddress('/run/ctid.sock')", False, "localhost", False),
    ("10.1.2.3:5000", False, "localhost", True),
    ("192.168.0.7:5000", False, "no", True),
    ("127.0.0.1:5000", False, "no", True),
    ("10.1.2.3:5000", True, "no", False),
    ("10.1.2.3:5000", True, "localhost", False),
])
def test_plaintext_login_policy(peer, tls, policy, refused):
    """TLS is always fine; without it only loopback peers (and unix sockets) under ``localhost``."""
    assert plaintext_login_refused(_session(peer, tls), policy) is refused


def test_a_session_without_a_connection_is_refused():
    """A Login whose connection is already gone is not treated as TLS."""
    assert plaintext_login_refused(SimpleNamespace(peer="10.1.2.3:1", link=None), "localhost") is True


def test_config_refuses_unverified_client_tls_and_unknown_policies(tmp_path):
    """ssl: client endpoints (no host name check) are refused everywhere; the policy is localhost or no;
    a tls: endpoint's CA folder must exist."""
    base = "[ami]\nsecret = s3cret-s3cret\n"
    with pytest.raises(config.ConfigError, match=r"\[corebank\] host_endpoint: ssl: client endpoints do not verify"):
        config.parse(base + "[corebank]\nhost_endpoint = ssl:host=bank:port=8583\n")
    with pytest.raises(config.ConfigError, match=r"\[ami\] endpoint: ssl: client endpoints"):
        config.parse("[ami]\nsecret = s3cret-s3cret\nendpoint = ssl:host=pbx:port=5039\n")
    with pytest.raises(config.ConfigError, match=r"\[cti\] allow_plaintext_login: expected localhost or no"):
        config.parse(base + "[cti]\nallow_plaintext_login = yes\n")
    with pytest.raises(config.ConfigError, match=r"host_endpoint: invalid endpoint .* cannot be read"):
        config.parse(base + "[corebank]\nhost_endpoint = tls:bank.example:8583:trustRoots=/nonexistent/ca\n")
    ok = config.parse(base + f"[corebank]\nhost_endpoint = tls:bank.example:8583:trustRoots={tmp_path}\n")
    assert ok.corebank.host_endpoint.startswith("tls:") and ok.cti.allow_plaintext_login == "localhost"


def corebank_settings(endpoint: str) -> config.CoreBankSettings:
    text = (f"[ami]\nsecret = s3cret-s3cret\n[corebank]\nenabled = yes\nbackend = iso8583\n"
            f"pin_key = {PIN_KEY.hex()}\nhost_endpoint = {endpoint}\ntrade_timeout = 1\nbreaker_failures = 50\n")
    return config.parse(text).corebank


@pytest_twisted.async_yield_fixture
async def tls_host(tmp_path, certs):
    """The simulated core-banking host behind TLS (certificate for ``localhost`` from the good CA)."""
    host = Host(tmp_path)
    host.pool.startService()
    factory = HostSimulatorFactory(host.sim)

    class Recording(HostSimProtocol):
        def stringReceived(self, data):
            host.frames.append(data)
            super().stringReceived(data)

    factory.buildProtocol = lambda addr: Recording(host.sim)
    host.listening = await serverFromString(reactor, listen_string(certs / "good")).listen(factory)
    yield host
    await host.stop()


async def verify_over(endpoint: str):
    service = make_corebank(corebank_settings(endpoint), reactor)
    service.startService()
    try:
        return await service.bank.verify_public(PUBLIC_CARD, PUBLIC_PASSWORD)
    finally:
        await service.stopService()


@pytest_twisted.ensureDeferred
async def test_corebank_host_over_verified_tls(tls_host, certs):
    """The host client trades over tls: with the bank's CA; with a wrong host name or another CA the handshake
    fails, so no request (no PIN block) ever reaches the host and the trade fails as a host error."""
    ca, rogue = certs / "good" / "ca", certs / "rogue" / "ca"
    port = tls_host.listening.getHost().port
    session = await verify_over(f"tls:localhost:{port}:trustRoots={ca}:timeout=2")
    assert session.kind == "public" and len(tls_host.frames) == 1
    for endpoint in (f"tls:127.0.0.1:{port}:trustRoots={ca}:timeout=2",
                     f"tls:localhost:{port}:trustRoots={rogue}:timeout=2"):
        with pytest.raises(HostError):
            await verify_over(endpoint)
    assert len(tls_host.frames) == 1
