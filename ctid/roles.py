"""Which CTI command needs which role: the role table as data, and the check the command router runs.

:data:`ROLE_TABLE` maps a command name to the roles allowed to run it
(holding any one of them is enough); :data:`PUBLIC` marks commands for
sessions not yet signed in (Login) and :data:`SIGNED_IN` those any
signed-in person may run.  A command missing from the table needs a signed-in
session only.  This is the coarse gate, checked before any handler runs;
the handlers check scope themselves (an agent's own calls, the groups and
cities a supervisor manages).  docs/roles.md shows the same table.

:class:`RoleCheck` is the hook :class:`ctid.protocols.ctiapi.CommandRouter`
calls (``router.authorize = RoleCheck(...)``): it refuses with CTIError
``forbidden`` and writes each refusal to the audit log.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from ctid.loginguard import Audit, main_role
from ctid.protocols.ctiapi import CTIError, CTISession

#: No role needed, nor a login.
PUBLIC: frozenset[str] = frozenset({"*public*"})
#: Any signed-in person, whatever their roles (even none).
SIGNED_IN: frozenset[str] = frozenset({"*signed_in*"})
#: Whoever takes calls.
AGENT = frozenset({"agent"})
#: Supervisors only (the handlers then check the groups and cities they manage: ctid/scope.py).
SUPERVISOR = frozenset({"supervisor"})
#: Those who read the centre's figures.
MANAGERS = frozenset({"supervisor", "admin", "leader"})
#: Every role (the handler narrows: an agent its own, a supervisor its scope, admin all).
ANY_ROLE = frozenset({"agent", "supervisor", "admin", "leader"})

#: command -> the roles that may run it (any one suffices).
ROLE_TABLE: Mapping[str, frozenset[str]] = MappingProxyType({
    # the desk (ctid/desk.py)
    "Login": PUBLIC,
    "Logout": SIGNED_IN,
    "SnapshotAgent": SIGNED_IN,
    "SetAgentState": AGENT,
    "SnapshotQueues": AGENT,
    # the agent's own calls (ctid/callcontrol.py, callcontroldial.py, transfers.py, survey.py, recording.py)
    "SetAutoAnswer": AGENT,
    "AnswerCall": AGENT,
    "ClearConnection": AGENT,
    "HoldCall": AGENT,
    "RetrieveCall": AGENT,
    "SendDTMF": AGENT,
    "SetCallData": AGENT,
    "MakeCall": AGENT,
    "PickupCall": AGENT,
    "GetIdleAgents": AGENT,
    "SingleStepTransfer": AGENT,
    "ConsultationCall": AGENT,
    "ReconnectCall": AGENT,
    "TransferCall": AGENT,
    "ConferenceCall": AGENT,
    "AddParty": AGENT,
    "DropParty": AGENT,
    "Survey": AGENT,
    "SetCallCategory": AGENT,  # ctid/wrapup.py
    "StartRecording": AGENT,
    "StopRecording": AGENT,
    "PauseRecording": AGENT,
    "ResumeRecording": AGENT,
    # supervision and the floor view (ctid/supervision.py, ctid/floorview.py)
    "MonitorCall": SUPERVISOR,
    "SetMonitorMode": SUPERVISOR,
    "StopMonitor": SUPERVISOR,
    "ForceRelease": SUPERVISOR,
    "ForcePause": SUPERVISOR,
    "ForceLogout": SUPERVISOR,
    "UnlockAgent": SUPERVISOR,
    "SetCallPriority": SUPERVISOR,
    "MoveCall": SUPERVISOR,
    "SnapshotFloor": SUPERVISOR,
    "SubscribeFloor": SUPERVISOR,
    "UnsubscribeFloor": SUPERVISOR,
    # recordings (ctid/recordaccess.py) and reports (ctid/reportdesk.py)
    "ListRecordings": ANY_ROLE,
    "PlayRecording": ANY_ROLE,
    "DownloadRecording": ANY_ROLE,
    "Report": MANAGERS,
})


def allowed(command: str, roles: Any, table: Mapping[str, frozenset[str]] = ROLE_TABLE) -> bool:
    """True when a person holding ``roles`` may run ``command`` (signed in; unlisted commands: anyone)."""
    needed = table.get(command, SIGNED_IN)
    return needed in (PUBLIC, SIGNED_IN) or bool(needed & set(roles or ()))


class RoleCheck:
    """The router's role gate: ``check(session, command)`` raises CTIError ``forbidden`` and audits refusals."""

    def __init__(self, table: Mapping[str, frozenset[str]] = ROLE_TABLE, audit: Audit | None = None):
        self.table = table
        self.audit = audit

    def __call__(self, session: CTISession, command: str) -> None:
        """Let ``command`` run for ``session``'s signed-in identity, or refuse it."""
        identity = session.identity or {}
        roles = identity.get("roles", ())
        if allowed(command, roles, self.table):
            return
        if self.audit is not None:
            self.audit(str(identity.get("agent", "?"))[:64], main_role(roles), (session.peer or "")[:64] or None,
                       command, None, "forbidden", "")
        needed = ", ".join(sorted(self.table[command]))
        raise CTIError("forbidden", f"{command} needs one of these roles: {needed}")
