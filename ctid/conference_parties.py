"""The bookkeeping of a conference: its parties, who is told, and when it ends.

Pure data and rules, no switch and no sockets (the commands and the event
handling are in :mod:`ctid.conference`).

The end rule: a conference ends when its **owner** (the agent who made it)
leaves, or when no **customer** is left in it (customers are the parties
that are not agents: the caller and any number added).  Parties still being
called count as present.  Whoever is still in the conference then is kicked
out and hung up; the agents go to wrap-up.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

CUSTOMER, AGENT, NUMBER = "customer", "agent", "number"


@dataclass
class Party:
    """One leg of a conference: the caller, an agent's phone or an outside number."""

    uniqueid: str
    kind: str                       # customer, agent or number
    agent_id: str | None = None
    number: str | None = None
    initial: bool = False           # one of the parties the conference was made from
    joined: bool = False            # seen in the ConfBridge (ConfbridgeJoin)
    dropping: bool = False          # DropParty asked for it to go

    def describe(self) -> dict[str, Any]:
        """The party as the desktops see it."""
        return {"party": self.uniqueid, "kind": self.kind, "agent": self.agent_id, "number": self.number}


@dataclass
class Conference:
    """A conference made from call ``call_id`` by agent ``owner``, in the ConfBridge ``name``."""

    name: str
    call_id: str
    owner: str
    parties: dict[str, Party] = field(default_factory=dict)
    formed: bool = False            # every initial party joined: Conferenced was sent
    ending: str | None = None       # why it ends, once it does

    def add(self, party: Party) -> Party:
        self.parties[party.uniqueid] = party
        return party

    def agents(self) -> list[str]:
        """The agents to tell about the conference: the owner and every agent party, in order."""
        found = [self.owner] + [p.agent_id for p in self.parties.values() if p.agent_id]
        return list(dict.fromkeys(found))

    def party_of(self, args: dict[str, Any]) -> Party | None:
        """The party named by ``party`` (its id), ``agent`` or ``number`` in ``args``."""
        for party in self.parties.values():
            if party.uniqueid == args.get("party") or (party.agent_id is not None and party.agent_id ==
                                                        args.get("agent")) or (
                    party.kind != AGENT and party.number is not None and party.number == args.get("number")):
                return party
        return None

    def all_joined(self) -> bool:
        """Whether every initial party still expected is in the ConfBridge."""
        return all(p.joined for p in self.parties.values() if p.initial)

    def end_reason(self, leaver: Party) -> str | None:
        """After ``leaver`` left: ``owner_left``, ``no_customer`` or None (the conference goes on)."""
        if leaver.kind == AGENT and leaver.agent_id == self.owner:
            return "owner_left"
        if not any(p.kind != AGENT for p in self.parties.values()):
            return "no_customer"
        return None

    def view(self) -> dict[str, Any]:
        """The conference as the desktops see it."""
        return {"call": self.call_id, "conference": self.name, "owner": self.owner,
                "parties": [p.describe() for p in self.parties.values()]}
