"""The composition root: ``makeService(config)`` builds the daemon's service tree.

It only builds; nothing is started or opened here.  Each part is a named
child of the returned ``MultiService`` (see docs/architecture.md).
"""

from __future__ import annotations

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import MultiService
from twisted.internet.endpoints import clientFromString, serverFromString
from twisted.internet.interfaces import IReactorCore

from ctid.acd import ACD, PriorityRule
from ctid.adapters.asterisk import AsteriskPBX
from ctid.adapters.customers import SQLCustomers
from ctid.adapters.directory import SQLDirectory
from ctid.adapters.pbxsim.service import makeSimulatorService
from ctid.adapters.store.engine import make_engine
from ctid.adapters.store.migrate import SchemaUpgrade
from ctid.adapters.store.pool import DatabasePool
from ctid.agentlog import AgentLogger
from ctid.agents import AgentBoard
from ctid.calls import CallLogger, CallModel
from ctid.center import CallCenter
from ctid.config import ACDSettings, Config
from ctid.desk import AgentDesk
from ctid.greeting import greet
from ctid.logs import JSONLogService, set_console_level
from ctid.manhole import makeManholeService
from ctid.protocols.ami import AMIClientService, EventDispatcher
from ctid.protocols.cti import CTIServerFactory, CTIServerService
from ctid.protocols.fastagi import FastAGIFactory
from ctid.reload import ReloadService


def vip_rules(settings: ACDSettings) -> tuple[PriorityRule, ...]:
    """The VIP priority rule from [acd] (by caller number or prefix), if any numbers are set."""
    if not (settings.vip_numbers or settings.vip_prefixes):
        return ()
    return (PriorityRule(settings.vip_priority, frozenset(settings.vip_numbers), settings.vip_prefixes),)


def makeService(config: Config, reactor: IReactorCore | None = None) -> MultiService:
    """Build the ctid service tree for ``config`` (the global reactor by default)."""
    if reactor is None:
        from twisted.internet import reactor as default_reactor

        reactor = default_reactor
    root = MultiService()
    set_console_level(config.daemon.log_level)
    if config.daemon.log_file:
        jsonlog = JSONLogService(config.daemon.log_file, config.daemon.log_level)
        jsonlog.setName("jsonlog")
        jsonlog.setServiceParent(root)
    simulator = None
    if config.pbxsim.enabled:
        simulator = makeSimulatorService(config.pbxsim.simulator, reactor)
        simulator.setServiceParent(root)

    dispatcher = EventDispatcher()
    ami = AMIClientService(
        clientFromString(reactor, config.ami.endpoint),
        config.ami.username,
        config.ami.secret,
        md5=config.ami.md5,
        dispatcher=dispatcher,
        clock=reactor,
        action_timeout=config.ami.action_timeout,
        ping_interval=config.ami.ping_interval,
        ping_timeout=config.ami.ping_timeout,
    )
    ami.setServiceParent(root)

    model = CallModel(reactor)
    CallLogger(model)
    pbx = AsteriskPBX(ami, dispatcher, model)
    pbx.setName("pbx")
    pbx.setServiceParent(root)

    pool = DatabasePool(make_engine(config.database.url), reactor, name="db", max_threads=config.database.threads)
    pool.setServiceParent(root)
    SchemaUpgrade(pool).setServiceParent(root)
    board = AgentBoard(reactor, wrap_up_time=config.agents.wrap_up_time,
                       not_hung_up_after=config.agents.not_hung_up_after)
    AgentLogger(board)
    acd = ACD(config.acd.queues, reactor, rules=vip_rules(config.acd), cities=dict(config.acd.cities) or None)
    desk = AgentDesk(board, SQLDirectory(pool), station_prefix=config.agents.station_prefix, acd=acd,
                     queues=config.acd.queues)
    customers = SQLCustomers(pool, config.customers.account_key) if config.customers.account_key else None
    center = CallCenter(model, board, acd, pbx, desk, config.acd.default_queue, config.acd.ring_time, reactor,
                        customers=customers, lookup_timeout=config.customers.lookup_timeout,
                        routes=config.acd.routes)
    center.setServiceParent(root)
    cti = CTIServerService(serverFromString(reactor, config.cti.endpoint), CTIServerFactory(
        desk, reactor, heartbeat=config.cti.heartbeat, resume_grace=config.cti.resume_grace, rate=config.cti.rate,
        burst=config.cti.burst, max_per_address=config.cti.max_per_address))
    cti.setName("cti")
    cti.setServiceParent(root)

    agi = FastAGIFactory.for_scripts({"bank": greet}, clock=reactor, command_timeout=config.fastagi.command_timeout)
    fastagi = StreamServerEndpointService(serverFromString(reactor, config.fastagi.endpoint), agi)
    fastagi.setName("fastagi")
    fastagi.setServiceParent(root)

    if config.manhole.enabled:
        namespace = {"config": config, "root": root, "model": model, "pbx": pbx, "ami": ami, "board": board,
                     "acd": acd}
        manhole = makeManholeService(
            config.manhole.endpoint, config.manhole.username, config.manhole.password, namespace
        )
        manhole.setName("manhole")
        manhole.setServiceParent(root)

    reload = ReloadService(config.path, root, reactor, current=config)
    if simulator is not None:
        traffic = simulator.getServiceNamed("traffic")
        reload.add_reloader(
            ("pbxsim.simulator.calls_per_minute",),
            lambda new: traffic.set_rate(new.pbxsim.simulator.calls_per_minute),
        )
    reload.add_reloader(("acd.routes",), lambda new: setattr(center, "routes", new.acd.routes))
    reload.setServiceParent(root)
    return root
