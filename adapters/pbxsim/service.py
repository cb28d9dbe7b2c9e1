"""The composition root: ``makeSimulatorService(settings, reactor)`` builds the service tree.

::

    pbxsim (SimulatorService; .world, .population, .factory)
    ├── ami      StreamServerEndpointService(serverFromString(settings.ami_endpoint))
    └── traffic  TrafficGenerator (Poisson callers, outbound calls)

Nothing is started here; ``startService`` (twistd, or ctid's own tree) does that.
"""

from __future__ import annotations

from typing import Any

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import MultiService
from twisted.internet.endpoints import serverFromString
from twisted.logger import Logger

from .agiclient import EndpointAgiRunner
from .amiserver import AmiServerFactory
from .desktops import SimulatedDesktops
from .dialplan import CTID_DIALPLAN, Dialplan
from .population import Population, TrafficGenerator
from .settings import SimulatorSettings
from .world import World

log = Logger(namespace="ctid.pbxsim")


def build_world(settings: SimulatorSettings, clock: Any, extra_dialplan: str = "") -> World:
    """A World running ctid's dialplan, with the globals taken from ``settings``."""
    text = CTID_DIALPLAN
    if settings.direct_prefix != "8":
        text = text.replace("_8X.", f"_{settings.direct_prefix}X.")
    plan = Dialplan.parse(text + "\n" + extra_dialplan)
    world = World(clock, plan, bridge_seed=settings.seed)
    world.globals["CTID_AGI"] = settings.agi_url
    world.globals["CTID_AGI_HOST"] = settings.agi_host_url
    world.media_speed = settings.media_speed
    world.globals["CTID_DIRECT_RING"] = str(settings.direct_ring)
    return world


class SimulatorService(MultiService):
    """The simulator's root service; tests reach the World through :attr:`world`."""

    def __init__(self, settings: SimulatorSettings, world: World, population: Population,
                 factory: AmiServerFactory):
        super().__init__()
        self.setName("pbxsim")
        self.settings = settings
        self.world = world
        self.population = population
        self.factory = factory

    def startService(self) -> None:
        settings = self.settings
        log.info("pbxsim: AMI on {ami}, FastAGI to {agi}, {rate} calls/min, {agents} agents, seed {seed}",
                 ami=settings.ami_endpoint, agi=settings.agi_endpoint, rate=settings.calls_per_minute,
                 agents=len(settings.agents), seed=settings.seed)
        super().startService()

    def stopService(self) -> Any:
        self.world.emit("Shutdown", "system", [("Shutdown", "Cleanly"), ("Restart", "False")])
        self.factory.disconnect_all()
        return super().stopService()


def makeSimulatorService(settings: SimulatorSettings, reactor: Any = None) -> SimulatorService:
    """Build (do not start) the simulator: AMI server + traffic generator around one World."""
    if reactor is None:
        from twisted.internet import reactor as default_reactor

        reactor = default_reactor
    world = build_world(settings, reactor)
    world.agi = EndpointAgiRunner(reactor, settings.agi_endpoint, settings.agi_timeout)
    population = Population(world, settings)
    factory = AmiServerFactory(world, settings)
    root = SimulatorService(settings, world, population, factory)
    ami = StreamServerEndpointService(serverFromString(reactor, settings.ami_endpoint), factory)
    ami.setName("ami")
    ami.setServiceParent(root)
    traffic = TrafficGenerator(world, population, settings)
    traffic.setName("traffic")
    traffic.setServiceParent(root)
    if settings.desktops:
        desktops = SimulatedDesktops(reactor, settings.cti_endpoint, settings.agents, settings.desktop_password)
        desktops.setServiceParent(root)
    return root
