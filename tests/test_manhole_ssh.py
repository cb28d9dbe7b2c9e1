"""The manhole over SSH (and telnet): a real conch client logs in on loopback and runs Python in the daemon."""

from __future__ import annotations

import pytest
import pytest_twisted
from cryptography.hazmat.primitives.asymmetric import ed25519
from twisted.conch.ssh import channel, connection, keys, session, transport, userauth
from twisted.internet import reactor
from twisted.internet.defer import Deferred, succeed
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.protocol import Factory

from ctid import config
from ctid.manhole import makeManholeService
from tests.e2e import free_port, telnet_session

PASSWORD = "manhole-ssh-pw"


class _Shell(channel.SSHChannel):
    """A session channel with a pty and a shell that types ``line`` and collects the output."""

    name = b"session"

    def __init__(self, line: bytes, outcome: Deferred[bytes], **kw):
        super().__init__(**kw)
        self.line, self.outcome, self.received = line, outcome, b""

    def channelOpen(self, specificData: bytes) -> None:
        pty = session.packRequest_pty_req(b"xterm", (24, 80, 0, 0), b"")
        self.conn.sendRequest(self, b"pty-req", pty, wantReply=False)
        self.conn.sendRequest(self, b"shell", b"", wantReply=False)
        self.write(self.line + b"\r")

    def dataReceived(self, data: bytes) -> None:
        self.received += data
        if b"answer=" in self.received and not self.outcome.called:
            self.outcome.callback(self.received)
            self.loseConnection()


class _Connection(connection.SSHConnection):
    def __init__(self, line: bytes, outcome: Deferred[bytes]):
        super().__init__()
        self.line, self.outcome = line, outcome

    def serviceStarted(self) -> None:
        self.openChannel(_Shell(self.line, self.outcome, conn=self))


class _Auth(userauth.SSHUserAuthClient):
    """Offers ``password`` once, or ``key`` once."""

    def __init__(self, user: bytes, instance, password: bytes | None, key: keys.Key | None):
        super().__init__(user, instance)
        self.password, self.key = password, key

    def getPassword(self, prompt=None):
        password, self.password = self.password, None
        return None if password is None else succeed(password)

    def getPublicKey(self):
        return None if self.key is None else self.key.public()

    def getPrivateKey(self):
        key, self.key = self.key, None
        return succeed(key)


class _Client(transport.SSHClientTransport):
    def verifyHostKey(self, hostKey: bytes, fingerprint: bytes) -> Deferred[bool]:
        self.factory.host_keys.append(keys.Key.fromString(hostKey))
        return succeed(True)

    def connectionSecure(self) -> None:
        f = self.factory
        self.requestService(_Auth(f.user, _Connection(f.line, f.outcome), f.password, f.key))

    def receiveError(self, reasonCode: int, description: bytes) -> None:
        """The server gave up on us (no more authentication methods): refused, not an error of the test."""

    def connectionLost(self, reason=None) -> None:
        super().connectionLost(reason)
        if not self.factory.outcome.called:
            self.factory.outcome.callback(None)


async def ssh_run(port: int, line: bytes, user: bytes = b"admin", password: bytes | None = None,
                  key: keys.Key | None = None) -> tuple[bytes | None, list[keys.Key]]:
    """Log in over SSH, type ``line`` into the shell; the output up to ``answer=`` (None if refused) and host keys."""
    factory = Factory.forProtocol(_Client)
    factory.user, factory.line, factory.password, factory.key = user, line, password, key
    factory.outcome, factory.host_keys = Deferred(), []
    factory.outcome.addTimeout(10, reactor)
    client = await TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=2).connect(factory)
    output = await factory.outcome
    client.transport.loseConnection()
    return output, factory.host_keys


@pytest_twisted.async_yield_fixture
async def ssh_manhole(tmp_path):
    """An SSH manhole on a free loopback port with a password, whose namespace holds ``marker``."""
    port = free_port()
    service = makeManholeService(f"tcp:{port}:interface=127.0.0.1", "admin", PASSWORD, {"marker": 21}, kind="ssh",
                                 host_key=str(tmp_path / "var" / "host_key"), reactor=reactor)
    service.startService()
    yield port, tmp_path / "var" / "host_key"
    await service.stopService()


