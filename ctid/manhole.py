"""The debugging manhole: a Python shell over telnet, on localhost, behind a password."""

from __future__ import annotations

from typing import Any

from twisted.application import strports
from twisted.application.service import IService
from twisted.conch import manhole, telnet
from twisted.conch.insults import insults
from twisted.conch.manhole_tap import makeTelnetProtocol
from twisted.cred import checkers, portal
from twisted.internet import protocol
from zope.interface import implementer


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


def makeManholeService(endpoint: str, username: str, password: str, namespace: dict[str, Any]) -> IService:
    """A telnet manhole on ``endpoint`` whose shell sees ``namespace``.

    The endpoint is checked to be loopback-only when the configuration is
    loaded; the password is held in memory only.
    """
    checker = checkers.InMemoryUsernamePasswordDatabaseDontUse(**{username: password.encode("utf-8")})
    factory = protocol.ServerFactory()
    factory.protocol = makeTelnetProtocol(portal.Portal(_ShellRealm(namespace), [checker]))
    return strports.service(endpoint, factory)
