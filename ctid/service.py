"""The composition root: ``makeService(config)`` builds the daemon's service tree.

It only builds; nothing is started or opened here.  Each part is a named
child of the returned ``MultiService`` (see docs/architecture.md).
"""

from __future__ import annotations

from typing import Any, cast

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import MultiService
from twisted.internet.endpoints import clientFromString, serverFromString

from ctid.acd import ACD, CHINA_AREA_CODES, PriorityRule
from ctid.adapters.asterisk import AsteriskPBX
from ctid.adapters.corebank.factory import make_corebank, trade_recorder
from ctid.adapters.customers import SQLCustomers
from ctid.adapters.ldapdirectory import make_directory
from ctid.adapters.pbxsim.service import makeSimulatorService
from ctid.adapters.store.engine import make_engine
from ctid.adapters.store.migrate import SchemaUpgrade
from ctid.adapters.store.pool import DatabasePool
from ctid.adapters.store.recordprocess import ProcessDatabasePool
from ctid.adapters.store.writer import RecordWriter
from ctid.agentlog import AgentLogger
from ctid.agents import AgentBoard
from ctid.announce import WaitScripts
from ctid.callcontrol import CallControl
from ctid.callcontroldial import CallOrigination
from ctid.calls import CallLogger, CallModel
from ctid.center import CallCenter
from ctid.conference import ConferenceCalls
from ctid.config import ACDSettings, Config
from ctid.desk import AgentDesk
from ctid.ivr.call import IVRHooks
from ctid.ivr.engine import IVREngine
from ctid.ivr.tts import EspeakSpeech
from ctid.loginguard import LoginGuard
from ctid.logs import JSONLogService, set_console_level
from ctid.manhole import makeManholeService
from ctid.protocols.ami import AMIClientService, EventDispatcher
from ctid.protocols.cti import CTIServerFactory, CTIServerService
from ctid.protocols.fastagi import FastAGIFactory
from ctid.recordingservice import install_recording
from ctid.records import Records
from ctid.reload import ReloadService
from ctid.reportdesk import ReportDesk
from ctid.reportschedule import MonthlyReportService
from ctid.roles import RoleCheck
from ctid.staffing import modelled_estimator
from ctid.supervision import install_supervisors
from ctid.transfers import CallTransfers
from ctid.wrapup import WrapUpDesk


def vip_rules(settings: ACDSettings) -> tuple[PriorityRule, ...]:
    """The VIP priority rule from [acd] (by caller number or prefix), if any numbers are set."""
    if not (settings.vip_numbers or settings.vip_prefixes):
        return ()
    return (PriorityRule(settings.vip_priority, frozenset(settings.vip_numbers), settings.vip_prefixes),)