@pytest_twisted.ensureDeferred
async def test_password_login_runs_python_in_the_namespace(ssh_manhole):
    """The right password opens a Python shell that sees the daemon's namespace; the host key was generated 0600."""
    port, host_key = ssh_manhole
    output, seen = await ssh_run(port, b"print('ans' + 'wer=%d' % (marker * 2))", password=PASSWORD.encode())
    assert output is not None and b"answer=42" in output
    stored = keys.Key.fromString(host_key.read_bytes())
    assert seen == [stored.public()] and (host_key.stat().st_mode & 0o777) == 0o600


@pytest_twisted.ensureDeferred
async def test_wrong_password_and_unknown_user_are_refused(ssh_manhole):
    """A wrong password, or the right one for another user name, never reaches the shell."""
    port, _ = ssh_manhole
    assert (await ssh_run(port, b"print('ans' + 'wer=1')", password=b"wrong-password"))[0] is None
    assert (await ssh_run(port, b"print('ans' + 'wer=1')", user=b"root", password=PASSWORD.encode()))[0] is None


@pytest_twisted.ensureDeferred
async def test_authorized_key_login_without_a_password(tmp_path):
    """With authorized_keys and no password, the listed key logs in and any other key is refused."""
    mine, other = (keys.Key(ed25519.Ed25519PrivateKey.generate()) for _ in range(2))
    authorized = tmp_path / "authorized_keys"
    authorized.write_bytes(b"# the operators\n" + mine.public().toString("OPENSSH") + b" ops@bank\n")
    port = free_port()
    service = makeManholeService(f"tcp:{port}:interface=127.0.0.1", "admin", "", {}, kind="ssh",
                                 host_key=str(tmp_path / "host_key"), authorized_keys=str(authorized),
                                 reactor=reactor)
    service.startService()
    try:
        output, _ = await ssh_run(port, b"print('ans' + 'wer=%d' % 7)", key=mine)
        assert output is not None and b"answer=7" in output
        assert (await ssh_run(port, b"print('ans' + 'wer=1')", key=other))[0] is None
        assert (await ssh_run(port, b"print('ans' + 'wer=1')", password=b"anything-at-all"))[0] is None
    finally:
        await service.stopService()


@pytest_twisted.ensureDeferred
async def test_host_key_is_kept_across_restarts(tmp_path):
    """A second start reuses the stored host key, so clients' known_hosts stay valid."""
    path = tmp_path / "host_key"
    fingerprints = []
    for _ in range(2):
        port = free_port()
        service = makeManholeService(f"tcp:{port}:interface=127.0.0.1", "admin", PASSWORD, {}, kind="ssh",
                                     host_key=str(path), reactor=reactor)
        service.startService()
        try:
            _, seen = await ssh_run(port, b"print('ans' + 'wer=0')", password=PASSWORD.encode())
        finally:
            await service.stopService()
        fingerprints.append(seen[0].fingerprint())
    assert fingerprints[0] == fingerprints[1]


@pytest_twisted.ensureDeferred
async def test_telnet_manhole_password_login():
    """The telnet kind checks the same password and gives the same shell."""
    port = free_port()
    service = makeManholeService(f"tcp:{port}:interface=127.0.0.1", "admin", PASSWORD, {"marker": 5},
                                 reactor=reactor)
    service.startService()
    try:
        good = await telnet_session(port, [(b"Username: ", b"admin\r\n"), (b"Password: ", PASSWORD.encode() + b"\r\n"),
                                           (b">>> ", b"print('ans' + 'wer=%d' % (marker + 1))\r\n")])
        bad = await telnet_session(port, [(b"Username: ", b"admin\r\n"), (b"Password: ", b"nope-nope\r\n"),
                                          (b">>> ", b"print('ans' + 'wer=%d' % (marker + 1))\r\n")], timeout=2)
    finally:
        await service.stopService()
    assert b"answer=6" in good and b"answer=6" not in bad


def test_ssh_kind_in_the_configuration():
    """[manhole] kind = ssh may go without a password when authorized_keys is set; telnet may not."""
    base = "[ami]\nsecret = s3cret-s3cret\n[manhole]\nenabled = yes\n"
    settings = config.parse(base + "kind = ssh\nauthorized_keys = /etc/ctid/keys\n")
    assert (settings.manhole.kind, settings.manhole.password) == ("ssh", "")
    with pytest.raises(config.ConfigError, match=r"\[manhole\] password: needs at least 8"):
        config.parse(base + "kind = telnet\nauthorized_keys = /etc/ctid/keys\n")
    with pytest.raises(config.ConfigError, match=r"\[manhole\] kind: expected telnet or ssh"):
        config.parse(base + "kind = rsh\npassword = long-enough-pw\n")

