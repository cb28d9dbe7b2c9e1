"""The role table: each row allowed and refused at the router's gate, its audit, its docs, and the daemon's wiring."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.testing import MemoryReactorClock

from ctid import config
from ctid.adapters.store.schema import audit_log
from ctid.client import CTIClient, CTIClientError
from ctid.protocols.ctiapi import CommandRouter, CTIError
from ctid.roles import PUBLIC, ROLE_TABLE, SIGNED_IN, RoleCheck, allowed
from ctid.service import makeService
from tests.e2e import PASSWORD, SUPERVISORS
from tests.test_records import written

ROOT = Path(__file__).resolve().parent.parent
ROLES = ("agent", "supervisor", "admin", "leader")
AGENT, SUPERVISOR = {"agent"}, {"supervisor"}
#: The table as the security review wrote it (docs/roles.md): command -> roles allowed, "public" or "signed in".
EXPECTED: dict[str, Any] = {
    "Login": "public", "Logout": "signed in", "SnapshotAgent": "signed in",
    **dict.fromkeys(("SetAgentState", "SnapshotQueues", "SetAutoAnswer", "AnswerCall", "ClearConnection", "HoldCall",
                     "RetrieveCall", "SendDTMF", "SetCallData", "MakeCall", "PickupCall", "GetIdleAgents",
                     "SingleStepTransfer", "ConsultationCall", "ReconnectCall", "TransferCall", "Survey",
                     "ConferenceCall", "AddParty", "DropParty", "SetCallCategory",
                     "StartRecording", "StopRecording", "PauseRecording", "ResumeRecording"), AGENT),
    **dict.fromkeys(("MonitorCall", "SetMonitorMode", "StopMonitor", "ForceRelease", "ForcePause", "ForceLogout",
                     "UnlockAgent", "SetCallPriority", "MoveCall", "SnapshotFloor", "SubscribeFloor",
                     "UnsubscribeFloor"), SUPERVISOR),
    **dict.fromkeys(("ListRecordings", "PlayRecording", "DownloadRecording"), set(ROLES)),
    "Report": {"supervisor", "admin", "leader"},
}


@dataclass(eq=False)
class Session:
    """What the gate reads of a CTI session: its identity and peer."""

    identity: dict[str, Any] | None
    peer: str = "10.0.0.7:50000"
    ran: list[str] = field(default_factory=list)


def router_with_every_command() -> tuple[CommandRouter, list]:
    """A router with the role gate and a recording handler for every command of the table; and the audit rows."""
    audit: list = []
    router = CommandRouter()
    router.authorize = RoleCheck(audit=lambda *row: audit.append(row))
    for name in ROLE_TABLE:
        router.add(name, lambda session, args, name=name: session.ran.append(name) or {"ran": name},
                   login=ROLE_TABLE[name] != PUBLIC)
    return router, audit


def run(router: CommandRouter, session: Session, command: str) -> Any:
    results: list = []
    Deferred.fromCoroutine(router.handle(session, command, {})).addBoth(results.append)
    (result,) = results
    return result.value if hasattr(result, "value") else result


def test_the_table_is_the_reviewed_one():
    """ROLE_TABLE grants exactly what the reviewed table says, row by row."""
    table = {name: "public" if roles == PUBLIC else "signed in" if roles == SIGNED_IN else set(roles)
             for name, roles in ROLE_TABLE.items()}
    assert table == EXPECTED


@pytest.mark.parametrize("command", sorted(EXPECTED))
def test_each_row_allows_its_roles_and_refuses_the_others(command):
    """For every command: each allowed role reaches the handler; every other role is ``forbidden`` before it runs."""
    router, audit = router_with_every_command()
    rule = EXPECTED[command]
    for role in ROLES:
        session = Session({"agent": "1001", "roles": [role]})
        result = run(router, session, command)
        if rule in ("public", "signed in") or role in rule:
            assert result == {"ran": command} and session.ran == [command], (command, role)
        else:
            assert isinstance(result, CTIError) and result.code == "forbidden", (command, role)
            assert session.ran == [] and audit[-1] == ("1001", role, "10.0.0.7:50000", command, None,
                                                       "forbidden", "")
    nobody = Session(None)
    result = run(router, nobody, command)
    if rule == "public":
        assert result == {"ran": command}
    else:
        assert isinstance(result, CTIError) and result.code == "login_required" and nobody.ran == []


def test_several_roles_and_no_roles():
    """Holding any one listed role is enough; a person with no role runs only public and signed-in commands."""
    assert allowed("Report", ["agent", "leader"]) and not allowed("Report", ["agent"])
    assert allowed("Logout", []) and allowed("SnapshotAgent", None) and not allowed("SetAgentState", [])
    assert allowed("SomeFutureCommand", []), "unlisted commands need a login only"


def test_docs_roles_md_shows_the_same_table():
    """docs/roles.md lists every row of ROLE_TABLE with the same roles."""
    text = (ROOT / "docs" / "roles.md").read_text()
    documented = {}
    for name, roles in re.findall(r"^\| `(\w+)` \| ([^|]+) \|$", text, re.MULTILINE):
        roles = roles.strip()
        documented[name] = {"*public*": "public", "*signed in*": "signed in"}.get(roles) or set(roles.split(", "))
    assert documented == EXPECTED


def test_the_daemon_gates_every_command_it_registers():
    """makeService sets the role gate on the CTI router, and every command it registers has a row in the table."""
    root = makeService(config.load(str(ROOT / "conf" / "ctid.ini")), MemoryReactorClock())
    desk = root.getServiceNamed("cti").cti.handler
    assert isinstance(desk.authorize, RoleCheck)
    assert desk.commands <= set(ROLE_TABLE), f"commands without a row: {sorted(desk.commands - set(ROLE_TABLE))}"


async def _signed_in(daemon, agent: str) -> CTIClient:
    client = CTIClient(reactor, name="test-roles/1", retry_policy=lambda attempt: 0.05)
    await client.connect(f"tcp:127.0.0.1:{daemon.port('cti')}")
    await client.call("Login", agent=agent, password=PASSWORD, station=agent)
    return client


@pytest_twisted.ensureDeferred
async def test_over_cti_an_agent_is_refused_a_managers_command_and_the_refusal_audited(daemon):
    """End to end: an agent asking for a report gets ``forbidden`` (audited); a supervisor passes the gate."""
    agent = await _signed_in(daemon, "1001")
    with pytest.raises(CTIClientError) as info:
        await agent.call("Report", kind="stats")
    assert info.value.code == "forbidden"
    (row,) = await written(daemon, audit_log, "the refusal", actor="1001", action="Report")
    assert (row["role"], row["outcome"]) == ("agent", "forbidden") and row["address"].startswith("127.0.0.1:")
    supervisor = await _signed_in(daemon, next(iter(SUPERVISORS)))
    with pytest.raises(CTIClientError) as info:
        await supervisor.call("Report", kind="nonsense")
    assert info.value.code == "bad_request", "past the gate, the handler itself answered"
    await agent.close()
    await supervisor.close()