def makeService(config: Config, reactor: Any = None) -> MultiService:
    """Build the ctid service tree for ``config`` (the global reactor by default).

    ``reactor`` is a whole reactor (time, TCP, threads, processes), hence ``Any``: no Twisted interface is all of it.
    """
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
    schema = SchemaUpgrade(pool)
    schema.setServiceParent(root)
    board = AgentBoard(reactor, wrap_up_time=config.agents.wrap_up_time,
                       not_hung_up_after=config.agents.not_hung_up_after)
    AgentLogger(board)
    patience = config.reports.patience if isinstance(config.reports.patience, float) else None
    acd = ACD(config.acd.queues, reactor, rules=vip_rules(config.acd),
              cities=dict(config.acd.cities) or CHINA_AREA_CODES, estimator=modelled_estimator(patience))
    guard = LoginGuard.from_settings(config.directory, reactor)  # audits logins once the records exist (below)
    desk = AgentDesk(board, make_directory(config.directory, pool, reactor, root),
                     station_prefix=config.agents.station_prefix, acd=acd, queues=config.acd.queues, guard=guard)
    desk.plaintext_login = config.cti.allow_plaintext_login
    customers = SQLCustomers(pool, config.customers.account_key) if config.customers.account_key else None
    center = CallCenter(model, board, acd, pbx, desk, config.acd.default_queue, config.acd.ring_time, reactor,
                        customers=customers, lookup_timeout=config.customers.lookup_timeout,
                        routes=config.acd.routes, wait_policy=config.acd.wait_policy)
    center.setServiceParent(root)
    reports = ReportDesk(pool, config.reports)
    desk.add("Report", lambda session, args: reports.report(session.identity, args))
    records_pool = ProcessDatabasePool(config.database.url, reactor, engine_options={"pool_size": 1})  # its own GIL
    # The writer only uses run() and the Service methods, which ProcessDatabasePool has as DatabasePool does;
    # writer.py's annotation still says DatabasePool (that module is on mypy's skip list while being edited).
    writer = RecordWriter(cast(DatabasePool, records_pool), config.records.spool, reactor,
                          batch_size=config.records.batch_size, flush_interval=config.records.flush_interval,
                          max_queue=config.records.max_queue, fsync_interval=config.records.fsync_interval)
    writer.setServiceParent(root)
    records = Records(writer, reactor, model, board, center)  # after the center: it reads the center's doings
    assert records.calls is not None  # Records given a call model keep a call recorder
    WrapUpDesk(records.calls).register(desk)  # SetCallCategory: the agent classifies its last call
    writer.before_stop.append(records.close)
    guard.audit = records.audit
    desk.authorize = RoleCheck(audit=records.audit)  # ctid/roles.py: which command needs which role
    control = CallControl(board, model, pbx, desk, reactor, records)  # AG-3: the agent's own calls
    control.register(desk)
    CallOrigination(control, center, config.agents.outbound_caller_id).register(desk)
    install_supervisors(desk, board, model, center, pbx, records.audit, config, reactor)  # after the center too
    install_recording(root, config, model, board, center, pbx, desk, records, pool, reactor)  # AG-3/4/5
    if center.on_voice_message is None:
        center.on_voice_message = records.voice_message
    transfers = CallTransfers(desk, model, board, center, pbx, reactor, queues=config.acd.queues, records=records)
    dispatcher.register("BridgeEnter", transfers.bridge_entered)  # a transferred call's new agent answered
    conferences = ConferenceCalls(desk, model, board, center, pbx, reactor, transfers, records=records)  # AG-3
    dispatcher.register("BridgeEnter", conferences.bridge_entered)
    if config.reports.schedule:
        MonthlyReportService(pool, config.reports, reactor, schema=schema).setServiceParent(root)
    cti = CTIServerService(serverFromString(reactor, config.cti.endpoint), CTIServerFactory(
        desk, reactor, heartbeat=config.cti.heartbeat, resume_grace=config.cti.resume_grace, rate=config.cti.rate,
        burst=config.cti.burst, max_per_address=config.cti.max_per_address))
    cti.setName("cti")
    cti.setServiceParent(root)

    if config.corebank.enabled:  # the IVR's bank: sandbox or ISO 8583 host, every trade in the trade log
        make_corebank(config.corebank, reactor, trade_log=trade_recorder(records)).setServiceParent(root)
    scripts = {**WaitScripts(center, reactor).scripts()}
    agi = FastAGIFactory.for_scripts(scripts, clock=reactor, command_timeout=config.fastagi.command_timeout,
                                     log_commands=config.daemon.log_level == "debug")
    ivr = None
    if config.ivr.library is not None:  # one FastAGI script per flow (agi://host/bank), kept in step on reload
        bank = root.getServiceNamed("corebank").bank if "corebank" in root.namedServices else None
        tts = None
        if config.ivr.tts == "espeak":  # product and policy texts spoken by espeak-ng (docs/ivr.md)
            tts = EspeakSpeech(reactor, config.ivr.tts_directory, config.ivr.tts_timeout)
            tts.setServiceParent(root)
        hooks = IVRHooks(on_flow_end=records.ivr_session, on_voice_message=records.voice_message,
                         on_fax=records.fax_request)  # ivr_sessions, voice_messages, fax_requests
        ivr = IVREngine.from_settings(config.ivr, bank, reactor, hooks, tts=tts)
        ivr.serve(agi.handler)
        ivr.setServiceParent(root)
    fastagi = StreamServerEndpointService(serverFromString(reactor, config.fastagi.endpoint), agi)
    fastagi.setName("fastagi")
    fastagi.setServiceParent(root)

    if config.manhole.enabled:
        namespace = {"config": config, "root": root, "model": model, "pbx": pbx, "ami": ami, "board": board,
                     "acd": acd}
        manhole = makeManholeService(
            config.manhole.endpoint, config.manhole.username, config.manhole.password, namespace,
            kind=config.manhole.kind, host_key=config.manhole.host_key,
            authorized_keys=config.manhole.authorized_keys, reactor=reactor,
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
    reload.add_reloader(("daemon.log_level",),
                        lambda new: setattr(agi, "log_commands", new.daemon.log_level == "debug"))
    if ivr is not None:
        reload.add_reloader(("ivr",), lambda new: ivr.configure(new.ivr))
    reload.setServiceParent(root)
    return root
