"""The debugging manhole: a Python shell on localhost, behind a password, over telnet or SSH.

SSH is the safer kind (``[manhole] kind = ssh``): the session is encrypted,
the server proves itself with a host key (generated on first start under
``var/``), and logins may use an ``authorized_keys`` file instead of, or
besides, the password.  The endpoint is checked to be loopback-only when the
configuration is loaded; the password is held in memory only.
"""

from __future__ import annotations

import hmac
import os
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ed25519
from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import IService
from twisted.conch import manhole, manhole_ssh, telnet
from twisted.conch.checkers import InMemorySSHKeyDB, SSHPublicKeyChecker, readAuthorizedKeyFile
from twisted.conch.insults import insults
from twisted.conch.manhole_tap import makeTelnetProtocol
from twisted.conch.ssh import keys, transport
from twisted.cred import credentials, error, portal
from twisted.cred.checkers import ICredentialsChecker
from twisted.internet import defer, protocol
from twisted.internet.endpoints import serverFromString
from twisted.logger import Logger
from zope.interface import implementer

log = Logger()


@implementer(ICredentialsChecker)
class PasswordChecker:
    """Accepts one user name and password (compared in constant time)."""

    credentialInterfaces = (credentials.IUsernamePassword,)

    def __init__(self, username: str, password: str):
        self._username = username.encode("utf-8")
        self._password = password.encode("utf-8")

    def requestAvatarId(self, offered: credentials.IUsernamePassword) -> defer.Deferred[bytes | tuple[()]]:
        """The user name if both match, else ``UnauthorizedLogin``."""
        username = offered.username if isinstance(offered.username, bytes) else offered.username.encode("utf-8")
        password = offered.password if isinstance(offered.password, bytes) else offered.password.encode("utf-8")
        same_name = hmac.compare_digest(username, self._username)
        if hmac.compare_digest(password, self._password) and same_name:
            return defer.succeed(username)
        log.info("manhole: login refused for {user!r}", user=username.decode("utf-8", "replace")[:64])
        return defer.fail(error.UnauthorizedLogin("wrong user name or password"))


@implementer(portal.IRealm)
class _ShellRealm:
    """Gives each authenticated telnet user a manhole over ``namespace``."""

    def __init__(self, namespace: dict[str, Any]):
        self.namespace = namespace

    def requestAvatar(self, avatarId, mind, *interfaces):
        if telnet.ITelnetProtocol not in interfaces:
            raise ValueError("the manhole only offers telnet")
        shell = telnet.TelnetBootstrapProtocol(insults.ServerProtocol, manhole.ColoredManhole, self.namespace)
        return telnet.ITelnetProtocol, shell, lambda: None


class _SSHShellSession(manhole_ssh.TerminalSession):
    """A terminal session that ignores window resizes and closes on end of input (conch's raise)."""

    def windowChanged(self, newWindowSize):
        """The shell does not track the terminal's size."""

    def eofReceived(self):
        """Nothing more will be typed; the client closes the channel itself."""


class _ManholeSSHTransport(transport.SSHServerTransport):
    """Conch's server transport, but a client that gives up (e.g. after a refused login) is not an error."""

    def receiveError(self, reasonCode: int, description: bytes) -> None:
        log.info("manhole: SSH client disconnected (code {code}: {why})", code=reasonCode,
                 why=description.decode("utf-8", "replace")[:200])


def _ssh_realm(namespace: dict[str, Any]) -> manhole_ssh.TerminalRealm:
    realm = manhole_ssh.TerminalRealm()
    realm.sessionFactory = _SSHShellSession

    def shell() -> insults.ServerProtocol:
        return insults.ServerProtocol(manhole.ColoredManhole, namespace)

    # Twisted infers the attribute's type from its default, the class; it is only ever called with no arguments.
    realm.chainedProtocolFactory = shell  # type: ignore[assignment]
    return realm


def load_or_make_host_key(path: str) -> keys.Key:
    """The SSH host key stored at ``path`` (OpenSSH format); a new Ed25519 key, written 0600, if there is none."""
    if not os.path.exists(path):
        folder = os.path.dirname(path)
        if folder:
            os.makedirs(folder, exist_ok=True)
        key = keys.Key(ed25519.Ed25519PrivateKey.generate())
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as f:
            f.write(key.toString("OPENSSH"))
        log.info("manhole: generated SSH host key {path} ({fingerprint})", path=path,
                 fingerprint=key.fingerprint(keys.FingerprintFormats.SHA256_BASE64))
        return key
    with open(path, "rb") as f:
        return keys.Key.fromString(f.read())


def read_authorized_keys(path: str) -> list[keys.Key]:
    """The public keys of an OpenSSH ``authorized_keys`` file (unparseable lines are logged and skipped)."""
    with open(path, "rb") as f:
        return list(readAuthorizedKeyFile(f))


class SSHManholeService(StreamServerEndpointService):
    """Listens for SSH manhole logins; loads (or makes) the host key and the authorized keys when it starts."""

    def __init__(self, endpoint: Any, factory: manhole_ssh.ConchFactory, username: str, host_key: str,
                 authorized_keys: str):
        super().__init__(endpoint, factory)
        self.conch = factory
        self.username = username
        self.host_key = host_key
        self.authorized_keys = authorized_keys

    def startService(self) -> None:
        """Put the host key and the authorized keys in place, then listen."""
        key = load_or_make_host_key(self.host_key)
        # Twisted annotates privateKeys as bytes, but SSHFactory wants keys.Key objects (it calls their methods).
        self.conch.privateKeys = {key.sshType(): key}  # type: ignore[dict-item]
        self.conch.publicKeys = {key.sshType(): key.public()}
        if self.authorized_keys:
            database = InMemorySSHKeyDB({self.username.encode("utf-8"): read_authorized_keys(self.authorized_keys)})
            self.conch.portal.registerChecker(SSHPublicKeyChecker(database))
        super().startService()


def makeManholeService(endpoint: str, username: str, password: str, namespace: dict[str, Any], *,
                       kind: str = "telnet", host_key: str = "var/manhole_host_key", authorized_keys: str = "",
                       reactor: Any = None) -> IService:
    """A manhole on ``endpoint`` whose shell sees ``namespace``: ``kind`` ``telnet`` or ``ssh``.

    An empty ``password`` allows no password login (SSH with
    ``authorized_keys`` only).  ``host_key`` and ``authorized_keys`` are
    paths, read when the SSH service starts.
    """
    if reactor is None:
        from twisted.internet import reactor  # composition edge: default to the reactor
    checker_list = [PasswordChecker(username, password)] if password else []
    listening = serverFromString(reactor, endpoint)
    if kind == "ssh":
        realm = _ssh_realm(namespace)  # TerminalRealm has requestAvatar, but Twisted does not declare it an IRealm
        factory = manhole_ssh.ConchFactory(portal.Portal(realm, checker_list))  # type: ignore[arg-type]
        factory.protocol = _ManholeSSHTransport
        return SSHManholeService(listening, factory, username, host_key, authorized_keys)
    if kind != "telnet":
        raise ValueError(f"manhole kind must be telnet or ssh, not {kind!r}")
    telnet_factory = protocol.ServerFactory()
    telnet_factory.protocol = makeTelnetProtocol(portal.Portal(_ShellRealm(namespace), checker_list))
    return StreamServerEndpointService(listening, telnet_factory)
