"""``twistd ctid-pbxsim``: the simulated switch as a standalone daemon / load generator.

    twistd -n ctid-pbxsim --ami tcp:5038:interface=127.0.0.1 --agi tcp:127.0.0.1:4573 \\
        --rate 120 --agents 50 --duration 600
"""

from __future__ import annotations

from typing import Any

from twisted.application.service import Service
from twisted.logger import Logger
from twisted.python import usage

from .service import SimulatorService, makeSimulatorService
from .settings import SettingsError, SimulatorSettings

log = Logger(namespace="ctid.pbxsim")
_DEFAULTS = SimulatorSettings()


def _agents(text: str) -> tuple[str, ...]:
    """``20`` -> 1001..1020; ``1001,1002`` -> those extensions."""
    if "," in text:
        return tuple(part.strip() for part in text.split(",") if part.strip())
    count = int(text)
    if not 1 <= count <= 5000:
        raise usage.UsageError("--agents must be between 1 and 5000 (or a comma-separated list)")
    return tuple(str(1001 + n) for n in range(count))


class Options(usage.Options):
    """Command line of ``twistd ctid-pbxsim``."""

    synopsis = "[options]"
    longdesc = "A simulated Asterisk 22 (AMI + FastAGI) that generates bank call-center traffic for ctid."
    optParameters = [
        ["ami", None, _DEFAULTS.ami_endpoint, "Server endpoint for AMI clients."],
        ["agi", None, _DEFAULTS.agi_endpoint, "Client endpoint of ctid's FastAGI server."],
        ["agi-script", None, _DEFAULTS.agi_script, "Script part of the agi:// URL."],
        ["username", None, _DEFAULTS.username, "AMI user name."],
        ["secret", None, _DEFAULTS.secret, "AMI secret."],
        ["seed", None, _DEFAULTS.seed, "Random seed of the simulated population.", int],
        ["rate", None, _DEFAULTS.calls_per_minute, "Calls per minute (0: no generated traffic).", float],
        ["agents", None, ",".join(_DEFAULTS.agents), "Agent phones: a count (20) or extensions (1001,1002).",
         _agents],
        ["dnis", None, ",".join(_DEFAULTS.dnis), "Service numbers callers dial (comma-separated)."],
        ["duration", None, 0.0, "Stop generating after this many seconds, exit when idle (0: run forever).",
         float],
        ["max-calls", None, 0, "Stop generating after this many calls (0: unlimited).", int],
    ]

    def postOptions(self) -> None:
        if isinstance(self["agents"], str):
            self["agents"] = _agents(self["agents"])
        if self["duration"] < 0:
            raise usage.UsageError("--duration must be >= 0")
        try:
            self.settings = SimulatorSettings(
                ami_endpoint=self["ami"], agi_endpoint=self["agi"], agi_script=self["agi-script"],
                username=self["username"], secret=self["secret"], seed=self["seed"],
                calls_per_minute=self["rate"], agents=self["agents"],
                dnis=tuple(d.strip() for d in self["dnis"].split(",") if d.strip()),
                max_calls=self["max-calls"],
            )
        except SettingsError as error:
            raise usage.UsageError(str(error)) from None


class StopAfter(Service):
    """Stops the traffic after ``seconds``, then the reactor once no channel is left (or 5 minutes)."""

    name = "duration"

    def __init__(self, root: SimulatorService, seconds: float, reactor: Any):
        self.root = root
        self.seconds = seconds
        self.reactor = reactor
        self._call: Any = None
        self._waited = 0

    def startService(self) -> None:
        super().startService()
        self._call = self.reactor.callLater(self.seconds, self._stop_traffic)

    def stopService(self) -> Any:
        if self._call is not None and self._call.active():
            self._call.cancel()
        return super().stopService()

    def _stop_traffic(self) -> None:
        traffic = self.root.getServiceNamed("traffic")
        if traffic.running:
            traffic.stopService()
        log.info("pbxsim: {n} calls generated in {s:.0f} s; waiting for calls in progress",
                 n=len(traffic.arrivals), s=self.seconds)
        self._wait_idle()

    def _wait_idle(self) -> None:
        if not self.root.world.channels or self._waited >= 300:
            self._call = None
            self.reactor.stop()
            return
        self._waited += 1
        self._call = self.reactor.callLater(1.0, self._wait_idle)


def makeService(options: Options, reactor: Any = None) -> SimulatorService:
    """Build the service tree for ``twistd ctid-pbxsim``."""
    if reactor is None:
        from twisted.internet import reactor as default_reactor

        reactor = default_reactor
    root = makeSimulatorService(options.settings, reactor)
    if options["duration"]:
        StopAfter(root, options["duration"], reactor).setServiceParent(root)
    return root
