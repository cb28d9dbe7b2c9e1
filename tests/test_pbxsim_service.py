"""Service tree, settings validation, ``twistd ctid-pbxsim`` options, and one real loopback AMI session."""

from __future__ import annotations

import pytest
import pytest_twisted
from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import IServiceMaker
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.protocol import Protocol
from twisted.internet.testing import MemoryReactorClock
from twisted.plugin import getPlugins
from twisted.python import usage

from ctid.adapters.pbxsim import tap
from ctid.adapters.pbxsim.population import TrafficGenerator
from ctid.adapters.pbxsim.service import makeSimulatorService
from ctid.adapters.pbxsim.settings import SettingsError, SimulatorSettings, agi_host_port
from ctid.protocols.amiwire import MessageParser, format_message


def test_make_simulator_service_builds_named_children_without_starting():
    """makeSimulatorService returns MultiService 'pbxsim' with 'ami' and 'traffic'; nothing listens yet."""
    memory = MemoryReactorClock()
    root = makeSimulatorService(SimulatorSettings(), reactor=memory)
    assert root.name == "pbxsim" and not root.running
    assert isinstance(root.getServiceNamed("ami"), StreamServerEndpointService)
    assert isinstance(root.getServiceNamed("traffic"), TrafficGenerator)
    assert memory.tcpServers == []
    assert root.world.globals["CTID_AGI"] == "agi://127.0.0.1:4573/bank"
    assert set(root.world.devices) == {"1001", "1002", "1003", "1004", "1900"}


def test_start_listens_on_the_ami_endpoint_and_stop_says_shutdown():
    """Starting listens on 127.0.0.1:5038 and schedules traffic; stopping emits Shutdown and cancels it."""
    memory = MemoryReactorClock()
    root = makeSimulatorService(SimulatorSettings(calls_per_minute=60), reactor=memory)
    seen = []
    root.world.subscribe(seen.append)
    root.startService()
    port, factory, _, interface = memory.tcpServers[0]
    assert (port, interface) == (5038, "127.0.0.1") and factory is root.factory
    assert memory.getDelayedCalls()
    root.stopService()
    assert [e.name for e in seen][-1] == "Shutdown"
    assert not [c for c in memory.getDelayedCalls() if c.active()]


def test_settings_validation():
    """Out-of-range or malformed settings are refused with a clear message."""
    with pytest.raises(SettingsError, match="ivr_share"):
        SimulatorSettings(ivr_share=1.5)
    with pytest.raises(SettingsError, match="answer_delay"):
        SimulatorSettings(answer_delay=(5.0, 1.0))
    with pytest.raises(SettingsError, match="extension"):
        SimulatorSettings(agents=("10 01",))
    assert agi_host_port("tcp:host=10.0.0.5:port=4600") == ("10.0.0.5", 4600)
    assert agi_host_port("tcp:127.0.0.1:4573:timeout=5") == ("127.0.0.1", 4573)
    from_ini = SimulatorSettings(agents="1001 1002", answer_delay="1 4", dnis="95566,95588")
    assert (from_ini.agents, from_ini.answer_delay, from_ini.dnis) == (("1001", "1002"), (1.0, 4.0),
                                                                      ("95566", "95588"))
    assert SimulatorSettings(agi_endpoint="tcp:10.1.1.1:4574", agi_script="ivr/main").agi_url == \
        "agi://10.1.1.1:4574/ivr/main"


def test_tap_options_map_onto_settings():
    """--ami --agi --username --secret --seed --rate --agents --duration fill SimulatorSettings."""
    options = tap.Options()
    options.parseOptions(["--ami", "tcp:0:interface=127.0.0.1", "--agi", "tcp:127.0.0.1:4600", "--username", "lab",
                          "--secret", "x", "--seed", "7", "--rate", "120", "--agents", "20", "--duration", "60"])
    s = options.settings
    assert (s.ami_endpoint, s.agi_endpoint, s.username, s.secret, s.seed) == (
        "tcp:0:interface=127.0.0.1", "tcp:127.0.0.1:4600", "lab", "x", 7)
    assert s.calls_per_minute == 120.0 and s.agents[0] == "1001" and len(s.agents) == 20
    assert options["duration"] == 60.0
    options = tap.Options()
    options.parseOptions(["--agents", "2001,2002"])
    assert options.settings.agents == ("2001", "2002")


@pytest.mark.parametrize("argv", [["--rate", "-1"], ["--agents", "0"], ["--seed", "x"], ["--duration", "-5"]])
def test_tap_options_reject_bad_values(argv):
    """Bad command-line values are a UsageError, not a traceback."""
    with pytest.raises(usage.UsageError):
        tap.Options().parseOptions(argv)


def test_tap_make_service_adds_the_duration_stopper():
    """makeService(options) builds the same tree, plus 'duration' when --duration is given."""
    options = tap.Options()
    options.parseOptions(["--duration", "30"])
    root = tap.makeService(options, reactor=MemoryReactorClock())
    assert {s.name for s in root} == {"ami", "traffic", "duration"}


def test_twistd_plugin_is_discoverable():
    """``twistd ctid-pbxsim`` finds the plugin, which points at tap.Options."""
    import twisted.plugins

    makers = {m.tapname: m for m in getPlugins(IServiceMaker, twisted.plugins)}
    assert makers["ctid-pbxsim"].options is tap.Options


class _Client(Protocol):
    def __init__(self) -> None:
        self.parser = MessageParser(banner=True)
        self.messages = []
        self.waiting: list[tuple[str, Deferred]] = []

    def dataReceived(self, data: bytes) -> None:
        for message in self.parser.feed(data):
            self.messages.append(message)
            for key, d in list(self.waiting):
                if message.get("ActionID") == key and message.get("EventList") != "start":
                    self.waiting.remove((key, d))
                    d.callback(message)

    def ask(self, **headers) -> Deferred:  # type: ignore[no-untyped-def]
        d: Deferred = Deferred()
        self.waiting.append((headers["ActionID"], d))
        self.transport.write(format_message(headers))
        return d


@pytest_twisted.ensureDeferred
async def test_real_loopback_ami_session():
    """Over real TCP: banner, Login, Ping, a list action; then the service stops cleanly."""
    root = makeSimulatorService(SimulatorSettings(ami_endpoint="tcp:0:interface=127.0.0.1", calls_per_minute=0,
                                                  secret="loop"), reactor=reactor)
    root.startService()
    try:
        port = await root.getServiceNamed("ami")._waitingForPort
        client = _Client()
        await TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port).connect(_factory(client))
        login = await client.ask(Action="Login", Username="ctid", Secret="loop", ActionID="l")
        assert client.parser.banner == "Asterisk Call Manager/11.0.0"
        assert login["Message"] == "Authentication accepted"
        assert (await client.ask(Action="Ping", ActionID="p"))["Ping"] == "Pong"
        done = await client.ask(Action="CoreShowChannels", ActionID="c")
        assert done.event == "CoreShowChannelsComplete" and done["ListItems"] == "0"
        client.transport.loseConnection()
    finally:
        await root.stopService()


def _factory(proto):  # type: ignore[no-untyped-def]
    from twisted.internet.protocol import Factory

    class One(Factory):
        def buildProtocol(self, addr):  # type: ignore[no-untyped-def]
            return proto

    return One()
