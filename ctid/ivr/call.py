"""One call's run through a flow: where it is, what it learnt, what it hands to an agent.

:class:`IVRCall` holds the per-call state the nodes read and write: the
flow it started with (never swapped by a reload), the language, the menu
path, plain variables (``vars``, which flows may speak, branch on and hand
over) and secrets (``secrets``: passwords, card and ID numbers typed in, which
only core-banking operations read and which are never spoken, logged or put
on the channel).  The records handed to the hooks (:class:`FlowEnd`,
:class:`~ctid.announce.VoiceMessage`, :class:`FaxRequest`) carry masked data only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from twisted.logger import Logger

from ctid.announce import VoiceMessage
from ctid.banking import Session, Statement
from ctid.ivr.model import Flow

log = Logger()


@dataclass(frozen=True)
class CallInfo:
    """Which call: channel, unique id, caller number (ANI), number dialled (DNIS), flow."""

    channel: str
    uniqueid: str
    caller: str
    dnis: str
    flow: str


@dataclass(frozen=True)
class FlowEnd:
    """How a call left its flow: ``reason`` is ``transfer``, ``hangup`` (the caller), ``completed`` or ``error``."""

    call: CallInfo
    node: str
    reason: str
    path: str
    verified: bool
    customer_id: str


@dataclass(frozen=True)
class FaxRequest:
    """A statement to fax to ``fax_number`` (the lines come from the bank, the account masked)."""

    call: CallInfo
    node: str
    fax_number: str
    statement: Statement
    customer_id: str = ""


def _log_end(end: FlowEnd) -> None:
    log.info("IVR: {channel} left flow {flow} at {node} ({reason}), path {path}", channel=end.call.channel,
             flow=end.call.flow, node=end.node, reason=end.reason, path=end.path or "-")


def _log_message(message: VoiceMessage) -> None:
    log.info("IVR: {kind} of {seconds:.1f}s recorded from {caller} in {path}", kind=message.mailbox,
             seconds=message.seconds, caller=message.caller, path=message.path)


def _log_fax(request: FaxRequest) -> None:
    log.info("IVR: statement of {lines} line(s) for {account} to fax {fax}", lines=len(request.statement.lines),
             account=request.statement.account_masked, fax=request.fax_number)


@dataclass(frozen=True)
class IVRHooks:
    """Where the engine reports what calls did; each defaults to an info log line.

    The callables run on the reactor thread and must not block (hand slow
    work, such as writing a record, to a pool).
    """

    on_flow_end: Callable[[FlowEnd], Any] = _log_end
    on_voice_message: Callable[[VoiceMessage], Any] = _log_message
    on_fax: Callable[[FaxRequest], Any] = _log_fax


@dataclass
class IVRCall:
    """The state of one call in one flow."""

    flow: Flow
    info: CallInfo
    language: str
    node: str = ""
    vars: dict[str, Any] = field(default_factory=dict)
    secrets: dict[str, Any] = field(default_factory=dict, repr=False)
    path: list[str] = field(default_factory=list)
    menu: str = ""
    ending: str = "completed"
    banking: Session | None = field(default=None, repr=False)
    hooks: IVRHooks = field(default_factory=IVRHooks, repr=False)

    def value(self, dotted: str) -> Any:
        """The value of ``balance`` or ``item.amount_fen`` (None when any part is missing); never a secret."""
        head, *rest = dotted.split(".")
        value = self.vars.get(head)
        for part in rest:
            value = value.get(part) if isinstance(value, dict) else getattr(value, part, None)
        return value

    def choose(self, menu_label: str, choice_label: str) -> None:
        """Record a menu choice in the path (``main>public>card>balance``); going back to a menu trims it."""
        if menu_label in self.path:
            del self.path[self.path.index(menu_label) + 1:]
        else:
            self.path.append(menu_label)
        self.path.append(choice_label)
        self.menu = choice_label

    @property
    def verified(self) -> bool:
        """True once a core-banking verification succeeded."""
        return self.banking is not None

    def handoff(self) -> dict[str, str]:
        """The ``CTID_*`` channel variables an agent's screen pop gets (masked account, no secret)."""
        data = {"CTID_MENU": self.menu or "agent", "CTID_VERIFIED": "yes" if self.verified else "no",
                "CTID_LANGUAGE": self.language}
        if self.path:
            data["CTID_PATH"] = ">".join(self.path)
        if self.banking is not None:
            data["CTID_CUSTOMER"] = self.banking.customer_id
            data["CTID_ACCOUNT"] = self.banking.account_masked
            data["CTID_SEGMENT"] = self.banking.kind
        return data

    def end(self, reason: str) -> FlowEnd:
        """The record of this call leaving the flow now, for ``reason``."""
        return FlowEnd(self.info, self.node, reason, ">".join(self.path), self.verified,
                       self.banking.customer_id if self.banking else "")
